"""Istio's standard request metrics, with Istio's names, labels and default buckets.

Every request that reaches a pod is recorded twice, as Istio's sidecars do: once by the
destination's proxy (``reporter="destination"``, the series Flagger's builtin queries read) and once
by the caller's (``reporter="source"``). The registry is private to the mesh and exposed on its own
``/metrics`` port.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

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


class IstioMetrics:
    """Istio's request counter and duration histogram, in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "istio_requests_total",
            "Total number of requests handled by the sandbox mesh.",
            LABELS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds.",
            LABELS,
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )

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
        mtls = source.workload != "unknown"
        common = {
            "source_workload": source.workload,
            "source_workload_namespace": source.namespace,
            "source_principal": source.principal,
            "source_app": source.app,
            "source_version": source.version,
            "source_canonical_service": source.app if source.app != "unknown" else source.workload,
            "source_canonical_revision": source.version
            if source.version != "unknown"
            else "latest",
            "source_cluster": "Kubernetes",
            "destination_workload": destination.workload,
            "destination_workload_namespace": destination.namespace,
            "destination_principal": destination.principal,
            "destination_app": destination.app,
            "destination_version": destination.version,
            "destination_service": service_fqdn,
            "destination_service_name": service_name,
            "destination_service_namespace": service_ns,
            "destination_canonical_service": destination.app
            if destination.app != "unknown"
            else destination.workload,
            "destination_canonical_revision": destination.version
            if destination.version != "unknown"
            else "latest",
            "destination_cluster": "Kubernetes",
            "request_protocol": "http",
            "response_code": str(code),
            "grpc_response_status": "",
            "response_flags": flags,
        }
        for reporter in ("destination", "source"):
            labels = {
                **common,
                "reporter": reporter,
                # Only the destination knows whether mTLS was used; the source reports "unknown".
                "connection_security_policy": ("mutual_tls" if mtls else "none")
                if reporter == "destination"
                else "unknown",
            }
            self.requests.labels(**labels).inc()
            self.duration.labels(**labels).observe(duration_ms)
