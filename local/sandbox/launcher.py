"""Start and stop a sandbox process from outside: ``coalmine sandbox up|down`` and `start_sandbox`
for tests.

``up`` spawns ``python -m sandbox run`` detached (its own session, output in ``DIR/sandbox.log``),
records its pid in ``DIR/sandbox.pid`` and waits until it marks itself ready in
``DIR/sandbox.json``. Running ``up`` again while that pid is alive returns the running sandbox.
``down`` stops what ``up`` started, by process id only: SIGTERM, then SIGKILL after a grace period,
for the sandbox and its Prometheus.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox import statefiles

READY_TIMEOUT = 120.0  # ~15 s normally; generous for a machine busy with other suites
PORT_ATTEMPTS = 3
PID_FILES = ("sandbox.pid", "prometheus.pid")

# Sandboxes this process started: kept so the Popen objects are not collected while their process
# runs (which Python reports as a ResourceWarning) and so `down` can reap them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class SandboxError(RuntimeError):
    """The sandbox could not be started (the message carries the end of its log)."""


class PortsTaken(SandboxError):
    """A port chosen for the sandbox was taken by another process before the sandbox bound it."""


@dataclass(frozen=True)
class SandboxHandle:
    """A running sandbox: where everything is."""

    state_dir: Path
    pid: int
    kubeconfig: Path
    """The cluster admin, straight to the API server (kubectl, tests, CI's ``rollout start``)."""
    worker_kubeconfig: Path
    """The ``coalmine`` ServiceAccount, through the API proxy (the worker)."""
    api_url: str
    """The kube-apiserver (HTTPS)."""
    proxy_url: str
    """The API proxy in front of it: ``/sandbox/faults`` and ``/sandbox/audit``."""
    mesh_url: str
    metrics_url: str
    prometheus_url: str
    loadtester_url: str
    env: dict[str, str]

    @property
    def controller_kubeconfig(self) -> Path:
        """The ``coalmine-controller`` ServiceAccount, through the API proxy (the controller)."""
        return self.state_dir / "controller.kubeconfig"

    @classmethod
    def from_state(cls, state_dir: Path, pid: int) -> SandboxHandle:
        ports = _saved_ports(state_dir)
        links = statefiles.urls(ports)
        return cls(
            state_dir=state_dir,
            pid=pid,
            kubeconfig=state_dir / "kubeconfig",
            worker_kubeconfig=state_dir / "worker.kubeconfig",
            api_url=links["api"],
            proxy_url=links["proxy"],
            mesh_url=links["mesh"],
            metrics_url=links["metrics"],
            prometheus_url=links["prometheus"],
            loadtester_url=links["loadtester"],
            env=statefiles.env_vars(state_dir, ports),
        )


def _saved_ports(state_dir: Path) -> statefiles.Ports:
    saved = statefiles.read_state(state_dir)["ports"]
    return statefiles.Ports(**{k: int(saved[k]) for k in statefiles.PORT_NAMES})


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and is ours (its command line names ``marker``): pids get reused."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return marker in cmdline and not zombie


def running(state_dir: Path) -> SandboxHandle | None:
    """The sandbox of this state directory when it is up and ready."""
    state_dir = state_dir.resolve()
    pid = _read_pid(state_dir / "sandbox.pid")
    state = statefiles.read_state(state_dir)
    if (
        pid is None
        or not _alive(pid, "sandbox")
        or not state.get("ready")
        or state.get("pid") != pid
    ):
        return None
    return SandboxHandle.from_state(state_dir, pid)


def up(
    state_dir: Path,
    *,
    pod_ready_delay: float | None = None,
    loadtester: bool = True,
    extra_scrape_targets: list[str] | None = None,
    scrape_interval: float = 1.0,
    source_reporter: bool = True,
    lean_metrics: bool = False,
    watch_pid: int | None = None,
    timeout: float = READY_TIMEOUT,
) -> SandboxHandle:
    """Start the sandbox in the background (or find it running); wait until ready."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    existing = running(state_dir)
    if existing is not None:
        return existing
    statefiles.write_state(state_dir, ready=False)
    argv = [sys.executable, "-m", "sandbox", "run", "--state-dir", str(state_dir)]
    if pod_ready_delay is not None:
        argv += ["--pod-ready-delay", str(pod_ready_delay)]
    if not loadtester:
        argv.append("--no-loadtester")
    for target in extra_scrape_targets or []:
        argv += ["--scrape-target", target]
    argv += ["--scrape-interval", str(scrape_interval)]
    if not source_reporter:
        argv.append("--no-source-reporter")
    if lean_metrics:
        argv.append("--lean-metrics")
    if watch_pid is not None:
        argv += ["--watch-pid", str(watch_pid)]
    for attempt in range(PORT_ATTEMPTS):
        process = _spawn(argv, state_dir)
        try:
            return _wait_ready(state_dir, process, timeout)
        except PortsTaken:
            # Free ports are picked before they are bound: another process may take one first.
            # Forget them and pick again.
            if attempt == PORT_ATTEMPTS - 1:
                raise
            statefiles.write_state(state_dir, ports=None)
    raise AssertionError("unreachable")


def _spawn(argv: list[str], state_dir: Path) -> subprocess.Popen[bytes]:
    with (state_dir / "sandbox.log").open("ab") as logfile:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    (state_dir / "sandbox.pid").write_text(f"{process.pid}\n")
    return process


def _wait_ready(state_dir: Path, process: subprocess.Popen[bytes], timeout: float) -> SandboxHandle:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = statefiles.read_state(state_dir)
        if state.get("ready") and state.get("pid") == process.pid:
            return SandboxHandle.from_state(state_dir, process.pid)
        if process.poll() is not None:
            _CHILDREN.pop(process.pid, None)
            tail = (
                _log_tail(state_dir) + "\n" + _log_tail(state_dir, name="prometheus.log", lines=5)
            )
            error = PortsTaken if "address already in use" in tail.lower() else SandboxError
            raise error(f"the sandbox exited with {process.returncode}:\n{tail}")
        time.sleep(0.05)
    down(state_dir)
    raise SandboxError(f"the sandbox was not ready within {timeout} s:\n{_log_tail(state_dir)}")


def _log_tail(state_dir: Path, *, name: str = "sandbox.log", lines: int = 30) -> str:
    try:
        return "\n".join((state_dir / name).read_text().splitlines()[-lines:])
    except OSError:
        return f"(no {name})"


def down(state_dir: Path, *, grace: float = 5.0) -> list[int]:
    """Stop the sandbox and its Prometheus by pid (SIGTERM, then SIGKILL); the pids stopped."""
    state_dir = state_dir.resolve()
    targets: list[int] = []
    for name, marker in zip(PID_FILES, ("sandbox", "prometheus"), strict=True):
        pid = _read_pid(state_dir / name)
        if pid is not None and _alive(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            targets.append(pid)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p, "") for p in targets):
        _reap(targets)
        time.sleep(0.05)
    for pid in targets:
        if _alive(pid, ""):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _reap(targets)
    for pid in targets:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait(timeout=5)
    for name in PID_FILES:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    if (state_dir / "sandbox.json").exists():
        statefiles.write_state(state_dir, ready=False)
    return targets


def _reap(pids: list[int]) -> None:
    """Collect exit statuses of our own children (a test's sandbox): no zombies left."""
    for pid in pids:
        child = _CHILDREN.get(pid)
        if child is not None:
            if child.poll() is not None:
                del _CHILDREN[pid]
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def start_sandbox(
    state_dir: Path,
    *,
    pod_ready_delay: float = 0.5,
    loadtester: bool = True,
    extra_scrape_targets: list[str] | None = None,
    scrape_interval: float = 1.0,
    source_reporter: bool = True,
    lean_metrics: bool = False,
) -> Iterator[SandboxHandle]:
    """A whole sandbox in a subprocess for the ``with`` block; stopped (by pid) afterwards."""
    handle = up(
        state_dir,
        pod_ready_delay=pod_ready_delay,
        loadtester=loadtester,
        extra_scrape_targets=extra_scrape_targets,
        scrape_interval=scrape_interval,
        source_reporter=source_reporter,
        lean_metrics=lean_metrics,
        # Tied to this process: a test run killed before its teardown leaves no sandbox behind.
        watch_pid=os.getpid(),
    )
    try:
        yield handle
    finally:
        down(state_dir)
