"""The Kubernetes activities: read the revision, initialize, scale, wait for readiness, promote.

Each is synchronous (the official client is; the worker runs them on a thread pool) and
idempotent: it reads the cluster, then converges it (`resources.converge`), so a retry or a
replay after a worker crash repeats reads and writes nothing already written. The objects they
write are built by the pure functions of `objects`; the API client is injected.

What retrying cannot fix is raised as a non-retryable `activities.errors.RolloutError`
(``TargetNotFound``, ``InvalidSpec``…); API failures as retryable `KubernetesError`.
"""

from __future__ import annotations

import time

from kubernetes import client
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.errors import (
    InvalidSpec,
    NotFound,
    PrimaryNotFound,
    RevisionMismatch,
    TargetNotFound,
)
from activities.kubernetes import daemonsets, objects
from activities.kubernetes.readiness import readiness
from activities.kubernetes.resources import (
    CONFIG_MAP,
    DAEMON_SET,
    DEPLOYMENT,
    HPA,
    SECRET,
    SERVICE,
    CanaryOwner,
    Kind,
    Obj,
    Resources,
    annotations_of,
    converge,
    is_subset,
)
from activities.kubernetes.revision import (
    SECRET_REF,
    ConfigRefs,
    compute_revision,
    read_configs,
    read_target,
)
from workflows.activity_api import (
    ActivityName,
    InitializeInput,
    InitializeResult,
    PromoteInput,
    ReadRevisionInput,
    ReadyResult,
    RevisionInfo,
    ScaleCanaryInput,
    ScaleResult,
    WaitReadyInput,
)
from workflows.spec import Canary

AUTOSCALING_VERSIONS = ("autoscaling/v2", "autoscaling/v2beta2", "autoscaling/v2beta1")
"""autoscalerRef versions accepted; all are read and written as autoscaling/v2 (v2beta1 and
v2beta2 are no longer served since Kubernetes 1.26, and v2 holds all their fields)."""


class KubernetesActivities:
    """Activities on the target Deployment, its primary, HPA, Services and config copies.

    ``api_client``: the Kubernetes client (see `build_api_client`), shared by every thread.
    ``poll_interval``: seconds between two reads while `wait_ready` waits.
    """

    def __init__(self, api_client: client.ApiClient, *, poll_interval: float = 0.5) -> None:
        self._res = Resources(api_client)
        self._poll_interval = poll_interval

    # --- activities ------------------------------------------------------------------------

    @activity.defn(name=ActivityName.READ_REVISION)
    def read_revision(self, input: ReadRevisionInput) -> RevisionInfo:
        """The target's revision and the one the primary last received (read-only)."""
        ref = input.ref
        # The input names no kind (rollouts started before DaemonSets were): the target's own.
        target = read_target(self._res, ref.namespace, ref.target)
        if target is None:
            raise TargetNotFound(
                f"deployment {ref.target}.{ref.namespace} not found: the Canary's targetRef must "
                "name an existing Deployment or DaemonSet"
            )
        revision = compute_revision(target, read_configs(self._res, ref.namespace, target))
        primary = self._res.get(_kind_of(target), ref.namespace, ref.primary)
        promoted = annotations_of(primary).get(objects.REVISION_ANNOTATION)
        return RevisionInfo(revision=revision, promoted_revision=promoted)

    @activity.defn(name=ActivityName.INITIALIZE)
    def initialize(self, input: InitializeInput) -> InitializeResult:
        """Create or converge the primary, its HPA and the Services; on the first run, switch
        the apex Service to the primary and scale the target to zero.

        ``input.stage``: ``prepare`` leaves a not yet initialized apex Service alone and scales
        nothing, ``switch`` only does the switch (the workflow calls it once the primary is
        ready, so the apex Service never selects pods that are not ready); None does all of it.

        An existing primary is never changed here (only promotion changes what production
        runs); nor are the ``-primary`` config copies. A primary Flagger built (no Coalmine
        revision on it) is adopted: already initialized, with no revision known as promoted,
        so the target's revision is analysed. "First" is recorded on the primary only once the
        target is at zero, so a retry after a crash in between still scales it down.
        """
        canary = input.canary
        namespace, name = canary.namespace, canary.spec.target_ref.name
        kind = _kind(canary)
        target = self._target(namespace, name, kind)
        label, value = objects.selector_label(target)
        hpa = self._autoscaler(canary)  # validated before anything is written
        if kind is DAEMON_SET:
            daemonsets.check_strategy(target)
        owner = self._owner(canary)
        primary = self._res.get(kind, namespace, name + objects.PRIMARY_SUFFIX)
        if primary is None:
            configs = read_configs(self._res, namespace, target)
            revision = compute_revision(target, configs)
            copied = self._sync_configs(canary, configs, owner)
            build = (
                daemonsets.primary_daemonset if kind is DAEMON_SET else objects.primary_deployment
            )
            wanted = build(canary, target, copied, revision)
            _, primary = converge(self._res, kind, wanted, update=False, owner=owner)
        elif objects.built_by_flagger(primary):
            self._mark_initialized(kind, namespace, name)
            primary = {**primary, "metadata": objects.initialized_meta(primary)}
        first = objects.INITIALIZED_ANNOTATION not in annotations_of(primary)
        if input.stage != "switch":
            if hpa is not None:
                wanted_hpa = objects.primary_hpa(canary, hpa)
                converge(self._res, HPA, wanted_hpa, update=False, whole_spec=True, owner=owner)
            apex, *others = objects.services(canary, label, value, target)
            wanted_services = others if first and input.stage == "prepare" else [apex, *others]
            for service in wanted_services:
                self._converge_service(service, owner)
        if first and input.stage != "prepare":
            if input.stage == "switch":
                self._converge_service(objects.services(canary, label, value, target)[0], owner)
            self._scale_target(canary, 0)
            self._mark_initialized(kind, namespace, name)
        promoted = annotations_of(primary).get(objects.REVISION_ANNOTATION)
        return InitializeResult(first_initialization=first, promoted_revision=promoted)

    @activity.defn(name=ActivityName.SCALE_CANARY)
    def scale_canary(self, input: ScaleCanaryInput) -> ScaleResult:
        """Scale the target to ``replicas``; None: its own, else the HPA minimum, else 1."""
        canary = input.canary
        replicas = input.replicas
        if daemonsets.is_daemonset(canary):
            return ScaleResult(replicas=self._scale_target(canary, replicas))
        if replicas is None and input.like_primary:
            replicas = self._primary_replicas(canary)
        if replicas is None:
            replicas = self._default_replicas(canary)
        self._scale_target(canary, replicas)
        return ScaleResult(replicas=replicas)

    @activity.defn(name=ActivityName.WAIT_READY)
    def wait_ready(self, input: WaitReadyInput) -> ReadyResult:
        """Poll the Deployment until its rollout finished, heartbeating the progress message.

        Returns ``ready=False`` once it is past the progress deadline by Flagger's rules
        (`Readiness.overdue`: a Deployment short of available pods for longer than the
        deadline, or reporting ProgressDeadlineExceeded; a DaemonSet not ready that long after
        the wait began; never while its controller has not seen the spec), or when this
        attempt's own time runs out (its start-to-close timeout, less a margin to answer in).
        The wait's start travels in the heartbeat details, so a retry does not extend it.
        Cancellation is honoured between polls.
        """
        namespace, name = input.ref.namespace, input.deployment
        started = _first_attempt_start()
        budget = _attempt_budget(default=input.deadline_seconds)
        while True:
            # The input names no kind (it predates DaemonSets): a Deployment, else a DaemonSet.
            workload = read_target(self._res, namespace, name)
            if workload is None:
                missing = TargetNotFound if name == input.ref.target else PrimaryNotFound
                raise missing(f"deployment {name}.{namespace} not found")
            judge = daemonsets.readiness if _kind_of(workload) is DAEMON_SET else readiness
            state = judge(workload, input.ready_threshold)
            if state.ready:
                return ReadyResult(ready=True, message=state.message)
            now = time.time()
            if state.stuck or state.overdue(input.deadline_seconds, waiting_since=started, now=now):
                return ReadyResult(ready=False, message=state.message)
            if now >= budget:
                return ReadyResult(ready=False, message=state.message)
            _pause(state.message, started, self._poll_interval)

    @activity.defn(name=ActivityName.PROMOTE)
    def promote(self, input: PromoteInput) -> None:
        """Copy the target's template, rollout settings and config to the primary.

        Refuses (`RevisionMismatch`) when the target no longer has the analysed revision.
        Idempotent: the primary is replaced only when it differs from the promoted form, and it
        carries the revision, so a repeat finds nothing to do.
        """
        canary = input.canary
        namespace, name = canary.namespace, canary.spec.target_ref.name
        kind = _kind(canary)
        target = self._target(namespace, name, kind)
        primary_name = name + objects.PRIMARY_SUFFIX
        primary = self._res.get(kind, namespace, primary_name)
        if primary is None:
            raise PrimaryNotFound(
                f"{kind.name.lower()} {primary_name}.{namespace} not found: initialize before "
                "promoting"
            )
        hpa = self._autoscaler(canary)
        configs = read_configs(self._res, namespace, target)
        revision = compute_revision(target, configs)
        if revision != input.revision:
            raise RevisionMismatch(
                f"deployment {name}.{namespace} is at revision {revision}, not {input.revision}: "
                "it changed after analysis, so it is not promoted"
            )
        owner = self._owner(canary)
        copied = self._sync_configs(canary, configs, owner)
        if kind is DAEMON_SET:
            wanted = daemonsets.promoted_primary_daemonset(primary, target, copied, revision)
        else:
            wanted = objects.promoted_primary(
                primary, target, copied, revision, has_autoscaler=hpa is not None
            )
        if not is_subset(wanted, primary):
            self._res.replace(kind, namespace, primary_name, wanted)
        if hpa is not None:
            converge(self._res, HPA, objects.primary_hpa(canary, hpa), whole_spec=True, owner=owner)

    @activity.defn(name=ActivityName.REVERT_SERVICE)
    def revert_service(self, input: InitializeInput) -> None:
        """The apex Service selects the target's pods again (a Canary deleted with
        ``revertOnDeletion``, as Flagger's finalizer reverts it); no write when it does."""
        canary = input.canary
        target = self._target(canary.namespace, canary.spec.target_ref.name, _kind(canary))
        label, value = objects.selector_label(target)
        apex = objects.services(canary, label, value, target)[0]
        apex["spec"]["selector"] = {label: value}
        converge(self._res, SERVICE, apex, carry=objects.carry_service)

    # --- helpers ---------------------------------------------------------------------------

    def _target(self, namespace: str, name: str, kind: Kind = DEPLOYMENT) -> Obj:
        target = self._res.get(kind, namespace, name)
        if target is None:
            raise TargetNotFound(
                f"{kind.name.lower()} {name}.{namespace} not found: the Canary's targetRef must "
                f"name an existing {kind.name}"
            )
        return target

    def _autoscaler(self, canary: Canary) -> Obj | None:
        """The target's HPA named by ``autoscalerRef`` (None when none is named)."""
        ref = canary.spec.autoscaler_ref
        if ref is None:
            return None
        if daemonsets.is_daemonset(canary):
            raise InvalidSpec(
                "spec.autoscalerRef: a DaemonSet runs one pod per node and has no autoscaler: "
                "remove autoscalerRef"
            )
        if ref.api_version not in AUTOSCALING_VERSIONS:
            raise InvalidSpec(
                f"spec.autoscalerRef.apiVersion {ref.api_version!r} is not supported: use "
                "autoscaling/v2"
            )
        hpa = self._res.get(HPA, canary.namespace, ref.name)
        if hpa is None:
            raise InvalidSpec(
                f"spec.autoscalerRef names HorizontalPodAutoscaler {ref.name}.{canary.namespace}, "
                "which does not exist: create it or remove autoscalerRef"
            )
        return hpa

    def _owner(self, canary: Canary) -> CanaryOwner:
        """The Canary as the owner of what this call creates (looked up only if it creates)."""
        return CanaryOwner(self._res, canary.namespace, canary.name)

    def _sync_configs(self, canary: Canary, configs: ConfigRefs, owner: CanaryOwner) -> ConfigRefs:
        """Converge the ``-primary`` config copies; the references that now have one."""
        for kind, copy in objects.primary_configs(canary, configs):
            converge(self._res, SECRET if kind == SECRET_REF else CONFIG_MAP, copy, owner=owner)
        return {ref: obj for ref, obj in configs.items() if obj is not None}

    def _primary_replicas(self, canary: Canary) -> int | None:
        primary_name = canary.spec.target_ref.name + objects.PRIMARY_SUFFIX
        primary = self._res.get(DEPLOYMENT, canary.namespace, primary_name)
        replicas = ((primary or {}).get("spec") or {}).get("replicas")
        return replicas if isinstance(replicas, int) and replicas > 0 else None

    def _default_replicas(self, canary: Canary) -> int:
        """Flagger's ScaleFromZero: the target's own replicas, else the HPA minimum, else 1.

        The target's own count is what its author (or GitOps, re-applying the manifest) asked
        for; at zero, as Coalmine left it, the HPA's minimum is the size it would scale to.
        """
        target = self._target(canary.namespace, canary.spec.target_ref.name)
        replicas = (target.get("spec") or {}).get("replicas")
        if isinstance(replicas, int) and replicas > 0:
            return replicas
        hpa = self._autoscaler(canary)
        minimum = ((hpa or {}).get("spec") or {}).get("minReplicas")
        return minimum if isinstance(minimum, int) and minimum > 0 else 1

    def _converge_service(self, service: Obj, owner: CanaryOwner) -> None:
        converge(self._res, SERVICE, service, carry=objects.carry_service, owner=owner)

    def _mark_initialized(self, kind: Kind, namespace: str, name: str) -> None:
        mark = {"metadata": {"annotations": {objects.INITIALIZED_ANNOTATION: "true"}}}
        self._res.patch(kind, namespace, name + objects.PRIMARY_SUFFIX, mark)

    def _scale_target(self, canary: Canary, replicas: int | None) -> int:
        """Scale the target to ``replicas`` (a Deployment) or idle it at 0 and wake it otherwise
        (a DaemonSet: no replicas, Flagger's node selector); the replicas it asks for (for a
        DaemonSet 0 idle, else the nodes its primary runs on, at least 1)."""
        namespace, name = canary.namespace, canary.spec.target_ref.name
        if not daemonsets.is_daemonset(canary):
            wanted = replicas if replicas is not None else self._default_replicas(canary)
            self._scale(namespace, name, wanted)
            return wanted
        target = self._target(namespace, name, DAEMON_SET)
        patch = daemonsets.idle_patch(target, idle=replicas == 0)
        if patch is not None:
            self._res.patch(DAEMON_SET, namespace, name, patch)
        if replicas == 0:
            return 0
        primary = self._res.get(DAEMON_SET, namespace, name + objects.PRIMARY_SUFFIX)
        desired = ((primary or {}).get("status") or {}).get("desiredNumberScheduled")
        return desired if isinstance(desired, int) and desired > 0 else 1

    def _scale(self, namespace: str, name: str, replicas: int) -> bool:
        """Set the replicas through ``/scale``; no write when already there."""
        try:
            scale = self._res.read_scale(namespace, name)
        except NotFound:
            raise TargetNotFound(f"deployment {name}.{namespace} not found") from None
        if (scale.get("spec") or {}).get("replicas", 0) == replicas:
            return False
        self._res.patch_scale(namespace, name, replicas)
        return True


def _kind(canary: Canary) -> Kind:
    return DAEMON_SET if daemonsets.is_daemonset(canary) else DEPLOYMENT


def _kind_of(workload: Obj) -> Kind:
    return DAEMON_SET if workload.get("kind") == DAEMON_SET.name else DEPLOYMENT


def _pause(message: str, started: float, seconds: float) -> None:
    """Heartbeat, then sleep one poll interval — waking at once if the activity is cancelled.

    Outside an activity (a direct call, e.g. from the command line) it only sleeps.
    """
    if not activity.in_activity():
        time.sleep(seconds)
        return
    activity.heartbeat(message, started)
    activity.wait_for_cancelled_sync(seconds)
    if activity.is_cancelled():
        raise CancelledError(f"cancelled while {message[0].lower()}{message[1:]}")


_ANSWER_MARGIN = 10.0
"""Seconds an attempt keeps to report 'not ready' before its start-to-close timeout."""


def _attempt_budget(*, default: float) -> float:
    """When this attempt must stop waiting: the sooner of its start-to-close timeout and the
    schedule-to-close bound of all attempts, less a margin (runs scheduled before the wait
    followed Flagger's deadline had only the deadline plus 30 s); outside an activity, ``default``
    seconds from now."""
    now = time.time()
    if not activity.in_activity():
        return now + default
    info = activity.info()
    ends = []
    if info.start_to_close_timeout is not None:
        ends.append(now + info.start_to_close_timeout.total_seconds())
    if info.schedule_to_close_timeout is not None:
        scheduled = info.scheduled_time.timestamp()
        ends.append(scheduled + info.schedule_to_close_timeout.total_seconds())
    if not ends:
        return now + default
    return max(min(ends) - _ANSWER_MARGIN, now + 1.0)


def _first_attempt_start() -> float:
    """When the first attempt of this activity started (from its last heartbeat), else now."""
    if not activity.in_activity():
        return time.time()
    details = activity.info().heartbeat_details
    if len(details) >= 2 and isinstance(details[1], int | float):
        return float(details[1])
    return time.time()
