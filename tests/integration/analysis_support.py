"""Helpers shared by the analysis tests: real local HTTP peers, Prometheus, cluster set-up.

The peers here are real servers on 127.0.0.1: tests exercise the activities' HTTP code over
sockets, never through patched clients. The Kubernetes side is the session's real control plane
(tests/conftest.py, "The cluster"), where Flagger's CRDs are installed: set-up goes through
``admin_client`` into namespaces of the module's own (`fresh_namespace`), and the activities run
with ``worker_client``, held by the real authorizer to the shipped ClusterRole.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.ports import free_port


@dataclass
class Recorded:
    """One request a `Receiver` got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0
    """The client's port: requests on one kept connection share it."""

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, bytes]
"""Status and body a receiver answers."""
DROP = 0
"""A `Reply` status that closes the connection without answering."""


@dataclass
class Receiver:
    """A local HTTP server that records requests and answers with ``reply(recorded)``."""

    reply: Callable[[Recorded], Reply] = lambda _r: (200, b"ok")
    delay_seconds: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def on(self, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]


@contextmanager
def receiver(
    reply: Callable[[Recorded], Reply] | None = None,
    *,
    delay_seconds: float = 0.0,
    keep_alive: bool = False,
) -> Iterator[Receiver]:
    """A running `Receiver` on a free port; ``url`` is its base address. ``keep_alive``:
    HTTP/1.1, connections kept between requests (else each answer closes its connection)."""
    state = Receiver(delay_seconds=delay_seconds)
    if reply is not None:
        state.reply = reply

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorded = Recorded(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
                client_port=self.client_address[1],
            )
            state.requests.append(recorded)
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            status, body = state.reply(recorded)
            if status == DROP:
                self.close_connection = True
                return
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """The URL of a port nobody listens on (a receiver that is down)."""
    return f"http://127.0.0.1:{free_port()}"


# --- Istio-like metrics and a real Prometheus --------------------------------------------------

DURATION_BUCKETS = (50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)


@dataclass(frozen=True)
class Workload:
    """Traffic of one destination workload: fixed request rates and one latency."""

    namespace: str
    name: str
    ok_per_second: float
    errors_per_second: float
    latency_ms: float


class MeshCollector:
    """Exposes ``istio_requests_total`` and the duration histogram as Istio's sidecars do.

    Counters grow linearly with time since start, so every ``rate()`` ratio is exact whatever the
    scrape timing: 7 ok and 3 errors per second is a success rate of exactly 70%.
    """

    def __init__(self, workloads: list[Workload]) -> None:
        self.workloads = workloads
        self.started = time.monotonic()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        elapsed = time.monotonic() - self.started
        labels = ["reporter", "destination_workload_namespace", "destination_workload"]
        requests = CounterMetricFamily(
            "istio_requests_total", "Requests.", labels=[*labels, "response_code"]
        )
        durations = HistogramMetricFamily(
            "istio_request_duration_milliseconds", "Request duration.", labels=labels
        )
        for w in self.workloads:
            base = ["destination", w.namespace, w.name]
            requests.add_metric([*base, "200"], w.ok_per_second * elapsed)
            requests.add_metric([*base, "500"], w.errors_per_second * elapsed)
            total = (w.ok_per_second + w.errors_per_second) * elapsed
            buckets = [(str(le), total if w.latency_ms <= le else 0.0) for le in DURATION_BUCKETS]
            buckets.append(("+Inf", total))
            durations.add_metric(base, buckets, sum_value=total * w.latency_ms)
        yield requests
        yield durations


@contextmanager
def mesh_exporter(workloads: list[Workload]) -> Iterator[str]:
    """An HTTP exporter of `MeshCollector`; yields its ``host:port``."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(MeshCollector(workloads))  # type: ignore[arg-type]
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def prometheus_binary() -> str | None:
    import os
    from pathlib import Path

    configured = os.environ.get("COALMINE_PROMETHEUS_BIN")
    if configured:
        return configured
    default = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "prometheus"
    return str(default) if default.exists() else None


@dataclass
class PrometheusProcess:
    url: str
    process: Any

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def run_prometheus(binary: str, targets: list[str], workdir: Any) -> Iterator[PrometheusProcess]:
    """A real Prometheus scraping ``targets`` every second; waits until its API answers."""
    import subprocess
    import urllib.request

    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: mesh\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    handle = PrometheusProcess(url=f"http://127.0.0.1:{port}", process=process)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{handle.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("prometheus did not start: see prometheus.log") from None
                time.sleep(0.1)
        yield handle
    finally:
        handle.stop()
        log.close()


def wait_for(
    predicate: Callable[[], bool], *, timeout: float = 40, what: str = "condition"
) -> None:
    """Poll until ``predicate()`` is true (Prometheus needs ~7 s for a first rate())."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


# --- set-up on the session's cluster (``admin_client``) ------------------------------------------


@contextmanager
def fresh_namespace(api_client: Any, prefix: str) -> Iterator[str]:
    """A namespace of a unique name (``prefix-xxxxxx``), deleted on exit without waiting.

    The session's cluster is shared (namespace ``test`` holds other suites' objects): a module
    makes its objects in namespaces of its own, never with fixed names in a shared one.
    """
    import uuid

    from kubernetes import client as k8s

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core = k8s.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def create_secret(api_client: Any, namespace: str, name: str, data: dict[str, str]) -> None:
    from kubernetes import client as k8s

    body = {"metadata": {"name": name}, "stringData": data}
    k8s.CoreV1Api(api_client).create_namespaced_secret(namespace, body)


def create_flagger_object(
    api_client: Any, plural: str, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    from kubernetes import client as k8s

    kind = {"metrictemplates": "MetricTemplate", "alertproviders": "AlertProvider"}[plural]
    body = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "flagger.app", "v1beta1", namespace, plural, body
    )
