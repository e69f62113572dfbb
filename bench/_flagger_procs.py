"""The processes of the side-by-side comparison: Flagger (built by scripts/build-flagger.sh) and
Coalmine's worker and controller (``coalmine worker`` / ``coalmine controller``), each a process
of its own so its CPU time and memory can be read from /proc; all stopped by process id.

Flagger runs as the cluster admin straight to the API server (as it would with its ClusterRole),
watching one namespace (``-namespace``). Coalmine runs as in ``coalmine up`` (local/sandbox/
stack.py): the worker as the ``coalmine`` ServiceAccount and the controller as its own, both
through the sandbox's API proxy. Coalmine's controller has no namespace option: it watches every
namespace, so the benchmark never lets it run while Flagger's Canaries exist (see
flagger_side_by_side.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._flagger_figures import Usage
from bench._support import ROOT, binary, cpu_seconds, free_port, rss_kb, stop_process

BUILD_SCRIPT = ROOT / "scripts" / "build-flagger.sh"
MIN_INTERVAL = "10s"
"""Flagger raises any analysis interval under 10 s to 10 s; Coalmine's processes get the same floor
(``COALMINE_MIN_ANALYSIS_INTERVAL``; the sandbox's env says 1 s for its demos)."""


@dataclass(frozen=True)
class FlaggerBuild:
    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "flagger"

    @property
    def crd(self) -> Path:
        """Flagger's own CRDs (artifacts/flagger/crd.yaml of the module), for comparison."""
        return self.root / "crds" / "flagger.yaml"

    @property
    def version(self) -> str:
        return self.root.name.removeprefix("flagger-")


def flagger_build(*, build: bool = True) -> tuple[FlaggerBuild | None, str]:
    """The built Flagger, building it first when ``build`` (a few minutes, once); else None and
    why (the build log's last lines)."""
    out = subprocess.run(
        [str(BUILD_SCRIPT), "--print-dir"], capture_output=True, text=True, check=True
    )
    root = Path(out.stdout.strip())
    found = FlaggerBuild(root)
    if (root / ".complete").exists() and found.binary.exists():
        return found, ""
    if not build:
        return None, f"Flagger is not built in {root}: run scripts/build-flagger.sh"
    print(f"building Flagger into {root} (scripts/build-flagger.sh) …", flush=True)
    proc = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    print(proc.stdout, end="", flush=True)
    if proc.returncode != 0 or not found.binary.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return None, f"scripts/build-flagger.sh failed (exit {proc.returncode}):\n{tail}"
    return found, ""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def usage(self) -> Usage:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}); see {self.log}")
        return Usage(cpu_seconds(self.pid), rss_kb(self.pid))

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _spawn(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Proc:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    return Proc(name, popen, log)


def _wait_log(proc: Proc, marker: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in proc.log.read_text(errors="replace"):
            return
        if proc.popen.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not start ({marker!r} not logged):\n{proc.tail()}")


@contextlib.contextmanager
def flagger(build: FlaggerBuild, sandbox: Any, namespace: str, logs: Path) -> Iterator[Proc]:
    """Flagger watching ``namespace``, with the Istio provider and the sandbox's Prometheus; its
    webhooks reach the load tester through the mesh (``HTTP_PROXY``; loopback is never proxied,
    so the API server and Prometheus are reached directly)."""
    argv = [
        str(build.binary),
        f"-kubeconfig={sandbox.kubeconfig}",
        "-mesh-provider=istio",
        f"-metrics-server={sandbox.prometheus_url}",
        f"-namespace={namespace}",
        f"-port={free_port()}",
        "-log-level=info",
    ]
    proc = _spawn(f"flagger-{namespace}", argv, {**os.environ, **sandbox.env}, logs)
    try:
        _wait_log(proc, "Started operator workers")
        yield proc
    finally:
        stop_process(proc.popen)


@dataclass
class Coalmine:
    worker: Proc
    controller: Proc

    def usage(self) -> dict[str, Usage]:
        return {"worker": self.worker.usage(), "controller": self.controller.usage()}


@contextlib.contextmanager
def coalmine(sandbox: Any, temporal_address: str, queue: str, logs: Path) -> Iterator[Coalmine]:
    """``coalmine worker`` and ``coalmine controller`` as the local stack starts them."""
    env = {
        **os.environ,
        **sandbox.env,
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": queue,
        "COALMINE_METRICS_PORT": "0",
        "COALMINE_MIN_ANALYSIS_INTERVAL": MIN_INTERVAL,
    }
    started: list[Proc] = []
    try:
        worker = _spawn(
            f"worker-{queue}",
            [binary("coalmine"), "worker"],
            {**env, "KUBECONFIG": str(sandbox.worker_kubeconfig)},
            logs,
        )
        started.append(worker)
        _wait_log(worker, "worker polling task queue")
        controller = _spawn(
            f"controller-{queue}",
            [binary("coalmine"), "controller"],
            {**env, "KUBECONFIG": str(sandbox.controller_kubeconfig)},
            logs,
        )
        started.append(controller)
        _wait_log(controller, "controller ready")
        yield Coalmine(worker, controller)
    finally:
        for proc in reversed(started):
            stop_process(proc.popen)


def process_usage(pid: int) -> Usage:
    return Usage(cpu_seconds(pid), rss_kb(pid))
