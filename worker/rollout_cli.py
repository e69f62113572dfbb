"""``coalmine rollout …``: start, follow, inspect and steer rollouts from CI or a terminal.

Exit codes (CI reads them): 0 promoted / done, 1 rolled back, failed or refused, 2 bad input
(nothing started, nothing changed), 3 Temporal or the cluster unreachable.

The Temporal connection flags belong to the group (``coalmine rollout --address … start …``);
the usual ``TEMPORAL_*`` variables are the common way to set them. A rollout is named as
``kubectl get canaries`` names it: ``NAME -n NAMESPACE`` (plus ``--cluster`` when several
clusters share one Temporal namespace).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from worker import cli_common as common
from worker.follow import follow
from worker.identity import default_identity
from worker.rollout_ops import fetch_status, list_rollouts, send_request
from worker.rollout_start import StartRequest, retry_command, start_command
from worker.rollout_view import RolloutFollower, list_table, status_table
from worker.settings import KubernetesSettings, TemporalSettings
from worker.temporal import connect
from workflows.model import (
    AbortRequest,
    OperatorRequest,
    Phase,
    PromoteRequest,
    workflow_id,
)
from workflows.spec_strategy import Strategy

app = typer.Typer(
    help="Start, follow, inspect and steer canary rollouts.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Canary name (metadata.name).", show_default=False)]
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Kubernetes namespace.")]
ClusterOpt = Annotated[
    str | None,
    typer.Option("--cluster", help="Cluster name, part of the rollout ID (env COALMINE_CLUSTER)."),
]
IdentityOpt = Annotated[
    str | None,
    typer.Option(
        "--identity",
        help="Who asks; default $USER@$HOSTNAME, or the CI job (github:owner/repo#run).",
    ),
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in history).")]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Follow the rollout to its end; exit 0 promoted, 1 not.")
]


@app.callback()
def connection(
    ctx: typer.Context,
    *,
    address: common.AddressOpt = None,
    temporal_namespace: common.TemporalNamespaceOpt = None,
    task_queue: common.TaskQueueOpt = None,
    api_key: common.ApiKeyOpt = None,
    tls_cert: common.TlsCertOpt = None,
    tls_key: common.TlsKeyOpt = None,
    tls_ca: common.TlsCaOpt = None,
    tls_server_name: common.TlsServerNameOpt = None,
    ui_url: common.UiUrlOpt = None,
) -> None:
    """Start, follow, inspect and steer canary rollouts."""
    ctx.obj = common.temporal_settings(
        address=address,
        namespace=temporal_namespace,
        task_queue=task_queue,
        api_key=api_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        tls_server_name=tls_server_name,
        ui_url=ui_url,
    )


def _settings(ctx: typer.Context) -> TemporalSettings:
    settings = ctx.obj
    assert isinstance(settings, TemporalSettings)
    return settings


def _id(name: str, namespace: str, cluster: str | None) -> str:
    resolved = KubernetesSettings.from_env(cluster=cluster).cluster
    return workflow_id(cluster=resolved, namespace=namespace, name=name)


@app.command()
def start(
    ctx: typer.Context,
    *,
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The Canary document (YAML).", show_default=False)
    ],
    image: Annotated[
        list[str] | None,
        typer.Option("--image", help="Set a container's image first: CONTAINER=IMAGE (repeat)."),
    ] = None,
    kubeconfig: common.KubeconfigOpt = None,
    context: common.ContextOpt = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Namespace of a Canary that names none; default: the kubeconfig context's.",
        ),
    ] = None,
    cluster: ClusterOpt = None,
    wait: WaitOpt = False,
    identity: IdentityOpt = None,
    reason: ReasonOpt = None,
    output: common.OutputOpt = common.Output.TEXT,
    start_timeout: Annotated[
        float,
        typer.Option(
            "--start-timeout", help="Seconds to wait for a worker to take the rollout (exit 3)."
        ),
    ] = 60,
) -> None:
    """Start a rollout (or hand the new revision to the running one); --wait follows it.

    Exit 0 promoted, 1 rolled back or failed, 2 bad input (nothing changed), 3 unreachable.
    """
    request = StartRequest(
        file=file,
        images=image or [],
        kubernetes=KubernetesSettings.from_env(
            kubeconfig=kubeconfig, context=context, cluster=cluster
        ),
        namespace=namespace,
        identity=identity or default_identity(),
        reason=reason,
        wait=wait,
        json_output=output == common.Output.JSON,
        start_timeout=timedelta(seconds=start_timeout),
    )
    common.run(start_command(request, _settings(ctx), common.stdout()))


@app.command()
def status(
    ctx: typer.Context,
    *,
    name: NameArg,
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
    output: common.OutputOpt = common.Output.TEXT,
) -> None:
    """Show a rollout's phase, weight, metrics, failed checks and operator actions."""
    settings = _settings(ctx)

    async def body() -> int:
        client = await connect(settings)
        wid = _id(name, namespace, cluster)
        current = await fetch_status(client, wid)
        out = common.stdout()
        if output == common.Output.JSON:
            out.print_json(current.model_dump_json(by_alias=True))
        else:
            out.print(status_table(current))
            # Printed apart from the table, never cut: terminals make the whole URL clickable.
            out.print(f"Web UI: {settings.workflow_url(wid)}", markup=False)
        return 0

    common.run(body())


@app.command()
def watch(
    ctx: typer.Context,
    *,
    name: NameArg,
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
) -> None:
    """Follow a rollout live until it ends; exit 0 promoted, 1 rolled back or failed."""
    settings = _settings(ctx)

    async def body() -> int:
        client = await connect(settings)
        wid = _id(name, namespace, cluster)
        await fetch_status(client, wid)  # a clear "no rollout" before following nothing
        out = common.stdout()
        out.print(f"Web UI: {settings.workflow_url(wid)}", markup=False)
        with RolloutFollower(out) as view:
            outcome = await follow(client, wid, view)
        out.print(f"{outcome.phase.value} {outcome.message}".strip(), markup=False)
        return outcome.exit_code

    common.run(body())


@app.command("list")
def list_(
    ctx: typer.Context,
    *,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace.")
    ] = None,
    phase: Annotated[
        Phase | None, typer.Option("--phase", help="Only rollouts in this phase.")
    ] = None,
    strategy: Annotated[
        Strategy | None,
        typer.Option("--strategy", help="Only rollouts of this strategy (e.g. blue-green)."),
    ] = None,
    output: common.OutputOpt = common.Output.TEXT,
) -> None:
    """List rollouts (Temporal visibility, filtered by search attributes)."""
    settings = _settings(ctx)

    async def body() -> int:
        client = await connect(settings)
        rows = await list_rollouts(
            client,
            namespace=namespace,
            phase=phase.value if phase else None,
            strategy=strategy.value if strategy else None,
        )
        out = common.stdout()
        if output == common.Output.JSON:
            items = [
                {
                    "workflowId": r.workflow_id,
                    "namespace": r.namespace,
                    "name": r.name,
                    "phase": r.status,
                    "canaryWeight": r.weight,
                    "lastTransitionTime": r.last_transition_time.isoformat()
                    if r.last_transition_time
                    else None,
                    "revision": r.revision,
                    "strategy": r.strategy,
                }
                for r in rows
            ]
            out.print_json(json.dumps(items))
        elif rows:
            out.print(list_table(rows))
        else:
            common.stderr().print("no rollouts found")
        return 0

    common.run(body())


def _send(
    ctx: typer.Context,
    update: str,
    request: OperatorRequest,
    *,
    name: str,
    namespace: str,
    cluster: str | None,
) -> None:
    settings = _settings(ctx)

    async def body() -> int:
        client = await connect(settings, identity=request.identity)
        wid = _id(name, namespace, cluster)
        await send_request(client, wid, update, request)
        common.stdout().print(
            f"{update}: accepted by {name}.{namespace} (as {request.identity})", markup=False
        )
        return 0

    common.run(body())


@app.command()
def promote(
    ctx: typer.Context,
    *,
    name: NameArg,
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
    full: Annotated[
        bool, typer.Option("--full", help="Skip the remaining analysis and weight steps.")
    ] = False,
    identity: IdentityOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """Skip to promotion (after the current step; --full: at once)."""
    request = PromoteRequest(identity=identity or default_identity(), reason=reason, full=full)
    _send(ctx, "promote", request, name=name, namespace=namespace, cluster=cluster)


@app.command()
def abort(
    ctx: typer.Context,
    *,
    name: NameArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (required).", show_default=False)],
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
    identity: IdentityOpt = None,
) -> None:
    """Roll back now: all traffic to the primary, canary scaled to zero."""
    if not reason.strip():
        common.fail("--reason must say why the rollout is aborted", 2)
    request = AbortRequest(identity=identity or default_identity(), reason=reason)
    _send(ctx, "abort", request, name=name, namespace=namespace, cluster=cluster)


@app.command()
def pause(
    ctx: typer.Context,
    *,
    name: NameArg,
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
    identity: IdentityOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """Hold the rollout at its current weight until resumed."""
    request = OperatorRequest(identity=identity or default_identity(), reason=reason)
    _send(ctx, "pause", request, name=name, namespace=namespace, cluster=cluster)


@app.command()
def resume(
    ctx: typer.Context,
    *,
    name: NameArg,
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
    identity: IdentityOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """Continue a paused rollout."""
    request = OperatorRequest(identity=identity or default_identity(), reason=reason)
    _send(ctx, "resume", request, name=name, namespace=namespace, cluster=cluster)


@app.command()
def retry(
    ctx: typer.Context,
    *,
    name: NameArg,
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
    wait: WaitOpt = False,
    identity: IdentityOpt = None,
    reason: ReasonOpt = None,
    output: common.OutputOpt = common.Output.TEXT,
) -> None:
    """Run the last failed revision again, without a new commit."""
    common.run(
        retry_command(
            _settings(ctx),
            workflow_id_=_id(name, namespace, cluster),
            identity=identity or default_identity(),
            reason=reason,
            wait=wait,
            json_output=output == common.Output.JSON,
            console=common.stdout(),
        )
    )


@app.command()
def report(
    ctx: typer.Context,
    *,
    name: NameArg,
    namespace: NamespaceOpt = "default",
    cluster: ClusterOpt = None,
    run: Annotated[
        str | None, typer.Option("--run", help="A run ID of the rollout (default: the latest).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="report.html (a self-contained page) or report.png; default NAME.NS-report.html.",
            show_default=False,
        ),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus-url",
            help="Prometheus for the canary-versus-primary charts (env PROMETHEUS_URL).",
        ),
    ] = None,
) -> None:
    """Draw one rollout: weights, checks against thresholds, canary beside primary, verdict."""
    from worker.report.build import build_report, check_output, write_report

    settings = _settings(ctx)

    async def body() -> int:
        path = check_output(output or Path(f"{name}.{namespace}-report.html"))
        client = await connect(settings)
        document = await build_report(
            client,
            settings,
            workflow_id=_id(name, namespace, cluster),
            run_id=run,
            prometheus_url=prometheus_url or os.environ.get("PROMETHEUS_URL") or None,
        )
        await asyncio.to_thread(write_report, document, path)
        timeline = document.timeline
        out = common.stdout()
        out.print(f"{timeline.display} {timeline.outcome.value}: {timeline.message}", markup=False)
        out.print(f"report written to {path}", markup=False)
        return 0

    common.run(body())
