"""Top-level ``coalmine`` commands of the worker group."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    del app
