"""``coalmine sandbox …``: start and stop the local stand-in cluster.

- ``up --state-dir DIR`` starts the sandbox in the background, waits until it is ready (< 15 s) and
  prints where everything is; when it already runs, it says so and changes nothing;
- ``status --state-dir DIR`` prints the endpoints of a running sandbox (exit 1 when it is not
  running);
- ``down --state-dir DIR`` stops what ``up`` started, by process id.

The files in DIR are described in sandbox/statefiles.py and sandbox/README.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sandbox import launcher

app = typer.Typer(help="The local sandbox cluster.", no_args_is_help=True)

StateDir = Annotated[
    Path,
    typer.Option("--state-dir", help="Where the sandbox keeps its files (kubeconfig, env, logs)."),
]


def _describe(handle: launcher.SandboxHandle) -> None:
    typer.echo(f"  kubeconfig   {handle.kubeconfig}")
    typer.echo(f"  API server   {handle.api_url}")
    typer.echo(f"  mesh proxy   {handle.mesh_url}   (HTTP_PROXY for cluster names)")
    typer.echo(f"  mesh metrics {handle.metrics_url}/metrics")
    typer.echo(f"  Prometheus   {handle.prometheus_url}")
    typer.echo(f"  load tester  {handle.loadtester_url}")
    typer.echo(f"  environment  . {handle.state_dir / 'env'}")


@app.command()
def up(
    *,
    state_dir: StateDir = Path(".state/sandbox"),
    pod_ready_delay: Annotated[
        float | None,
        typer.Option(help="Seconds from a pod's start until it is Ready (default 0.5)."),
    ] = None,
    loadtester: Annotated[
        bool,
        typer.Option(
            help="Create namespace test with the flagger-loadtester Deployment and Service."
        ),
    ] = True,
    scrape_target: Annotated[
        list[str] | None,
        typer.Option(help="Another HOST:PORT for Prometheus to scrape (repeatable)."),
    ] = None,
    scrape_interval: Annotated[
        float, typer.Option(help="Seconds between Prometheus scrapes.")
    ] = 1.0,
    source_reporter: Annotated[
        bool,
        typer.Option(help='Also record reporter="source" series (off halves the series).'),
    ] = True,
    lean_metrics: Annotated[
        bool,
        typer.Option(help="Only the Istio labels Flagger and dashboards read (half the bytes)."),
    ] = False,
) -> None:
    """Start the sandbox in the background and wait until it is ready."""
    existing = launcher.running(state_dir)
    if existing is not None:
        typer.echo(f"sandbox already running (pid {existing.pid}):")
        _describe(existing)
        return
    started = time.monotonic()
    try:
        handle = launcher.up(
            state_dir,
            pod_ready_delay=pod_ready_delay,
            loadtester=loadtester,
            extra_scrape_targets=scrape_target,
            scrape_interval=scrape_interval,
            source_reporter=source_reporter,
            lean_metrics=lean_metrics,
        )
    except launcher.SandboxError as err:
        typer.echo(f"sandbox failed to start: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"sandbox up in {time.monotonic() - started:.1f} s (pid {handle.pid}):")
    _describe(handle)


@app.command()
def status(state_dir: StateDir = Path(".state/sandbox")) -> None:
    """Print the endpoints of the running sandbox (exit 1 when it is not running)."""
    handle = launcher.running(state_dir)
    if handle is None:
        typer.echo(f"no sandbox running in {state_dir}")
        raise typer.Exit(1)
    typer.echo(f"sandbox running (pid {handle.pid}):")
    _describe(handle)


@app.command()
def down(state_dir: StateDir = Path(".state/sandbox")) -> None:
    """Stop the sandbox and its Prometheus (SIGTERM, then SIGKILL), by process id."""
    stopped = launcher.down(state_dir)
    if stopped:
        typer.echo(f"sandbox stopped (pids {', '.join(map(str, stopped))})")
    else:
        typer.echo(f"no sandbox running in {state_dir}")
