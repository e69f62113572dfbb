"""``coalmine up|down|demo``: the local stack on one machine, and the demo rollouts on it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sandbox import stack

StateDir = Annotated[
    Path,
    typer.Option("--state-dir", help="Where the stack keeps its data, logs, pids and env file."),
]
DEFAULT_STATE = Path(".state/demo")


def _print_stack(running: stack.Stack) -> None:
    typer.echo(f"  Temporal     {running.temporal_address}")
    typer.echo(f"  Web UI       {running.ui_url}")
    typer.echo(f"  kubeconfig   {running.sandbox.kubeconfig}")
    typer.echo(f"  Prometheus   {running.sandbox.prometheus_url}")
    typer.echo(f"  mesh proxy   {running.sandbox.mesh_url}")
    typer.echo(f"  worker       metrics on 127.0.0.1:{running.ports.worker_metrics}")
    if running.mesh_provider:
        typer.echo(f"  provider     {running.mesh_provider} (worker and controller default)")
    typer.echo(f"  environment  . {running.state_dir / 'env'}")


MeshProvider = Annotated[
    str | None,
    typer.Option(
        "--mesh-provider",
        help="Traffic router of Canaries without spec.provider, for the worker and the "
        "controller: istio, kubernetes, gatewayapi:v1 (default: theirs, istio).",
    ),
]


def up(state_dir: StateDir = DEFAULT_STATE, mesh_provider: MeshProvider = None) -> None:
    """Start the local stack (Temporal + Web UI, sandbox cluster, Prometheus, worker)."""
    started = time.monotonic()
    try:
        running = stack.up(state_dir, mesh_provider=mesh_provider)
    except stack.StackError as err:
        typer.echo(f"coalmine up: {err}", err=True)
        raise typer.Exit(3) from err
    typer.echo(f"local stack up ({time.monotonic() - started:.1f} s):")
    _print_stack(running)


def down(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Stop everything `coalmine up` started, by process id."""
    stopped = stack.down(state_dir)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def demo(
    state_dir: StateDir = DEFAULT_STATE,
    interval: Annotated[
        str, typer.Option(help="Analysis interval of the demo Canary (the article uses 30s).")
    ] = "2s",
) -> None:
    """Bring the stack up; roll out a good release (promoted), then a faulty one (rolled back)."""
    from sandbox import demo as demo_module

    started = time.monotonic()
    try:
        running = stack.up(state_dir)
    except stack.StackError as err:
        typer.echo(f"coalmine demo: {err}", err=True)
        raise typer.Exit(3) from err
    typer.echo(f"local stack up ({time.monotonic() - started:.1f} s):")
    _print_stack(running)
    code = demo_module.run(running, interval=interval)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``up``, ``down``, ``demo`` and the ``sandbox`` group to the ``coalmine`` command (the
    ``coalmine.cli`` entry point of the local stack's distribution)."""
    from sandbox.cli import app as sandbox_app

    app.command("up")(up)
    app.command("down")(down)
    app.command("demo")(demo)
    app.add_typer(sandbox_app, name="sandbox")
