"""What a rollout report shows, as plain frozen dataclasses: the timeline of one rollout.

Built from the workflow history alone (`worker.report.timeline`), so a report can be drawn for a
rollout that ended a year ago as well as for one still running; the Prometheus series beside it
(`worker.report.series`) are optional. Nothing here knows about Temporal or matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from workflows.spec import Canary


class Outcome(StrEnum):
    """How the rollout (the run shown) ended, or that it has not."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled back"
    RUNNING = "running"
    NOTHING_TO_ROLL_OUT = "nothing to roll out"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"
    TIMED_OUT = "timed out"
    CONTINUED = "continued as new"


@dataclass(frozen=True)
class WeightChange:
    """Traffic moved: the canary's share (of all, or of the matched users for A/B testing)."""

    time: datetime
    canary: int
    primary: int
    mirrored: bool = False


@dataclass(frozen=True)
class Iteration:
    """One counted iteration of A/B testing or Blue/Green (Flagger's ``canary iteration n/m``)."""

    time: datetime
    number: int
    wanted: int | None = None


@dataclass(frozen=True)
class Judgement:
    """The canary-versus-primary judge's numbers for one check, when it ran (read defensively:
    histories from before the judge carry none)."""

    verdict: str
    p_value: float | None = None
    shift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    canary_n: int | None = None
    primary_n: int | None = None
    canary_median: float | None = None
    primary_median: float | None = None
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == "Pass"


@dataclass(frozen=True)
class CheckPoint:
    """One metric check of one analysis step, against its threshold range."""

    step: int
    time: datetime
    weight: int
    name: str
    value: float | None
    min: float | None
    max: float | None
    outcome: str
    message: str
    judgement: Judgement | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "ok"


@dataclass(frozen=True)
class WebhookCall:
    """One webhook call (load test, gate, rollback hook…) and its answer."""

    time: datetime
    name: str
    type: str
    ok: bool
    message: str = ""
    status_code: int | None = None
    step: int | None = None


@dataclass(frozen=True)
class Action:
    """An operator's request as it reached the rollout: who, why, and by which way."""

    time: datetime
    action: str
    identity: str
    reason: str | None = None
    via: str = "update"
    """``update`` (the coalmine command), ``signal`` (the Web UI) or ``start``."""


@dataclass(frozen=True)
class Pause:
    start: datetime
    end: datetime | None
    identity: str
    reason: str | None = None


@dataclass(frozen=True)
class Event:
    """A rollout event as ``kubectl describe canary`` lists it."""

    time: datetime
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Decisive:
    """What decided a rollback: the last failed check, the abort, the deadline or the hook."""

    kind: str
    """``metric``, ``webhook``, ``operator``, ``deadline`` or ``other``."""
    name: str
    message: str
    time: datetime | None = None
    weight: int | None = None
    value: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class MetricBand:
    """A metric of the Canary and its allowed range."""

    name: str
    min: float | None
    max: float | None
    interval: str
    builtin: bool


@dataclass(frozen=True)
class RolloutTimeline:
    """One rollout, read from its history."""

    workflow_id: str
    run_ids: tuple[str, ...]
    name: str
    namespace: str
    cluster: str
    strategy: str
    revision: str | None
    requested_by: str | None
    reason: str | None
    started: datetime
    ended: datetime | None
    outcome: Outcome
    message: str
    canary: Canary | None
    metrics: tuple[MetricBand, ...]
    weights: tuple[WeightChange, ...] = ()
    iterations: tuple[Iteration, ...] = ()
    checks: tuple[CheckPoint, ...] = ()
    webhooks: tuple[WebhookCall, ...] = ()
    actions: tuple[Action, ...] = ()
    pauses: tuple[Pause, ...] = ()
    events: tuple[Event, ...] = ()
    decisive: Decisive | None = None

    @property
    def display(self) -> str:
        return f"{self.name}.{self.namespace}"

    @property
    def run_id(self) -> str:
        """The run the report is of (the last of a continue-as-new chain)."""
        return self.run_ids[-1] if self.run_ids else ""

    @property
    def iterative(self) -> bool:
        return self.strategy in ("ab-testing", "blue-green", "blue-green-mirroring")

    @property
    def steps(self) -> int:
        return max((c.step for c in self.checks), default=0)

    @property
    def max_weight(self) -> int:
        return max((w.canary for w in self.weights), default=0)

    def checks_of(self, metric: str) -> list[CheckPoint]:
        return [c for c in self.checks if c.name == metric]

    def metric_names(self) -> list[str]:
        """Every metric of the spec, then any checked that the spec does not name (in order)."""
        names = [m.name for m in self.metrics]
        names += [c.name for c in self.checks if c.name not in names]
        return list(dict.fromkeys(names))
