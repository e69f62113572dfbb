"""The ``coalmine`` command: one console script, one sub-command group per concern.

Each group lives in its own module so the pieces can grow independently:

- ``coalmine rollout …``  start, watch and steer rollouts (``worker.rollout_cli``)
- ``coalmine canary …``   check Canary documents, no cluster needed (``worker.canary_cli``)
- ``coalmine worker``     run the Temporal worker (``worker.worker_cli``)
- ``coalmine controller`` watch Canaries and start rollouts on a change (``worker.controller``)
- ``coalmine temporal …`` prepare a Temporal namespace (``worker.temporal_cli``)

The local stack (``coalmine up|down|demo``, ``coalmine sandbox …``) is not part of this
distribution: the worker image must not ship a test bench. It is the ``coalmine-local``
distribution (local/), which adds its commands through the ``coalmine.cli`` entry point group;
where it is installed (``make setup``), the commands appear.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

import typer

from worker import canary_cli, rollout_cli, temporal_cli, worker_cli
from worker.controller import cli as controller_cli

app = typer.Typer(
    name="coalmine",
    help="Automated canary deployments for Kubernetes, each rollout a durable Temporal workflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(rollout_cli.app, name="rollout")
app.add_typer(canary_cli.app, name="canary")
app.add_typer(temporal_cli.app, name="temporal")
worker_cli.register(app)
controller_cli.register(app)
for plugin in entry_points(group="coalmine.cli"):
    plugin.load()(app)


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
