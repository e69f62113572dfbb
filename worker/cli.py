"""The ``coalmine`` command: one console script, one sub-command group per concern.

Each group lives in its own module so the pieces can grow independently:

- ``coalmine rollout …``  start, watch and steer rollouts (``worker.rollout_cli``)
- ``coalmine worker``     run the Temporal worker (``worker.worker_cli``)
- ``coalmine temporal …`` prepare a Temporal namespace (``worker.temporal_cli``)
- ``coalmine up|down|demo`` the local stack and the demo (``worker.stack_cli``)
- ``coalmine sandbox …``  the local stand-in cluster (``sandbox.cli``)
"""

from __future__ import annotations

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
    app()


if __name__ == "__main__":
    main()
