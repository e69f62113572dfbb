"""``coalmine controller``: run the controller until SIGTERM or SIGINT.

Settings as the worker's: Temporal from flags or ``TEMPORAL_*``; the cluster from ``--kubeconfig``
/ ``KUBECONFIG``, else the pod's ServiceAccount; ``COALMINE_CLUSTER`` names the cluster in
workflow IDs (the worker and the CLI must use the same name); ``COALMINE_MIN_ANALYSIS_INTERVAL``
lowers Flagger's 10s interval floor, as for ``coalmine rollout start``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import Annotated

import typer

from worker import cli_common as common
from worker.canary_files import min_interval_seconds
from worker.controller._actions import Actions
from worker.controller._controller import Controller, ControllerSettings
from worker.errors import UnreachableError
from worker.kubecache import KubeConfig, KubeConfigError
from worker.settings import KubernetesSettings, TemporalSettings
from worker.temporal import connect

log = logging.getLogger("coalmine.controller")


def kube_config(settings: KubernetesSettings) -> KubeConfig:
    try:
        if settings.in_cluster:
            return KubeConfig.in_cluster()
        return KubeConfig.load(settings.kubeconfig, context=settings.context)
    except KubeConfigError as err:
        raise UnreachableError(str(err)) from err


async def serve(
    temporal: TemporalSettings,
    kubernetes: KubernetesSettings,
    settings: ControllerSettings,
    *,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Watch and act until SIGTERM/SIGINT."""
    client = await connect(temporal, identity=f"coalmine-controller@{socket.gethostname()}")
    config = kube_config(kubernetes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with config.session(user_agent="coalmine-controller") as session:
        actions = Actions(
            client=client,
            temporal=temporal,
            config=config,
            session=session,
            cluster=settings.cluster,
        )
        controller = Controller(config, actions, settings)
        try:
            await controller.start()
            log.info(
                "controller ready: cluster %r, task queue %r on %s",
                settings.cluster,
                temporal.task_queue,
                temporal.address,
            )
            if on_ready is not None:
                on_ready()
            await stop.wait()
        finally:
            await controller.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("controller stopped")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``coalmine controller`` to the top-level app."""
    app.command("controller")(controller_command)


def controller_command(
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
    concurrency: Annotated[int, typer.Option(help="Canaries handled at once.")] = 8,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = "INFO",
) -> None:
    """Watch Canaries and their targets; start rollouts when a target changes (declarative)."""
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
    kubernetes = KubernetesSettings.from_env(
        kubeconfig=kubeconfig, context=context, in_cluster=in_cluster
    )
    settings = ControllerSettings(
        cluster=kubernetes.cluster,
        min_interval_seconds=min_interval_seconds(),
        concurrency=concurrency,
    )
    common.run(serve(temporal, kubernetes, settings))
