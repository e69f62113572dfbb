"""Istio's standard request metrics, with Istio's names, labels and default buckets.

Every request that reaches a pod is recorded as Istio's sidecars record it: by the destination's
proxy (``reporter="destination"``, the series Flagger's builtin queries read) and, when the caller
is in the mesh (it named itself in the proxy credentials), by the caller's too
(``reporter="source"``), unless the source reporter is turned off to halve the series at scale.
``lean`` keeps only the labels Flagger and the usual dashboards read (``LEAN_LABELS``), which halves
the bytes of every line.

The series are kept and exposed here rather than through prometheus_client's ``generate_latest``:
that validates and escapes every label of every sample (~150 µs a sample), and with Istio's 25
labels and 20 buckets a few hundred series took seconds per scrape — every second, on the sandbox's
only event loop. Here each series formats its label set once, when it first appears, so a scrape
costs about a microsecond a line. The text is Prometheus' exposition format 0.0.4.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Istio's default buckets for istio_request_duration_milliseconds.
DURATION_BUCKETS_MS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000,
)  # fmt: skip

LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)

LEAN_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)
"""The labels Flagger's queries and the usual Istio dashboards read: half the bytes per line."""


@dataclass(frozen=True)
class Peer:
    """One side of a request, as Istio's metadata exchange describes it."""

    workload: str = "unknown"
    namespace: str = "unknown"
    app: str = "unknown"
    version: str = "unknown"

    @property
    def principal(self) -> str:
        if self.workload == "unknown":
            return "unknown"
        return f"spiffe://cluster.local/ns/{self.namespace}/sa/default"

    @property
    def canonical_service(self) -> str:
        return self.app if self.app != "unknown" else self.workload

    @property
    def canonical_revision(self) -> str:
        return self.version if self.version != "unknown" else "latest"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


LE = [f'le="{_le(b)}"' for b in DURATION_BUCKETS_MS] + ['le="+Inf"']


@dataclass
class _Series:
    """One label set: its formatted labels, request count, duration sum, per-bucket counts."""

    labels: str
    count: int = 0
    total_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LE))


class IstioMetrics:
    """``istio_requests_total`` and ``istio_request_duration_milliseconds`` for every label set."""

    def __init__(self, *, source_reporter: bool = True, lean: bool = False) -> None:
        self.reporters = ("destination", "source") if source_reporter else ("destination",)
        self.labels = LEAN_LABELS if lean else LABELS
        # Positions of the kept labels in the full LABELS tuple that `record` builds.
        self._keep = tuple(LABELS.index(name) for name in self.labels)
        self._series: dict[tuple[str, ...], _Series] = {}

    def __len__(self) -> int:
        return len(self._series)

    def record(
        self,
        *,
        source: Peer,
        destination: Peer,
        service_fqdn: str,
        code: int,
        duration_ms: float,
        flags: str = "-",
    ) -> None:
        parts = service_fqdn.split(".")
        service_name = parts[0] if len(parts) > 1 else service_fqdn
        service_ns = parts[1] if len(parts) > 2 else "unknown"
        mtls = "mutual_tls" if source.workload != "unknown" else "none"
        # A caller outside the mesh has no sidecar to report from: only the destination reports.
        reporters = self.reporters if source.workload != "unknown" else ("destination",)
        for reporter in reporters:
            # In LABELS order. Only the destination knows whether mTLS was used.
            values: tuple[str, ...] = (
                reporter,
                source.workload,
                source.namespace,
                source.principal,
                source.app,
                source.version,
                source.canonical_service,
                source.canonical_revision,
                "Kubernetes",
                destination.workload,
                destination.namespace,
                destination.principal,
                destination.app,
                destination.version,
                service_fqdn,
                service_name,
                service_ns,
                destination.canonical_service,
                destination.canonical_revision,
                "Kubernetes",
                "http",
                str(code),
                "",
                flags,
                mtls if reporter == "destination" else "unknown",
            )
            if len(self._keep) != len(LABELS):
                values = tuple(values[i] for i in self._keep)
            self._observe(values, duration_ms)

    def _observe(self, values: tuple[str, ...], duration_ms: float) -> None:
        series = self._series.get(values)
        if series is None:
            pairs = zip(self.labels, values, strict=True)
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
            series = self._series[values] = _Series(text)
        series.count += 1
        series.total_ms += duration_ms
        # Buckets are inclusive upper bounds: the first bound >= the value.
        series.buckets[bisect.bisect_left(DURATION_BUCKETS_MS, duration_ms)] += 1

    def expose(self) -> bytes:
        """Every series in Prometheus' text format."""
        series = list(self._series.values())
        name = "istio_request_duration_milliseconds"
        lines = [
            "# HELP istio_requests_total Total number of requests handled by the sandbox mesh.",
            "# TYPE istio_requests_total counter",
        ]
        lines += [f"istio_requests_total{{{s.labels}}} {s.count}" for s in series]
        lines += [f"# HELP {name} Request duration in milliseconds.", f"# TYPE {name} histogram"]
        for s in series:
            cumulative = 0
            for le, n in zip(LE, s.buckets, strict=True):
                cumulative += n
                lines.append(f"{name}_bucket{{{s.labels},{le}}} {cumulative}")
            lines.append(f"{name}_sum{{{s.labels}}} {s.total_ms!r}")
            lines.append(f"{name}_count{{{s.labels}}} {s.count}")
        lines.append("")
        return "\n".join(lines).encode()
