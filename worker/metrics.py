"""The worker's Prometheus metrics: Coalmine's own, and Flagger's as Flagger serves them.

Fed by an activity interceptor rather than by the workflow: activities run in the worker, so
observing what ``set_weights``, ``analyse_step``, ``advance``, ``check_metric``, ``call_webhook``
and ``record_event`` were asked and answered needs no workflow change and keeps workflow code
free of side effects (a replay would otherwise count twice). Each observation goes through one
set of recording methods (`RolloutMetrics`), and each of them writes both families, so the two
can never tell different stories.

Coalmine's own (labels ``name`` = the Canary, ``namespace``):

=========================================  ==============================================  =========
metric                                     what                                            type
=========================================  ==============================================  =========
coalmine_canary_total{namespace}           rollouts seen by this worker                    gauge
coalmine_canary_phase{name,namespace,phase} 1 for the current phase, 0 for the others      gauge
coalmine_canary_status{name,namespace}     0 running, 1 promoted, 2 rolled back            gauge
coalmine_canary_weight{name,namespace}     canary's weight                                 gauge
coalmine_canary_primary_weight{…}          primary's weight                                gauge
coalmine_canary_failed_checks{…}           status.failedChecks                             gauge
coalmine_canary_metric_analysis{…,metric}  last value of each metric                       gauge
coalmine_canary_duration_seconds{…}        start of a rollout to its promotion or rollback histogram
coalmine_canary_promotions_total{…}        rollouts promoted                               counter
coalmine_canary_rollbacks_total{…}         rollouts rolled back                            counter
=========================================  ==============================================  =========

Flagger's (``pkg/metrics/recorder.go``: the same names, label names and types, so its alerts
and dashboards work unchanged; ``name`` is the *target's* name there, as Flagger labels it):

==============================================================================  =========
metric                                                                          type
==============================================================================  =========
flagger_info{version,mesh_provider}: 1 (Coalmine's version, the worker's default provider)  gauge
flagger_canary_total{namespace}                                                 gauge
flagger_canary_status{name,namespace}: 0 Progressing, 2 Failed, 1 any other phase  gauge
flagger_canary_weight{workload,namespace}: ``<target>-primary`` and ``<target>``  gauge
flagger_canary_metric_analysis{name,namespace,metric}                            gauge
flagger_canary_duration_seconds{name,namespace}: one analysis step's checks      histogram
flagger_canary_successes_total{name,namespace,deployment_strategy,analysis_status}  counter
flagger_canary_failures_total{name,namespace,deployment_strategy,analysis_status}   counter
==============================================================================  =========

``deployment_strategy`` is Flagger's (``canary``, ``blue-green``, ``ab-testing``; mirroring is
its base strategy), ``analysis_status`` ``skipped`` for a ``skipAnalysis`` promotion, else
``completed``; both are known from the Canary the run's ``initialize`` (or routes, scale,
promote) call carries. The step's duration is the ``analyse_step`` activity's wall time, as
Flagger times its analysis per scheduler tick (buckets: the Go client's defaults).

The metrics live in their own registry (not the process-global one) so tests and several
workers in one process never collide.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import metadata
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
    AdvanceInput,
    CanaryRef,
    EventInput,
    MetricCheckInput,
    SetWeightsInput,
    StepAnalysis,
    StepAnalysisInput,
    WebhookInput,
    WebhookResult,
)
from workflows.model import MetricResult, Phase
from workflows.providers import DEFAULT_PROVIDER
from workflows.spec import Canary, Strategy

_LABELS = ("name", "namespace")
_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, float("inf"))
# The Go client's prometheus.DefBuckets, which Flagger's duration histogram uses.
_GO_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
_STATUS_RUNNING, _STATUS_SUCCEEDED, _STATUS_FAILED = 0, 1, 2
# Webhook kinds whose failure counts as a failed check (Flagger: rollout hooks gate each step).
_CHECK_WEBHOOKS = frozenset({"rollout", "pre-rollout"})
# Event reasons the workflow records when a rollout ends (Flagger's "Promotion completed!",
# "Canary failed!"), and "Synced" when a revision needed no rollout.
_FINAL_REASONS = {"Promoted": Phase.SUCCEEDED, "Synced": Phase.SUCCEEDED, "Failed": Phase.FAILED}
# Flagger's DeploymentStrategy(): mirroring is not a strategy of its own there.
_FLAGGER_STRATEGY = {
    Strategy.CANARY: "canary",
    Strategy.CANARY_MIRRORING: "canary",
    Strategy.AB_TESTING: "ab-testing",
    Strategy.BLUE_GREEN: "blue-green",
    Strategy.BLUE_GREEN_MIRRORING: "blue-green",
}


def _version() -> str:
    try:
        return metadata.version("coalmine")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def flagger_status(phase: Phase) -> int:
    """Flagger's SetStatus: 0 while Progressing, 2 once Failed, 1 in every other phase."""
    if phase == Phase.PROGRESSING:
        return _STATUS_RUNNING
    return _STATUS_FAILED if phase == Phase.FAILED else _STATUS_SUCCEEDED


@dataclass
class _Rollout:
    """What the worker has seen of one rollout run (per workflow run, so a retry starts fresh)."""

    run_id: str
    started: float
    failed_checks: int = 0
    phase: Phase | None = None


@dataclass(frozen=True)
class _Known:
    """What the worker last saw of a Canary's spec, for Flagger's labels."""

    strategy: str = "canary"
    skip_analysis: bool = False


class _CoalmineFamilies:
    def __init__(self, r: CollectorRegistry) -> None:
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


_OUTCOME_LABELS = ("name", "namespace", "deployment_strategy", "analysis_status")


class _FlaggerFamilies:
    """Flagger's names, label names and types (its help texts are its own; these are ours)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.info = Gauge(
            "flagger_info",
            "Always 1: the controller's version and its default traffic provider.",
            ["version", "mesh_provider"],
            registry=r,
        )
        self.total = Gauge(
            "flagger_canary_total", "Canaries seen, per namespace.", ["namespace"], registry=r
        )
        self.status = Gauge(
            "flagger_canary_status",
            "The last analysis outcome: 0 progressing, 1 not progressing, 2 failed.",
            _LABELS,
            registry=r,
        )
        self.weight = Gauge(
            "flagger_canary_weight",
            "Traffic weight of a workload: the primary's and the canary's.",
            ["workload", "namespace"],
            registry=r,
        )
        self.metric_analysis = Gauge(
            "flagger_canary_metric_analysis",
            "The last value of each analysis metric.",
            [*_LABELS, "metric"],
            registry=r,
        )
        self.duration = Histogram(
            "flagger_canary_duration_seconds",
            "Time one analysis step's checks took.",
            _LABELS,
            buckets=_GO_DEFAULT_BUCKETS,
            registry=r,
        )
        self.successes = Counter(
            "flagger_canary_successes", "Rollouts promoted.", _OUTCOME_LABELS, registry=r
        )
        self.failures = Counter(
            "flagger_canary_failures", "Rollouts rolled back.", _OUTCOME_LABELS, registry=r
        )


@dataclass
class RolloutMetrics:
    """The metric families and the bookkeeping that feeds them.

    ``mesh_provider``: the worker's default provider, for ``flagger_info``.
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    mesh_provider: str = DEFAULT_PROVIDER

    def __post_init__(self) -> None:
        self.own = _CoalmineFamilies(self.registry)
        self.flagger = _FlaggerFamilies(self.registry)
        self.flagger.info.labels(_version(), self.mesh_provider).set(1)
        self._rollouts: dict[tuple[str, str], _Rollout] = {}
        self._known: dict[tuple[str, str], _Known] = {}

    # --- observations (called by the interceptor after an activity returned) -----------------

    def observe(
        self, name: str, arg: Any, result: Any, run_id: str, elapsed: float | None = None
    ) -> None:
        """Update the metrics from one completed activity call (``elapsed``: its wall time)."""
        canary = getattr(arg, "canary", None)
        if isinstance(canary, Canary):
            self._remember(canary)
        if name == ActivityName.SET_WEIGHTS and isinstance(arg, SetWeightsInput):
            self._weights(arg, run_id)
        elif name == ActivityName.ADVANCE and isinstance(arg, AdvanceInput):
            self._weights(arg.weights, run_id)
            if arg.event is not None:
                self._event(arg.event, run_id)
        elif name == ActivityName.ANALYSE_STEP and isinstance(arg, StepAnalysisInput):
            self._step(arg, result, run_id, elapsed)
        elif name == ActivityName.CHECK_METRIC and isinstance(arg, MetricCheckInput):
            self._metric(arg.ref, result, run_id)
            if isinstance(result, MetricResult) and not result.passed:
                self._failed_check(arg.ref, run_id)
        elif name == ActivityName.CALL_WEBHOOK and isinstance(arg, WebhookInput):
            failed = isinstance(result, WebhookResult) and not result.ok
            if failed and arg.webhook.type in _CHECK_WEBHOOKS:
                self._failed_check(arg.ref, run_id)
        elif name == ActivityName.RECORD_EVENT and isinstance(arg, EventInput):
            self._event(arg, run_id)

    # --- the one recording path: each method writes both families ----------------------------

    def _remember(self, canary: Canary) -> None:
        self._known[(canary.name, canary.namespace)] = _Known(
            strategy=_FLAGGER_STRATEGY[canary.spec.analysis.strategy],
            skip_analysis=canary.spec.skip_analysis,
        )

    def _weights(self, arg: SetWeightsInput, run_id: str) -> None:
        ref = arg.ref
        self._rollout(ref, run_id)
        self._set_weights(ref, primary=arg.primary, canary=arg.canary)

    def _set_weights(self, ref: CanaryRef, *, primary: int, canary: int) -> None:
        self.own.weight.labels(*self._labels(ref)).set(canary)
        self.own.primary_weight.labels(*self._labels(ref)).set(primary)
        self.flagger.weight.labels(ref.primary, ref.namespace).set(primary)
        self.flagger.weight.labels(ref.target, ref.namespace).set(canary)

    def _step(
        self, arg: StepAnalysisInput, result: Any, run_id: str, elapsed: float | None
    ) -> None:
        self._rollout(arg.ref, run_id)
        if elapsed is not None:
            self.flagger.duration.labels(*self._flagger_labels(arg.ref)).observe(elapsed)
        if not isinstance(result, StepAnalysis):
            return
        for metric in result.metrics:
            self._metric(arg.ref, metric, run_id)
        failed = any(not m.passed for m in result.metrics) or result.refusing_webhook
        if failed:
            self._failed_check(arg.ref, run_id)  # a step counts once, however many failed

    def _metric(self, ref: CanaryRef, result: Any, run_id: str) -> None:
        self._rollout(ref, run_id)
        if not isinstance(result, MetricResult) or result.value is None:
            return
        self.own.metric_analysis.labels(*self._labels(ref), result.name).set(result.value)
        self.flagger.metric_analysis.labels(*self._flagger_labels(ref), result.name).set(
            result.value
        )

    def _failed_check(self, ref: CanaryRef, run_id: str) -> None:
        rollout = self._rollout(ref, run_id)
        rollout.failed_checks += 1
        self.own.failed_checks.labels(*self._labels(ref)).set(rollout.failed_checks)

    def _event(self, arg: EventInput, run_id: str) -> None:
        rollout = self._rollout(arg.ref, run_id)
        ref = arg.ref
        # The closing events are sent just before the phase is set to Succeeded/Failed, so
        # their reason, not their phase, says how the rollout ended.
        phase = _FINAL_REASONS.get(arg.reason, arg.phase)
        self._set_phase(ref, phase)
        self.own.weight.labels(*self._labels(ref)).set(arg.weight)
        self.flagger.weight.labels(ref.target, ref.namespace).set(arg.weight)
        if not phase.is_final or rollout.phase == phase:
            rollout.phase = phase
            return
        # The first closing event of a run counts it (a repeat of the same run does not).
        rollout.phase = phase
        self._closed(ref, phase, time.monotonic() - rollout.started)

    def _closed(self, ref: CanaryRef, phase: Phase, seconds: float) -> None:
        labels = self._labels(ref)
        known = self._known.get(labels, _Known())
        skipped = phase == Phase.SUCCEEDED and known.skip_analysis
        outcome = (
            *self._flagger_labels(ref),
            known.strategy,
            "skipped" if skipped else "completed",
        )
        self.own.duration.labels(*labels).observe(seconds)
        if phase == Phase.SUCCEEDED:
            self.own.status.labels(*labels).set(_STATUS_SUCCEEDED)
            self.own.promotions.labels(*labels).inc()
            self.flagger.successes.labels(*outcome).inc()
        else:
            self.own.status.labels(*labels).set(_STATUS_FAILED)
            self.own.rollbacks.labels(*labels).inc()
            self.flagger.failures.labels(*outcome).inc()

    def _set_phase(self, ref: CanaryRef, phase: Phase) -> None:
        for each in Phase:
            self.own.phase.labels(*self._labels(ref), each.value).set(1 if each == phase else 0)
        self.flagger.status.labels(*self._flagger_labels(ref)).set(flagger_status(phase))

    def _rollout(self, ref: CanaryRef, run_id: str) -> _Rollout:
        key = self._labels(ref)
        rollout = self._rollouts.get(key)
        if rollout is None or rollout.run_id != run_id:
            rollout = _Rollout(run_id=run_id, started=time.monotonic())
            self._rollouts[key] = rollout
            self.own.status.labels(*key).set(_STATUS_RUNNING)
            self.own.failed_checks.labels(*key).set(0)
            total = sum(1 for _, ns in self._rollouts if ns == ref.namespace)
            self.own.total.labels(ref.namespace).set(total)
            self.flagger.total.labels(ref.namespace).set(total)
        return rollout

    @staticmethod
    def _labels(ref: CanaryRef) -> tuple[str, str]:
        return (ref.name, ref.namespace)

    @staticmethod
    def _flagger_labels(ref: CanaryRef) -> tuple[str, str]:
        # Flagger labels by the target's name (cd.Spec.TargetRef.Name), not the Canary's.
        return (ref.target, ref.namespace)

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
        started = time.monotonic()
        result = await self.next.execute_activity(input)
        if input.args:
            info = activity.info()
            try:
                self._metrics.observe(
                    info.activity_type,
                    input.args[0],
                    result,
                    info.workflow_run_id or "",
                    elapsed=time.monotonic() - started,
                )
            except Exception:  # metrics must never fail a rollout's activity
                activity.logger.exception("could not record metrics for %s", info.activity_type)
        return result
