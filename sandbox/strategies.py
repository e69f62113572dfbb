"""Per-type write strategies: the defaults, validation and generation rules of kube-apiserver.

Kubernetes gives every resource a "strategy" (``PrepareForCreate``, ``PrepareForUpdate``,
``Validate``) and a defaulting pass. The sandbox keeps the part that clients and controllers
observe: defaults that ``kubectl`` and controllers read back (Deployment
replicas/strategy/progressDeadlineSeconds, container protocols and pull policies, Service
clusterIP/targetPort, Namespace phase, CRD status), the validation errors people hit (missing name,
malformed name, selector not matching the template, immutable selector) and which changes bump
``metadata.generation``. Anything else is stored as sent; there is no schema validation or pruning.
"""

from __future__ import annotations

import base64
import itertools
import re
from typing import Any

from sandbox.errors import BadRequest, Invalid
from sandbox.resources import ResourceType

Obj = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kinds whose names must be DNS labels (no dots), as apimachinery validates namespaces and services.
_LABEL_NAMED = {("", "namespaces"), ("", "services")}
_IGNORED_FOR_GENERATION = ("metadata", "apiVersion", "kind")
_cluster_ips = itertools.count(1)


def spec_changed(rt: ResourceType, old: Obj, new: Obj) -> bool:
    """Whether a write changes what ``metadata.generation`` counts (not metadata, nor a /status)."""
    skip = (*_IGNORED_FOR_GENERATION, "status") if rt.status else _IGNORED_FOR_GENERATION
    keys = (set(old) | set(new)) - set(skip)
    return any(old.get(k) != new.get(k) for k in keys)


def _pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        _pod_spec(template["spec"])


def _deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec)


def _replicaset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template(spec)


def _service(obj: Obj, old: Obj | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    old_spec = (old or {}).get("spec") or {}
    # clusterIP is allocated once and kept across updates that omit it, as Service storage does.
    if not spec.get("clusterIP"):
        if old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        elif spec["type"] != "ExternalName":
            n = next(_cluster_ips)
            spec["clusterIP"] = f"10.96.{n // 250 % 250}.{n % 250 + 1}"
    if spec.get("clusterIP"):
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))


def _secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _crd(obj: Obj) -> None:
    spec = obj.get("spec") or {}
    stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    conditions = [
        {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": None}
        for t, r, m in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    obj["status"] = {
        "acceptedNames": spec.get("names") or {},
        "conditions": conditions,
        "storedVersions": stored,
    }


def _malformed(rt: ResourceType, obj: Obj, exc: Exception) -> BadRequest:
    # What the apiserver's decoder answers for a field of the wrong JSON type, more or less.
    name = obj.get("metadata", {}).get("name", "") if isinstance(obj.get("metadata"), dict) else ""
    return BadRequest(f'{rt.kind} "{name}" is malformed: a field has the wrong type ({exc})')


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def check_shape(rt: ResourceType, obj: Obj) -> None:
    """The metadata every write relies on is well-typed (labels and annotations map strings)."""
    for part in ("spec", "status"):
        if obj.get(part) is not None and not isinstance(obj[part], dict):
            raise _malformed(rt, obj, TypeError(f"{part} is not an object"))
    if rt.key in (("", "configmaps"), ("", "secrets")):
        for part in ("data", "stringData", "binaryData"):
            value = obj.get(part)
            if value is not None and not _string_map(value):
                raise _malformed(rt, obj, TypeError(f"{part} does not map strings to strings"))
    meta = obj.get("metadata")
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise _malformed(rt, obj, TypeError("metadata is not an object"))
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is not None and not _string_map(value):
            raise _invalid(rt, obj, f"metadata.{field}", "Invalid value: must map strings")


def prepare_create(rt: ResourceType, obj: Obj) -> None:
    try:
        _defaults(rt, obj, None)
    except (TypeError, AttributeError) as exc:
        raise _malformed(rt, obj, exc) from exc


def prepare_update(rt: ResourceType, new: Obj, old: Obj) -> None:
    try:
        _defaults(rt, new, old)
    except (TypeError, AttributeError) as exc:
        raise _malformed(rt, new, exc) from exc
    _immutable(rt, new, old)


def _defaults(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    match rt.key:
        case ("apps", "deployments"):
            _deployment(obj)
        case ("apps", "replicasets"):
            _replicaset(obj)
        case ("", "pods"):
            _pod_spec(obj.setdefault("spec", {}))
        case ("", "services"):
            _service(obj, old)
        case ("", "secrets"):
            _secret(obj)
        case ("", "namespaces"):
            name = obj["metadata"].get("name", "")
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {}).setdefault("phase", "Active")
        case ("apiextensions.k8s.io", "customresourcedefinitions"):
            _crd(obj)
        case _:
            pass


def _immutable(rt: ResourceType, new: Obj, old: Obj) -> None:
    if rt.group == "apps" and (new.get("spec") or {}).get("selector") != (
        old.get("spec") or {}
    ).get("selector"):
        raise _invalid(rt, new, "spec.selector", "Invalid value: field is immutable")


def _invalid(rt: ResourceType, obj: Obj, path: str, detail: str) -> Invalid:
    name = str(obj.get("metadata", {}).get("name", ""))
    return Invalid.field(rt.kind, rt.group, rt.plural, name, path, detail)


def validate(rt: ResourceType, obj: Obj) -> None:
    """The validation errors clients meet most (422 Invalid, worded as the apiserver words them)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise _invalid(rt, obj, "metadata", "Required value")
    name = meta.get("name")
    if not name:
        raise _invalid(rt, obj, "metadata.name", "Required value: name or generateName is required")
    pattern = _LABEL if rt.key in _LABEL_NAMED else _SUBDOMAIN
    if not isinstance(name, str) or len(name) > 253 or not pattern.match(name):
        detail = (
            f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            "character"
        )
        raise _invalid(rt, obj, "metadata.name", detail)
    if rt.group == "apps":
        try:
            _validate_workload(rt, obj)
        except (TypeError, AttributeError) as exc:
            raise _malformed(rt, obj, exc) from exc


def _validate_workload(rt: ResourceType, obj: Obj) -> None:
    spec = obj.get("spec") or {}
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise _invalid(rt, obj, "spec.replicas", f"Invalid value: {replicas!r}: must be >= 0")
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        raise _invalid(rt, obj, "spec.selector", "Required value")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        detail = "Invalid value: `selector` does not match template `labels`"
        raise _invalid(rt, obj, "spec.template.metadata.labels", detail)
    if not (template.get("spec") or {}).get("containers"):
        raise _invalid(rt, obj, "spec.template.spec.containers", "Required value")
