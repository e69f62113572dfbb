"""The Canary's analysis: how traffic moves, what must hold at every step, who is told.

Part of the Canary spec (``workflows.spec`` re-exports every name). Defaults are Flagger's:
interval 1m, threshold 1, maxWeight 100, metric interval 1m, webhook timeout 10s, ready
thresholds 100%.

Normalization happens here, once, so downstream code sees one shape: the v1alpha3 metric names
``istio_requests_total`` and ``istio_request_duration_seconds_bucket`` become the builtin
``request-success-rate`` and ``request-duration``, and the deprecated bare ``threshold`` becomes a
``thresholdRange`` (a minimum for the success rate, a maximum for everything else, as Flagger
reads it; a metric with neither is compared with 0, as Flagger's scheduler does). After parsing,
a metric is either builtin or custom (``templateRef`` or ``query``) and has a ``thresholdRange``
(unless it sets ``compare`` and no threshold: then only the comparison judges it); ``threshold``
is always empty. A ``compare`` without ``direction`` gets the metric's default (``decrease`` for
the builtin success rate, ``increase`` otherwise).

Flagger's zero values mean "unset" (its fields are plain Go ints): threshold 0 is 1, maxWeight 0
is 100, stepWeightPromotion 0 is "all at once", stepWeight 0 defers to stepWeights. With
stepWeights, maxWeight is not read; with stepWeight too, stepWeight sets the step and the last of
stepWeights the maximum (normalized to stepWeight and maxWeight, the form the workflow reads).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, field_validator, model_validator
from pydantic.alias_generators import to_snake

from workflows._base import Duration, SpecModel, drop_nulls, duration_seconds
from workflows.spec_compare import MetricCompare, default_direction
from workflows.spec_errors import field_error
from workflows.spec_service import HttpUrl, LocalObjectRef, SecretKeyRef
from workflows.spec_strategy import MatchCondition, SessionAffinity, Strategy, strategy_of

REQUEST_SUCCESS_RATE = "request-success-rate"
REQUEST_DURATION = "request-duration"
BUILTIN_METRICS = (REQUEST_SUCCESS_RATE, REQUEST_DURATION)
"""Metrics Coalmine knows the query for (percent of non-5xx responses; P99 latency in ms)."""
V1ALPHA3_METRIC_NAMES = {
    "istio_requests_total": REQUEST_SUCCESS_RATE,
    "istio_request_duration_seconds_bucket": REQUEST_DURATION,
}
"""The builtin metrics' names in Flagger's v1alpha3 documents."""

Weight = Annotated[int, Field(ge=1, le=100)]
Percent = Annotated[int, Field(ge=0, le=100)]


class ThresholdRange(SpecModel):
    """Accepted range of a metric value: at least ``min`` and/or at most ``max``."""

    min: float | None = Field(None, allow_inf_nan=False, description="Lowest passing value.")
    max: float | None = Field(None, allow_inf_nan=False, description="Highest passing value.")

    @model_validator(mode="after")
    def _bounded(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both, e.g. {min: 99} or {max: 500}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"min ({self.min:g}) is greater than max ({self.max:g}): no value can pass"
            )
        return self


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_zero(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def _given(data: dict[Any, Any], name: str) -> Any:
    """A field of a raw mapping, spelt camelCase (as Flagger) or snake_case."""
    return data.get(name, data.get(to_snake(name)))


def _normalize_metric(data: dict[Any, Any]) -> dict[Any, Any]:
    """v1alpha3 names and the bare ``threshold`` → builtin names and ``thresholdRange``."""
    data = dict(data)
    custom = any(data.get(k) is not None for k in ("templateRef", "template_ref", "query"))
    name = data.get("name")
    if not custom and isinstance(name, str) and name in V1ALPHA3_METRIC_NAMES:
        name = data["name"] = V1ALPHA3_METRIC_NAMES[name]
    threshold = data.get("threshold")
    has_range = data.get("thresholdRange", data.get("threshold_range")) is not None
    compare = data.get("compare")
    if isinstance(compare, dict):
        if compare.get("direction") is None:
            success_rate = not custom and name == REQUEST_SUCCESS_RATE
            data["compare"] = {**compare, "direction": default_direction(success_rate=success_rate)}
        if threshold is None and not has_range:
            return data  # judged against the primary only: no implicit threshold of 0
    if threshold is None and not has_range:
        # Flagger's runBuiltinMetricChecks and runMetricChecks (pkg/controller/
        # scheduler_metrics.go) compare with the zero Threshold when neither is given.
        threshold = 0
    if threshold is None:
        data.pop("threshold", None)
    elif _is_number(threshold):
        # Left in place when not a number, so the error names `threshold`.
        data.pop("threshold", None)
        if not has_range:  # an explicit thresholdRange wins, as in Flagger
            bound = "min" if not custom and name == REQUEST_SUCCESS_RATE else "max"
            data["thresholdRange"] = {bound: threshold}
    return data


class MetricSpec(SpecModel):
    """One metric check run at every analysis step."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="request-success-rate, request-duration, or any name with a templateRef "
        "(v1alpha3's istio_requests_total and istio_request_duration_seconds_bucket are read as "
        "the builtins).",
    )
    interval: Duration = Field("1m", description="Window of the query, e.g. '1m'.")
    threshold_range: ThresholdRange | None = Field(
        None,
        description="Accepted range. Without it (and without threshold) the check compares with "
        "0 as Flagger does: a minimum of 0 for request-success-rate (always passes), a maximum "
        "of 0 otherwise (any positive value fails).",
    )
    threshold: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Deprecated: read as thresholdRange (min for request-success-rate, max "
        "otherwise); always empty after parsing.",
    )
    template_ref: LocalObjectRef | None = Field(
        None, description="A MetricTemplate holding the provider and query."
    )
    template_variables: dict[str, str] = Field(
        default_factory=dict, description="Values for {{ variables.<name> }} in the template."
    )
    query: str | None = Field(
        None, min_length=1, description="Deprecated inline PromQL query (use templateRef)."
    )
    compare: MetricCompare | None = Field(
        None,
        description="Also judge the canary against the primary (Mann-Whitney U test on samples "
        "of this metric over its interval); without it only the threshold counts, as in Flagger.",
    )

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        data = drop_nulls(data)
        return _normalize_metric(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _complete(self) -> MetricSpec:
        if not self.is_builtin and self.template_ref is None and self.query is None:
            raise field_error(
                "templateRef",
                f"metric {self.name!r} has no templateRef: add templateRef: {{name: …}} pointing "
                "at a MetricTemplate, or use request-success-rate / request-duration",
            )
        if self.compare is not None:
            self._check_compare(self.compare)
        return self

    def _check_compare(self, compare: MetricCompare) -> None:
        if self.query is not None:
            raise field_error(
                "compare",
                f"metric {self.name!r} compares with the primary but has an inline query, which "
                "cannot be pointed at the primary's workload: move the query into a "
                "MetricTemplate that selects the workload with {{ target }}, or drop compare",
            )
        if compare.step is not None and duration_seconds(compare.step) > self.interval_seconds:
            raise field_error(
                "compare.step",
                f"metric {self.name!r}: compare.step ({compare.step}) is longer than the "
                f"metric's interval ({self.interval}): shorten the step or lengthen the interval",
            )
        name, interval, seconds = self.name, self.interval, self.interval_seconds
        many = compare.too_many_samples(metric=name, interval=interval, interval_seconds=seconds)
        if many is not None:
            raise field_error("compare.step", many)
        few = compare.too_few_samples(metric=name, interval=interval, interval_seconds=seconds)
        if few is not None:
            raise field_error("compare.minSamples", few)

    @property
    def is_builtin(self) -> bool:
        """A builtin metric (Coalmine supplies the query) rather than a custom one."""
        return self.name in BUILTIN_METRICS and self.template_ref is None and self.query is None

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)


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


class WebhookSpec(SpecModel):
    """An HTTP hook: load tests, acceptance tests, manual gates, rollback triggers."""

    name: str = Field(min_length=1, description="Webhook name, unique within the Canary.")
    type: WebhookType = Field("rollout", description="When the hook runs (Flagger's types).")
    url: HttpUrl = Field(description="http or https address the payload is POSTed to.")
    timeout: Duration = Field("10s", description="Per-call timeout, e.g. '30s'.")
    retries: int = Field(0, ge=0, le=100, description="Extra attempts after a failed call.")
    mute_alert: bool = Field(False, description="Do not alert when this hook fails.")
    disable_tls: bool = Field(
        False, alias="disableTLS", description="Skip TLS certificate verification."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Sent as the payload's metadata (e.g. cmd); values are strings.",
    )
    secret_ref: SecretKeyRef | None = Field(
        None, description="A Secret key sent as 'Authorization: Bearer <value>'."
    )

    @field_validator("type", mode="before")
    @classmethod
    def _empty_is_rollout(cls, value: Any) -> Any:
        return "rollout" if value == "" else value  # Flagger's CRD allows "" for the default


class AlertSpec(SpecModel):
    """Where analysis results are posted (an AlertProvider)."""

    name: str = Field(min_length=1, description="Alert name.")
    severity: Literal["info", "warn", "error"] = Field(
        "info", description="Lowest severity sent: info sends all, error only failures."
    )
    provider_ref: LocalObjectRef = Field(description="The AlertProvider to post through.")

    @field_validator("severity", mode="before")
    @classmethod
    def _empty_is_info(cls, value: Any) -> Any:
        return "info" if value == "" else value


class AnalysisSpec(SpecModel):
    """The canary analysis: how traffic moves and what must hold at every step."""

    interval: Duration = Field(
        "1m",
        description="Time between steps, e.g. '30s'. As in Flagger, `coalmine` raises anything "
        "under 10s to 10s (COALMINE_MIN_ANALYSIS_INTERVAL lowers that floor for local stacks).",
    )
    threshold: int = Field(
        1, ge=1, description="Failed checks that trigger a rollback; 0 means 1, as in Flagger."
    )
    max_weight: Weight = Field(
        100,
        description="Highest canary weight before promotion; 0 means 100, and it is ignored "
        "when stepWeights is set (the last step is the maximum), as in Flagger.",
    )
    step_weight: Weight | None = Field(
        None,
        description="Weight added per step, e.g. 10. Given with stepWeights, it sets the step "
        "and the last of stepWeights the maximum, as in Flagger.",
    )
    step_weights: list[Weight] | None = Field(
        None, min_length=1, description="Explicit increasing weights, e.g. [1, 5, 20, 50]."
    )
    step_weight_promotion: Weight | None = Field(
        None,
        description="Primary weight added per step during promotion; all at once if unset or 0.",
    )
    metrics: list[MetricSpec] = Field(default_factory=list, description="Metric checks.")
    webhooks: list[WebhookSpec] = Field(default_factory=list, description="Webhooks.")
    alerts: list[AlertSpec] = Field(default_factory=list, description="Alert targets.")
    iterations: int = Field(
        0,
        ge=0,
        description="A/B testing (with match) or Blue/Green (alone): the number of successful "
        "analysis intervals before promotion; 0 runs a weighted canary.",
    )
    match: list[MatchCondition] = Field(
        default_factory=list,
        description="A/B testing: the requests (headers, cookies via the cookie header, source "
        "labels) routed to the canary; needs iterations.",
    )
    mirror: bool = Field(
        False,
        description="Copy traffic to the canary (callers get the primary's answers): during all "
        "of Blue/Green, or as the first step of a canary.",
    )
    mirror_weight: Percent = Field(
        0, description="Percent of the traffic mirrored; 0 mirrors all of it, as in Flagger."
    )
    session_affinity: SessionAffinity | None = Field(
        None, description="Keep users who reached the canary on it (weighted canaries)."
    )
    primary_ready_threshold: Percent = Field(100, description="% of primary pods ready.")
    canary_ready_threshold: Percent = Field(100, description="% of canary pods ready.")

    @model_validator(mode="before")
    @classmethod
    def _flagger_zero_values(cls, data: Any) -> Any:
        data = drop_nulls(data)
        if not isinstance(data, dict):
            return data
        # Flagger's Go fields are plain ints, so 0 is what "unset" looks like in its documents:
        # Canary.GetAnalysisThreshold reads threshold 0 as 1, Controller.maxWeight maxWeight 0
        # as 100, runPromotionTrafficShift stepWeightPromotion 0 as "all at once", and
        # Controller.nextStepWeight stepWeight 0 as "use stepWeights".
        zero_is_unset = ["threshold", "maxWeight", "stepWeightPromotion"]
        if isinstance(_given(data, "stepWeights"), list) and _given(data, "stepWeights"):
            zero_is_unset.append("stepWeight")
        if _is_number(_given(data, "iterations")) and _given(data, "iterations"):
            zero_is_unset.append("stepWeight")  # A/B and Blue/Green never read it
        for name in zero_is_unset:
            for key in (name, to_snake(name)):
                if _is_zero(data.get(key)):
                    data = {k: v for k, v in data.items() if k != key}
        return data

    @field_validator("step_weight", mode="before")
    @classmethod
    def _zero_step(cls, value: Any) -> Any:
        if _is_zero(value):
            raise ValueError(
                "a stepWeight of 0 never moves traffic (Flagger's canary would wait forever): "
                "set stepWeight (e.g. 10) or stepWeights (e.g. [5, 20, 50])"
            )
        return value

    @field_validator("step_weights")
    @classmethod
    def _increasing(cls, value: list[int] | None) -> list[int] | None:
        steps = value or []
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                raise field_error(
                    str(i),
                    f"stepWeights must increase: {steps[i]} comes after {steps[i - 1]} "
                    "(e.g. [5, 20, 50])",
                )
        return value

    @model_validator(mode="after")
    def _check_steps(self) -> AnalysisSpec:
        if self.iterations:
            return self._check_iterative()
        if self.step_weight is None and self.step_weights is None:
            raise field_error(
                "stepWeight", "set stepWeight (e.g. 10) or stepWeights (e.g. [5, 20, 50])"
            )
        if self.step_weight is not None and self.step_weights:
            top = self.step_weights[-1]
            if self.step_weight > top:
                raise field_error(
                    "stepWeight",
                    f"stepWeight ({self.step_weight}) is greater than the last of stepWeights "
                    f"({top}), the maximum weight when both are given: lower stepWeight, or "
                    "drop it to step through stepWeights",
                )
        elif self.step_weight is not None and self.step_weight > self.max_weight:
            raise field_error(
                "stepWeight",
                f"stepWeight ({self.step_weight}) is greater than maxWeight "
                f"({self.max_weight}): lower stepWeight or raise maxWeight",
            )
        # maxWeight is not compared with stepWeights: Flagger ignores it when they are set.
        self._check_unique("webhooks", [w.name for w in self.webhooks])
        self._check_unique("metrics", [m.name for m in self.metrics])
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _step_weight_with_step_weights(
        cls, data: Any, handler: ModelWrapValidatorHandler[AnalysisSpec]
    ) -> AnalysisSpec:
        analysis = handler(data)  # every check above has run on the document as written
        if analysis.step_weight is None or not analysis.step_weights:
            return analysis
        # Both given: Flagger's Controller.nextStepWeight steps by stepWeight whenever it is set,
        # while Controller.maxWeight stops at the last of stepWeights. Say that in the one form
        # the workflow reads (stepWeight up to maxWeight); such a document was refused before,
        # so no running rollout carries one.
        fields = analysis.model_dump(by_alias=True, exclude_unset=True, exclude={"step_weights"})
        fields["maxWeight"] = analysis.step_weights[-1]
        return handler(fields)

    def _check_iterative(self) -> AnalysisSpec:
        # Flagger never reads the weights of an A/B or Blue/Green analysis: they need none.
        self._check_unique("webhooks", [w.name for w in self.webhooks])
        self._check_unique("metrics", [m.name for m in self.metrics])
        return self

    @property
    def strategy(self) -> Strategy:
        """The deployment strategy these fields choose (Flagger's order)."""
        return strategy_of(iterations=self.iterations, match=self.match, mirror=self.mirror)

    @staticmethod
    def _check_unique(field: str, names: list[str]) -> None:
        # Names key the rollout status and its messages, so two of a kind would collide.
        for i, name in enumerate(names):
            if name in names[:i]:
                raise field_error(
                    f"{field}.{i}.name", f"{name!r} is used twice: give each a unique name"
                )

    @property
    def effective_max_weight(self) -> int:
        """The weight the canary reaches before promotion: the last of stepWeights, or
        maxWeight (default 100)."""
        if self.step_weights:
            return self.step_weights[-1]
        return self.max_weight

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)

    def webhooks_of(self, kind: WebhookType) -> list[WebhookSpec]:
        return [w for w in self.webhooks if w.type == kind]
