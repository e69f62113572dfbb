"""Workflow code is replayed: ``workflows/ruff.toml`` refuses clocks, randomness and the
environment in every module there, which the SDK's sandbox guards only in the workflow's own
module (``tests/workflows/test_sandbox_clock.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID251",
         "--config", str(ROOT / "workflows" / "ruff.toml"),
         "--stdin-filename", str(ROOT / "workflows" / "_probe.py"), "-"],
        input=source, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("source", "banned"),
    [
        ("from datetime import datetime\n\nx = datetime.now()\n", "datetime.datetime.now"),
        ("import time\n\nx = time.time()\n", "time.time"),
        ("import random\n\nx = random.random()\n", "random"),
        ("import uuid\n\nx = uuid.uuid4()\n", "uuid.uuid4"),
        ("import os\n\nx = os.environ.get('A')\n", "os.environ"),
    ],
)
def test_a_non_deterministic_call_in_workflow_code_is_refused(source: str, banned: str) -> None:
    result = _lint(source)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"`{banned}` is banned" in result.stdout


def test_the_workflow_api_is_allowed() -> None:
    result = _lint("from temporalio import workflow\n\nx = workflow.now()\n")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_workflows_module_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID251", "workflows"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
