"""Dict-in, dict-out access to the Kubernetes API, and the read-then-converge primitive.

Activities work on plain JSON dicts, exactly as the API server sends them (the calls use
``_preload_content=False`` and parse the body): no model round trip drops a field the client
library does not know, and the pure builders in `activities.kubernetes.objects` and
`activities.router.istio` stay testable without any client. Every call passes
`REQUEST_TIMEOUT` and translates the client library's exceptions into `activities.errors`.

`converge` is how every activity writes: read the object, create it when absent, replace it
only when it differs from what is wanted. So a retry, or a replay after a worker crash, repeats
reads and makes no write for work already done. "Differs" is judged two ways at once:

- the wanted fields must be a *subset* of the live object (the server adds defaults — a
  Service's ``clusterIP``, a port's ``protocol`` — which must not count as drift), and
- the live object must carry the wanted object's fingerprint (annotation
  ``coalmine.io/fingerprint``), which catches what a subset test cannot: a field removed from
  the wanted object.

An object `converge` creates gets an ownerReference to its Canary when the Canary exists in the
cluster (`CanaryOwner`), as Flagger's ``NewControllerRef`` sets it: deleting the Canary lets
the garbage collector delete what Coalmine made for it. Only on creation, as Flagger: an object
that existed before (the user's own apex Service, adopted) is never given an owner, so it
outlives the Canary; and the owner is never part of "differs", so adding it costs no write.

Replacing sends the ``resourceVersion`` read a moment before, so a concurrent writer makes the
write fail with `Conflict` (retryable) instead of being silently overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kubernetes import client

from activities.errors import AlreadyExists, InvalidSpec, NotFound, api_errors
from activities.kubernetes.client import REQUEST_TIMEOUT

Obj = dict[str, Any]

log = logging.getLogger(__name__)

MANAGED_BY = ("app.kubernetes.io/managed-by", "coalmine")
"""Label on every object Coalmine created."""
CANARY_ANNOTATION = "coalmine.io/canary"
"""``<namespace>/<canary>``: which Canary an object belongs to."""
FINGERPRINT_ANNOTATION = "coalmine.io/fingerprint"
"""Hash of the wanted object last written: detects fields removed since."""

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class Kind:
    """One resource type and how the client library reaches it.

    Built-in types name their typed API class and method suffix (``read_<suffix>``…); custom
    types (Istio) give group, version and plural for ``CustomObjectsApi``.
    """

    name: str
    api: Callable[[client.ApiClient], Any] = client.CustomObjectsApi
    suffix: str = ""
    group: str = ""
    version: str = ""
    plural: str = ""

    @property
    def custom(self) -> bool:
        return not self.suffix


DEPLOYMENT = Kind("Deployment", client.AppsV1Api, "namespaced_deployment")
DAEMON_SET = Kind("DaemonSet", client.AppsV1Api, "namespaced_daemon_set")
SERVICE = Kind("Service", client.CoreV1Api, "namespaced_service")
CONFIG_MAP = Kind("ConfigMap", client.CoreV1Api, "namespaced_config_map")
SECRET = Kind("Secret", client.CoreV1Api, "namespaced_secret")
HPA = Kind(
    "HorizontalPodAutoscaler", client.AutoscalingV2Api, "namespaced_horizontal_pod_autoscaler"
)
EVENT = Kind("Event", client.CoreV1Api, "namespaced_event")
CANARY = Kind("Canary", group="flagger.app", version="v1beta1", plural="canaries")
METRIC_TEMPLATE = Kind(
    "MetricTemplate", group="flagger.app", version="v1beta1", plural="metrictemplates"
)
ALERT_PROVIDER = Kind(
    "AlertProvider", group="flagger.app", version="v1beta1", plural="alertproviders"
)


class Resources:
    """The API calls activities make, for one injected ``ApiClient``.

    Shared by the worker's activity threads: the ``ApiClient`` (a urllib3 pool) is thread-safe,
    and the typed API wrappers cached here hold no state of their own, so a race that builds
    one twice is harmless.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        self._api_client = api_client
        self._timeout = timeout
        self._apis: dict[Callable[[client.ApiClient], Any], Any] = {}

    def _call(self, kind: Kind, verb: str, namespace: str, *args: Any, **kw: Any) -> Obj:
        api = self._apis.get(kind.api)
        if api is None:
            api = self._apis[kind.api] = kind.api(self._api_client)
        kw.update(_preload_content=False, _request_timeout=self._timeout)
        with api_errors():
            if kind.custom:
                method = getattr(api, f"{verb}_namespaced_custom_object")
                response = method(kind.group, kind.version, namespace, kind.plural, *args, **kw)
            else:
                verb = "read" if verb == "get" else verb
                method = getattr(api, f"{verb}_{kind.suffix}")
                # Typed methods take (namespace, body) to create, (name, namespace, …) otherwise.
                args = (namespace, *args) if verb == "create" else (args[0], namespace, *args[1:])
                response = method(*args, **kw)
        data = response.data
        result: Obj = json.loads(data) if data else {}
        return result

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return self._call(kind, "get", namespace, name)
        except NotFound:
            return None

    def create(self, kind: Kind, namespace: str, body: Obj) -> Obj:
        log.info("create %s %s/%s", kind.name, namespace, body["metadata"]["name"])
        return self._call(kind, "create", namespace, body)

    def replace(self, kind: Kind, namespace: str, name: str, body: Obj) -> Obj:
        log.info("replace %s %s/%s", kind.name, namespace, name)
        return self._call(kind, "replace", namespace, name, body)

    def patch(
        self, kind: Kind, namespace: str, name: str, body: Obj, *, content_type: str = MERGE_PATCH
    ) -> Obj:
        log.info("patch %s %s/%s", kind.name, namespace, name)
        return self._call(kind, "patch", namespace, name, body, _content_type=content_type)

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone (so a retried delete is a no-op)."""
        try:
            self._call(kind, "delete", namespace, name)
        except NotFound:
            return False
        log.info("deleted %s %s/%s", kind.name, namespace, name)
        return True

    def read_scale(self, namespace: str, name: str) -> Obj:
        """A Deployment's ``/scale`` subresource."""
        return self._call(_DEPLOYMENT_SCALE, "read", namespace, name)

    def patch_scale(self, namespace: str, name: str, replicas: int) -> Obj:
        """Set a Deployment's replicas through ``/scale`` (touches nothing else)."""
        log.info("scale Deployment %s/%s to %d", namespace, name, replicas)
        body = {"spec": {"replicas": replicas}}
        return self._call(
            _DEPLOYMENT_SCALE, "patch", namespace, name, body, _content_type=MERGE_PATCH
        )


_DEPLOYMENT_SCALE = Kind("Deployment/scale", client.AppsV1Api, "namespaced_deployment_scale")


# --- comparing and converging --------------------------------------------------------------


def is_subset(wanted: Any, live: Any) -> bool:
    """Whether every field of ``wanted`` has the same value in ``live``.

    Extra fields in ``live`` (server defaults) are ignored; lists must have the same length and
    match element by element; an empty or null wanted value matches an absent one.
    """
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return not wanted and live is None
        return all(
            is_subset(value, live[key]) if key in live else value in (None, {}, [], "")
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        if not isinstance(live, list):
            return not wanted and live is None
        return len(wanted) == len(live) and all(map(is_subset, wanted, live))
    return bool(wanted == live)


def fingerprint(obj: Any) -> str:
    """A short stable hash of JSON data (canonical: sorted keys, no whitespace)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _stamped(desired: Obj, basis: Any) -> Obj:
    meta = desired.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    meta["annotations"] = {**annotations, FINGERPRINT_ANNOTATION: fingerprint(basis)}
    return desired


def _overlay(live: Obj, desired: Obj, *, whole_spec: bool) -> Obj:
    """``live`` with the wanted labels, annotations and top-level fields written over it.

    Labels and annotations merge (others' stay); each other top-level field (``data``,
    ``type``) replaces the live one whole, so removals take effect. ``spec`` is replaced whole
    (``whole_spec``: Coalmine owns all of it) or field by field (a Service keeps the
    ``clusterIP`` and ``type`` the server or its author chose).
    """
    body: Obj = json.loads(json.dumps(live))
    meta, want_meta = body.setdefault("metadata", {}), desired.get("metadata", {})
    for key in ("labels", "annotations"):
        if want_meta.get(key):
            meta[key] = {**(meta.get(key) or {}), **want_meta[key]}
    for key, value in desired.items():
        if key in ("metadata", "status", "apiVersion", "kind"):
            continue
        if key == "spec" and isinstance(value, dict) and not whole_spec:
            body.setdefault("spec", {}).update(value)
        else:
            body[key] = value
    return body


class CanaryOwner:
    """The ownerReference objects created for one Canary get, looked up once, when first needed.

    A rollout's later runs find every object in place and create nothing, so they make no
    lookup at all. No Canary in the cluster (a CI rollout from a file, or no CRD): no owner.
    The lookup happens at creation, never earlier, so the uid is the live Canary's: an owner
    uid that no longer exists would make the garbage collector delete the new object at once.
    """

    def __init__(self, res: Resources, namespace: str, name: str) -> None:
        self._res, self._namespace, self._name = res, namespace, name
        self._looked_up = False
        self._reference: Obj | None = None

    def reference(self) -> Obj | None:
        if not self._looked_up:
            self._reference = _owner_reference(self._res.get(CANARY, self._namespace, self._name))
            self._looked_up = True
        return self._reference


def _owner_reference(canary: Obj | None) -> Obj | None:
    meta = (canary or {}).get("metadata") or {}
    if not meta.get("uid") or meta.get("deletionTimestamp"):
        # A Canary being deleted owns nothing new: the collector would delete it right away.
        return None
    return {
        "apiVersion": f"{CANARY.group}/{CANARY.version}",
        "kind": CANARY.name,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def converge(
    res: Resources,
    kind: Kind,
    desired: Obj,
    *,
    update: bool = True,
    basis: Any = None,
    carry: Callable[[Obj, Obj], None] | None = None,
    whole_spec: bool = False,
    owner: CanaryOwner | None = None,
) -> tuple[Outcome, Obj]:
    """Create ``desired`` when absent; replace the live object only when it differs.

    ``update=False``: create-only (an existing object is left as it is). ``basis``: what the
    fingerprint is computed from, when some wanted fields (route weights) are carried over
    from the live object and must not count as a change; the whole desired object otherwise.
    ``carry(desired, live)``: copy into ``desired`` what the server allocated and must be kept
    (a Service's node ports). ``whole_spec``: the wanted ``spec`` is all of it, so a field
    dropped from it is removed from the live object too. ``owner``: the Canary a created
    object gets as its controller owner (never added to an existing one). Safe to repeat: the
    second call finds the object as wanted and writes nothing.
    """
    meta = desired["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    desired = _stamped(json.loads(json.dumps(desired)), desired if basis is None else basis)
    live = res.get(kind, namespace, name)
    if live is not None and carry is not None:
        carry(desired, live)
    if live is None:
        reference = owner.reference() if owner is not None else None
        if reference is not None:
            desired["metadata"]["ownerReferences"] = [reference]
        try:
            return Outcome.CREATED, res.create(kind, namespace, desired)
        except AlreadyExists:
            # A concurrent attempt created it first: compare with what it wrote.
            live = res.get(kind, namespace, name)
            if live is None:
                raise
    if not update or is_subset(desired, live):
        return Outcome.UNCHANGED, live
    body = _overlay(live, desired, whole_spec=whole_spec)
    return Outcome.UPDATED, res.replace(kind, namespace, name, body)


def secret_data(res: Resources, namespace: str, name: str) -> dict[str, str] | None:
    """All keys of a Secret, decoded (the server merges ``stringData`` into ``data``); None when
    it does not exist. The values go straight to their user: never logged, never returned from
    an activity."""
    secret = res.get(SECRET, namespace, name)
    if secret is None:
        return None
    raw: Mapping[str, str] = secret.get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in raw.items()}


def secret_value(res: Resources, namespace: str, name: str, key: str) -> str:
    """One key of a Secret; a missing Secret or key is `InvalidSpec` (named, never quoted)."""
    data = secret_data(res, namespace, name)
    if data is None:
        raise InvalidSpec(f"secret {namespace}/{name} not found")
    if key not in data:
        raise InvalidSpec(f"secret {namespace}/{name} has no key {key!r}")
    return data[key]


def annotations_of(obj: Mapping[str, Any] | None) -> dict[str, str]:
    if not obj:
        return {}
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def labels_of(obj: Mapping[str, Any] | None) -> dict[str, str]:
    if not obj:
        return {}
    return dict((obj.get("metadata") or {}).get("labels") or {})
