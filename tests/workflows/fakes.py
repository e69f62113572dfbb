"""A fake cluster behind the workflow's activities: the test double of the *activities*.

Every activity name of ``workflows.activity_api`` is registered with a function that records the
call and answers from a script. One worker serves a whole test session; each rollout finds its
``FakeCluster`` by workflow ID, so tests run their own scripted cluster without a worker each.

Hooks run inside an activity, before it answers: a test can send an update or cancel the workflow
at an exact point of the rollout ("when set_weights reaches 20, pause"), deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.activity_api import (
    ActivityName,
    AdvanceInput,
    AdvanceResult,
    CanaryStatusInput,
    CanaryStatusResult,
    EventInput,
    InitializeInput,
    InitializeResult,
    MetricCheckInput,
    PromoteInput,
    ReadRevisionInput,
    ReadyResult,
    RevisionInfo,
    RoutesInput,
    ScaleCanaryInput,
    ScaleResult,
    SetWeightsInput,
    StepAnalysis,
    StepAnalysisInput,
    WaitReadyInput,
    WebhookInput,
    WebhookOutcome,
    WebhookResult,
    Weights,
)
from workflows.decisions import provider_error
from workflows.model import CheckOutcome, MetricResult

Answer = Callable[[Any], Any]


@dataclass
class Hook:
    activity: str
    when: Callable[[Any], bool]
    do: Callable[[], Awaitable[Any]]
    once: bool = True
    block: bool = False
    inline: bool = False
    fired: bool = False


def passing(name: str, value: float = 99.5) -> MetricResult:
    return MetricResult(name=name, value=value, outcome=CheckOutcome.OK, message=f"{name} {value}")


def failing(name: str, message: str = "success rate 69.17% < 99%") -> MetricResult:
    return MetricResult(
        name=name, value=69.17, min=99, outcome=CheckOutcome.BREACH, message=message
    )


@dataclass
class FakeCluster:
    """The scripted state of one rollout's cluster, and the calls the workflow made."""

    revision: str = "rev-2"
    promoted_revision: str | None = "rev-1"
    first_initialization: bool = False
    canary_in_cluster: bool = True
    """Whether ``sync_canary_status`` finds the Canary (False: a CI-only rollout)."""
    # deployment name → answers of wait_ready, consumed in order (the last one repeats)
    ready: dict[str, list[bool]] = field(default_factory=dict)
    wait_ready_errors: int = 0
    """Attempts of wait_ready that fail (retryable) first, as a worker too busy to heartbeat."""
    # metric name → answers of check_metric, consumed in order (the last one repeats)
    metrics: dict[str, list[MetricResult]] = field(default_factory=dict)
    # webhook name → answers (ok or not), consumed in order (the last one repeats);
    # unscripted hooks pass, except rollback hooks, which say "no rollback"
    webhooks: dict[str, list[bool]] = field(default_factory=dict)
    fail_events: bool = False
    calls: list[tuple[str, Any]] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    weights: tuple[int, int] = (100, 0)
    canary_replicas: int = 0
    primary_revision: str | None = None

    def on(
        self,
        name: str,
        when: Callable[[Any], bool],
        do: Callable[[], Awaitable[Any]],
        *,
        once: bool = True,
        block: bool = False,
        inline: bool = False,
    ) -> None:
        """Run ``do`` inside the activity; ``block``: then keep running until cancelled.

        Inside a local activity (``set_weights`` within ``advance``) ``do`` runs once the activity
        has returned, unless ``inline`` (for a hook that does not talk to the workflow)."""
        self.hooks.append(Hook(name, when, do, once, block, inline))

    def called(self, name: str) -> list[Any]:
        return [arg for call, arg in self.calls if call == name]

    def mutations(self) -> list[tuple[str, Any]]:
        """set_weights, scale_canary and promote calls, as (name, short description)."""
        out: list[tuple[str, Any]] = []
        for name, arg in self.calls:
            if name == ActivityName.SET_WEIGHTS:
                out.append((name, (arg.primary, arg.canary)))
            elif name == ActivityName.SCALE_CANARY:
                out.append((name, arg.replicas))
            elif name == ActivityName.PROMOTE:
                out.append((name, arg.revision))
        return out

    def event_messages(self) -> list[str]:
        return [e.message for e in self.called(ActivityName.RECORD_EVENT)]

    async def record(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        for hook in self.hooks:
            if hook.activity == name and not (hook.once and hook.fired) and hook.when(arg):
                hook.fired = True
                if activity.info().is_local and not hook.inline:
                    # A local activity (``advance``: set_weights inside it) runs while its
                    # workflow task is open, so an update, signal or cancellation sent from inside
                    # it lands only once it returns: send it then, as an operator's would be.
                    _detached(hook.do())
                    continue
                await hook.do()
                if hook.block:
                    await _until_cancelled()

    @staticmethod
    def _next(answers: list[Any], default: Any) -> Any:
        if not answers:
            return default
        return answers.pop(0) if len(answers) > 1 else answers[0]


_DETACHED: set[asyncio.Task[Any]] = set()


def _detached(call: Awaitable[Any]) -> None:
    """Run ``call`` beside the current activity (what it sends the workflow lands once the
    activity has returned), keeping the task referenced until it ends."""

    async def run() -> Any:
        return await call

    task = asyncio.get_running_loop().create_task(run())
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)


async def _until_cancelled() -> None:
    """Stay in flight like a long call (wait_ready), heartbeating, until cancelled.

    The Java test server refuses to cancel an activity whose completion races with the request,
    so tests cancel activities that are still running, as in production.
    """
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.01)


CLUSTERS: dict[str, FakeCluster] = {}
"""Workflow ID → the fake cluster of that rollout."""


def _cluster() -> FakeCluster:
    return CLUSTERS[activity.info().workflow_id]


@activity.defn(name=ActivityName.READ_REVISION)
async def read_revision(arg: ReadRevisionInput) -> RevisionInfo:
    c = _cluster()
    await c.record(ActivityName.READ_REVISION, arg)
    return RevisionInfo(revision=c.revision, promoted_revision=c.promoted_revision)


@activity.defn(name=ActivityName.INITIALIZE)
async def initialize(arg: InitializeInput) -> InitializeResult:
    c = _cluster()
    await c.record(ActivityName.INITIALIZE, arg)
    return InitializeResult(
        first_initialization=c.first_initialization, promoted_revision=c.promoted_revision
    )


@activity.defn(name=ActivityName.RECONCILE_ROUTES)
async def reconcile_routes(arg: RoutesInput) -> None:
    await _cluster().record(ActivityName.RECONCILE_ROUTES, arg)


@activity.defn(name=ActivityName.WAIT_READY)
async def wait_ready(arg: WaitReadyInput) -> ReadyResult:
    c = _cluster()
    await c.record(ActivityName.WAIT_READY, arg)
    if c.wait_ready_errors > 0:
        c.wait_ready_errors -= 1
        raise ApplicationError("the attempt timed out: no heartbeat in time")
    ok = c._next(c.ready.get(arg.deployment, []), True)
    message = (
        "1 of 1 updated replicas are available" if ok else "0 of 1 updated replicas are available"
    )
    return ReadyResult(ready=ok, message=message)


@activity.defn(name=ActivityName.SCALE_CANARY)
async def scale_canary(arg: ScaleCanaryInput) -> ScaleResult:
    c = _cluster()
    await c.record(ActivityName.SCALE_CANARY, arg)
    c.canary_replicas = 2 if arg.replicas is None else arg.replicas
    return ScaleResult(replicas=c.canary_replicas)


@activity.defn(name=ActivityName.PROMOTE)
async def promote(arg: PromoteInput) -> None:
    c = _cluster()
    await c.record(ActivityName.PROMOTE, arg)
    if arg.revision != c.revision:
        # As the real activity: a target that moved on is never promoted unanalysed.
        raise ApplicationError(
            f"target is at {c.revision}, not {arg.revision}",
            type="RevisionMismatch",
            non_retryable=True,
        )
    c.primary_revision = arg.revision


@activity.defn(name=ActivityName.SET_WEIGHTS)
async def set_weights(arg: SetWeightsInput) -> Weights:
    c = _cluster()
    await c.record(ActivityName.SET_WEIGHTS, arg)
    c.weights = (arg.primary, arg.canary)
    return Weights(primary=arg.primary, canary=arg.canary)


@activity.defn(name=ActivityName.GET_WEIGHTS)
async def get_weights(arg: Any) -> Weights:
    c = _cluster()
    await c.record(ActivityName.GET_WEIGHTS, arg)
    return Weights(primary=c.weights[0], canary=c.weights[1])


@activity.defn(name=ActivityName.CHECK_METRIC)
async def check_metric(arg: MetricCheckInput) -> MetricResult:
    c = _cluster()
    await c.record(ActivityName.CHECK_METRIC, arg)
    return c._next(c.metrics.get(arg.metric.name, []), passing(arg.metric.name))


@activity.defn(name=ActivityName.CALL_WEBHOOK)
async def call_webhook(arg: WebhookInput) -> WebhookResult:
    c = _cluster()
    await c.record(ActivityName.CALL_WEBHOOK, arg)
    ok = c._next(c.webhooks.get(arg.webhook.name, []), arg.webhook.type != "rollback")
    return WebhookResult(ok=ok, status_code=200 if ok else 403, message="" if ok else "refused")


@activity.defn(name=ActivityName.RECORD_EVENT)
async def record_event(arg: EventInput) -> None:
    c = _cluster()
    await c.record(ActivityName.RECORD_EVENT, arg)
    if c.fail_events:
        raise ApplicationError("notifier down", non_retryable=True)


@activity.defn(name=ActivityName.SYNC_CANARY_STATUS)
async def sync_canary_status(arg: CanaryStatusInput) -> CanaryStatusResult:
    c = _cluster()
    await c.record(ActivityName.SYNC_CANARY_STATUS, arg)
    return CanaryStatusResult(exists=c.canary_in_cluster, written=c.canary_in_cluster)


# The one-activity step: each piece is recorded (and hooked) under its own activity's name as
# well, so a test scripts and reads a check or a weight change the same way on either path.


@activity.defn(name=ActivityName.ANALYSE_STEP)
async def analyse_step(arg: StepAnalysisInput) -> StepAnalysis:
    c = _cluster()
    await c.record(ActivityName.ANALYSE_STEP, arg)
    outcomes: list[WebhookOutcome] = []
    for hook in arg.webhooks:
        call = WebhookInput(ref=arg.ref, webhook=hook, phase=arg.phase, checksum=arg.checksum)
        result = await call_webhook(call)
        outcomes.append(WebhookOutcome(name=hook.name, result=result))
        if not result.ok:
            return StepAnalysis(webhooks=outcomes)
    metrics: list[MetricResult] = []
    for metric in arg.metrics:
        try:
            metrics.append(await check_metric(MetricCheckInput(ref=arg.ref, metric=metric)))
        except Exception as exc:
            metrics.append(provider_error(metric.name, exc))
    return StepAnalysis(webhooks=outcomes, metrics=metrics)


@activity.defn(name=ActivityName.ADVANCE)
async def advance(arg: AdvanceInput) -> AdvanceResult:
    c = _cluster()
    await c.record(ActivityName.ADVANCE, arg)
    weights = await set_weights(arg.weights)
    exists = None
    if arg.status is not None:
        exists = (await sync_canary_status(arg.status)).exists
    if arg.event is not None:
        with contextlib.suppress(ApplicationError):  # a failed event never fails the change
            await record_event(arg.event)
    return AdvanceResult(
        weights=weights, event=arg.event and arg.event.posted(), canary_exists=exists
    )


ACTIVITIES = [
    read_revision,
    initialize,
    reconcile_routes,
    wait_ready,
    scale_canary,
    promote,
    set_weights,
    get_weights,
    check_metric,
    call_webhook,
    record_event,
    sync_canary_status,
    analyse_step,
    advance,
]

_ids = itertools.count()
_SESSION = uuid.uuid4().hex[:8]


def new_workflow_id(prefix: str = "canary/test") -> str:
    return f"{prefix}/{_SESSION}-{next(_ids)}"
