"""A helper that reads the wall clock, imported by ``clock_workflows`` with its imports passed
through the sandbox (as ``workflows.rollout`` imports the rest of ``workflows``)."""

from __future__ import annotations

from datetime import datetime


def wall_clock() -> str:
    return datetime.now().isoformat()
