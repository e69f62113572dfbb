"""What a Canary means that its text does not say: Flagger's quiet rules, spelt out.

Part of the Canary spec (``workflows.spec`` re-exports the public names). The models read a
document as Flagger's scheduler does (pkg/controller/scheduler.go, scheduler_metrics.go and
Canary's ``Get…`` helpers), and some of those readings surprise: a metric without a threshold is
compared with 0, a ``maxWeight`` beside ``stepWeights`` is not read, an interval under 10s runs
every 10s. They are not errors (Flagger accepts them, and so must a drop-in), but an author
checking a document (``coalmine canary validate``) should see them: ``flagger_notes`` lists each
as a ``SpecProblem`` with the field path as written and what it is taken to mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflows._base import duration_seconds, format_duration
from workflows.spec_analysis import REQUEST_SUCCESS_RATE, V1ALPHA3_METRIC_NAMES
from workflows.spec_errors import SpecProblem

__all__ = ["FLAGGER_MIN_INTERVAL_SECONDS", "analysis_block", "flagger_notes", "interval_seconds"]

FLAGGER_MIN_INTERVAL_SECONDS = 10.0
"""Flagger's floor for the analysis interval (``Canary.GetAnalysisInterval``)."""


def analysis_block(document: Mapping[Any, Any]) -> tuple[str, Mapping[Any, Any]] | None:
    """(``analysis`` or ``canaryAnalysis``, its mapping), when exactly one is a mapping."""
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        return None
    found = [
        (k, spec[k]) for k in ("analysis", "canaryAnalysis") if isinstance(spec.get(k), Mapping)
    ]
    return found[0] if len(found) == 1 else None


def interval_seconds(value: Any) -> float | None:
    """Seconds of a duration string as written, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return duration_seconds(value)
    except ValueError:
        return None


def flagger_notes(
    document: Mapping[Any, Any], *, min_interval_seconds: float = 0.0
) -> list[SpecProblem]:
    """What the document is taken to mean where that is not what it says (see the module)."""
    found = analysis_block(document)
    if found is None:
        return []
    key, analysis = found
    base = f"spec.{key}"
    notes = _interval_note(base, analysis, min_interval_seconds)
    notes += _weight_notes(base, analysis)
    metrics = analysis.get("metrics")
    for i, metric in enumerate(metrics if isinstance(metrics, list) else []):
        if isinstance(metric, Mapping):
            notes += _metric_note(f"{base}.metrics[{i}]", metric)
    return notes


def _interval_note(base: str, analysis: Mapping[Any, Any], floor: float) -> list[SpecProblem]:
    written = analysis.get("interval")
    seconds = interval_seconds(written)
    if floor <= 0 or seconds is None or seconds >= floor:
        return []
    return [
        SpecProblem(
            f"{base}.interval",
            f"{written} is under the {format_duration(floor)} minimum: the analysis runs every "
            f"{format_duration(floor)}, as Flagger's would",
        )
    ]


def _weight_notes(base: str, analysis: Mapping[Any, Any]) -> list[SpecProblem]:
    steps = analysis.get("stepWeights")
    if not isinstance(steps, list) or not steps:
        return []
    notes: list[SpecProblem] = []
    if analysis.get("maxWeight"):
        notes.append(
            SpecProblem(
                f"{base}.maxWeight",
                f"not read when stepWeights is set: the last step ({steps[-1]}) is the maximum, "
                "as in Flagger; remove maxWeight to say so",
            )
        )
    step = analysis.get("stepWeight")
    if step:
        notes.append(
            SpecProblem(
                f"{base}.stepWeight",
                f"given with stepWeights: traffic moves in steps of {step} up to {steps[-1]} (the "
                "last of stepWeights), as in Flagger; keep one of the two to say so",
            )
        )
    return notes


def _metric_note(path: str, metric: Mapping[Any, Any]) -> list[SpecProblem]:
    if metric.get("thresholdRange") is not None or metric.get("threshold") is not None:
        return []
    custom = any(metric.get(k) is not None for k in ("templateRef", "query"))
    name = V1ALPHA3_METRIC_NAMES.get(str(metric.get("name")), metric.get("name"))
    if not custom and name == REQUEST_SUCCESS_RATE:
        meaning = "at least 0, so it always passes"
    else:
        meaning = "at most 0, so any positive value fails the check"
    return [
        SpecProblem(
            f"{path}.thresholdRange",
            f"missing: the value must be {meaning} (Flagger compares with 0 too); add "
            "thresholdRange: {min: …} or {max: …}",
        )
    ]
