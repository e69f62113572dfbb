"""``coalmine temporal …`` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="temporal commands", no_args_is_help=True)
