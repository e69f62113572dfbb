"""The contract between the workflow and its activities: names, inputs and results.

The workflow refers to activities by these names only (it imports no client library); the
``activities`` package implements each with ``@activity.defn(name=...)`` and the same types.
Every activity is idempotent: it reads the cluster and converges it, so a retry or a replay after
a crash does no harm.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from workflows._base import ApiModel, LenientModel
from workflows.model import MetricResult, Phase
from workflows.spec import AlertSpec, Canary, MetricSpec, WebhookSpec


class ActivityName:
    """Registered activity names (stable: renaming one breaks running rollouts)."""

    # Kubernetes (activities/kubernetes)
    READ_REVISION = "read_revision"
    INITIALIZE = "initialize"
    SCALE_CANARY = "scale_canary"
    WAIT_READY = "wait_ready"
    PROMOTE = "promote"
    REVERT_SERVICE = "revert_service"
    # Traffic router (activities/router)
    RECONCILE_ROUTES = "reconcile_routes"
    SET_WEIGHTS = "set_weights"
    GET_WEIGHTS = "get_weights"
    # Analysis (activities/analysis)
    CHECK_METRIC = "check_metric"
    CALL_WEBHOOK = "call_webhook"
    RECORD_EVENT = "record_event"
    # One analysis step (activities/step.py): every check in one call, then the weight change
    ANALYSE_STEP = "analyse_step"
    ADVANCE = "advance"
    # The Canary object (activities/kubernetes/canary_status.py)
    SYNC_CANARY_STATUS = "sync_canary_status"


class CanaryRef(ApiModel):
    """The names every activity needs to find a rollout's objects."""

    cluster: str = "default"
    namespace: str
    name: str = Field(description="Canary name.")
    target: str = Field(description="Target Deployment (the canary workload).")
    service: str = Field(description="Service name (apex Service and VirtualService).")
    provider: str | None = Field(
        None,
        description="The Canary's traffic-router provider (spec.provider); None: the worker's "
        "cluster-wide default (and what rollouts started before this field carry).",
    )

    @classmethod
    def of(cls, canary: Canary, cluster: str = "default") -> CanaryRef:
        return cls(
            cluster=cluster,
            namespace=canary.namespace,
            name=canary.name,
            target=canary.spec.target_ref.name,
            service=canary.service_name,
            provider=canary.spec.provider,
        )

    @property
    def primary(self) -> str:
        return f"{self.target}-primary"

    @property
    def display(self) -> str:
        """``podinfo.test``, as Flagger's messages write a canary."""
        return f"{self.name}.{self.namespace}"


# --- Kubernetes ----------------------------------------------------------------------------


class ReadRevisionInput(ApiModel):
    ref: CanaryRef


class RevisionInfo(LenientModel):
    """The target's current revision and the revision the primary last received."""

    revision: str = Field(description="Hash of the pod template and referenced config.")
    promoted_revision: str | None = Field(None, description="From the primary's annotation.")


InitializeStage = Literal["prepare", "switch"]


class InitializeInput(ApiModel):
    """Create or converge the primary Deployment, its HPA and the three Services.

    A first initialization in two stages, so a live service never loses its endpoints:
    ``prepare`` builds the primary and everything but the apex Service; once the primary is
    ready, ``switch`` points the apex Service at it and scales the target down. None does both
    at once (what rollouts started before the stages existed ask for).
    """

    canary: Canary
    cluster: str = "default"
    stage: InitializeStage | None = Field(
        None, description="prepare, switch, or None for both in one call."
    )


class InitializeResult(LenientModel):
    first_initialization: bool = Field(description="The primary did not exist before.")
    promoted_revision: str | None = None


class ScaleCanaryInput(ApiModel):
    """Scale the target. ``replicas`` None: its own replicas, else the HPA minimum, else 1."""

    canary: Canary
    cluster: str = "default"
    replicas: int | None = Field(None, ge=0)
    like_primary: bool = Field(
        False,
        description="With replicas None: the primary's replicas first (reverting a deleted "
        "Canary's target, as Flagger's Finalize does).",
    )


class ScaleResult(LenientModel):
    replicas: int


class WaitReadyInput(ApiModel):
    """Wait (heartbeating) until a Deployment's rollout is complete, up to a deadline."""

    ref: CanaryRef
    deployment: str
    deadline_seconds: float = Field(gt=0)
    ready_threshold: int = Field(100, ge=0, le=100, description="Percent of pods ready.")


class ReadyResult(LenientModel):
    ready: bool
    message: str = Field(description="e.g. '0 of 1 updated replicas are available'.")


class PromoteInput(ApiModel):
    """Copy the canary's pod template (and referenced config) to the primary."""

    canary: Canary
    cluster: str = "default"
    revision: str


# --- traffic router ------------------------------------------------------------------------


class RoutesInput(ApiModel):
    """Create or converge the VirtualService and DestinationRules."""

    canary: Canary
    cluster: str = "default"


class StickySession(ApiModel):
    """Session affinity's cookies for the router (Flagger's ``status.sessionAffinityCookie``)."""

    cookie: str | None = Field(None, description="``name=value`` the canary's answers set.")
    previous_cookie: str | None = Field(
        None, description="The last run's cookie: routed to the primary and expired."
    )
    max_age: int = Field(86_400, description="Max-Age of the cookie, in seconds.")
    primary_cookie: str | None = Field(
        None,
        description="``name=value`` the primary's answers set while the canary takes a share "
        "(sessionAffinity.primaryCookieName): requests carrying it stay on the primary.",
    )
    primary_max_age: int | None = Field(
        None, description="Max-Age of the primary's cookie: the analysis interval, as Flagger's."
    )
    service_match: list[dict[str, Any]] = Field(
        default_factory=list, description="service.match, merged into the cookie match."
    )


class SetWeightsInput(ApiModel):
    ref: CanaryRef
    primary: int = Field(ge=0, le=100)
    canary: int = Field(ge=0, le=100)
    mirrored: bool = Field(
        False,
        description="Also copy the route's traffic to the canary (callers get the primary's "
        "answers); False removes any mirror, so the plain routes come back.",
    )
    mirror_weight: int = Field(
        0, ge=0, le=100, description="Percent of the traffic mirrored (mirrorWeight); 0 is all."
    )
    session: StickySession | None = Field(
        None, description="Session affinity's cookies (sessionAffinity), None without it."
    )


class Weights(LenientModel):
    primary: int
    canary: int


# --- analysis ------------------------------------------------------------------------------


class MetricCheckInput(ApiModel):
    """Run one metric check for the canary."""

    ref: CanaryRef
    metric: MetricSpec


class WebhookInput(ApiModel):
    """Call one webhook with Flagger's payload."""

    ref: CanaryRef
    webhook: WebhookSpec
    phase: Phase
    checksum: str | None = Field(None, description="The revision under analysis.")


class WebhookResult(LenientModel):
    ok: bool
    status_code: int | None = None
    message: str = ""


class EventInput(ApiModel):
    """Record an event: a Kubernetes Event on the target, event webhooks, matching alerts."""

    ref: CanaryRef
    type: Literal["Normal", "Warning"] = "Normal"
    reason: str
    message: str
    phase: Phase
    revision: str | None = None
    weight: int = 0
    event_webhooks: list[WebhookSpec] = Field(default_factory=list)
    alerts: list[AlertSpec] = Field(default_factory=list)
    alert_severity: Literal["info", "warn", "error"] | None = Field(
        None, description="Post to alerts at this severity; None sends no alert."
    )

    def posted(self) -> PostedEvent:
        return PostedEvent(type=self.type, reason=self.reason, message=self.message)


# --- one analysis step --------------------------------------------------------------------


class StepAnalysisInput(ApiModel):
    """Every check of one analysis step, run in one activity.

    The ``rollout`` webhooks are called in order and then, if all passed, the metrics are
    queried concurrently (Flagger's order: a failing load test means no metric is judged).
    """

    ref: CanaryRef
    webhooks: list[WebhookSpec] = Field(default_factory=list)
    metrics: list[MetricSpec] = Field(default_factory=list)
    phase: Phase
    checksum: str | None = Field(None, description="The revision under analysis.")


class WebhookOutcome(LenientModel):
    """One webhook of a step: its name, its answer and how many calls it took."""

    name: str
    result: WebhookResult
    attempts: int = 1


class StepAnalysis(LenientModel):
    """What each check of the step answered (metrics empty when a webhook failed first)."""

    webhooks: list[WebhookOutcome] = Field(default_factory=list)
    metrics: list[MetricResult] = Field(default_factory=list)

    @property
    def refusing_webhook(self) -> str | None:
        """The first webhook that failed, if any."""
        return next((w.name for w in self.webhooks if not w.result.ok), None)


class AdvanceInput(ApiModel):
    """A weight change with what the step records about it: its event and the Canary's status.

    The event and the status are written after the weights; their failure is logged, never
    fails the weight change (as a separately recorded event never fails a rollout).
    """

    weights: SetWeightsInput
    event: EventInput | None = None
    status: CanaryStatusInput | None = None


class PostedEvent(LenientModel):
    """What a report needs of an event an activity posted."""

    type: Literal["Normal", "Warning"] = "Normal"
    reason: str
    message: str


class AdvanceResult(LenientModel):
    weights: Weights
    event: PostedEvent | None = Field(
        None,
        description="The step's event (run as a local activity, ``advance`` leaves only its "
        "result in history, not its input).",
    )
    canary_exists: bool | None = Field(
        None, description="Whether the Canary is in the cluster (None: no status was sent)."
    )


# --- the Canary object ----------------------------------------------------------------------


class CanaryStatusInput(ApiModel):
    """The rollout's status as Flagger writes it on the Canary's ``/status`` subresource.

    ``phase`` is the Canary's phase, which may differ from the workflow's: a first
    initialization ends the run (``Succeeded``) but leaves the Canary ``Initialized``, as
    Flagger leaves it.
    """

    ref: CanaryRef
    phase: Phase
    canary_weight: int = 0
    failed_checks: int = 0
    iterations: int = 0
    revision: str | None = Field(None, description="lastAppliedSpec: the revision rolled out.")
    last_promoted_revision: str | None = Field(None, description="lastPromotedSpec.")
    last_transition_time: datetime | None = None


class CanaryStatusResult(LenientModel):
    exists: bool = Field(description="False when the Canary is not in the cluster (CI only).")
    written: bool = False


AdvanceInput.model_rebuild()

__all__ = [
    "ActivityName",
    "AdvanceInput",
    "AdvanceResult",
    "CanaryRef",
    "CanaryStatusInput",
    "CanaryStatusResult",
    "EventInput",
    "InitializeInput",
    "InitializeResult",
    "MetricCheckInput",
    "MetricResult",
    "PromoteInput",
    "ReadRevisionInput",
    "ReadyResult",
    "RevisionInfo",
    "RoutesInput",
    "ScaleCanaryInput",
    "ScaleResult",
    "SetWeightsInput",
    "StepAnalysis",
    "StepAnalysisInput",
    "StickySession",
    "WaitReadyInput",
    "WebhookInput",
    "WebhookOutcome",
    "WebhookResult",
    "Weights",
]
