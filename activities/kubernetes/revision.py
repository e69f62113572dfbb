"""What a revision is: a hash of the target's pod template and the config it references.

A rollout starts when the revision changes, which follows Flagger's trigger rule: a change of the
Deployment's pod spec (image, command, ports, env…) **or** of a ConfigMap or Secret the pods use —
mounted as a volume (directly or projected), read by ``env[].valueFrom`` or ``envFrom``. Flagger
tracks the referenced config separately (``pkg/canary/config_tracker.go``); folding it into one
hash gives the workflow a single value to compare with the revision last promoted.

The hash is stable: canonical JSON (sorted keys, no whitespace), nulls dropped, and the
``pod-template-hash`` label removed (the Deployment controller adds it to pods and ReplicaSets; it
is not the user's intent). As Flagger does, only Secrets a pod can use as config are tracked
(Opaque, basic-auth, ssh-auth, TLS); registry credentials belong to the service account; and
an object annotated ``flagger.app/config-tracking: disabled`` is not tracked at all. A
referenced object that does not exist hashes as null, so creating it later is a new revision.

`compute_revision` is pure and shared with the command line; `read_configs` and `read_revision`
read what it needs through `activities.kubernetes.resources.Resources`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from activities.kubernetes.resources import (
    CONFIG_MAP,
    DAEMON_SET,
    DEPLOYMENT,
    SECRET,
    Obj,
    Resources,
)

POD_TEMPLATE_HASH = "pod-template-hash"
SCALE_TO_ZERO = {"flagger.app/scale-to-zero": "true"}
"""The node selector that idles a DaemonSet target (Flagger's ``daemonSetScaleDownNodeSelector``):
not part of its revision, as Flagger's HasTargetChanged leaves it out (daemonsets.py)."""
CONFIG_TRACKING_ANNOTATION = "flagger.app/config-tracking"
"""``disabled`` on a ConfigMap or Secret: neither part of the revision nor copied for the
primary, which reads the original (Flagger's config tracker skips it the same way)."""
CONFIG_MAP_REF = "configmap"
SECRET_REF = "secret"
TRACKED_SECRET_TYPES = frozenset(
    {
        "Opaque",
        "kubernetes.io/basic-auth",
        "kubernetes.io/ssh-auth",
        "kubernetes.io/tls",
    }
)

ConfigRefs = dict[str, Obj | None]
"""``configmap/<name>`` or ``secret/<name>`` → the object (None when it does not exist)."""


def references(pod_spec: Obj) -> Iterator[tuple[str, Obj, str]]:
    """Every ConfigMap/Secret reference in a pod spec: (``configmap``|``secret``, holder, key).

    The holder is the dict that carries the name under ``key``, so the same walk serves to
    list the references and to rename them (see `objects.primary_template`).
    """
    yield from _volume_references(pod_spec)
    yield from _container_references(pod_spec)


def _volume_references(pod_spec: Obj) -> Iterator[tuple[str, Obj, str]]:
    for volume in pod_spec.get("volumes") or []:
        if volume.get("configMap"):
            yield CONFIG_MAP_REF, volume["configMap"], "name"
        if volume.get("secret"):
            yield SECRET_REF, volume["secret"], "secretName"
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("configMap"):
                yield CONFIG_MAP_REF, source["configMap"], "name"
            if source.get("secret"):
                yield SECRET_REF, source["secret"], "name"


def _container_references(pod_spec: Obj) -> Iterator[tuple[str, Obj, str]]:
    for container in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if value_from.get("configMapKeyRef"):
                yield CONFIG_MAP_REF, value_from["configMapKeyRef"], "name"
            if value_from.get("secretKeyRef"):
                yield SECRET_REF, value_from["secretKeyRef"], "name"
        for env_from in container.get("envFrom") or []:
            if env_from.get("configMapRef"):
                yield CONFIG_MAP_REF, env_from["configMapRef"], "name"
            if env_from.get("secretRef"):
                yield SECRET_REF, env_from["secretRef"], "name"


def config_refs(template: Obj) -> list[str]:
    """The sorted ``configmap/<name>`` and ``secret/<name>`` keys a pod template references."""
    spec = template.get("spec") or {}
    return sorted(
        {f"{kind}/{holder[key]}" for kind, holder, key in references(spec) if holder.get(key)}
    )


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def without_idle_selector(template: Obj) -> Obj:
    """The pod template without the DaemonSet idling node selector (in place, and returned)."""
    spec = template.get("spec") or {}
    selector = spec.get("nodeSelector")
    if isinstance(selector, dict):
        for key in SCALE_TO_ZERO:
            selector.pop(key, None)
        if not selector:
            del spec["nodeSelector"]
    return template


def normalized_template(deployment: Obj) -> Obj:
    """The target's pod template as hashed: no nulls, no ``pod-template-hash`` label, and for a
    DaemonSet no idling node selector."""
    template: Obj = _without_nulls((deployment.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if labels and POD_TEMPLATE_HASH in labels:
        del labels[POD_TEMPLATE_HASH]
    if deployment.get("kind") == DAEMON_SET.name:
        without_idle_selector(template)
    return template


def config_content(obj: Obj | None) -> Obj | None:
    """The part of a ConfigMap or Secret that pods see (and so the part hashed)."""
    if obj is None:
        return None
    return {key: obj[key] for key in ("data", "binaryData") if obj.get(key)}


def compute_revision(deployment: Obj, configs: Mapping[str, Obj | None]) -> str:
    """The revision of a Deployment: 16 hex digits of SHA-256 over template and config.

    ``configs`` maps ``configmap/<name>`` / ``secret/<name>`` to the object (or None when it does
    not exist), as `read_configs` returns it; only the references the template makes count.
    """
    template = normalized_template(deployment)
    wanted = config_refs(template)
    document = {
        "template": template,
        "configs": {ref: config_content(configs.get(ref)) for ref in wanted},
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def is_tracked_secret(secret: Obj) -> bool:
    return secret.get("type", "Opaque") in TRACKED_SECRET_TYPES


def is_tracked(kind: str, obj: Obj) -> bool:
    """Whether a referenced ConfigMap or Secret is tracked: not annotated
    ``flagger.app/config-tracking: disabled`` (Flagger's opt-out), and for a Secret, of a type
    a pod reads as config."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(CONFIG_TRACKING_ANNOTATION) == "disabled":
        return False
    return kind != SECRET_REF or is_tracked_secret(obj)


def read_configs(res: Resources, namespace: str, deployment: Obj) -> ConfigRefs:
    """The ConfigMaps and Secrets the Deployment's pods reference (None for a missing one).

    Untracked ones (`is_tracked`: tracking disabled, registry credentials, service-account
    tokens) are left out, so they are neither hashed nor copied for the primary.
    """
    found: ConfigRefs = {}
    for ref in config_refs((deployment.get("spec") or {}).get("template") or {}):
        kind, name = ref.split("/", 1)
        obj = res.get(CONFIG_MAP if kind == CONFIG_MAP_REF else SECRET, namespace, name)
        if obj is not None and not is_tracked(kind, obj):
            continue
        found[ref] = obj
    return found


def read_target(res: Resources, namespace: str, name: str) -> Obj | None:
    """The target ``namespace/name``: its Deployment, else its DaemonSet; None when neither is."""
    return res.get(DEPLOYMENT, namespace, name) or res.get(DAEMON_SET, namespace, name)


def read_revision(res: Resources, namespace: str, name: str) -> str | None:
    """The current revision of target ``namespace/name``; None when it does not exist."""
    deployment = read_target(res, namespace, name)
    if deployment is None:
        return None
    return compute_revision(deployment, read_configs(res, namespace, deployment))
