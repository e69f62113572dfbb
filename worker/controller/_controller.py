"""`Controller`: watch events in, workflow starts and updates out.

One `KubeCache` (LIST + WATCH on the event loop, no thread blocked) follows Canaries, their targets
(Deployments and DaemonSets), ConfigMaps and Secrets. A change is mapped to the keys
(``namespace/name``) of the Canaries it concerns — a Canary's own spec, its target's pod template,
a ConfigMap or Secret the target references — and each key goes through a work queue as in
client-go: a key is never handled by two tasks at once, and changes that arrive while it is handled
make it run once more afterwards. The handling reads the cache, `decide`s, and acts (`Actions`). A
failure is logged and the key retried with backoff; one bad Canary never stops the others.

On start every Canary is handled once (the first LIST is a change of everything), so a change
made while the controller was down is found: the comparison is with the status the workflow
wrote, not with anything this process remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from activities.kubernetes.revision import config_refs
from worker.controller import _decide as d
from worker.controller._actions import Actions
from worker.kubecache import Change, KubeCache, KubeConfig, Resource, WatchSettings

log = logging.getLogger("coalmine.controller")
Obj = dict[str, Any]

CANARIES = Resource("flagger.app", "v1beta1", "canaries")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
DAEMON_SETS = Resource("apps", "v1", "daemonsets")
WORKLOADS = (DEPLOYMENTS, DAEMON_SETS)
CONFIG_MAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")
_BY_TARGET = "target"
_BY_CONFIG = "config"


@dataclass(frozen=True)
class ControllerSettings:
    """How the controller works; built once at start-up."""

    cluster: str = "default"
    """Cluster name, part of every workflow ID (the worker's and the CLI's must match)."""
    min_interval_seconds: float = 10.0
    """The analysis interval floor (Flagger's 10s; ``COALMINE_MIN_ANALYSIS_INTERVAL``)."""
    concurrency: int = 8
    """Canaries handled at once."""
    mesh_provider: str | None = None
    """The cluster-wide traffic-router provider for Canaries that name none (Flagger's
    ``-mesh-provider``; ``--mesh-provider`` / ``COALMINE_MESH_PROVIDER``): the rollouts the
    controller starts carry it. None: the worker's default decides."""
    retry_initial: float = 0.5
    retry_max: float = 10.0
    watch: WatchSettings = field(default_factory=WatchSettings)


def _meta(obj: Obj | None) -> Obj:
    md = (obj or {}).get("metadata")
    return md if isinstance(md, dict) else {}


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _target_key(namespace: str, plural: str, name: str) -> str:
    """A target's index key: its kind counts (a Deployment and a DaemonSet may share a name)."""
    return f"{namespace}/{plural}/{name}"


def _target_index(canary: Obj) -> list[str]:
    ref = (canary.get("spec") or {}).get("targetRef") or {}
    target = ref.get("name")
    if not target:
        return []
    plural = d.target_plural(str(ref.get("kind") or "Deployment"))
    return [_target_key(_meta(canary).get("namespace", ""), plural, target)]


def _config_index(deployment: Obj) -> list[str]:
    template = (deployment.get("spec") or {}).get("template") or {}
    namespace = _meta(deployment).get("namespace", "")
    return [_key(namespace, ref) for ref in config_refs(template)]


def _template(obj: Obj | None) -> Any:
    return ((obj or {}).get("spec") or {}).get("template")


def _config_data(obj: Obj | None) -> Any:
    return {k: (obj or {}).get(k) for k in ("data", "binaryData", "type")}


def _canary_changed(change: Change) -> bool:
    """Spec, finalizers or deletion: what the controller acts on (not the status it writes), and
    a rollout coming to rest after its Canary's spec changed under it."""
    if change.type != "MODIFIED" or change.previous is None:
        return True
    before, after = _meta(change.previous), _meta(change.obj)
    return any(
        before.get(k) != after.get(k) for k in ("generation", "deletionTimestamp", "finalizers")
    ) or d.came_to_rest_with_new_spec(change.previous, change.obj)


class Controller:
    """Maps watch events to rollout workflows. ``actions`` does the writing (Temporal, API)."""

    def __init__(
        self,
        config: KubeConfig,
        actions: Actions,
        settings: ControllerSettings | None = None,
        *,
        on_handled: Callable[[str, d.Action], None] | None = None,
    ) -> None:
        self._settings = settings or ControllerSettings()
        self._cache = KubeCache(
            config,
            [CANARIES, *WORKLOADS, CONFIG_MAPS, SECRETS],
            settings=self._settings.watch,
        )
        self._actions = actions
        self._on_handled = on_handled
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._busy: set[str] = set()
        self._failures: dict[str, int] = {}
        self._workers: list[asyncio.Task[None]] = []

    # --- watching ----------------------------------------------------------------------------

    async def start(self) -> None:
        """List and watch everything, then handle every Canary once."""
        cache = self._cache
        cache.add_index(CANARIES.group, CANARIES.plural, _BY_TARGET, _target_index)
        cache.listen(self._on_canary, group=CANARIES.group, plural=CANARIES.plural)
        for workload in WORKLOADS:
            cache.add_index(workload.group, workload.plural, _BY_CONFIG, _config_index)
            cache.listen(self._on_workload, group=workload.group, plural=workload.plural)
        cache.listen(self._on_config, group="", plural=CONFIG_MAPS.plural)
        cache.listen(self._on_config, group="", plural=SECRETS.plural)
        self._workers = [
            asyncio.create_task(self._work(), name=f"controller worker {i}")
            for i in range(self._settings.concurrency)
        ]
        await cache.start()
        log.info("controller watching %d Canaries", len(cache.scan(CANARIES.group, "canaries")))
        self._workers.append(asyncio.create_task(self._after_first_pass()))

    async def _after_first_pass(self) -> None:
        await self.idle(within=float("inf"))
        self._actions.forget_pauses()

    async def close(self) -> None:
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._cache.close()

    def _enqueue(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._busy:
            self._queue.put_nowait(key)

    def _on_canary(self, change: Change) -> None:
        if _canary_changed(change):
            self._enqueue(_key(change.namespace, _meta(change.obj).get("name", "")))

    def _on_workload(self, change: Change) -> None:
        if change.type == "MODIFIED" and _template(change.previous) == _template(change.obj):
            return  # status, replicas, annotations: not a new revision
        name = _meta(change.obj).get("name", "")
        self._enqueue_canaries_of(_target_key(change.namespace, change.plural, name))

    def _on_config(self, change: Change) -> None:
        if change.type == "MODIFIED" and _config_data(change.previous) == _config_data(change.obj):
            return
        kind = "configmap" if change.plural == "configmaps" else "secret"
        ref = _key(change.namespace, f"{kind}/{_meta(change.obj).get('name', '')}")
        for workload in WORKLOADS:
            for target in self._cache.by_index(workload.group, workload.plural, _BY_CONFIG, ref):
                md = _meta(target)
                key = _target_key(md.get("namespace", ""), workload.plural, md.get("name", ""))
                self._enqueue_canaries_of(key)

    def _enqueue_canaries_of(self, target_key: str) -> None:
        for canary in self._cache.by_index(CANARIES.group, CANARIES.plural, _BY_TARGET, target_key):
            md = _meta(canary)
            self._enqueue(_key(md.get("namespace", ""), md.get("name", "")))

    # --- handling ----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._dirty.discard(key)
            self._busy.add(key)
            try:
                await self._handle(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # one Canary must never stop the others
                self._retry_later(key, err)
            finally:
                self._busy.discard(key)
                if key in self._dirty:
                    self._queue.put_nowait(key)

    def _retry_later(self, key: str, err: Exception) -> None:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self._settings.retry_initial * 2 ** (failures - 1), self._settings.retry_max)
        log.warning("canary %s: %s: %s; again in %.1fs", key, type(err).__name__, err, delay)
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._enqueue, key)

    async def _handle(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        obj = self._cache.peek(CANARIES.group, CANARIES.plural, namespace, name)
        if obj is None:
            await self._actions.deleted(namespace, name)
            return

        def lookup(plural: str, object_name: str) -> Obj | None:
            group = "apps" if plural in (DEPLOYMENTS.plural, DAEMON_SETS.plural) else ""
            return self._cache.peek(group, plural, namespace, object_name)

        action = d.decide(
            obj,
            lookup,
            min_interval_seconds=self._settings.min_interval_seconds,
            mesh_provider=self._settings.mesh_provider,
        )
        await self._actions.apply(obj, action)
        if self._on_handled is not None:
            self._on_handled(key, action)

    # --- for tests and benchmarks ---------------------------------------------------------------

    @property
    def cache(self) -> KubeCache:
        return self._cache

    async def idle(self, *, within: float = 30.0) -> None:
        """Wait until no key is queued or being handled."""
        deadline = time.monotonic() + within
        while self._dirty or self._busy:
            if time.monotonic() > deadline:
                raise TimeoutError(f"controller still busy with {sorted(self._dirty | self._busy)}")
            await asyncio.sleep(0.02)
