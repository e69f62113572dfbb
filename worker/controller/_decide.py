"""What a Canary, as the cluster has it now, asks for: pure decisions, no I/O.

The controller holds no rollout state: it reads the Canary (spec and the status the workflow
wrote), its target and the config the target references from the watch cache, and decides one
`Action`. The comparison that starts a rollout is Flagger's: the target's revision (pod template
plus tracked ConfigMaps and Secrets) against the Canary's ``status.lastAppliedSpec``, which the
workflow writes as soon as it has a revision. Applying the same decision twice is harmless: a
start is an update-with-start on a deterministic workflow ID, and a revision the running
rollout already has is a no-op there.

A change of the Canary's own spec is not a new revision (``lastAppliedSpec`` hashes the target,
not the Canary), so, as in Flagger, it starts no analysis; but Flagger's scheduler converges the
primary, the Services and the routes from the current spec on every tick (``advanceCanary``:
``kubeRouter.Initialize``, ``canaryController.Initialize``, ``meshRouter.Reconcile`` before
``shouldAdvance``), so a new port, host or timeout applies within one interval. Here it applies at
once: the spec the cluster was last converged to is recorded as a hash in the
``coalmine.io/canary-spec`` annotation, and a Canary at rest (``Initialized`` or ``Succeeded``)
whose spec hash differs is `Reinitialize`d: the workflow runs again with the same revision, which
converges everything and completes without analysis. A rollout in progress keeps the spec it
started with; the change is applied when it comes to rest (its phase change is watched). A
``Failed`` Canary is left alone until its next revision: running the workflow again would retry
the revision that failed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activities.kubernetes.revision import (
    CONFIG_MAP_REF,
    compute_revision,
    config_refs,
    is_tracked,
)
from workflows.spec import Canary, SpecError, parse_canary

Obj = dict[str, Any]
FINALIZER = "finalizer.flagger.app"
"""Flagger's finalizer, added only with ``revertOnDeletion: true`` (as Flagger does)."""
SPEC_ANNOTATION = "coalmine.io/canary-spec"
"""Hash of the Canary spec the cluster was last converged to (written with each start)."""
AT_REST = frozenset({"Initialized", "Succeeded"})
"""Phases with no rollout running and the promoted revision serving: safe to re-initialize."""


@dataclass(frozen=True)
class Invalid:
    """The spec is refused: the status and a Warning event name the field and the fix."""

    message: str


@dataclass(frozen=True)
class WaitForTarget:
    """The target Deployment or DaemonSet does not exist (yet): say so, start nothing."""

    message: str


@dataclass(frozen=True)
class Suspended:
    """``spec.suspend``: no new rollout; a running one is paused (Flagger skips its runs)."""


@dataclass(frozen=True)
class Finalize:
    """Deleted with Flagger's finalizer: revert the target, then drop the finalizer."""

    canary: Canary | None
    """None when the spec cannot be read: the finalizer is dropped without a revert."""


@dataclass(frozen=True)
class Gone:
    """Deleted without a finalizer (or already finalized): nothing is left to do."""


@dataclass(frozen=True)
class UpToDate:
    """The target's revision is the one the workflow has (``lastAppliedSpec``)."""

    canary: Canary
    revision: str


@dataclass(frozen=True)
class Rollout:
    """A new revision (or a Canary never initialized): start, or hand it to the running one."""

    canary: Canary
    revision: str


@dataclass(frozen=True)
class Reinitialize:
    """The Canary's spec changed while no rollout runs: converge the primary, Services and routes
    to it (the workflow again, same revision, no analysis)."""

    canary: Canary
    revision: str


@dataclass(frozen=True)
class RecordSpec:
    """Up to date, but no spec hash recorded yet (a Canary from before the annotation): record
    it, so later changes are seen."""

    canary: Canary
    revision: str


Action = (
    Invalid
    | WaitForTarget
    | Suspended
    | Finalize
    | Gone
    | UpToDate
    | Rollout
    | Reinitialize
    | RecordSpec
)


def _meta(obj: Obj) -> Obj:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else {}


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def canary_document(obj: Obj) -> Obj:
    """The Canary as a document to validate: the API server's bookkeeping left out."""
    md = _meta(obj)
    return {
        "apiVersion": obj.get("apiVersion", "flagger.app/v1beta1"),
        "kind": obj.get("kind", "Canary"),
        "metadata": {"name": md.get("name"), "namespace": md.get("namespace")},
        "spec": _spec(obj),
    }


STEERING_FIELDS = frozenset(
    {"suspend", "revertOnDeletion", "skipAnalysis", "analysis", "canaryAnalysis",
     "progressDeadlineSeconds"}
)  # fmt: skip
"""Spec fields that steer rollouts but build nothing in the cluster: a change of one alone needs
no re-initialization (Flagger, too, only reschedules its next run)."""


ROUTED_ANALYSIS_FIELDS = ("match",)
"""Fields of the analysis the routes carry at rest too (A/B testing's matched route, as
Flagger's routers render it on every run): a change of one re-initializes."""


def spec_hash(obj: Obj) -> str:
    """A stable hash of what the Canary's spec builds (primary, Services, routes, autoscaler):
    the spec without the `STEERING_FIELDS`, plus the `ROUTED_ANALYSIS_FIELDS` that are set (a
    Canary without them hashes as before they counted); key order and formatting do not
    count."""
    spec = _spec(obj)
    built = {k: v for k, v in spec.items() if k not in STEERING_FIELDS}
    analysis = spec.get("analysis") or spec.get("canaryAnalysis")
    if isinstance(analysis, dict):
        for name in ROUTED_ANALYSIS_FIELDS:
            if analysis.get(name):
                built[f"analysis.{name}"] = analysis[name]
    text = json.dumps(built, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_spec(obj: Obj) -> str | None:
    annotations = _meta(obj).get("annotations")
    value = annotations.get(SPEC_ANNOTATION) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def _phase(obj: Obj) -> str | None:
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, dict) else None
    return phase if isinstance(phase, str) else None


def came_to_rest_with_new_spec(before: Obj, after: Obj) -> bool:
    """The status moved into a phase at rest while the spec differs from the one recorded: a
    spec change made during the rollout is applied now."""
    phase = _phase(after)
    if phase not in AT_REST or _phase(before) == phase:
        return False
    recorded = recorded_spec(after)
    return recorded is not None and recorded != spec_hash(after)


def read(
    obj: Obj, min_interval_seconds: float, mesh_provider: str | None = None
) -> Canary | Invalid:
    """The validated Canary, or why not (every problem, each naming its field and fix).

    A Canary without ``spec.provider`` gets ``mesh_provider``, the cluster-wide default (Flagger's
    ``-mesh-provider``), before it is validated: it is judged by the rules of the provider that
    will route it (a ``stepWeight`` under a ``kubernetes`` default is refused here, before
    anything changes), and the rollout carries the provider in every activity input, so the
    worker's own default never has to agree with this one. The Canary object is not changed.
    """
    document = canary_document(obj)
    defaulted = bool(mesh_provider) and not document["spec"].get("provider")
    if defaulted:
        document["spec"] = {**document["spec"], "provider": mesh_provider}
    try:
        return parse_canary(document, min_interval_seconds=min_interval_seconds)
    except SpecError as err:
        note = (
            f" (spec.provider is unset, so the cluster-wide default {mesh_provider!r} applies: "
            "the controller's --mesh-provider, COALMINE_MESH_PROVIDER)"
            if defaulted
            else ""
        )
        return Invalid(f"{err}{note}")


def wants_finalizer(obj: Obj) -> bool:
    return _spec(obj).get("revertOnDeletion") is True and not _meta(obj).get("deletionTimestamp")


def has_finalizer(obj: Obj) -> bool:
    return FINALIZER in (_meta(obj).get("finalizers") or [])


Lookup = Callable[[str, str], Obj | None]
"""(kind plural, name) → the object in the Canary's namespace from the cache, or None."""


def target_plural(kind: str) -> str:
    """The resource of a ``targetRef.kind`` (validated: Deployment or DaemonSet)."""
    return "daemonsets" if kind == "DaemonSet" else "deployments"


def target_revision(target: Obj, lookup: Lookup) -> str:
    """The target's revision, computed as the workflow's activities compute it."""
    template = (_spec(target)).get("template") or {}
    configs: dict[str, Obj | None] = {}
    for ref in config_refs(template):
        kind, name = ref.split("/", 1)
        obj = lookup("configmaps" if kind == CONFIG_MAP_REF else "secrets", name)
        if obj is not None and not is_tracked(kind, obj):
            continue
        configs[ref] = obj
    return compute_revision(target, configs)


def decide(
    obj: Obj, lookup: Lookup, *, min_interval_seconds: float, mesh_provider: str | None = None
) -> Action:
    """The one thing to do for this Canary now (``mesh_provider``: the cluster-wide default
    provider for a Canary that names none; None leaves it to the worker's)."""
    if _meta(obj).get("deletionTimestamp"):
        if not has_finalizer(obj):
            return Gone()
        canary = read(obj, min_interval_seconds, mesh_provider)
        return Finalize(canary if isinstance(canary, Canary) else None)
    if _spec(obj).get("suspend") is True:
        return Suspended()
    return _revision_action(obj, lookup, min_interval_seconds, mesh_provider)


def _revision_action(
    obj: Obj, lookup: Lookup, min_interval_seconds: float, mesh_provider: str | None
) -> Action:
    canary = read(obj, min_interval_seconds, mesh_provider)
    if isinstance(canary, Invalid):
        return canary
    namespace, ref = canary.namespace, canary.spec.target_ref
    target = lookup(target_plural(ref.kind), ref.name)
    if target is None:
        return WaitForTarget(
            f"Waiting for {ref.kind} {ref.name}.{namespace}: spec.targetRef names a "
            f"{ref.kind} that does not exist; create it (or fix targetRef.name and "
            "targetRef.kind) and the Canary initializes"
        )
    revision = target_revision(target, lookup)
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    if status and status.get("lastAppliedSpec") == revision and status.get("phase"):
        return _spec_action(obj, canary, revision)
    return Rollout(canary, revision)


def _spec_action(obj: Obj, canary: Canary, revision: str) -> Action:
    """The revision is the one the workflow has: what about the Canary's own spec?"""
    recorded = recorded_spec(obj)
    if recorded is None:
        return RecordSpec(canary, revision)
    if recorded != spec_hash(obj) and _phase(obj) in AT_REST:
        return Reinitialize(canary, revision)
    return UpToDate(canary, revision)
