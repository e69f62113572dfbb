"""Fault-test fixtures: one local stack per package whose parts are processes a test can kill.

- the sandbox cluster (``start_sandbox``: API server, controllers, mesh, the real Prometheus, the
  load tester), whose audit log counts every write and whose fault rules fail or slow requests;
- a Temporal dev server started as a process with ``--db-filename`` on a fixed port, so it can be
  stopped (SIGTERM) and started again on the same data;
- ``coalmine worker`` as a process (SIGKILL and restart), logging to one file across restarts.

Every process is started here and stopped in a ``finally``, by the Popen object we hold.
Rollouts are started straight through the Temporal client (the CLI is exercised where the test is
about the CLI), each in a namespace of its own, so one stack serves the whole package.
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
from collections import Counter
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

from activities.kubernetes import build_api_client
from sandbox.runner import SandboxHandle, start_sandbox
from tests.conftest import TEMPORAL_CLI
from tests.ports import free_port, wait_for_port
from workflows.model import WORKFLOW_NAME, RolloutInput, RolloutResult, RolloutStatus, workflow_id
from workflows.search import SEARCH_ATTRIBUTES
from workflows.spec import Canary

COALMINE = str(Path(sys.executable).parent / "coalmine")
IMAGE = "ghcr.io/stefanprodan/podinfo"
OLD_IMAGE = f"{IMAGE}:6.5.0"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


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
    temporal_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    task_queue: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:6]}")
    temporal: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    worker_starts: int = 0
    prometheus: subprocess.Popen[bytes] | None = None

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def db_file(self) -> Path:
        return self.state_dir / "temporal.db"

    @property
    def worker_log(self) -> Path:
        return self.state_dir / "worker.log"

    @property
    def env(self) -> dict[str, str]:
        """A CI job's environment: the sandbox's (kubeconfig, Prometheus, mesh) and Temporal's."""
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

    # --- Temporal dev server ---------------------------------------------------------------

    def start_temporal(self) -> None:
        argv = [
            TEMPORAL_CLI, "server", "start-dev", "--headless",
            "--ip", "127.0.0.1", "--port", str(self.temporal_port),
            "--db-filename", str(self.db_file), "--log-level", "error",
        ]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}"]
        with (self.state_dir / "temporal.log").open("ab") as log:
            self.temporal = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.temporal_port)

    def stop_temporal(self) -> None:
        """SIGTERM, as an operator restarting the server would; waits for the exit."""
        _end(self.temporal, signal.SIGTERM)
        self.temporal = None

    # --- worker -----------------------------------------------------------------------------

    def start_worker(self) -> None:
        before = self._polling_lines()
        with self.worker_log.open("ab") as log:
            self.worker = subprocess.Popen(
                [COALMINE, "worker", "--metrics-port", str(self.metrics_port)],
                env=self.env,
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

    # --- the sandbox's audit log and fault rules ------------------------------------------------

    def _api(self) -> httpx.Client:
        return httpx.Client(base_url=self.sandbox.api_url, timeout=10, trust_env=False)

    def audit(self, **filters: str) -> list[dict[str, Any]]:
        with self._api() as api:
            response = api.get("/sandbox/audit", params=filters)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def writes(self, namespace: str, *, ok_only: bool = True) -> Counter[str]:
        """Write requests per object in a namespace: ``resource/name[/subresource]`` → count.

        Events are left out (the event recorder aggregates them by design: a repeat bumps a
        count). ``ok_only``: only requests the server accepted (a 2xx answer).
        """
        counts: Counter[str] = Counter()
        for entry in self.audit(namespace=namespace):
            if entry["verb"] not in WRITE_VERBS or entry["resource"] == "events":
                continue
            if ok_only and not 200 <= entry["code"] < 300:
                continue
            # A create is POSTed to the collection: the audit log has no name for it.
            key = f"{entry['resource']}/{entry['name'] or '(create)'}"
            if entry["subresource"]:
                key += f"/{entry['subresource']}"
            counts[key] += 1
        return counts

    def add_fault(self, **rule: Any) -> int:
        with self._api() as api:
            response = api.post("/sandbox/faults", json=rule)
        response.raise_for_status()
        rule_id: int = response.json()["id"]
        return rule_id

    def faults(self) -> list[dict[str, Any]]:
        with self._api() as api:
            response = api.get("/sandbox/faults")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def clear_faults(self) -> None:
        with self._api() as api:
            api.delete("/sandbox/faults").raise_for_status()

    # --- the sandbox's Prometheus -------------------------------------------------------------

    @property
    def prometheus_pid_file(self) -> Path:
        return self.sandbox.state_dir / "prometheus.pid"

    def kill_prometheus(self) -> list[str]:
        """SIGKILL the sandbox's Prometheus by its pid file; its command line, to start it again."""
        pid = int(self.prometheus_pid_file.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert b"prometheus" in argv[0], argv
        if self.prometheus is not None and self.prometheus.pid == pid:
            _end(self.prometheus, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _gone(pid):
            assert time.monotonic() < deadline, f"prometheus {pid} did not die"
            time.sleep(0.05)
        return [a.decode() for a in argv]

    def start_prometheus(self, argv: list[str]) -> None:
        """Start Prometheus again with the same flags and data; wait until it answers."""
        with (self.sandbox.state_dir / "prometheus.log").open("ab") as log:
            self.prometheus = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        # The sandbox's `down` stops what this file names: the new process, then.
        self.prometheus_pid_file.write_text(f"{self.prometheus.pid}\n")
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


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    state = tmp_path_factory.mktemp("fault-stack")
    with start_sandbox(state / "sandbox", pod_ready_delay=0.3, scrape_interval=1.0) as sandbox:
        fault_stack = FaultStack(state_dir=state, sandbox=sandbox)
        try:
            fault_stack.start_temporal()
            fault_stack.start_worker()
            yield fault_stack
        finally:
            fault_stack.stop_worker()
            fault_stack.stop_temporal()
            _end(fault_stack.prometheus, signal.SIGTERM)
            with contextlib.suppress(Exception):
                fault_stack.clear_faults()


@pytest.fixture(scope="package")
async def temporal(stack: FaultStack) -> Client:
    return await Client.connect(stack.temporal_address, data_converter=pydantic_data_converter)


@pytest.fixture(scope="package")
def kube(stack: FaultStack) -> Iterator[k8s.ApiClient]:
    api = build_api_client(kubeconfig=str(stack.sandbox.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(autouse=True)
def _stack_whole_again(stack: FaultStack) -> Iterator[None]:
    """After each test: no fault rule left, the worker and the server running (a test that
    failed half-way through a kill must not take the next tests with it)."""
    yield
    stack.clear_faults()
    if stack.temporal is None or stack.temporal.poll() is not None:
        stack.start_temporal()
    if stack.worker is None or stack.worker.poll() is not None:
        stack.start_worker()


# --- the application under canary ----------------------------------------------------------------

_namespaces = itertools.count(1)


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
            key = "sandbox.coalmine.dev/ready-delay-seconds"
            template["metadata"] = {"annotations": {key: str(ready_delay)}}
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
    spec_analysis: dict[str, Any] = {
        "interval": "1s",
        "threshold": 2,
        "maxWeight": 50,
        "stepWeight": 25,
    }
    spec_analysis.update(analysis)
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": ns},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": spec_analysis,
        },
    }


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
