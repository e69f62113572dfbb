"""The sandbox rollouts run in: the SDK's, answering one question without a round trip into it.

For every payload of a workflow task (about forty a step) the SDK asks the workflow instance for
the serialization context to convert it with. Through the SDK's sandbox each question is an
``exec`` of a code string inside the sandbox (~100 µs of CPU), though the answer only reads the
instance's info and its pending commands and runs no workflow code; asked directly, the same
instance answers in ~5 µs (``python -m bench.activation_profile``). `RolloutSandbox` asks it
directly. Everything else (the workflow code, its imports and the sandbox's restrictions) is the
SDK's sandbox unchanged.

It builds on a private class of ``temporalio``, whose version pyproject.toml pins:
``tests/workflows/test_runner.py`` checks that a rollout converts every payload with the context
the SDK's own sandbox gives it, so an upgrade that changes the class fails there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import temporalio.converter
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _Instance

_IN_SANDBOX = "__temporal_in_sandbox"
"""The name the SDK's sandbox gives its in-sandbox instance in the sandbox's globals."""


class _DirectContextInstance(_Instance):
    """The SDK's sandboxed instance; the context questions go straight to the instance in it."""

    def _in_sandbox(self) -> Any:
        return self.globals_and_locals[_IN_SANDBOX]

    def get_serialization_context(
        self, command_info: Any
    ) -> temporalio.converter.SerializationContext | None:
        context = self._in_sandbox().get_serialization_context(command_info)
        return cast("temporalio.converter.SerializationContext | None", context)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._in_sandbox().get_external_store_context(command_info)


@dataclass(frozen=True)
class RolloutSandbox(SandboxedWorkflowRunner):
    """`SandboxedWorkflowRunner` with the serialization-context questions answered directly."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _DirectContextInstance(det, self.runner_class, self.restrictions)


def workflow_runner() -> RolloutSandbox:
    """The runner every worker of rollouts uses (the product's, the tests', the benchmarks')."""
    return RolloutSandbox()
