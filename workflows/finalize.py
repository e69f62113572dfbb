"""``CanaryFinalize``: revert a target when its Canary is deleted with ``revertOnDeletion: true``.

What Flagger's finalizer does (``pkg/controller/finalizer.go``), as one durable workflow, so a
revert is never left half-done by a controller or worker that dies: the target is scaled back to
the primary's replicas and waited for, the apex Service selects the target's pods again, and the
routes send everything to them. The controller starts it (after cancelling a running rollout and
waiting for its rollback), waits for it, and only then removes the finalizer. Every step is an
idempotent activity, so a second start after a crash repeats reads and writes nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import policies

with workflow.unsafe.imports_passed_through():
    from workflows._base import ApiModel
    from workflows.activity_api import (
        ActivityName,
        CanaryRef,
        InitializeInput,
        ReadyResult,
        ScaleCanaryInput,
        ScaleResult,
        SetWeightsInput,
        WaitReadyInput,
        Weights,
    )
    from workflows.model import _ID_UNSAFE
    from workflows.spec import Canary

FINALIZE_WORKFLOW_NAME = "CanaryFinalize"


def finalize_workflow_id(*, cluster: str, namespace: str, name: str) -> str:
    """One revert per Canary and cluster (beside the rollouts' ``canary/…`` IDs)."""
    parts = (_ID_UNSAFE.sub("-", p) for p in (cluster, namespace, name))
    return "canary-finalize/" + "/".join(parts)


class FinalizeInput(ApiModel):
    canary: Canary
    cluster: str = "default"


@workflow.defn(name=FINALIZE_WORKFLOW_NAME)
class CanaryFinalizeWorkflow:
    """Target scaled back, apex Service and routes back to it; the primary is left alone."""

    @workflow.run
    async def run(self, input: FinalizeInput) -> str:
        canary, cluster = input.canary, input.cluster
        ref = CanaryRef.of(canary, cluster)
        options = policies.KUBERNETES
        scaled = await workflow.execute_activity(
            ActivityName.SCALE_CANARY,
            ScaleCanaryInput(canary=canary, cluster=cluster, replicas=None, like_primary=True),
            result_type=ScaleResult,
            summary=f"scale {ref.target} to the primary's replicas",
            start_to_close_timeout=options.start_to_close,
            retry_policy=options.retry,
        )
        deadline = float(canary.spec.progress_deadline_seconds)
        ready = await workflow.execute_activity(
            ActivityName.WAIT_READY,
            WaitReadyInput(ref=ref, deployment=ref.target, deadline_seconds=deadline),
            result_type=ReadyResult,
            start_to_close_timeout=timedelta(seconds=deadline + 60),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=options.retry,
            summary=f"wait for {ref.target} ready",
        )
        await workflow.execute_activity(
            ActivityName.REVERT_SERVICE,
            InitializeInput(canary=canary, cluster=cluster),
            result_type=type(None),
            summary=f"service {ref.service} selects {ref.target}'s pods again",
            start_to_close_timeout=options.start_to_close,
            retry_policy=options.retry,
        )
        await workflow.execute_activity(
            ActivityName.SET_WEIGHTS,
            SetWeightsInput(ref=ref, primary=0, canary=100),
            result_type=Weights,
            summary="all traffic to the target",
            start_to_close_timeout=options.start_to_close,
            retry_policy=options.retry,
        )
        state = "ready" if ready.ready else f"not ready yet ({ready.message})"
        return f"{ref.display} reverted: {ref.target} at {scaled.replicas} replicas, {state}"
