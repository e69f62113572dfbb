"""The ``coalmine`` command: one console script, one sub-command group per concern.

Each group lives in its own module so the pieces can grow independently:

- ``coalmine rollout …``  start, watch and steer rollouts (``worker.rollout_cli``)
- ``coalmine worker``     run the Temporal worker (``worker.worker_cli``)
- ``coalmine temporal …`` prepare a Temporal namespace (``worker.temporal_cli``)
- ``coalmine up|down|demo`` the local stack and the demo (``worker.stack_cli``)
- ``coalmine sandbox …``  the local stand-in cluster (``sandbox.cli``)
"""

from __future__ import annotations

import os
import sys

import typer

from sandbox.cli import app as sandbox_app
from worker import rollout_cli, stack_cli, temporal_cli, worker_cli

app = typer.Typer(
    name="coalmine",
    help="Automated canary deployments for Kubernetes, each rollout a durable Temporal workflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(rollout_cli.app, name="rollout")
app.add_typer(temporal_cli.app, name="temporal")
app.add_typer(sandbox_app, name="sandbox")
worker_cli.register(app)
stack_cli.register(app)


def main() -> None:
    """Run the command, then leave without interpreter finalization.

    The Temporal client's native runtime keeps threads of its own; tearing the interpreter down
    under them can abort the process (SIGABRT) after the command has already finished and
    printed its result, turning a clean exit code into -6. Every command has done all its work
    (and a worker has drained) when ``app()`` returns, so flushing and ``os._exit`` is safe.
    """
    code: int = 0
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
