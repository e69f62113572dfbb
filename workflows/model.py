"""The rollout's own objects: workflow input, operator requests, and the status a query returns.

The whole rollout state lives in one ``RolloutStatus`` so it can be queried, shown in the Web UI
and carried through continue-as-new. JSON names are Flagger's (``phase``, ``canaryWeight``,
``failedChecks``, ``iterations``, ``lastTransitionTime``).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from workflows._base import ApiModel, LenientModel
from workflows.spec import Canary

WORKFLOW_NAME = "CanaryRollout"
"""Workflow type name, stable across code changes (what ``temporal workflow start`` names)."""

DEFAULT_TASK_QUEUE = "coalmine"


class Phase(StrEnum):
    """Flagger's canary phases, so its users read the status at a glance."""

    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def workflow_id(*, cluster: str, namespace: str, name: str) -> str:
    """The rollout's workflow ID: one running rollout per target and cluster."""
    parts = (_ID_UNSAFE.sub("-", p) for p in (cluster, namespace, name))
    return "canary/" + "/".join(parts)


class RolloutInput(ApiModel):
    """Workflow input: the Canary and the revision to roll out.

    ``revision`` is the hash of the target's pod template and the ConfigMaps/Secrets it
    references (``activities`` compute it the same way); when omitted, the workflow reads the
    target's current revision when it starts.
    """

    canary: Canary = Field(description="The Canary document (Flagger v1beta1 or v1alpha3).")
    cluster: str = Field("default", min_length=1, description="Cluster name, part of the ID.")
    revision: str | None = Field(None, description="Revision to roll out; current when omitted.")
    requested_by: str | None = Field(None, description="Who started the rollout (CI job, user).")
    reason: str | None = Field(None, description="Why, e.g. the commit or pipeline URL.")
    status: RolloutStatus | None = Field(
        None,
        description="Set by the workflow when it continues as new: the rollout resumes from it.",
    )
    max_history_events: int | None = Field(
        None, ge=100, description="Continue as new past this history length (default 10,000)."
    )
    resume: ResumeState | None = Field(
        None,
        description="Set by the workflow when it continues as new: everything the rollout "
        "needs to go on (status, pending operator requests, undo stack). Runs that continued "
        "as new before it existed carry ``status`` alone.",
    )


class PendingRequests(ApiModel):
    """Operator requests accepted but not yet honoured, carried across continue-as-new."""

    promote: bool = False
    promote_full: bool = False
    abort_reason: str | None = None
    new_revision: str | None = None
    wake: bool = False


class ResumeState(ApiModel):
    """What a rollout that continued as new resumes from (the samples' one-state-object rule)."""

    status: RolloutStatus
    requests: PendingRequests = Field(default_factory=PendingRequests)
    undo: list[str] = Field(
        default_factory=list, description="Keys of the undo steps registered, oldest first."
    )
    first_initialization: bool = False


# --- operator requests (updates, and signals of the same name for the Web UI) ------------------


class OperatorRequest(ApiModel):
    """Who asks, and why: recorded in the status and the workflow history."""

    identity: str = Field("unknown", min_length=1, description="User, or CI job identity.")
    reason: str | None = Field(None, description="Why this action was taken.")


class PromoteRequest(OperatorRequest):
    """Skip to promotion. ``full``: also skip the remaining analysis and weight steps."""

    full: bool = Field(False, description="Promote at once, skipping remaining steps.")


class AbortRequest(OperatorRequest):
    """Roll back now. A reason is required."""

    reason: str = Field(min_length=1, description="Why the rollout is aborted (required).")


class NewRevisionRequest(OperatorRequest):
    """A new revision of the target while a rollout runs: analysis restarts with it."""

    revision: str = Field(min_length=1, description="The new revision (pod template hash).")

    @field_validator("revision")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class OperatorAction(LenientModel):
    """One recorded operator action."""

    time: datetime
    action: Literal["start", "promote", "promote-full", "abort", "pause", "resume", "new-revision"]
    identity: str
    reason: str | None = None


# --- results and status --------------------------------------------------------------------


class CheckOutcome(StrEnum):
    OK = "ok"
    BREACH = "breach"
    NO_DATA = "no data"
    PROVIDER_ERROR = "provider error"


class Judgement(LenientModel):
    """The canary-versus-primary comparison behind a metric with ``compare`` set.

    A two-sided Mann-Whitney U test on the samples of both workloads over one analysis interval,
    with the Hodges-Lehmann estimate of the shift (canary minus primary) and its confidence
    interval: the numbers a report shows beside the verdict.
    """

    verdict: Literal["Pass", "High", "Low", "NoData"]
    p_value: float | None = None
    shift: float | None = Field(None, description="Hodges-Lehmann shift, canary minus primary.")
    ci_low: float | None = None
    ci_high: float | None = None
    canary_n: int = 0
    primary_n: int = 0
    canary_median: float | None = None
    primary_median: float | None = None
    allowed_effect: float = Field(
        description="Tolerated shift, as a fraction of the primary's median."
    )
    direction: Literal["increase", "decrease", "either"]
    reason: str = Field(description="Human sentence: why this verdict.")


class MetricResult(LenientModel):
    """One metric check at one step: the value, the bound, and which way it went."""

    name: str
    value: float | None = None
    min: float | None = None
    max: float | None = None
    outcome: CheckOutcome
    message: str = Field(description="Human sentence, e.g. 'success rate 69.17% < 99%'.")
    judgement: Judgement | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == CheckOutcome.OK


class FailedCheck(LenientModel):
    """A failed check kept in the status history."""

    time: datetime
    weight: int
    source: str = Field(description="Metric or webhook name, or 'progress deadline'.")
    outcome: str
    message: str


class RolloutEvent(LenientModel):
    """An event Coalmine recorded (also written as a Kubernetes Event on the target)."""

    time: datetime
    type: Literal["Normal", "Warning"] = "Normal"
    reason: str
    message: str


class RolloutStatus(LenientModel):
    """The whole state of one rollout, as the ``status`` query returns it."""

    name: str
    namespace: str
    cluster: str = "default"
    phase: Phase = Phase.INITIALIZING
    canary_weight: int = 0
    failed_checks: int = 0
    iterations: int = 0
    strategy: str | None = Field(
        None,
        description="The deployment strategy (workflows.spec.Strategy: canary, ab-testing, "
        "blue-green, …); None in rollouts started before strategies were told apart.",
    )
    revision: str | None = None
    last_promoted_revision: str | None = None
    last_transition_time: datetime | None = None
    session_affinity_cookie: str | None = Field(
        None, description="``name=value`` the canary's answers set (sessionAffinity)."
    )
    previous_session_affinity_cookie: str | None = Field(
        None, description="The cookie of the last weighted run, expired once back at 0."
    )
    paused: bool = False
    message: str = ""
    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    failed_check_history: list[FailedCheck] = Field(default_factory=list)
    actions: list[OperatorAction] = Field(default_factory=list)
    events: list[RolloutEvent] = Field(default_factory=list)


class RolloutResult(LenientModel):
    """The workflow's result when the rollout was promoted (a rollback fails the workflow)."""

    phase: Phase
    revision: str | None
    message: str


ROLLOUT_FAILED_ERROR = "RolloutFailed"
"""``ApplicationError.type`` of the failure raised after a rollback, so CI sees a non-zero exit."""


RolloutInput.model_rebuild()  # ``resume`` names models defined after it
