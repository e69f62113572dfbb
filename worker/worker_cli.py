"""``coalmine worker``: the process that runs rollouts.

Settings are read once here (flags over environment) and injected into everything else. On
SIGTERM or SIGINT the worker stops polling, gives running activities
``--graceful-shutdown-seconds`` to finish, and exits 0: Kubernetes rolls a worker Deployment
without cancelling a single rollout, which another worker simply continues.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import Annotated, Any

import typer

from worker import cli_common as common
from worker.app import build_worker
from worker.errors import UnreachableError
from worker.metrics import RolloutMetrics
from worker.search_attributes import ensure_search_attributes
from worker.settings import KubernetesSettings, Settings, SettingsError, WorkerSettings
from worker.temporal import connect

log = logging.getLogger("coalmine.worker")
_SIZING = "Worker sizing"


def _api_client(settings: KubernetesSettings, pool_size: int) -> Any:
    from activities.kubernetes.client import build_api_client

    try:
        return build_api_client(
            kubeconfig=settings.kubeconfig,
            context=settings.context,
            in_cluster=settings.in_cluster,
            pool_size=pool_size,
        )
    except Exception as err:  # the config loaders raise several unrelated types
        where = "the in-cluster config" if settings.in_cluster else "the kubeconfig"
        raise UnreachableError(f"cannot load {where}: {err}") from err


async def serve(
    settings: Settings,
    *,
    api_client: Any = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run the worker until SIGTERM/SIGINT, then shut down gracefully."""
    client = await connect(settings.temporal, identity=f"coalmine-worker@{socket.gethostname()}")
    log.info("%s", await ensure_search_attributes(client))
    if api_client is None:
        api_client = _api_client(settings.kubernetes, settings.worker.activity_threads)
    metrics = RolloutMetrics(mesh_provider=settings.worker.mesh_provider)
    server = None
    if settings.worker.metrics_port:
        server = metrics.serve(
            port=settings.worker.metrics_port, address=settings.worker.metrics_address
        )
    worker = build_worker(client, settings, api_client=api_client, metrics=metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with worker:
            log.info(
                "worker polling task queue %r on %s (namespace %s); metrics on :%s",
                settings.temporal.task_queue,
                settings.temporal.address,
                settings.temporal.namespace,
                settings.worker.metrics_port or "off",
            )
            if on_ready is not None:
                on_ready()
            await stop.wait()
            log.info(
                "shutting down: running activities get %ss to finish",
                settings.worker.graceful_shutdown_seconds,
            )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if server is not None:
            server.shutdown()
    log.info("worker stopped")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``coalmine worker`` to the top-level app."""
    app.command("worker")(worker_command)


def worker_command(
    *,
    address: common.AddressOpt = None,
    temporal_namespace: common.TemporalNamespaceOpt = None,
    task_queue: common.TaskQueueOpt = None,
    api_key: common.ApiKeyOpt = None,
    tls_cert: common.TlsCertOpt = None,
    tls_key: common.TlsKeyOpt = None,
    tls_ca: common.TlsCaOpt = None,
    tls_server_name: common.TlsServerNameOpt = None,
    kubeconfig: common.KubeconfigOpt = None,
    context: common.ContextOpt = None,
    in_cluster: common.InClusterOpt = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option("--prometheus-url", help="Prometheus for analysis (env PROMETHEUS_URL)."),
    ] = None,
    mesh_provider: Annotated[
        str | None,
        typer.Option(
            "--mesh-provider",
            help="Traffic router of Canaries without spec.provider: istio, kubernetes, "
            "gatewayapi:v1 (env COALMINE_MESH_PROVIDER; default istio).",
        ),
    ] = None,
    max_concurrent_activities: Annotated[
        int | None,
        typer.Option(help="Activity tasks at once (default 100).", rich_help_panel=_SIZING),
    ] = None,
    max_concurrent_local_activities: Annotated[
        int | None,
        typer.Option(
            help="Local activities at once: step weight changes, events (default 100).",
            rich_help_panel=_SIZING,
        ),
    ] = None,
    activity_threads: Annotated[
        int | None,
        typer.Option(
            help="Threads for Kubernetes activities; ≥ both limits above together (default 200).",
            rich_help_panel=_SIZING,
        ),
    ] = None,
    max_cached_workflows: Annotated[
        int | None,
        typer.Option(
            help="Rollouts kept in memory; ≥ open rollouts (~0.3 MB each, +25 KB a step; "
            "default 2000).",
            rich_help_panel=_SIZING,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Prometheus /metrics port, 0 off (env COALMINE_METRICS_PORT; default 9464).",
            rich_help_panel=_SIZING,
        ),
    ] = None,
    graceful_shutdown_seconds: Annotated[
        float | None,
        typer.Option(help="Time running activities get on shutdown.", rich_help_panel=_SIZING),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = "INFO",
) -> None:
    """Run the Temporal worker that executes rollouts (workflow and activities)."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    temporal = common.temporal_settings(
        address=address,
        namespace=temporal_namespace,
        task_queue=task_queue,
        api_key=api_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        tls_server_name=tls_server_name,
    )
    try:
        settings = Settings(
            temporal=temporal,
            kubernetes=KubernetesSettings.from_env(
                kubeconfig=kubeconfig, context=context, in_cluster=in_cluster
            ),
            worker=WorkerSettings.from_env(
                prometheus_url=prometheus_url,
                mesh_provider=mesh_provider,
                max_concurrent_activities=max_concurrent_activities,
                max_concurrent_local_activities=max_concurrent_local_activities,
                activity_threads=activity_threads,
                max_cached_workflows=max_cached_workflows,
                metrics_port=metrics_port,
                graceful_shutdown_seconds=graceful_shutdown_seconds,
            ),
        )
    except SettingsError as err:
        common.fail(str(err), 2)
    common.run(serve(settings))
