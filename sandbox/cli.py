"""``coalmine sandbox …``: start and stop the local stand-in cluster."""

from __future__ import annotations

import typer

app = typer.Typer(help="The local sandbox cluster.", no_args_is_help=True)
