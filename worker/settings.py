"""Process settings: built once at start-up from flags and environment, then injected.

As kopf does, settings are grouped frozen dataclasses with a docstring per field, passed
explicitly to whatever needs them (``connect(settings.temporal)``, ``build_worker(..., settings)``)
rather than read from the environment deep inside the code. A flag wins over its environment
variable, which wins over the default:

=================================  =============================================================
``TEMPORAL_ADDRESS``               ``--address``        host:port of the Temporal frontend
``TEMPORAL_NAMESPACE``             ``--namespace``      Temporal namespace
``TEMPORAL_TASK_QUEUE``            ``--task-queue``     task queue of the rollout workers
``TEMPORAL_API_KEY``               ``--api-key``        API key (Temporal Cloud); implies TLS
``TEMPORAL_API_KEY_FILE``                               the API key read from a file (a mounted
                                                        Secret); absent file: no key
``TEMPORAL_TLS_CERT``/``_KEY``     ``--tls-cert/-key``  client certificate and key (mTLS)
``TEMPORAL_TLS_CA``                ``--tls-ca``         CA of the server (also
                                                        ``TEMPORAL_TLS_SERVER_CA_CERT``)
``TEMPORAL_TLS_SERVER_NAME``       ``--tls-server-name`` name the server certificate is checked for
``TEMPORAL_UI_URL``                ``--ui-url``         Web UI base address for links
``KUBECONFIG``                     ``--kubeconfig``     kubeconfig; in-cluster config when unset
``PROMETHEUS_URL``                 ``--prometheus-url`` Prometheus the analysis queries
``COALMINE_MESH_PROVIDER``         ``--mesh-provider``  traffic router of Canaries naming none
``COALMINE_METRICS_PORT``          ``--metrics-port``   the worker's own /metrics port (0: off)
=================================  =============================================================

Secrets (the API key) are kept out of ``repr`` so they never reach a log line. In a cluster they
come as files, never as environment variables (which ``kubectl describe``, crash dumps and child
processes all see): the manifests mount the API key's Secret and set ``TEMPORAL_API_KEY_FILE``,
and the TLS files are paths already.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from workflows import providers
from workflows.model import DEFAULT_TASK_QUEUE
from workflows.providers import DEFAULT_PROVIDER

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_UI_PORT = 8233
DEFAULT_METRICS_PORT = 9464
DEFAULT_PROMETHEUS_URL = "http://localhost:9090"


class SettingsError(ValueError):
    """A setting has a value that cannot work (bad number, key without certificate, …)."""


@dataclass(frozen=True)
class TemporalSettings:
    """How to reach Temporal: the same for the worker and every ``coalmine`` command."""

    address: str = DEFAULT_ADDRESS
    """host:port of the Temporal frontend (dev server, self-hosted cluster or Temporal Cloud)."""

    namespace: str = "default"
    """Temporal namespace the rollouts live in."""

    task_queue: str = DEFAULT_TASK_QUEUE
    """Task queue the workers poll and rollouts are started on."""

    api_key: str | None = field(default=None, repr=False)
    """API key sent as a bearer token (Temporal Cloud); turns TLS on. Never logged."""

    tls_cert: Path | None = None
    """Client certificate (PEM) for mutual TLS; needs ``tls_key``."""

    tls_key: Path | None = field(default=None, repr=False)
    """Client private key (PEM) for mutual TLS; needs ``tls_cert``."""

    tls_ca: Path | None = None
    """CA certificate (PEM) the server's certificate is checked against; system roots if unset."""

    tls_server_name: str | None = None
    """Name the server certificate is checked for, when it differs from the address's host."""

    ui_url: str | None = None
    """Base address of the Temporal Web UI; derived from the address (port 8233) when unset."""

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(
                "give both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (--tls-cert/--tls-key) for "
                "mutual TLS, or neither"
            )

    @property
    def tls_enabled(self) -> bool:
        """TLS is on with client certificates, a CA, a server name or an API key."""
        return any(
            v is not None for v in (self.tls_cert, self.tls_ca, self.tls_server_name, self.api_key)
        )

    @property
    def web_ui(self) -> str:
        """Base address of the Web UI (no trailing slash)."""
        if self.ui_url:
            return self.ui_url.rstrip("/")
        host = urlsplit(f"//{self.address}").hostname or "localhost"
        if host in ("0.0.0.0", "::"):  # a listen address, not one to browse to
            host = "localhost"
        scheme = "https" if self.tls_enabled else "http"
        return f"{scheme}://{host}:{DEFAULT_UI_PORT}"

    def workflow_url(self, workflow_id: str) -> str:
        """The Web UI page of one workflow."""
        return (
            f"{self.web_ui}/namespaces/{quote(self.namespace, safe='')}"
            f"/workflows/{quote(workflow_id, safe='')}"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> TemporalSettings:
        """Settings from flags (non-None values win) over ``TEMPORAL_*`` variables over defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "address": env.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS,
            "namespace": env.get("TEMPORAL_NAMESPACE") or "default",
            "task_queue": env.get("TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            "api_key": env.get("TEMPORAL_API_KEY")
            or _secret_file(env.get("TEMPORAL_API_KEY_FILE")),
            "tls_cert": _path(env.get("TEMPORAL_TLS_CERT")),
            "tls_key": _path(env.get("TEMPORAL_TLS_KEY")),
            "tls_ca": _path(env.get("TEMPORAL_TLS_CA") or env.get("TEMPORAL_TLS_SERVER_CA_CERT")),
            "tls_server_name": env.get("TEMPORAL_TLS_SERVER_NAME") or None,
            "ui_url": env.get("TEMPORAL_UI_URL") or None,
        }
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class KubernetesSettings:
    """How to reach the cluster the rollouts act on."""

    kubeconfig: Path | None = None
    """kubeconfig file; None means the in-cluster service account (or ~/.kube/config)."""

    context: str | None = None
    """kubeconfig context to use; the current context when unset."""

    in_cluster: bool = False
    """Use the pod's service account (the worker deployed in the cluster) instead of a
    kubeconfig; on by default inside a pod when no kubeconfig is given."""

    cluster: str = "default"
    """Name of the cluster, part of every rollout's workflow ID."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> KubernetesSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "kubeconfig": _path(env.get("KUBECONFIG")),
            "context": env.get("KUBE_CONTEXT") or None,
            "cluster": env.get("COALMINE_CLUSTER") or "default",
        }
        values.update({k: v for k, v in flags.items() if v is not None})
        if "in_cluster" not in flags or flags["in_cluster"] is None:
            values["in_cluster"] = values["kubeconfig"] is None and bool(
                env.get("KUBERNETES_SERVICE_HOST")
            )
        return cls(**values)


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker process is sized and what it serves besides Temporal tasks."""

    max_concurrent_activities: int = 100
    """Activity tasks run at once; most wait on Kubernetes or Prometheus, so this can be high."""

    max_concurrent_local_activities: int = 100
    """Local activities run at once: each step's weight change (``advance``), events and the
    Canary's status, run by the worker inside the workflow task that asked for them."""

    activity_threads: int = 200
    """Threads of the pool that runs the synchronous (Kubernetes client) activities, local ones
    too; at least ``max_concurrent_activities + max_concurrent_local_activities`` so a slot never
    waits for a thread."""

    max_cached_workflows: int = 2000
    """Workflows kept in memory. Size it to the rollouts the worker runs at once (at or above
    the number of open rollouts: an evicted rollout replays its whole history on its next task,
    3.5× the CPU), and the worker's memory to ~100 MB plus, per cached rollout, ~0.3 MB parked in
    its first interval and ~25 KB more for every step its current run has taken: the SDK keeps
    each command's state machine until the run ends or continues as new (``bench.memory_probe``,
    BENCHMARKS.md "Memory"). 2,000 rollouts of 10 steps each: ~1.2 GB."""

    metrics_port: int = DEFAULT_METRICS_PORT
    """Port of the worker's Prometheus endpoint (/metrics); 0 turns it off."""

    metrics_address: str = "0.0.0.0"  # all interfaces: Prometheus scrapes from other pods
    """Address the metrics endpoint listens on."""

    graceful_shutdown_seconds: float = 30.0
    """On SIGTERM/SIGINT, how long running activities may take to finish before cancellation."""

    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    """Prometheus the analysis activities query."""

    mesh_provider: str = DEFAULT_PROVIDER
    """The cluster-wide traffic-router provider: a Canary without ``spec.provider`` uses it
    (Flagger's ``-mesh-provider``). An unknown name is refused at start-up."""

    def __post_init__(self) -> None:
        for name in (
            "max_concurrent_activities",
            "max_concurrent_local_activities",
            "activity_threads",
            "max_cached_workflows",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if not 0 <= self.metrics_port <= 65535:
            raise SettingsError(f"metrics port {self.metrics_port} is not a port (0–65535)")
        if providers.canonical(self.mesh_provider) is None:
            raise SettingsError(
                f"unknown mesh provider {self.mesh_provider!r}: use one of {providers.known()}"
            )
        slots = self.max_concurrent_activities + self.max_concurrent_local_activities
        if self.activity_threads < slots:
            raise SettingsError(
                f"activity threads ({self.activity_threads}) must be at least max concurrent "
                f"activities plus local activities ({self.max_concurrent_activities} + "
                f"{self.max_concurrent_local_activities}): raise --activity-threads to {slots}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> WorkerSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "prometheus_url": env.get("PROMETHEUS_URL") or None,
            "mesh_provider": env.get("COALMINE_MESH_PROVIDER") or None,
        }
        if port := env.get("COALMINE_METRICS_PORT"):
            values["metrics_port"] = _int("COALMINE_METRICS_PORT", port)
        values.update({k: v for k, v in flags.items() if v is not None})
        values = {k: v for k, v in values.items() if v is not None}
        if "activity_threads" not in values:
            # One thread per activity slot, local or not, unless told otherwise.
            slots = values.get("max_concurrent_activities", cls.max_concurrent_activities)
            slots += values.get(
                "max_concurrent_local_activities", cls.max_concurrent_local_activities
            )
            values["activity_threads"] = max(slots, cls.activity_threads)
        return cls(**values)


@dataclass(frozen=True)
class Settings:
    """Everything the worker process needs, in one object."""

    temporal: TemporalSettings = field(default_factory=TemporalSettings)
    """Temporal connection."""

    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    """Cluster connection."""

    worker: WorkerSettings = field(default_factory=WorkerSettings)
    """Worker sizing, metrics and analysis backend."""


def _path(value: str | None) -> Path | None:
    # KUBECONFIG may list several files (":"-separated); the first one is used.
    if not value:
        return None
    return Path(value.split(os.pathsep)[0]).expanduser()


def _secret_file(value: str | None) -> str | None:
    """The stripped content of a mounted Secret's file; None when unset, absent or empty.

    Absent is no key rather than an error: the manifests mount the API key's Secret as optional
    (no Secret, no file), so the same Deployment serves a Temporal with and without keys.
    """
    if not value:
        return None
    try:
        return Path(value).expanduser().read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SettingsError(f"cannot read {value}: {err.strerror}") from None


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a whole number") from None
