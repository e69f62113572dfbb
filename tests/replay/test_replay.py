"""Stored histories replay against the current workflow code (a determinism check).

Regenerate them with ``python -m tests.replay.record`` only on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker.runner import workflow_runner
from workflows.rollout import CanaryRolloutWorkflow

HISTORIES = {
    path.stem: path.read_text()
    for path in sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))
}


def test_the_expected_histories_are_stored() -> None:
    assert set(HISTORIES) >= {"succeeded", "rolled_back", "operated", "local_advance"}


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(f"canary/replay/{name}", HISTORIES[name])
    replayer = Replayer(
        workflows=[CanaryRolloutWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
