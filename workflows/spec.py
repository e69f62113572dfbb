"""The Canary spec: Flagger's ``Canary`` document as frozen pydantic models.

A Flagger user's ``flagger.app/v1beta1`` Canary parses unchanged, and so does the older
``v1alpha3`` form whose analysis block is called ``canaryAnalysis`` (it is moved to ``analysis``
before validation). The models are shared by the workflow (deterministic: no I/O here) and the
command line, which validates a document before anything in the cluster changes.

Defaults follow Flagger: interval 1m, threshold 1, maxWeight 100, progressDeadlineSeconds 600,
webhook timeout 10s, metric interval 1m.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from workflows._base import ApiModel, Duration, duration_seconds

# --- references ------------------------------------------------------------------------------


class TargetRef(ApiModel):
    """The workload under canary: a Deployment in the Canary's namespace."""

    api_version: str = Field("apps/v1", description="API version of the target, apps/v1.")
    kind: Literal["Deployment"] = Field("Deployment", description="Only Deployment for now.")
    name: str = Field(min_length=1, description="Name of the target Deployment.")


class AutoscalerRef(ApiModel):
    """The HorizontalPodAutoscaler of the target; a ``-primary`` copy is made for the primary."""

    api_version: str = Field(
        "autoscaling/v2",
        description="autoscaling/v2 (v2beta1 and v2beta2 are read and served as v2).",
    )
    kind: Literal["HorizontalPodAutoscaler"] = Field(
        "HorizontalPodAutoscaler", description="Only HorizontalPodAutoscaler for now."
    )
    name: str = Field(min_length=1, description="Name of the target's HPA.")


class LocalObjectRef(ApiModel):
    """A reference to an object by name, in the Canary's namespace unless one is given."""

    name: str = Field(min_length=1, description="Object name.")
    namespace: str | None = Field(None, description="Namespace; the Canary's when omitted.")


class SecretKeyRef(ApiModel):
    """One key of a Kubernetes Secret: resolved inside an activity, never carried in history."""

    name: str = Field(min_length=1, description="Secret name.")
    namespace: str | None = Field(None, description="Namespace; the Canary's when omitted.")
    key: str = Field("token", min_length=1, description="Key inside the Secret's data.")


# --- service and routing ---------------------------------------------------------------------


class ServiceSpec(ApiModel):
    """How the target is exposed: the Services and the Istio VirtualService Coalmine manages."""

    name: str | None = Field(None, description="Service name; the target's name when omitted.")
    port: int = Field(ge=1, le=65535, description="Port the Services expose, e.g. 9898.")
    port_name: str = Field("http", description="Name of the Service port.")
    target_port: int | str | None = Field(
        None, description="Container port (number or name); the port when omitted."
    )
    port_discovery: bool = Field(False, description="Expose every container port too.")
    gateways: list[str] = Field(default_factory=list, description="Istio gateways to bind.")
    hosts: list[str] = Field(default_factory=list, description="Hosts the VirtualService serves.")
    retries: dict[str, Any] | None = Field(None, description="Istio HTTPRetry of the route.")
    timeout: Duration | None = Field(None, description="Istio route timeout, e.g. '30s'.")
    headers: dict[str, Any] | None = Field(None, description="Istio header operations.")
    cors_policy: dict[str, Any] | None = Field(None, description="Istio CorsPolicy.")
    traffic_policy: dict[str, Any] | None = Field(
        None, description="Istio TrafficPolicy for both DestinationRules."
    )
    match: list[dict[str, Any]] | None = Field(
        None, description="Istio HTTPMatchRequest list the route applies to."
    )
    rewrite: dict[str, Any] | None = Field(None, description="Istio HTTPRewrite of the route.")
    mesh_name: str | None = Field(None, description="Accepted for compatibility; unused.")
    backends: list[str] | None = Field(None, description="Accepted for compatibility; unused.")
    apex: dict[str, Any] | None = Field(None, description="Labels/annotations of the apex Service.")
    primary: dict[str, Any] | None = Field(None, description="Labels/annotations of -primary.")
    canary: dict[str, Any] | None = Field(None, description="Labels/annotations of -canary.")
    delegation: bool = Field(False, description="Istio delegate VirtualService (not supported).")


# --- analysis --------------------------------------------------------------------------------


class ThresholdRange(ApiModel):
    """Accepted range of a metric value: at least ``min`` and/or at most ``max``."""

    min: float | None = Field(None, description="Lowest passing value (inclusive).")
    max: float | None = Field(None, description="Highest passing value (inclusive).")


class MetricSpec(ApiModel):
    """One metric check run at every analysis step."""

    name: str = Field(
        min_length=1,
        description="request-success-rate, request-duration, or any name with a templateRef.",
    )
    interval: Duration = Field("1m", description="Window of the query, e.g. '1m'.")
    threshold_range: ThresholdRange | None = Field(None, description="Accepted range.")
    threshold: float | None = Field(
        None, description="Deprecated bare threshold (min for success rate, max otherwise)."
    )
    template_ref: LocalObjectRef | None = Field(
        None, description="A MetricTemplate holding the provider and query."
    )
    template_variables: dict[str, str] = Field(
        default_factory=dict, description="Values for {{ variables.<name> }} in the template."
    )
    query: str | None = Field(None, description="Deprecated inline PromQL query.")


WebhookType = Literal[
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
]


class WebhookSpec(ApiModel):
    """An HTTP hook: load tests, acceptance tests, manual gates, rollback triggers."""

    name: str = Field(min_length=1, description="Webhook name, unique within the Canary.")
    type: WebhookType = Field("rollout", description="When the hook runs (Flagger's types).")
    url: str = Field(min_length=1, description="http or https address the payload is POSTed to.")
    timeout: Duration = Field("10s", description="Per-call timeout, e.g. '30s'.")
    retries: int = Field(0, ge=0, le=10, description="Extra attempts after a failed call.")
    mute_alert: bool = Field(False, description="Do not alert when this hook fails.")
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Sent as the payload's metadata (e.g. cmd)."
    )
    secret_ref: SecretKeyRef | None = Field(
        None, description="A Secret key sent as 'Authorization: Bearer <value>'."
    )


class AlertSpec(ApiModel):
    """Where analysis results are posted (an AlertProvider)."""

    name: str = Field(min_length=1, description="Alert name.")
    severity: Literal["info", "warn", "error"] = Field(
        "info", description="Lowest severity sent: info sends all, error only failures."
    )
    provider_ref: LocalObjectRef = Field(description="The AlertProvider to post through.")


class AnalysisSpec(ApiModel):
    """The canary analysis: how traffic moves and what must hold at every step."""

    interval: Duration = Field("1m", description="Time between steps, e.g. '30s'.")
    threshold: int = Field(1, ge=1, description="Failed checks that trigger a rollback.")
    max_weight: int | None = Field(
        None, ge=0, le=100, description="Highest canary weight before promotion (default 100)."
    )
    step_weight: int | None = Field(None, ge=1, le=100, description="Weight added per step.")
    step_weights: list[int] | None = Field(
        None, description="Explicit increasing weights, e.g. [1, 5, 20, 50]."
    )
    step_weight_promotion: int | None = Field(
        None, ge=1, le=100, description="Primary weight added per step during promotion."
    )
    metrics: list[MetricSpec] = Field(default_factory=list, description="Metric checks.")
    webhooks: list[WebhookSpec] = Field(default_factory=list, description="Webhooks.")
    alerts: list[AlertSpec] = Field(default_factory=list, description="Alert targets.")
    # Parsed so a document that uses them is refused clearly instead of silently ignored.
    iterations: int | None = Field(None, description="A/B and blue/green: not supported yet.")
    match: list[dict[str, Any]] | None = Field(None, description="A/B testing: not supported yet.")
    mirror: bool | None = Field(None, description="Traffic mirroring: not supported yet.")
    mirror_weight: int | None = Field(None, description="Traffic mirroring: not supported yet.")
    session_affinity: dict[str, Any] | None = Field(
        None, description="Session affinity: not supported yet."
    )
    primary_ready_threshold: int = Field(100, ge=0, le=100, description="% of primary pods ready.")
    canary_ready_threshold: int = Field(100, ge=0, le=100, description="% of canary pods ready.")

    @model_validator(mode="after")
    def _check_steps(self) -> AnalysisSpec:
        unsupported = {
            "iterations": self.iterations,
            "match": self.match,
            "mirror": self.mirror,
            "mirrorWeight": self.mirror_weight,
            "sessionAffinity": self.session_affinity,
        }
        for field, value in unsupported.items():
            if value is not None:
                raise ValueError(
                    f"{field} is not supported yet (A/B testing, blue/green and mirroring come "
                    "later): remove it to run a weighted canary"
                )
        if self.step_weights is not None:
            if not self.step_weights:
                raise ValueError("stepWeights is empty: list increasing weights, e.g. [5, 20, 50]")
            if any(not 0 < w <= 100 for w in self.step_weights):
                raise ValueError("stepWeights must each be between 1 and 100")
            if any(b <= a for a, b in zip(self.step_weights, self.step_weights[1:], strict=False)):
                raise ValueError("stepWeights must be strictly increasing, e.g. [5, 20, 50]")
        elif self.step_weight is None:
            raise ValueError("set stepWeight (e.g. 10) or stepWeights (e.g. [5, 20, 50])")
        if (
            self.step_weight is not None
            and self.step_weights is None
            and self.step_weight > self.effective_max_weight
        ):
            raise ValueError(
                f"stepWeight ({self.step_weight}) is greater than maxWeight "
                f"({self.effective_max_weight}): lower stepWeight or raise maxWeight"
            )
        names = [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique within the Canary")
        return self

    @property
    def effective_max_weight(self) -> int:
        """maxWeight, or the last of stepWeights, or 100."""
        if self.step_weights:
            return self.step_weights[-1]
        return self.max_weight if self.max_weight is not None else 100

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)

    def webhooks_of(self, kind: WebhookType) -> list[WebhookSpec]:
        return [w for w in self.webhooks if w.type == kind]


# --- the document ----------------------------------------------------------------------------


class CanarySpec(ApiModel):
    """``spec`` of a Canary."""

    provider: str = Field("istio", description="Traffic router; only istio for now.")
    target_ref: TargetRef = Field(description="The Deployment under canary.")
    autoscaler_ref: AutoscalerRef | None = Field(None, description="The target's HPA.")
    progress_deadline_seconds: int = Field(
        600, ge=1, description="Seconds a Deployment may take to become ready."
    )
    skip_analysis: bool = Field(False, description="Promote without analysis.")
    revert_on_deletion: bool = Field(False, description="Accepted for compatibility; unused.")
    suspend: bool = Field(False, description="Accepted for compatibility; unused.")
    service: ServiceSpec = Field(description="Services and routing.")
    analysis: AnalysisSpec = Field(description="The canary analysis.")

    @model_validator(mode="before")
    @classmethod
    def _v1alpha3_canary_analysis(cls, data: Any) -> Any:
        # Flagger's older documents call the analysis block canaryAnalysis.
        if isinstance(data, dict) and "canaryAnalysis" in data:
            if "analysis" in data:
                raise ValueError("give analysis or canaryAnalysis, not both")
            data = dict(data)
            data["analysis"] = data.pop("canaryAnalysis")
        return data

    @model_validator(mode="after")
    def _check_provider(self) -> CanarySpec:
        if self.provider != "istio":
            raise ValueError(
                f"provider {self.provider!r} is not supported yet: use 'istio' (the default)"
            )
        return self


class ObjectMeta(ApiModel):
    """The part of ``metadata`` Coalmine reads."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    name: str = Field(min_length=1, max_length=253, description="Canary name.")
    namespace: str = Field("default", min_length=1, description="Namespace of the target.")


class Canary(ApiModel):
    """A Flagger Canary document (v1beta1, or v1alpha3 with ``canaryAnalysis``)."""

    api_version: Literal["flagger.app/v1beta1", "flagger.app/v1alpha3"] = Field(
        "flagger.app/v1beta1", description="flagger.app/v1beta1 or flagger.app/v1alpha3."
    )
    kind: Literal["Canary"] = Field("Canary", description="Canary.")
    metadata: ObjectMeta = Field(description="Name and namespace.")
    spec: CanarySpec = Field(description="The canary's spec.")
    status: dict[str, Any] | None = Field(None, description="Ignored on input.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def service_name(self) -> str:
        return self.spec.service.name or self.spec.target_ref.name
