"""The Canary's ``/status``, kept in Flagger's shape so Flagger users' tools keep working.

``kubectl get canaries`` (STATUS, WEIGHT, LASTTRANSITIONTIME), ``kubectl describe canary``,
``kubectl wait canary/NAME --for=condition=promoted`` and the Argo CD / Flux health checks all read
the same fields Flagger writes (``pkg/apis/flagger/v1beta1/status.go``): ``phase``,
``canaryWeight``, ``failedChecks``, ``iterations``, ``lastAppliedSpec``, ``lastPromotedSpec``,
``trackedConfigs``, ``lastTransitionTime`` and one condition, ``Promoted``, whose status, reason
and message follow Flagger's ``MakeStatusConditions`` (``pkg/canary/status.go``): the reason is the
phase, the status ``True`` once initialized or succeeded, ``False`` when failed, ``Unknown`` while
anything is under way; its ``lastTransitionTime`` moves only when the status does.

The activity `CanaryStatusActivities.sync_canary_status` reads the Canary and merge-patches its
``/status`` only where it differs: a retry, or a replay after a crash, writes nothing twice.
The worker remembers the Canary as its last status write left it (``resourceVersion``, uid and
status), so the next write — every analysis step's — is one merge patch guarded by that
``resourceVersion``, with no read first: if anything changed the Canary since (another writer,
another worker, a recreated Canary), the API server refuses the patch with a conflict and the
write starts again from a fresh read. When the remembered status already says what is wanted,
the Canary is read to be sure, as before. A
Canary that is not in the cluster (a rollout started from CI with a file) is no error: the answer
says so and the workflow stops asking. The workflow owns the status; the controller writes it only
for a Canary no workflow runs for (an invalid spec, a missing target), through `condition_patch`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from kubernetes import client
from temporalio import activity

from activities.errors import Conflict, NotFound, api_errors
from activities.kubernetes.client import REQUEST_TIMEOUT
from activities.kubernetes.last_writes import LastWrites
from activities.kubernetes.resources import CANARY, Obj, Resources
from activities.kubernetes.revision import config_content, read_configs, read_target
from workflows.activity_api import ActivityName, CanaryStatusInput, CanaryStatusResult
from workflows.model import Phase

FLAGGER_GROUP = CANARY.group
FLAGGER_VERSION = CANARY.version
CANARIES = CANARY.plural
PROMOTED = "Promoted"
"""The one condition type Flagger's Canary has."""

_UNDER_WAY = "Unknown"


def promoted_condition_of(phase: str, kind: str = "Deployment") -> tuple[str, str]:
    """(status, message) of the ``Promoted`` condition in ``phase``, worded as Flagger's."""
    table: dict[str, tuple[str, str]] = {
        Phase.INITIALIZING: (_UNDER_WAY, f"New {kind} detected, starting initialization."),
        Phase.INITIALIZED: ("True", f"{kind} initialization completed."),
        Phase.WAITING: (_UNDER_WAY, "Waiting for approval."),
        Phase.WAITING_PROMOTION: (_UNDER_WAY, "Waiting for approval."),
        Phase.PROGRESSING: (_UNDER_WAY, "New revision detected, progressing canary analysis."),
        Phase.PROMOTING: (
            _UNDER_WAY,
            "Canary analysis completed, starting primary rolling update.",
        ),
        Phase.FINALISING: (
            _UNDER_WAY,
            "Canary analysis completed, routing all traffic to primary.",
        ),
        Phase.SUCCEEDED: ("True", "Canary analysis completed successfully, promotion finished."),
        Phase.FAILED: ("False", f"Canary analysis failed, {kind} scaled to zero."),
    }
    return table.get(phase, table[Phase.INITIALIZING])


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, to the second, as ``metav1.Time`` serializes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def promoted_condition(
    live_status: Obj, *, status: str, reason: str, message: str, now: datetime
) -> Obj:
    """The ``Promoted`` condition to write: its transition time kept while its status is."""
    current = next(
        (c for c in live_status.get("conditions") or [] if c.get("type") == PROMOTED), None
    )
    if (
        current is not None
        and current.get("status") == status
        and current.get("reason") == reason
        and current.get("message") == message
    ):
        return dict(current)
    moment = timestamp(now)
    transition = moment
    if current is not None and current.get("status") == status:
        transition = str(current.get("lastTransitionTime") or moment)
    return {
        "type": PROMOTED,
        "status": status,
        "lastUpdateTime": moment,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }


def status_fields(input: CanaryStatusInput, tracked: dict[str, str] | None) -> Obj:
    """The Flagger status fields the workflow decides (everything but the condition)."""
    fields: Obj = {
        "phase": input.phase.value,
        "canaryWeight": input.canary_weight,
        "failedChecks": input.failed_checks,
        "iterations": input.iterations,
    }
    if input.revision:
        fields["lastAppliedSpec"] = input.revision
    if input.last_promoted_revision:
        fields["lastPromotedSpec"] = input.last_promoted_revision
    if input.last_transition_time is not None:
        fields["lastTransitionTime"] = timestamp(input.last_transition_time)
    if tracked is not None:
        fields["trackedConfigs"] = tracked
    return fields


def changed_fields(live_status: Obj, wanted: Obj) -> Obj:
    """The part of ``wanted`` that ``live_status`` does not hold already (empty: no write)."""
    return {key: value for key, value in wanted.items() if live_status.get(key) != value}


def config_checksums(configs: dict[str, Obj | None]) -> dict[str, str]:
    """``trackedConfigs``: ``configmap/<name>`` / ``secret/<name>`` → checksum of its data."""
    sums = {}
    for ref, obj in sorted(configs.items()):
        content = json.dumps(config_content(obj), sort_keys=True, separators=(",", ":"))
        sums[ref] = hashlib.sha256(content.encode()).hexdigest()[:16]
    return sums


def condition_patch(
    live: Obj, *, phase: str | None, reason: str, status: str, message: str, now: datetime
) -> Obj | None:
    """A ``/status`` merge patch setting the Promoted condition (and ``phase`` when given).

    For what the controller reports itself — an invalid spec, a missing target — when no
    workflow runs for the Canary. None when the live status already says it.
    """
    live_status = live.get("status") or {}
    condition = promoted_condition(
        live_status, status=status, reason=reason, message=message, now=now
    )
    wanted: Obj = {"conditions": [condition]}
    if phase is not None:
        wanted["phase"] = phase
        wanted.setdefault("canaryWeight", live_status.get("canaryWeight", 0))
        wanted.setdefault("failedChecks", live_status.get("failedChecks", 0))
        wanted.setdefault("iterations", live_status.get("iterations", 0))
        if live_status.get("phase") != phase:
            wanted["lastTransitionTime"] = timestamp(now)
    changed = changed_fields(live_status, wanted)
    return {"status": changed} if changed else None


REMEMBERED = 4096
"""Canaries whose last status write a worker remembers (the least recently written beyond)."""


class CanaryStatusActivities:
    """The activity that writes the Canary's status; ``api_client`` injected."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._res = Resources(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._written = LastWrites(REMEMBERED)

    @activity.defn(name=ActivityName.SYNC_CANARY_STATUS)
    def sync_canary_status(self, input: CanaryStatusInput) -> CanaryStatusResult:
        """Merge-patch the Canary's ``/status`` to the workflow's (no write when it is so)."""
        return self.sync(input)[0]

    def sync(self, input: CanaryStatusInput) -> tuple[CanaryStatusResult, str | None]:
        """`sync_canary_status`, and the Canary's ``metadata.uid`` (None when the Canary is not
        in the cluster), so a caller recording an event on it need not read it again."""
        ref = input.ref
        key = (ref.namespace, ref.name)
        remembered = self._written.get(key)
        tracks = input.phase in (Phase.INITIALIZED, Phase.SUCCEEDED)
        tracked = None
        if remembered is not None:
            if tracks:
                tracked = self._tracked_configs(ref.namespace, ref.target)
            done = self._write(input, tracked, remembered, guarded=True)
            if done is not None:
                return done
        live = self._res.get(CANARY, ref.namespace, ref.name)
        if live is None:
            self._forget(key)
            return CanaryStatusResult(exists=False), None
        if tracks and remembered is None:  # read once, and only for a Canary in the cluster
            tracked = self._tracked_configs(ref.namespace, ref.target)
        done = self._write(input, tracked, live, guarded=False)
        assert done is not None  # unguarded: always an answer
        return done

    def _write(
        self,
        input: CanaryStatusInput,
        tracked: dict[str, str] | None,
        live: Obj,
        *,
        guarded: bool,
    ) -> tuple[CanaryStatusResult, str | None] | None:
        """Patch ``live``'s status to the workflow's. ``guarded``: ``live`` is the remembered
        Canary, so the patch carries its ``resourceVersion``; None when that is not enough to
        know (nothing to write, or the Canary changed since): read it and write again."""
        ref = input.ref
        metadata = live.get("metadata") or {}
        uid = str(metadata.get("uid") or "") or None
        target_kind = str(((live.get("spec") or {}).get("targetRef") or {}).get("kind") or "")
        live_status: Obj = live.get("status") or {}
        wanted = status_fields(input, tracked)
        state, message = promoted_condition_of(input.phase, target_kind or "Deployment")
        wanted["conditions"] = [
            promoted_condition(
                live_status,
                status=state,
                reason=input.phase.value,
                message=message,
                now=datetime.now(UTC),
            )
        ]
        changed = changed_fields(live_status, wanted)
        if not changed:
            # Remembered: someone may have written since, so only a read can tell.
            return None if guarded else (CanaryStatusResult(exists=True), uid)
        patch: Obj = {"status": changed}
        if guarded:
            patch["metadata"] = {"resourceVersion": metadata.get("resourceVersion")}
        try:
            written = self.patch_status(ref.namespace, ref.name, patch)
        except (Conflict, NotFound):
            self._forget((ref.namespace, ref.name))
            if guarded:
                return None
            raise
        self._remember((ref.namespace, ref.name), written)
        return CanaryStatusResult(exists=True, written=True), uid

    def _remember(self, key: tuple[str, str], canary: Obj) -> None:
        metadata = canary.get("metadata") or {}
        if not metadata.get("resourceVersion"):
            return
        kept = {
            "metadata": {k: metadata.get(k) for k in ("uid", "resourceVersion")},
            "spec": {"targetRef": (canary.get("spec") or {}).get("targetRef") or {}},
            "status": canary.get("status") or {},
        }
        self._written.put(key, kept)

    def _forget(self, key: tuple[str, str]) -> None:
        self._written.forget(key)

    def patch_status(self, namespace: str, name: str, patch: Obj) -> Obj:
        """Merge-patch the ``/status`` subresource (``CustomObjectsApi`` sends merge-patch);
        the Canary as written."""
        with api_errors():
            response = self._custom.patch_namespaced_custom_object_status(
                FLAGGER_GROUP,
                FLAGGER_VERSION,
                namespace,
                CANARIES,
                name,
                patch,
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
            )
        data = response.data
        written: Obj = json.loads(data) if data else {}
        return written

    def _tracked_configs(self, namespace: str, target: str) -> dict[str, str] | None:
        deployment = read_target(self._res, namespace, target)  # a Deployment or a DaemonSet
        if deployment is None:
            return None
        configs = read_configs(self._res, namespace, deployment)
        return config_checksums(configs) or None


__all__ = [
    "CANARIES",
    "CANARY",
    "FLAGGER_GROUP",
    "FLAGGER_VERSION",
    "PROMOTED",
    "CanaryStatusActivities",
    "condition_patch",
    "promoted_condition",
    "promoted_condition_of",
    "status_fields",
]
