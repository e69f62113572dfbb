"""The sandbox process: one asyncio loop serving the API, the mesh and its metrics, plus the
controllers.

``python -m sandbox run --state-dir DIR`` runs ``serve()``: one `Store`, the Kubernetes API app on
the API port, the mesh proxy on the mesh port, Istio's metrics on the metrics port, the controllers
as tasks, and the real Prometheus as a child process. It writes the client files and marks itself
ready in ``sandbox.json`` only after Prometheus has scraped the mesh, then runs until SIGTERM/SIGINT
and shuts down in reverse order.

Tests and commands start that process from outside with `start_sandbox` / ``launcher.up``
(re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiohttp import web

from sandbox import seed as seeding
from sandbox import statefiles
from sandbox.apiserver import build_api_app
from sandbox.controllers import ControllerManager
from sandbox.launcher import SandboxHandle, down, start_sandbox, up
from sandbox.mesh import IstioMetrics, Mesh
from sandbox.mesh.metrics import CONTENT_TYPE
from sandbox.prometheus import PrometheusServer
from sandbox.settings import WorldSettings
from sandbox.store import Store
from sandbox.tools import hey_bin
from sandbox.workloads import LoadTester, Podinfo, WorkloadSet

__all__ = ["RunOptions", "SandboxHandle", "down", "serve", "start_sandbox", "up"]

log = logging.getLogger("sandbox")


@dataclass(frozen=True)
class RunOptions:
    """What ``python -m sandbox run`` was asked for."""

    state_dir: Path
    settings: WorldSettings = field(default_factory=WorldSettings)
    loadtester: bool = True
    extra_scrape_targets: tuple[str, ...] = ()
    scrape_interval: float = 1.0
    source_reporter: bool = True
    lean_metrics: bool = False
    watch_pid: int | None = None
    """Stop when this process is gone (tests: a killed test run must not leave its sandbox)."""


def metrics_app(metrics: IstioMetrics) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        del request
        return web.Response(body=metrics.expose(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


async def _site(app: web.Application, port: int) -> web.AppRunner:
    # Open watches and keep-alive connections must not hold the shutdown for long.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


def _signalled() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once ``pid`` is gone. A pid check, not PR_SET_PDEATHSIG, because that fires
    when the starting *thread* ends, and callers may start the sandbox from a worker thread."""
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("process %d is gone: stopping", pid)
            stop.set()
            return
        except PermissionError:
            pass  # exists, owned by someone else
        await asyncio.sleep(1.0)


def _mark_ready(state_dir: Path, ports: statefiles.Ports, options: RunOptions) -> None:
    """Client files first, then ``ready``: whoever sees ready can read the kubeconfig and env."""
    statefiles.write_client_files(state_dir, ports)
    statefiles.write_state(
        state_dir,
        pid=os.getpid(),
        ready=True,
        ports=asdict(ports),
        urls=statefiles.urls(ports),
        settings=asdict(options.settings),
    )


async def serve(options: RunOptions) -> None:
    """Run the whole sandbox until SIGTERM/SIGINT."""
    started = time.monotonic()
    state_dir = options.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ports = statefiles.ports_for(state_dir)
    store = Store()
    controllers = ControllerManager(store, options.settings)
    metrics = IstioMetrics(source_reporter=options.source_reporter, lean=options.lean_metrics)
    loadtester = LoadTester(mesh_port=ports.mesh, hey_bin=hey_bin(), work_dir=state_dir)
    mesh = Mesh(store, WorkloadSet(podinfo=Podinfo(), loadtester=loadtester), metrics)
    control = asyncio.create_task(controllers.run(), name="controllers")
    sites = [
        await _site(build_api_app(store), ports.api),
        await _site(mesh.app(), ports.mesh),
        await _site(metrics_app(metrics), ports.metrics),
    ]
    prometheus = PrometheusServer(
        state_dir=state_dir,
        port=ports.prometheus,
        mesh_target=f"127.0.0.1:{ports.metrics}",
        extra_targets=list(options.extra_scrape_targets),
        interval=options.scrape_interval,
    )
    stop = _signalled()
    watcher = None
    if options.watch_pid is not None:
        watcher = asyncio.create_task(_watch_parent(options.watch_pid, stop), name="watch-parent")
    try:
        seeding.seed(store, loadtester=options.loadtester)
        await prometheus.start()
        scraped = await prometheus.wait_ready()
        _mark_ready(state_dir, ports, options)
        log.info(
            "sandbox ready in %.1f s (prometheus scraped after %.1f s): %s",
            time.monotonic() - started,
            scraped,
            statefiles.urls(ports),
        )
        await stop.wait()
    finally:
        log.info("sandbox stopping")
        if watcher is not None:
            watcher.cancel()
        statefiles.write_state(state_dir, ready=False)
        # Reverse order of start: nothing is served by a part that is already gone.
        await prometheus.stop()
        await loadtester.close()
        await mesh.close()
        control.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await control
        for site in reversed(sites):
            await site.cleanup()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / "prometheus.pid").unlink()
        log.info("sandbox stopped")
