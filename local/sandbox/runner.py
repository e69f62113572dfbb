"""The sandbox process: the real control plane as its children, and one asyncio loop serving the
data plane that a mesh would be (the proxy, Istio's metrics) as a plain client of it.

``python -m sandbox run --state-dir DIR`` runs ``serve()``: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok (sandbox/cluster/), the API proxy in front of the
API server for the worker (fault rules, the audit log: sandbox/apiproxy/), a watch-backed cache of
the objects a mesh reads (sandbox/kubecache/), the mesh proxy on the mesh port, Istio's metrics on
the metrics port, and the real Prometheus as a child process. It writes the client files and marks
itself ready in ``sandbox.json`` only after Prometheus has scraped the mesh, then runs until
SIGTERM/SIGINT and shuts down in reverse order.

Tests and commands start that process from outside with `start_sandbox` / ``launcher.up``
(re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import ssl
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiohttp import web

from sandbox import seed as seeding
from sandbox import statefiles
from sandbox.apiproxy import ApiProxy
from sandbox.cluster import ControlPlane
from sandbox.cluster import Ports as ClusterPorts
from sandbox.kubecache import data_plane_resources
from sandbox.launcher import SandboxHandle, down, start_sandbox, up
from sandbox.mesh import IstioMetrics, Mesh
from sandbox.mesh.metrics import CONTENT_TYPE
from sandbox.prometheus import PodTargets, PrometheusServer
from sandbox.settings import WorldSettings
from sandbox.tools import hey_bin
from sandbox.workloads import LoadTester, Podinfo, PrometheusForwarder, WorkloadSet
from worker.kubecache import KubeCache, KubeConfig

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


def _control_plane(
    state_dir: Path, ports: statefiles.Ports, settings: WorldSettings
) -> ControlPlane:
    return ControlPlane(
        state_dir / "cluster",
        ClusterPorts(etcd=ports.etcd, etcd_peer=ports.etcd_peer, api=ports.api),
        node_count=settings.nodes,
        ready_delay=settings.pod_ready_delay,
    )


async def _api_proxy(cluster: ControlPlane, port: int) -> ApiProxy:
    """The worker's way in: HTTPS with the API server's own certificate (its SANs include
    127.0.0.1), forwarding the worker's token untouched so the real authorizer judges it."""
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cluster.pki.server_cert, cluster.pki.server_key)
    upstream = ssl.create_default_context(cafile=str(cluster.pki.ca_cert))
    proxy = ApiProxy(
        upstream=cluster.url,
        upstream_ssl_context=upstream,
        ssl_context=serving,
        audit_log=cluster.audit_log,
        port=port,
    )
    await proxy.start()
    return proxy


async def serve(options: RunOptions) -> None:
    """Run the whole sandbox until SIGTERM/SIGINT."""
    started = time.monotonic()
    state_dir = options.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ports = statefiles.ports_for(state_dir)
    stop = _signalled()
    watcher = None
    if options.watch_pid is not None:
        watcher = asyncio.create_task(_watch_parent(options.watch_pid, stop), name="watch-parent")
    cluster = _control_plane(state_dir, ports, options.settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(cluster.stop)
        await cluster.start()
        shutil.copyfile(cluster.admin_kubeconfig, state_dir / "kubeconfig")
        proxy = await _api_proxy(cluster, ports.proxy)
        stack.push_async_callback(proxy.close)
        cluster.write_worker_kubeconfig(proxy.url)
        shutil.copyfile(cluster.worker_kubeconfig, state_dir / "worker.kubeconfig")
        cluster.write_controller_kubeconfig(proxy.url)
        shutil.copyfile(cluster.controller_kubeconfig, state_dir / "controller.kubeconfig")
        await _data_plane(stack, state_dir, ports, options)
        _mark_ready(state_dir, ports, options)
        log.info("sandbox ready in %.1f s: %s", time.monotonic() - started, statefiles.urls(ports))
        stopped = asyncio.create_task(stop.wait())
        while not stopped.done():
            # A component that dies takes the sandbox down with it, loudly, not half-working.
            await asyncio.wait({stopped}, timeout=1.0)
            cluster.check()
    log.info("sandbox stopping")
    if watcher is not None:
        watcher.cancel()
    statefiles.write_state(state_dir, ready=False)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "prometheus.pid").unlink()
    log.info("sandbox stopped")


async def _data_plane(
    stack: contextlib.AsyncExitStack,
    state_dir: Path,
    ports: statefiles.Ports,
    options: RunOptions,
) -> None:
    """Cache, mesh, metrics, load tester and Prometheus; each one's undo pushed on ``stack`` so
    they stop in reverse order."""
    config = KubeConfig.load(state_dir / "kubeconfig")
    session = await stack.enter_async_context(config.session())
    await seeding.seed_cluster(session, config, loadtester=options.loadtester)
    cache = KubeCache(config, data_plane_resources(), session=session)
    await cache.start()
    stack.push_async_callback(cache.close)
    metrics = IstioMetrics(source_reporter=options.source_reporter, lean=options.lean_metrics)
    loadtester = LoadTester(mesh_port=ports.mesh, hey_bin=hey_bin(), work_dir=state_dir)
    forwarder = PrometheusForwarder(f"http://127.0.0.1:{ports.prometheus}")
    workloads = WorkloadSet(podinfo=Podinfo(), loadtester=loadtester, prometheus=forwarder)
    mesh = Mesh(cache, workloads, metrics)
    stack.push_async_callback(forwarder.close)
    stack.push_async_callback(loadtester.close)
    stack.push_async_callback(mesh.close)
    for app, port in ((mesh.app(), ports.mesh), (metrics_app(metrics), ports.metrics)):
        site = await _site(app, port)
        stack.push_async_callback(site.cleanup)
    pod_targets = PodTargets(cache, state_dir / "pod-targets.json")
    stack.callback(pod_targets.close)
    prometheus = PrometheusServer(
        state_dir=state_dir,
        port=ports.prometheus,
        mesh_target=f"127.0.0.1:{ports.metrics}",
        extra_targets=list(options.extra_scrape_targets),
        interval=options.scrape_interval,
        pod_targets=pod_targets.path,
        mesh_proxy=f"http://127.0.0.1:{ports.mesh}",
    )
    stack.push_async_callback(prometheus.stop)
    await prometheus.start()
    scraped = await prometheus.wait_ready()
    log.info("prometheus scraped the mesh after %.1f s", scraped)
