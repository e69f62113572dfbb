"""The worker's Prometheus metrics: Flagger's metric set under Coalmine's names.

Fed by an activity interceptor rather than by the workflow: activities run in the worker, so
observing what ``set_weights``, ``check_metric``, ``call_webhook`` and ``record_event`` were asked
and answered needs no workflow change and keeps workflow code free of side effects (a replay
would otherwise count twice). Labels are Flagger's (``name``, ``namespace``), so existing
dashboards port by renaming ``flagger_`` to ``coalmine_``:

==========================================  =======================================  ==========
metric                                      Flagger's                                type
==========================================  =======================================  ==========
coalmine_canary_total{namespace}            flagger_canary_total                     gauge
coalmine_canary_phase{name,namespace,phase} (rollouts by phase: 1 for the current)   gauge
coalmine_canary_status{name,namespace}      flagger_canary_status (0 run, 1 ok, 2 failed) gauge
coalmine_canary_weight{name,namespace}      flagger_canary_weight (canary's)          gauge
coalmine_canary_primary_weight{…}           flagger_canary_weight (primary's)         gauge
coalmine_canary_failed_checks{…}            (status.failedChecks)                    gauge
coalmine_canary_metric_analysis{…,metric}   flagger_canary_metric_analysis            gauge
coalmine_canary_duration_seconds{…}         flagger_canary_duration_seconds           histogram
coalmine_canary_promotions_total{…}         flagger_canary_successes_total            counter
coalmine_canary_rollbacks_total{…}          flagger_canary_failures_total             counter
==========================================  =======================================  ==========

The metrics live in their own registry (not the process-global one) so tests and several
workers in one process never collide.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from workflows.activity_api import (
    ActivityName,
    CanaryRef,
    EventInput,
    MetricCheckInput,
    SetWeightsInput,
    WebhookInput,
    WebhookResult,
)
from workflows.model import MetricResult, Phase

_LABELS = ("name", "namespace")
_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, float("inf"))
_STATUS_RUNNING, _STATUS_SUCCEEDED, _STATUS_FAILED = 0, 1, 2
# Webhook kinds whose failure counts as a failed check (Flagger: rollout hooks gate each step).
_CHECK_WEBHOOKS = frozenset({"rollout", "pre-rollout"})
# Event reasons the workflow records when a rollout ends (Flagger's "Promotion completed!",
# "Canary failed!"), and "Synced" when a revision needed no rollout.
_FINAL_REASONS = {"Promoted": Phase.SUCCEEDED, "Synced": Phase.SUCCEEDED, "Failed": Phase.FAILED}


@dataclass
class _Rollout:
    """What the worker has seen of one rollout run (per workflow run, so a retry starts fresh)."""

    run_id: str
    started: float
    failed_checks: int = 0
    phase: Phase | None = None


@dataclass
class RolloutMetrics:
    """The metric families and the bookkeeping that feeds them."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.total = Gauge(
            "coalmine_canary_total", "Rollouts seen by this worker.", ["namespace"], registry=r
        )
        self.phase = Gauge(
            "coalmine_canary_phase",
            "1 for the rollout's current phase, 0 for the others.",
            [*_LABELS, "phase"],
            registry=r,
        )
        self.status = Gauge(
            "coalmine_canary_status",
            "Rollout status: 0 running, 1 succeeded, 2 failed.",
            _LABELS,
            registry=r,
        )
        self.weight = Gauge(
            "coalmine_canary_weight", "Canary traffic weight (percent).", _LABELS, registry=r
        )
        self.primary_weight = Gauge(
            "coalmine_canary_primary_weight",
            "Primary traffic weight (percent).",
            _LABELS,
            registry=r,
        )
        self.failed_checks = Gauge(
            "coalmine_canary_failed_checks",
            "Failed checks of the current rollout.",
            _LABELS,
            registry=r,
        )
        self.metric_analysis = Gauge(
            "coalmine_canary_metric_analysis",
            "Last value of each analysis metric.",
            [*_LABELS, "metric"],
            registry=r,
        )
        self.duration = Histogram(
            "coalmine_canary_duration_seconds",
            "Time from the start of a rollout to its promotion or rollback.",
            _LABELS,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.promotions = Counter(
            "coalmine_canary_promotions", "Rollouts promoted.", _LABELS, registry=r
        )
        self.rollbacks = Counter(
            "coalmine_canary_rollbacks", "Rollouts rolled back.", _LABELS, registry=r
        )
        self._rollouts: dict[tuple[str, str], _Rollout] = {}

    # --- observations (called by the interceptor after an activity returned) -----------------

    def observe(self, name: str, arg: Any, result: Any, run_id: str) -> None:
        """Update the metrics from one completed activity call."""
        if name == ActivityName.SET_WEIGHTS and isinstance(arg, SetWeightsInput):
            self._rollout(arg.ref, run_id)
            self.weight.labels(*self._labels(arg.ref)).set(arg.canary)
            self.primary_weight.labels(*self._labels(arg.ref)).set(arg.primary)
        elif name == ActivityName.CHECK_METRIC and isinstance(arg, MetricCheckInput):
            self._metric(arg, result, run_id)
        elif name == ActivityName.CALL_WEBHOOK and isinstance(arg, WebhookInput):
            failed = isinstance(result, WebhookResult) and not result.ok
            if failed and arg.webhook.type in _CHECK_WEBHOOKS:
                self._failed_check(arg.ref, run_id)
        elif name == ActivityName.RECORD_EVENT and isinstance(arg, EventInput):
            self._event(arg, run_id)

    def _metric(self, arg: MetricCheckInput, result: Any, run_id: str) -> None:
        self._rollout(arg.ref, run_id)
        if not isinstance(result, MetricResult):
            return
        if result.value is not None:
            self.metric_analysis.labels(*self._labels(arg.ref), result.name).set(result.value)
        if not result.passed:
            self._failed_check(arg.ref, run_id)

    def _failed_check(self, ref: CanaryRef, run_id: str) -> None:
        rollout = self._rollout(ref, run_id)
        rollout.failed_checks += 1
        self.failed_checks.labels(*self._labels(ref)).set(rollout.failed_checks)

    def _event(self, arg: EventInput, run_id: str) -> None:
        rollout = self._rollout(arg.ref, run_id)
        labels = self._labels(arg.ref)
        # The closing events are sent just before the phase is set to Succeeded/Failed, so
        # their reason, not their phase, says how the rollout ended.
        phase = _FINAL_REASONS.get(arg.reason, arg.phase)
        self._set_phase(arg.ref, phase)
        self.weight.labels(*labels).set(arg.weight)
        if not phase.is_final or rollout.phase == phase:
            rollout.phase = phase
            return
        # The first closing event of a run counts it (a repeat of the same run does not).
        rollout.phase = phase
        self.duration.labels(*labels).observe(time.monotonic() - rollout.started)
        if phase == Phase.SUCCEEDED:
            self.status.labels(*labels).set(_STATUS_SUCCEEDED)
            self.promotions.labels(*labels).inc()
        else:
            self.status.labels(*labels).set(_STATUS_FAILED)
            self.rollbacks.labels(*labels).inc()

    def _set_phase(self, ref: CanaryRef, phase: Phase) -> None:
        for each in Phase:
            self.phase.labels(*self._labels(ref), each.value).set(1 if each == phase else 0)

    def _rollout(self, ref: CanaryRef, run_id: str) -> _Rollout:
        key = self._labels(ref)
        rollout = self._rollouts.get(key)
        if rollout is None or rollout.run_id != run_id:
            rollout = _Rollout(run_id=run_id, started=time.monotonic())
            self._rollouts[key] = rollout
            self.status.labels(*key).set(_STATUS_RUNNING)
            self.failed_checks.labels(*key).set(0)
            self.total.labels(ref.namespace).set(
                sum(1 for _, ns in self._rollouts if ns == ref.namespace)
            )
        return rollout

    @staticmethod
    def _labels(ref: CanaryRef) -> tuple[str, str]:
        return (ref.name, ref.namespace)

    def serve(self, *, port: int, address: str = "0.0.0.0") -> WSGIServer:
        """Serve ``/metrics`` on a background thread (the worker's event loop stays free);
        the caller shuts the returned server down."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server


class MetricsInterceptor(Interceptor):
    """Worker interceptor that reports every completed activity to ``RolloutMetrics``."""

    def __init__(self, metrics: RolloutMetrics) -> None:
        self._metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ObservingActivity(next, self._metrics)


class _ObservingActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: RolloutMetrics) -> None:
        super().__init__(next)
        self._metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await self.next.execute_activity(input)
        if input.args:
            info = activity.info()
            try:
                self._metrics.observe(
                    info.activity_type, input.args[0], result, info.workflow_run_id or ""
                )
            except Exception:  # metrics must never fail a rollout's activity
                activity.logger.exception("could not record metrics for %s", info.activity_type)
        return result
