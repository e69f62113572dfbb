"""What the controller does about a decision: Temporal calls, and the few writes it makes itself.

Every action is idempotent, so a key handled twice (a retry, two replicas, a restart) does no
harm:

- a rollout is started with update-with-start on the deterministic workflow ID
  (`worker.rollout_ops.start_rollout`, the same call ``coalmine rollout start`` makes): with two
  controllers, or a controller and a CI job, the server starts one run and hands the revision to
  it; the same revision twice is a no-op in the workflow;
- a Canary whose spec changed at rest is re-initialized the same way, with the revision it
  already has: the run converges the primary, Services and routes and completes without
  analysis; the spec's hash is recorded (an annotation) only once the start was accepted, so a
  failure before it is retried;
- ``spec.suspend`` pauses the running rollout (Flagger skips a suspended Canary's runs, which
  freezes it where it is); lifting it resumes a rollout the controller paused, and only that;
- the Canary's status is written here only where no workflow runs for it (a refused spec, a
  missing target); otherwise the workflow writes it;
- the finalizer is added and removed with a merge patch carrying the ``resourceVersion`` read,
  so a concurrent change to the finalizers makes the write fail (and the key is retried);
- a deleted Canary with Flagger's finalizer is reverted by the ``CanaryFinalize`` workflow
  (durable: a controller killed half-way finds it running or done), and only when it completed
  is the finalizer removed.

The controller never changes a workload: its ServiceAccount may read Deployments, ConfigMaps and
Secrets, and write only Canaries (finalizers, one annotation, status) and Events.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import AlreadyExists, Conflict, NotFound
from activities.kubernetes.canary_status import condition_patch, timestamp
from worker.controller import _decide as d
from worker.kubecache import KubeConfig, request_json
from worker.rollout_ops import start_rollout
from worker.rollout_start import details_of, summary_of
from worker.settings import TemporalSettings
from workflows.finalize import FINALIZE_WORKFLOW_NAME, FinalizeInput, finalize_workflow_id
from workflows.model import (
    NewRevisionRequest,
    OperatorRequest,
    RolloutInput,
    RolloutStatus,
    workflow_id,
)
from workflows.spec import Canary

log = logging.getLogger("coalmine.controller")
Obj = dict[str, Any]

IDENTITY = "coalmine-controller"
"""Who the controller is in a rollout's history (starts, pauses, resumes)."""
SUSPEND_REASON = "spec.suspend is true"
URL_ANNOTATION = "coalmine.io/workflow-url"
"""The Web UI page of the Canary's rollouts (the workflow ID is stable, so is the link)."""
MERGE_PATCH = "application/merge-patch+json"
_CANARIES = "/apis/flagger.app/v1beta1/namespaces/{namespace}/canaries/{name}"
ACCEPT_TIMEOUT = timedelta(seconds=30)


def _meta(obj: Obj) -> Obj:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else {}


class Actions:
    """The controller's writes: to Temporal (``client``) and to the API server (``session``)."""

    def __init__(
        self,
        *,
        client: Client,
        temporal: TemporalSettings,
        config: KubeConfig,
        session: aiohttp.ClientSession,
        cluster: str,
    ) -> None:
        self._client = client
        self._temporal = temporal
        self._config = config
        self._session = session
        self._cluster = cluster
        self._handed: dict[str, str] = {}
        """Key → revision last handed to Temporal by this process (saves repeated calls)."""
        self._maybe_paused: set[str] | None = None
        """Keys whose rollout this controller may have paused; None: any (after a start)."""

    # --- dispatch ----------------------------------------------------------------------------

    async def apply(self, obj: Obj, action: d.Action) -> None:
        md = _meta(obj)
        namespace, name = str(md.get("namespace")), str(md.get("name"))
        key = f"{namespace}/{name}"
        if not md.get("deletionTimestamp"):
            await self._converge_finalizer(obj)
        if isinstance(action, d.Suspended):
            await self._suspend(key, namespace, name)
            return
        await self._lift_suspension(key, namespace, name)
        if isinstance(action, d.Rollout):
            await self._rollout(obj, action)
        elif isinstance(action, d.Reinitialize):
            await self._reinitialize(obj, action)
        elif isinstance(action, d.RecordSpec):
            await self._record(obj, action.canary)
        elif isinstance(action, d.Invalid):
            await self._report(obj, "Failed", "False", "InvalidSpec", action.message)
        elif isinstance(action, d.WaitForTarget):
            await self._report(obj, None, "Unknown", "TargetNotFound", action.message)
        elif isinstance(action, d.Finalize):
            await self._finalize(obj, action)

    async def deleted(self, namespace: str, name: str) -> None:
        """The Canary is gone (no finalizer held it): a running rollout is cancelled, which
        rolls it back — traffic to the primary, the canary to zero — so the primary serves."""
        self._handed.pop(f"{namespace}/{name}", None)
        wid = workflow_id(cluster=self._cluster, namespace=namespace, name=name)
        handle = self._client.get_workflow_handle(wid)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        if description.status is not None and description.status.name == "RUNNING":
            log.info("canary %s/%s deleted: cancelling its rollout %s", namespace, name, wid)
            await handle.cancel()

    # --- rollouts ------------------------------------------------------------------------------

    async def _rollout(self, obj: Obj, action: d.Rollout) -> None:
        canary, revision = action.canary, action.revision
        key = f"{canary.namespace}/{canary.name}"
        if self._handed.get(key) == revision:
            return  # handed already; the workflow writes lastAppliedSpec when it takes it
        target = f"{canary.spec.target_ref.name}.{canary.namespace}"
        reason = f"new revision {revision} of deployment {target}"
        existing = await self._start(canary, revision, reason)
        self._handed[key] = revision
        log.info(
            "canary %s: revision %s %s",
            key,
            revision,
            "handed to the running rollout" if existing else "rollout started",
        )
        await self._record(obj, canary)

    async def _reinitialize(self, obj: Obj, action: d.Reinitialize) -> None:
        canary = action.canary
        key = f"{canary.namespace}/{canary.name}"
        # The revision the Canary already has: the run converges what the spec describes and
        # completes without analysis. Running when the status said at rest (it lags), the
        # revision is handed to that run, where it is a no-op, and the new spec waits for the
        # rollout's end (its phase change brings the Canary back here).
        existing = await self._start(canary, action.revision, "Canary spec changed")
        self._handed[key] = action.revision
        if existing:
            log.info("canary %s: spec changed, but a rollout runs; applied when it ends", key)
            return
        log.info("canary %s: spec changed, re-initializing at revision %s", key, action.revision)
        await self._record(obj, canary)

    async def _start(self, canary: Canary, revision: str, reason: str) -> bool:
        """Start the rollout or hand the revision to the running one; True: it was running."""
        rollout = RolloutInput(
            canary=canary,
            cluster=self._cluster,
            revision=revision,
            requested_by=IDENTITY,
            reason=reason,
        )
        wid = workflow_id(cluster=self._cluster, namespace=canary.namespace, name=canary.name)
        started = await start_rollout(
            self._client,
            workflow_id=wid,
            task_queue=self._temporal.task_queue,
            rollout=rollout,
            summary=summary_of(canary, None),
            details=details_of(rollout, {}),
            revision_request=NewRevisionRequest(
                revision=revision, identity=IDENTITY, reason=reason
            ),
            accept_timeout=ACCEPT_TIMEOUT,
        )
        return bool(started.existing)

    async def _record(self, obj: Obj, canary: Canary) -> None:
        """The Web UI link and the hash of the spec now converged, on the Canary (one patch,
        skipped when both are there)."""
        wid = workflow_id(cluster=self._cluster, namespace=canary.namespace, name=canary.name)
        wanted = {
            URL_ANNOTATION: self._temporal.workflow_url(wid),
            d.SPEC_ANNOTATION: d.spec_hash(obj),
        }
        annotations = _meta(obj).get("annotations") or {}
        missing = {k: v for k, v in wanted.items() if annotations.get(k) != v}
        if missing:
            await self._patch(canary.namespace, canary.name, {"metadata": {"annotations": missing}})

    async def _running_status(self, namespace: str, name: str) -> RolloutStatus | None:
        wid = workflow_id(cluster=self._cluster, namespace=namespace, name=name)
        handle = self._client.get_workflow_handle(wid)
        try:
            description = await handle.describe()
            if description.status is None or description.status.name != "RUNNING":
                return None
            status = await handle.query("status", result_type=RolloutStatus)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return status if isinstance(status, RolloutStatus) else None

    async def _suspend(self, key: str, namespace: str, name: str) -> None:
        if self._maybe_paused is not None:
            self._maybe_paused.add(key)
        status = await self._running_status(namespace, name)
        if status is None or status.paused or status.phase.is_final:
            return
        wid = workflow_id(cluster=self._cluster, namespace=namespace, name=name)
        try:
            await self._client.get_workflow_handle(wid).execute_update(
                "pause", OperatorRequest(identity=IDENTITY, reason=SUSPEND_REASON)
            )
            log.info("canary %s suspended: rollout paused", key)
        except WorkflowUpdateFailedError as err:
            log.info("canary %s suspended; the rollout refused to pause: %s", key, err.cause)

    async def _lift_suspension(self, key: str, namespace: str, name: str) -> None:
        if self._maybe_paused is not None and key not in self._maybe_paused:
            return
        status = await self._running_status(namespace, name)
        if self._maybe_paused is not None:
            self._maybe_paused.discard(key)
        if status is None or not status.paused:
            return
        pauses = [a for a in status.actions if a.action == "pause"]
        if not pauses or pauses[-1].identity != IDENTITY:
            return  # an operator paused it: only they resume it
        wid = workflow_id(cluster=self._cluster, namespace=namespace, name=name)
        try:
            await self._client.get_workflow_handle(wid).execute_update(
                "resume", OperatorRequest(identity=IDENTITY, reason="spec.suspend is false")
            )
            log.info("canary %s no longer suspended: rollout resumed", key)
        except WorkflowUpdateFailedError as err:
            log.info("canary %s: the rollout refused to resume: %s", key, err.cause)

    def forget_pauses(self) -> None:
        """After the first pass over every Canary, only suspensions seen since can be lifted."""
        if self._maybe_paused is None:
            self._maybe_paused = set()

    # --- deletion ----------------------------------------------------------------------------

    async def _converge_finalizer(self, obj: Obj) -> None:
        wanted, present = d.wants_finalizer(obj), d.has_finalizer(obj)
        if wanted != present:
            await self._set_finalizer(obj, present=wanted)

    async def _set_finalizer(self, obj: Obj, *, present: bool) -> None:
        md = _meta(obj)
        finalizers = [f for f in md.get("finalizers") or [] if f != d.FINALIZER]
        if present:
            finalizers.append(d.FINALIZER)
        # With the resourceVersion read: a concurrent change of the list fails this write
        # (Conflict) instead of being overwritten; the key is then handled again.
        patch = {
            "metadata": {"finalizers": finalizers, "resourceVersion": md.get("resourceVersion")}
        }
        try:
            await self._patch(str(md.get("namespace")), str(md.get("name")), patch)
        except NotFound:
            return

    async def _finalize(self, obj: Obj, action: d.Finalize) -> None:
        md = _meta(obj)
        namespace, name = str(md.get("namespace")), str(md.get("name"))
        if action.canary is not None:
            await self._cancel_and_wait(namespace, name)
            wid = finalize_workflow_id(cluster=self._cluster, namespace=namespace, name=name)
            handle = await self._client.start_workflow(
                FINALIZE_WORKFLOW_NAME,
                FinalizeInput(canary=action.canary, cluster=self._cluster),
                id=wid,
                task_queue=self._temporal.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"{name}.{namespace}: revert on deletion",
            )
            await handle.result()  # raises if the revert failed: the key is retried
            log.info("canary %s/%s reverted on deletion", namespace, name)
        await self._set_finalizer(obj, present=False)

    async def _cancel_and_wait(self, namespace: str, name: str) -> None:
        """Cancel a running rollout and wait for its rollback, so the revert comes after it."""
        wid = workflow_id(cluster=self._cluster, namespace=namespace, name=name)
        handle = self._client.get_workflow_handle(wid)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        if description.status is None or description.status.name != "RUNNING":
            return
        await handle.cancel()
        with contextlib.suppress(WorkflowFailureError):  # rolled back, as asked
            await handle.result()

    # --- the Canary and its events --------------------------------------------------------------

    async def _report(
        self, obj: Obj, phase: str | None, status: str, reason: str, message: str
    ) -> None:
        """A refused spec or a missing target: on the Canary's status, and a Warning event."""
        md = _meta(obj)
        namespace, name = str(md.get("namespace")), str(md.get("name"))
        self._handed.pop(f"{namespace}/{name}", None)
        if phase is None and not (obj.get("status") or {}).get("phase"):
            phase = "Initializing"
        patch = condition_patch(
            obj,
            phase=phase,
            reason=phase or str((obj.get("status") or {}).get("phase")),
            status=status,
            message=message,
            now=datetime.now(UTC),
        )
        if patch is None:
            return  # said already
        log.warning("canary %s/%s: %s", namespace, name, message)
        await self._patch(namespace, name, patch, subresource="/status")
        await self.event(obj, reason=reason, message=message, warning=True)

    async def _patch(self, namespace: str, name: str, patch: Obj, *, subresource: str = "") -> None:
        path = _CANARIES.format(namespace=namespace, name=name) + subresource
        await request_json(
            self._session,
            "PATCH",
            self._config.url(path),
            body=patch,
            seconds=15,
            content_type=MERGE_PATCH,
        )

    async def event(self, obj: Obj, *, reason: str, message: str, warning: bool) -> None:
        """An Event on the Canary (one per distinct message: a repeat is not written again)."""
        md = _meta(obj)
        namespace, name = str(md.get("namespace")), str(md.get("name"))
        digest = hashlib.sha256(f"{reason}\x00{message}".encode()).hexdigest()[:16]
        now = timestamp(datetime.now(UTC))
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{digest}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "Canary",
                "name": name,
                "namespace": namespace,
                "uid": md.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": IDENTITY},
            "reportingComponent": IDENTITY,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
        }
        with contextlib.suppress(AlreadyExists, Conflict):
            await request_json(
                self._session,
                "POST",
                self._config.url(f"/api/v1/namespaces/{namespace}/events"),
                body=body,
                seconds=15,
            )
