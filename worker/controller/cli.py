"""``coalmine controller``: run the controller until SIGTERM or SIGINT.

Settings as the worker's: Temporal from flags or ``TEMPORAL_*``; the cluster from ``--kubeconfig``
/ ``KUBECONFIG``, else the pod's ServiceAccount; ``COALMINE_CLUSTER`` names the cluster in
workflow IDs (the worker and the CLI must use the same name); ``COALMINE_MIN_ANALYSIS_INTERVAL``
lowers Flagger's 10s interval floor, as for ``coalmine rollout start``; ``--mesh-provider`` /
``COALMINE_MESH_PROVIDER`` is the cluster-wide traffic router of Canaries without
``spec.provider``, as the worker's (Flagger's ``-mesh-provider``; the Helm value ``meshProvider``
sets both). Unset, the controller leaves it to the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
from worker.settings import KubernetesSettings, SettingsError, TemporalSettings
from worker.temporal import connect
from workflows import providers

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
                "controller ready: cluster %r, task queue %r on %s, mesh provider %s",
                settings.cluster,
                temporal.task_queue,
                temporal.address,
                settings.mesh_provider or "the worker's",
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


def mesh_provider_setting(flag: str | None, env: dict[str, str] | None = None) -> str | None:
    """The cluster-wide default provider from the flag, else ``COALMINE_MESH_PROVIDER``; its
    registered name (``gatewayapi`` → ``gatewayapi:v1``), or None when neither is set.
    `SettingsError` for an unknown name: refused at start-up, not at the first Canary."""
    value = flag or (os.environ if env is None else env).get("COALMINE_MESH_PROVIDER") or None
    if value is None:
        return None
    name = providers.canonical(value)
    if name is None:
        raise SettingsError(f"unknown mesh provider {value!r}: use one of {providers.known()}")
    return name


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
    mesh_provider: Annotated[
        str | None,
        typer.Option(
            "--mesh-provider",
            help="Traffic router of Canaries without spec.provider: istio, kubernetes, "
            "gatewayapi:v1 (env COALMINE_MESH_PROVIDER; unset: the worker's default).",
        ),
    ] = None,
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
    try:
        default_provider = mesh_provider_setting(mesh_provider)
    except SettingsError as err:
        common.fail(str(err), 2)
    settings = ControllerSettings(
        cluster=kubernetes.cluster,
        min_interval_seconds=min_interval_seconds(),
        concurrency=concurrency,
        mesh_provider=default_provider,
    )
    common.run(serve(temporal, kubernetes, settings))
