"""What every ``coalmine`` command shares: connection flags, output format, error handling.

Connection flags have no ``envvar=`` of their own: ``TemporalSettings.from_env`` is the single
place that knows the environment variables, so a flag given on the command line simply wins.
Commands run their async body through ``run``, which turns a ``CliError`` into one message on
stderr and its exit code (2 bad input, 3 unreachable, 1 otherwise).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from worker.errors import EXIT_BAD_INPUT, CliError
from worker.settings import SettingsError, TemporalSettings

CONN = "Temporal connection (flags win over TEMPORAL_* variables)"


class Output(StrEnum):
    """Output format of commands a script may parse."""

    TEXT = "text"
    JSON = "json"


AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", help="Temporal host:port (env TEMPORAL_ADDRESS).", rich_help_panel=CONN
    ),
]
TemporalNamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--temporal-namespace",
        help="Temporal namespace (env TEMPORAL_NAMESPACE).",
        rich_help_panel=CONN,
    ),
]
TaskQueueOpt = Annotated[
    str | None,
    typer.Option(
        "--task-queue", help="Task queue (env TEMPORAL_TASK_QUEUE).", rich_help_panel=CONN
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key, e.g. Temporal Cloud (prefer env TEMPORAL_API_KEY: flags show in ps).",
        rich_help_panel=CONN,
        show_default=False,
    ),
]
TlsCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert", help="Client certificate (env TEMPORAL_TLS_CERT).", rich_help_panel=CONN
    ),
]
TlsKeyOpt = Annotated[
    Path | None,
    typer.Option("--tls-key", help="Client key (env TEMPORAL_TLS_KEY).", rich_help_panel=CONN),
]
TlsCaOpt = Annotated[
    Path | None,
    typer.Option("--tls-ca", help="Server CA (env TEMPORAL_TLS_CA).", rich_help_panel=CONN),
]
TlsServerNameOpt = Annotated[
    str | None,
    typer.Option(
        "--tls-server-name",
        help="Server name to verify (env TEMPORAL_TLS_SERVER_NAME).",
        rich_help_panel=CONN,
    ),
]
UiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--ui-url", help="Temporal Web UI base address (env TEMPORAL_UI_URL).", rich_help_panel=CONN
    ),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]
KubeconfigOpt = Annotated[
    Path | None, typer.Option("--kubeconfig", help="kubeconfig (env KUBECONFIG).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
InClusterOpt = Annotated[
    bool | None,
    typer.Option(
        "--in-cluster/--no-in-cluster",
        help="Use the pod's service account (default: inside a pod without a kubeconfig).",
        show_default=False,
    ),
]


def temporal_settings(**flags: Any) -> TemporalSettings:
    """Settings from the connection flags and the environment; exit 2 on a bad combination."""
    try:
        return TemporalSettings.from_env(**flags)
    except SettingsError as err:
        fail(str(err), EXIT_BAD_INPUT)


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> NoReturn:
    stderr().print(f"[bold red]error:[/] {_escape(message)}")
    raise typer.Exit(code)


def run(body: Coroutine[Any, Any, int]) -> NoReturn:
    """Run a command's async body and exit with its code (or its error's)."""
    try:
        code = asyncio.run(body)
    except CliError as err:
        fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        # Stopping the command stops following, never the rollout: it runs on in Temporal.
        stderr().print("interrupted: the rollout goes on in Temporal")
        raise typer.Exit(130) from None
    sys.stdout.flush()
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
