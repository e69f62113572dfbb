"""Fault-test fixtures: the session's cluster, and a Temporal server and worker of the package's
own whose processes a test can kill.

- the session's sandbox cluster (``sandbox_cluster`` in tests/conftest.py: the real control plane,
  the mesh, the real Prometheus, the load tester) with its API proxy (``api_proxy``), whose audit
  log counts every write and whose fault rules fail or slow the worker's requests. The one part of
  it a test kills is its Prometheus (by the pid in its pid file); the suite starts it again on the
  same flags and data before the next test, so the cluster is whole for whatever runs after;
- a Temporal dev server (`TemporalServer` with ``persistent=True``) on a fixed port and SQLite
  file, so it can be stopped (SIGTERM) and started again on the same data;
- ``coalmine worker`` as a process (SIGKILL and restart), logging to one file across restarts. It
  runs as the ``coalmine`` ServiceAccount through the API proxy (the sandbox's worker kubeconfig):
  fault rules only reach the requests that pass through the proxy, and the audit log tells its
  requests from the cluster's own by user.

Every process is started here and stopped in a ``finally``, by the Popen object we hold.
Rollouts are started straight through the Temporal client (the CLI is exercised where the test is
about the CLI), each in namespaces of its own (deleted after the test), so one stack serves the
whole package.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from sandbox.runner import SandboxHandle
from sandbox.settings import ready_delay as ready_delay_annotation
from tests import canaries
from tests.conftest import ApiProxy, TemporalServer
from tests.ports import free_port
from workflows.model import WORKFLOW_NAME, RolloutInput, RolloutResult, RolloutStatus, workflow_id
from workflows.spec import Canary

COALMINE = str(Path(sys.executable).parent / "coalmine")
IMAGE = "ghcr.io/stefanprodan/podinfo"
OLD_IMAGE = f"{IMAGE}:6.5.0"


def _end(proc: subprocess.Popen[bytes] | None, sig: int, *, timeout: float = 20) -> None:
    """Send ``sig`` to a process we started and reap it (SIGKILL if it outlives ``timeout``)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class FaultStack:
    """The stack's processes and how to reach them; methods to kill and restart each part."""

    state_dir: Path
    sandbox: SandboxHandle
    api_proxy: ApiProxy
    """The audit log and fault rules (the one client for them: tests/conftest.py)."""
    temporal: TemporalServer
    restarted_prometheus: list[subprocess.Popen[bytes]]
    """Prometheus processes started in place of the sandbox's (see `restarted_prometheus`)."""
    metrics_port: int = field(default_factory=free_port)
    task_queue: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:6]}")
    worker: subprocess.Popen[bytes] | None = None
    worker_starts: int = 0
    prometheus_argv: list[str] | None = None
    """The sandbox's Prometheus command line, once a test has killed it."""

    @property
    def temporal_address(self) -> str:
        return self.temporal.address

    @property
    def worker_log(self) -> Path:
        return self.state_dir / "worker.log"

    @property
    def env(self) -> dict[str, str]:
        """A CI job's environment: the sandbox's (the admin kubeconfig, Prometheus, the mesh)
        and Temporal's."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TEMPORAL_", "GITHUB_", "GITLAB_"))
        }
        env.update(self.sandbox.env)
        env.update(
            TEMPORAL_ADDRESS=self.temporal_address,
            TEMPORAL_TASK_QUEUE=self.task_queue,
            COLUMNS="200",
        )
        return env

    @property
    def worker_env(self) -> dict[str, str]:
        """The worker's: the ``coalmine`` ServiceAccount through the API proxy."""
        return {**self.env, "KUBECONFIG": str(self.sandbox.worker_kubeconfig)}

    # --- worker -----------------------------------------------------------------------------

    def start_worker(self) -> None:
        before = self._polling_lines()
        with self.worker_log.open("ab") as log:
            self.worker = subprocess.Popen(
                [COALMINE, "worker", "--metrics-port", str(self.metrics_port)],
                env=self.worker_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.worker_starts += 1
        deadline = time.monotonic() + 60
        while self._polling_lines() <= before:
            if self.worker.poll() is not None or time.monotonic() > deadline:
                tail = self.worker_log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the worker did not start:\n{tail}")
            time.sleep(0.1)

    def _polling_lines(self) -> int:
        if not self.worker_log.exists():
            return 0
        return self.worker_log.read_text(errors="replace").count("worker polling")

    def kill_worker(self) -> None:
        """SIGKILL: no graceful shutdown, no activity completion, no goodbye to the server."""
        _end(self.worker, signal.SIGKILL)
        self.worker = None

    def stop_worker(self) -> None:
        _end(self.worker, signal.SIGTERM, timeout=30)
        self.worker = None

    # --- the sandbox's Prometheus -------------------------------------------------------------

    @property
    def prometheus_pid_file(self) -> Path:
        return self.sandbox.state_dir / "prometheus.pid"

    def prometheus_running(self) -> bool:
        try:
            pid = int(self.prometheus_pid_file.read_text().strip())
        except (OSError, ValueError):
            return False
        return not _gone(pid)

    def kill_prometheus(self) -> list[str]:
        """SIGKILL the sandbox's Prometheus by its pid file; its command line, to start it again."""
        pid = int(self.prometheus_pid_file.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert b"prometheus" in argv[0], argv
        self.prometheus_argv = [a.decode() for a in argv]
        ours = [p for p in self.restarted_prometheus if p.pid == pid]
        if ours:
            _end(ours[0], signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _gone(pid):
            assert time.monotonic() < deadline, f"prometheus {pid} did not die"
            time.sleep(0.05)
        return self.prometheus_argv

    def start_prometheus(self, argv: list[str]) -> None:
        """Start Prometheus again with the same flags and data; wait until it answers."""
        with (self.sandbox.state_dir / "prometheus.log").open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.restarted_prometheus.append(process)
        # The sandbox's `down` stops what this file names: the new process, then.
        self.prometheus_pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                reply = httpx.get(
                    f"{self.sandbox.prometheus_url}/api/v1/query",
                    params={"query": "vector(1)"},
                    timeout=2,
                    trust_env=False,
                )
                if reply.status_code == 200:
                    return
            assert time.monotonic() < deadline, "prometheus did not come back"
            time.sleep(0.1)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


@pytest.fixture(scope="session")
def restarted_prometheus(sandbox_cluster: SandboxHandle) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Prometheus processes the suite started in place of the sandbox's killed one. They serve the
    session's cluster until its end, so they are stopped (and reaped) just before it."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            _end(process, signal.SIGTERM)


@pytest.fixture(scope="package")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    sandbox_cluster: SandboxHandle,
    api_proxy: ApiProxy,
    restarted_prometheus: list[subprocess.Popen[bytes]],
) -> Iterator[FaultStack]:
    state = tmp_path_factory.mktemp("fault-stack")
    fault_stack = FaultStack(
        state_dir=state,
        sandbox=sandbox_cluster,
        api_proxy=api_proxy,
        temporal=TemporalServer(state, persistent=True),
        restarted_prometheus=restarted_prometheus,
    )
    try:
        fault_stack.temporal.start()
        fault_stack.start_worker()
        yield fault_stack
    finally:
        fault_stack.stop_worker()
        fault_stack.temporal.stop()
        with contextlib.suppress(Exception):
            api_proxy.clear_faults()


@pytest.fixture(scope="package")
async def temporal(stack: FaultStack) -> Client:
    return await Client.connect(stack.temporal_address, data_converter=pydantic_data_converter)


@pytest.fixture(autouse=True)
def _stack_whole_again(stack: FaultStack, admin_client: k8s.ApiClient) -> Iterator[None]:
    """After each test: no fault rule left, the worker, the server and the sandbox's Prometheus
    running (a test that failed half-way through a kill must not take the next tests with it),
    and the test's namespaces gone from the shared cluster."""
    yield
    stack.api_proxy.clear_faults()
    temporal = stack.temporal.process
    if temporal is None or temporal.poll() is not None:
        stack.temporal.start()
    if stack.worker is None or stack.worker.poll() is not None:
        stack.start_worker()
    if stack.prometheus_argv is not None and not stack.prometheus_running():
        stack.start_prometheus(stack.prometheus_argv)
    core = k8s.CoreV1Api(admin_client)
    while _made_namespaces:
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespace(_made_namespaces.pop(), propagation_policy="Background")


# --- the application under canary ----------------------------------------------------------------

_namespaces = itertools.count(1)
_made_namespaces: list[str] = []  # deleted after each test (`_stack_whole_again`)


@dataclass(frozen=True)
class App:
    """podinfo in a namespace of its own, and helpers to read what the rollout did to it."""

    namespace: str
    api: k8s.ApiClient

    def deployment(self, name: str = "podinfo") -> Any:
        return k8s.AppsV1Api(self.api).read_namespaced_deployment(name, self.namespace)

    def image(self, name: str = "podinfo") -> str:
        image: str = self.deployment(name).spec.template.spec.containers[0].image
        return image

    def replicas(self, name: str = "podinfo") -> int:
        replicas: int = self.deployment(name).spec.replicas
        return replicas

    def weights(self) -> tuple[int, int]:
        """(primary, canary) weights of the VirtualService's route."""
        vs = k8s.CustomObjectsApi(self.api).get_namespaced_custom_object(
            "networking.istio.io", "v1beta1", self.namespace, "virtualservices", "podinfo"
        )
        route = {
            r["destination"]["host"]: r.get("weight", 0) for r in vs["spec"]["http"][0]["route"]
        }
        return route["podinfo-primary"], route["podinfo-canary"]

    def release(self, tag: str, *, ready_delay: float | None = None, **env: str) -> str:
        """A new revision of the target (what CI's ``set image`` does); the image."""
        image = f"{IMAGE}:{tag}"
        container: dict[str, Any] = {"name": "podinfod", "image": image}
        if env:
            container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        template: dict[str, Any] = {"spec": {"containers": [container]}}
        if ready_delay is not None:
            template["metadata"] = {"annotations": ready_delay_annotation(ready_delay)}
        body = {"spec": {"template": template}}
        k8s.AppsV1Api(self.api).patch_namespaced_deployment("podinfo", self.namespace, body)
        return image

    def apply(self, group: str, plural: str, body: dict[str, Any]) -> None:
        """Create a Flagger custom resource (MetricTemplate, AlertProvider) here."""
        body["metadata"]["namespace"] = self.namespace
        k8s.CustomObjectsApi(self.api).create_namespaced_custom_object(
            group, "v1beta1", self.namespace, plural, body
        )

    def hpa(self, *, min_replicas: int, max_replicas: int) -> None:
        k8s.AutoscalingV2Api(self.api).create_namespaced_horizontal_pod_autoscaler(
            self.namespace,
            {
                "metadata": {"name": "podinfo"},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo",
                    },
                    "minReplicas": min_replicas,
                    "maxReplicas": max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 80},
                            },
                        }
                    ],
                },
            },
        )  # fmt: skip

    def secret(self, name: str, data: dict[str, str]) -> None:
        k8s.CoreV1Api(self.api).create_namespaced_secret(
            self.namespace, {"metadata": {"name": name}, "stringData": data}
        )


def make_app(api: k8s.ApiClient, *, prefix: str = "f", replicas: int = 1) -> App:
    ns = f"{prefix}-{next(_namespaces)}-{uuid.uuid4().hex[:4]}"
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    _made_namespaces.append(ns)
    labels = {"app": "podinfo"}
    container = {"name": "podinfod", "image": f"{IMAGE}:6.5.0", "ports": [{"containerPort": 9898}]}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "podinfo", "namespace": ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    return App(namespace=ns, api=api)


def canary_doc(ns: str, **analysis: Any) -> dict[str, Any]:
    """A short Canary: 1 s interval, two steps of 25 up to 50, no checks unless given."""
    short = {"interval": "1s", "threshold": 2, "maxWeight": 50, "stepWeight": 25}
    return canaries.canary_doc(ns, analysis={**short, **analysis})


def canary_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def wid_of(app: App) -> str:
    return workflow_id(cluster="default", namespace=app.namespace, name="podinfo")


async def start(
    client: Client, stack: FaultStack, doc: dict[str, Any], *, reason: str = "fault test"
) -> WorkflowHandle[Any, RolloutResult]:
    canary = Canary.model_validate(doc)
    return await client.start_workflow(
        WORKFLOW_NAME,
        RolloutInput(canary=canary, requested_by="fault test", reason=reason),
        id=workflow_id(cluster="default", namespace=canary.namespace, name=canary.name),
        task_queue=stack.task_queue,
        result_type=RolloutResult,
    )


async def initialize(client: Client, stack: FaultStack, doc: dict[str, Any]) -> None:
    """The first rollout of a target: primary, Services and routes, no analysis."""
    handle = await start(client, stack, doc, reason="initialize")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.message.startswith("Initialization done"), result


async def status_of(handle: WorkflowHandle[Any, Any]) -> RolloutStatus:
    status: RolloutStatus = await handle.query("status", result_type=RolloutStatus)
    return status


async def pending_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    description = await handle.describe()
    return [a.activity_type.name for a in description.raw_description.pending_activities]


async def closed(handle: WorkflowHandle[Any, Any], *, within: float) -> str:
    """Wait until the run ends; its status name (COMPLETED, FAILED…)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the server may be restarting
            description = await handle.describe()
            if description.status is not None and description.status.name != "RUNNING":
                return description.status.name
        await asyncio.sleep(0.3)
    raise AssertionError(f"{handle.id} still running after {within}s")


# --- HTTP peers: webhooks, gates, alert receivers ------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Peer:
    """A local HTTP server a test can slow down, make fail, stop and start on the same port.

    ``status``: the answer; ``delay``: seconds before it; ``received``: every request.
    ``script``: answers for the first requests, each built from the request (status, body);
    ``status`` with an empty body afterwards. ``location``: a Location header on every answer.
    """

    def __init__(
        self,
        *,
        status: int = 200,
        delay: float = 0.0,
        script: list[Callable[[Received], tuple[int, bytes]]] | None = None,
        location: str | None = None,
    ) -> None:
        self.status = status
        self.location = location
        self.delay = delay
        self.script = list(script or [])
        self.port = free_port()
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Peer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Received(self.path, dict(self.headers), body)
                peer.received.append(request)
                if peer.delay:
                    time.sleep(peer.delay)
                status, text = peer.script.pop(0)(request) if peer.script else (peer.status, b"")
                with contextlib.suppress(OSError):  # the caller may have given up
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(text)))
                    if peer.location:
                        self.send_header("Location", peer.location)
                    self.end_headers()
                    self.wfile.write(text)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    """Peers a test creates; all stopped afterwards."""
    made: list[Peer] = []
    try:
        yield made
    finally:
        for peer in made:
            peer.stop()


def closed_port() -> int:
    """A port nothing listens on (bound and released: refused at once)."""
    return free_port()


class HoldingProxy:
    """A Prometheus in front of the real one that can hold every query (``held``) or be down.

    A MetricTemplate whose provider address is ``url`` queries the sandbox's Prometheus
    through it; while ``held`` is set, a query waits (up to a minute) until it is cleared.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.held = threading.Event()
        self.queries = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        self._release.clear()
        self.held.set()

    def release(self) -> None:
        self.held.clear()
        self._release.set()

    def start(self) -> HoldingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                proxy.queries += 1
                if proxy.held.is_set():
                    proxy._release.wait(60)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {"Content-Type": self.headers.get("Content-Type", "")}
                with contextlib.suppress(OSError, httpx.HTTPError):
                    answer = httpx.request(
                        self.command,
                        proxy.upstream + self.path,
                        content=body,
                        headers={k: v for k, v in headers.items() if v},
                        timeout=10,
                        trust_env=False,
                    )
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)

            do_GET = _forward
            do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def metric_template(name: str, address: str, query: str = "vector(100)") -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": name},
        "spec": {"provider": {"type": "prometheus", "address": address}, "query": query},
    }


def templated_metric(name: str, template: str) -> dict[str, Any]:
    return {
        "name": name,
        "templateRef": {"name": template},
        "thresholdRange": {"min": 99},
        "interval": "1m",
    }
