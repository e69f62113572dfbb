"""The objects Coalmine derives from the target, as pure functions of dicts (Flagger's model).

For a target Deployment ``podinfo`` whose selector is ``app: podinfo``:

- ``podinfo-primary`` Deployment: the target's spec, with the selector label value suffixed
  ``-primary`` (``app: podinfo-primary``) in the selector, the template labels, its own labels
  and the pod anti-affinity and topology spread selectors, every other label kept, and the
  template pointed at ``-primary`` copies of the ConfigMaps/Secrets it references (so a
  changed ConfigMap reaches production only through a promotion);
- ``<config>-primary`` ConfigMaps/Secrets: copies of the target's;
- ``<hpa>-primary`` HPA: the target's HPA aimed at the primary;
- Services ``<svc>`` (apex) and ``<svc>-primary`` selecting the primary's pods, ``<svc>-canary``
  selecting the target's, each with the port ``service.port`` → ``targetPort`` named
  ``portName``, then, with ``service.portDiscovery``, every other container port of the
  target's pod (`discovered_ports`). A Service that existed before keeps its other ports.

The selector label is the first of ``app``, ``name``, ``app.kubernetes.io/name`` found in the
target's ``spec.selector.matchLabels``, as in Flagger's default. Every object Coalmine creates is
labelled ``app.kubernetes.io/managed-by: coalmine`` and annotated with its Canary; a Service
that existed before is not.

Unlike Flagger, which stamps a random ``flagger-id`` on the primary's pod template to force a
rolling update, the template carries ``coalmine.io/revision``: a new revision (even one that only
changed a ConfigMap) still rolls the primary's pods, and copying the same revision twice is a
no-op, so promotion is idempotent.
"""

from __future__ import annotations

import json
from typing import Any

from activities.errors import InvalidSpec
from activities.kubernetes.ports import discovered_ports, main_port
from activities.kubernetes.resources import (
    CANARY_ANNOTATION,
    FINGERPRINT_ANNOTATION,
    MANAGED_BY,
    Obj,
)
from activities.kubernetes.revision import SECRET_REF, ConfigRefs, references
from workflows.spec import Canary

SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
REVISION_ANNOTATION = "coalmine.io/revision"
"""On the primary (and its pod template): the revision it was last given."""
INITIALIZED_ANNOTATION = "coalmine.io/initialized"
"""On the primary: the first initialization finished (the target was scaled to zero)."""
PRIMARY_SUFFIX = "-primary"

# Annotations that describe one object's history or owner and must not be copied to another.
_NOT_COPIED = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "argocd.argoproj.io/tracking-id",
    REVISION_ANNOTATION,
    INITIALIZED_ANNOTATION,
)
# Fields of the target's spec the primary takes over (replicas is handled on its own).
_COPIED_SPEC = ("minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds", "strategy")


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def selector_label(deployment: Obj) -> tuple[str, str]:
    """The (label, value) that selects the target's pods; `InvalidSpec` when there is none."""
    match = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    for label in SELECTOR_LABELS:
        if match.get(label):
            return label, str(match[label])
    name = f"{_meta(deployment).get('name')}.{_meta(deployment).get('namespace')}"
    raise InvalidSpec(
        f"deployment {name} spec.selector.matchLabels must contain one of "
        f"{', '.join(SELECTOR_LABELS)}: add e.g. 'app: {_meta(deployment).get('name')}' to the "
        "selector and the pod template labels"
    )


def built_by_flagger(primary: Obj) -> bool:
    """Whether a primary was built by someone else (Flagger): Coalmine stamps a revision on
    every primary it creates, and the initialized mark on one it adopted."""
    annotations = _meta(primary).get("annotations") or {}
    return REVISION_ANNOTATION not in annotations and INITIALIZED_ANNOTATION not in annotations


def initialized_meta(primary: Obj) -> Obj:
    """The primary's metadata with the initialized mark (what `_mark_initialized` wrote)."""
    meta = dict(_meta(primary))
    meta["annotations"] = {**(meta.get("annotations") or {}), INITIALIZED_ANNOTATION: "true"}
    return meta


def primary_labels(labels: dict[str, str] | None, label: str, value: str) -> dict[str, str]:
    """``labels`` with the selector label set to ``<value>-primary`` (others kept)."""
    return {**(labels or {}), label: value + PRIMARY_SUFFIX}


def _owned(canary: Canary, labels: dict[str, str] | None = None) -> Obj:
    """Labels and annotations that mark an object as Coalmine's, for ``canary``."""
    return {
        "labels": {**(labels or {}), MANAGED_BY[0]: MANAGED_BY[1]},
        "annotations": {CANARY_ANNOTATION: f"{canary.namespace}/{canary.name}"},
    }


def _copied_annotations(annotations: dict[str, str] | None) -> dict[str, str]:
    return {
        k: v
        for k, v in (annotations or {}).items()
        if k not in _NOT_COPIED and "toolkit.fluxcd.io" not in k
    }


def primary_template(target: Obj, copied: ConfigRefs, label: str, value: str, revision: str) -> Obj:
    """The target's pod template as the primary runs it.

    Selector label suffixed, references to copied ConfigMaps/Secrets renamed ``<name>-primary``
    (the same walk that found them), and the revision annotation set.
    """
    template: Obj = _copy((target.get("spec") or {}).get("template") or {})
    meta = template.setdefault("metadata", {})
    meta["labels"] = primary_labels(meta.get("labels"), label, value)
    meta["annotations"] = {**(meta.get("annotations") or {}), REVISION_ANNOTATION: revision}
    meta.pop("creationTimestamp", None)
    for kind, holder, key in references(template.get("spec") or {}):
        if f"{kind}/{holder.get(key)}" in copied:
            holder[key] = holder[key] + PRIMARY_SUFFIX
    for selector in _pod_selectors(template.get("spec") or {}):
        _rename_selected(selector, value)
    return template


def _pod_selectors(pod: Obj) -> list[Obj]:
    """The label selectors of the pod's anti-affinity terms and topology spread constraints."""
    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    terms = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    terms += [
        weighted.get("podAffinityTerm") or {}
        for weighted in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    ]
    terms += list(pod.get("topologySpreadConstraints") or [])
    return [term["labelSelector"] for term in terms if term.get("labelSelector")]


def _rename_selected(selector: Obj, value: str) -> None:
    """Point a selector of the target's pods at the primary's (Flagger's createPrimary does it
    for matchLabels): otherwise the primary's replicas spread away from the target's pods, not
    from each other, and can all land on one node or zone."""
    match = selector.get("matchLabels") or {}
    for key, selected in match.items():
        if selected == value:
            match[key] = value + PRIMARY_SUFFIX
    for expression in selector.get("matchExpressions") or []:
        values = expression.get("values") or []
        expression["values"] = [v + PRIMARY_SUFFIX if v == value else v for v in values]


def included_labels(labels: dict[str, str] | None, prefixes: tuple[str, ...]) -> dict[str, str]:
    """The target's own labels the primary Deployment takes (Flagger's include-label-prefix):
    none by default, those under one of ``prefixes``, all with ``*``; never a Flux label.

    Tools' tracking labels (Helm's, Argo CD's ``app.kubernetes.io/instance``, Flux's) would make
    them see ``podinfo-primary`` as theirs, out of sync, to prune. The pod template's labels
    are all kept: they are the pods' identity, not ownership.
    """
    return {
        key: value
        for key, value in (labels or {}).items()
        if "toolkit.fluxcd.io" not in key
        and any(prefix == "*" or (prefix and key.startswith(prefix)) for prefix in prefixes)
    }


def primary_deployment(
    canary: Canary,
    target: Obj,
    copied: ConfigRefs,
    revision: str,
    include_label_prefixes: tuple[str, ...] = (),
) -> Obj:
    """The ``-primary`` Deployment first created from the target (Flagger's createPrimary)."""
    label, value = selector_label(target)
    spec = target.get("spec") or {}
    labels = included_labels(_meta(target).get("labels"), include_label_prefixes)
    owned = _owned(canary, primary_labels(labels, label, value))
    annotations = _copied_annotations(_meta(target).get("annotations"))
    replicas = spec.get("replicas")
    primary_spec: Obj = {k: _copy(spec[k]) for k in _COPIED_SPEC if k in spec}
    primary_spec.update(
        replicas=replicas if isinstance(replicas, int) and replicas > 0 else 1,
        selector={"matchLabels": {label: value + PRIMARY_SUFFIX}},
        template=primary_template(target, copied, label, value, revision),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary.spec.target_ref.name + PRIMARY_SUFFIX,
            "namespace": canary.namespace,
            "labels": owned["labels"],
            "annotations": {
                **annotations,
                **owned["annotations"],
                REVISION_ANNOTATION: revision,
            },
        },
        "spec": primary_spec,
    }


def promoted_primary(
    primary: Obj, target: Obj, copied: ConfigRefs, revision: str, *, has_autoscaler: bool
) -> Obj:
    """The live primary with the target's template and rollout settings copied over.

    The primary keeps its own selector (immutable) and labels; its replicas follow the target
    only when no HPA owns them.
    """
    label, value = selector_label(target)
    spec = target.get("spec") or {}
    body: Obj = _copy(primary)
    body.pop("status", None)
    body_spec = body.setdefault("spec", {})
    for key in _COPIED_SPEC:
        if key in spec:
            body_spec[key] = _copy(spec[key])
    replicas = spec.get("replicas")
    if not has_autoscaler and isinstance(replicas, int) and replicas > 0:
        body_spec["replicas"] = replicas
    body_spec["template"] = primary_template(target, copied, label, value, revision)
    meta = body.setdefault("metadata", {})
    annotations = {**(meta.get("annotations") or {}), REVISION_ANNOTATION: revision}
    # The creation-time fingerprint no longer describes the primary: the revision does.
    annotations.pop(FINGERPRINT_ANNOTATION, None)
    meta["annotations"] = annotations
    return body


def primary_configs(canary: Canary, configs: ConfigRefs) -> list[tuple[str, Obj]]:
    """The ``-primary`` copies of the referenced ConfigMaps and Secrets that exist."""
    copies: list[tuple[str, Obj]] = []
    for ref, obj in sorted(configs.items()):
        if obj is None:
            continue
        kind = ref.split("/", 1)[0]
        owned = _owned(canary, _meta(obj).get("labels"))
        copy: Obj = {
            "apiVersion": "v1",
            "kind": "Secret" if kind == SECRET_REF else "ConfigMap",
            "metadata": {
                "name": _meta(obj)["name"] + PRIMARY_SUFFIX,
                "namespace": canary.namespace,
                **owned,
            },
        }
        # Every content field is written, empty when the source has none, so a field the
        # source dropped is dropped from the copy too.
        if kind == SECRET_REF:
            copy.update(data=_copy(obj.get("data") or {}), type=obj.get("type", "Opaque"))
        else:
            copy.update(
                data=_copy(obj.get("data") or {}), binaryData=_copy(obj.get("binaryData") or {})
            )
        copies.append((kind, copy))
    return copies


def primary_hpa(canary: Canary, hpa: Obj) -> Obj:
    """The target's HPA (autoscaling/v2) aimed at the primary Deployment.

    ``autoscalerRef.primaryScalerReplicas`` overrides its replica bounds, as in Flagger.
    """
    spec = hpa.get("spec") or {}
    scale_target = spec.get("scaleTargetRef") or {}
    primary_spec: Obj = {
        "scaleTargetRef": {
            "apiVersion": scale_target.get("apiVersion", "apps/v1"),
            "kind": scale_target.get("kind", "Deployment"),
            "name": canary.spec.target_ref.name + PRIMARY_SUFFIX,
        },
        "maxReplicas": spec.get("maxReplicas"),
    }
    for key in ("minReplicas", "metrics", "behavior"):
        if spec.get(key) is not None:
            primary_spec[key] = _copy(spec[key])
    bounds = (
        canary.spec.autoscaler_ref.primary_scaler_replicas if canary.spec.autoscaler_ref else None
    )
    if bounds is not None and bounds.min_replicas is not None:
        primary_spec["minReplicas"] = bounds.min_replicas
    if bounds is not None and bounds.max_replicas is not None:
        primary_spec["maxReplicas"] = bounds.max_replicas
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": _meta(hpa)["name"] + PRIMARY_SUFFIX,
            "namespace": canary.namespace,
            **_owned(canary, _meta(hpa).get("labels")),
        },
        "spec": primary_spec,
    }


def services(canary: Canary, label: str, value: str, target: Obj) -> list[Obj]:
    """The apex, ``-primary`` and ``-canary`` Services (Flagger's KubernetesDefaultRouter):
    the main port first, then the ports ``portDiscovery`` finds in ``target``'s pod."""
    service = canary.spec.service
    apex = canary.service_name
    ports = [main_port(canary), *discovered_ports(canary, target)]
    wanted = (
        (apex, value + PRIMARY_SUFFIX, service.apex),
        (apex + PRIMARY_SUFFIX, value + PRIMARY_SUFFIX, service.primary),
        (apex + "-canary", value, service.canary),
    )
    result = []
    for name, selects, metadata in wanted:
        custom = metadata or {}
        owned = _owned(canary, {**(custom.get("labels") or {}), label: name})
        result.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": canary.namespace,
                    "labels": owned["labels"],
                    "annotations": {**(custom.get("annotations") or {}), **owned["annotations"]},
                },
                # No type: a new Service is ClusterIP (the default), an existing one keeps its
                # type, as Flagger leaves it.
                "spec": {
                    "selector": {label: selects},
                    "ports": _copy(ports),
                },
            }
        )
    return result


def _generated(service: Obj) -> bool:
    """Whether a Service was made for a Canary: by Coalmine (its label) or by Flagger (a
    controller reference to a Canary), rather than written by its user."""
    if _meta(service).get("labels", {}).get(MANAGED_BY[0]) == MANAGED_BY[1]:
        return True
    return any(
        ref.get("kind") == "Canary" and ref.get("controller")
        for ref in _meta(service).get("ownerReferences") or []
    )


def carry_service(desired: Obj, live: Obj) -> None:
    """What an existing Service keeps: its node ports; and, when its user wrote it (adopted as
    the apex), its other ports and its owner.

    A port of the user's Service that Coalmine does not define (a metrics or gRPC port beside
    ``service.port``) stays: its callers reach the primary's pods on it as before. One with the
    name or number of a wanted port gives way to it, and an unnamed one goes (several ports
    must all be named). A user's Service is not marked as Coalmine's.
    """
    if not _generated(live):
        _keep_other_ports(desired, live)
    carry_node_ports(desired, live)
    if _meta(live).get("labels", {}).get(MANAGED_BY[0]) != MANAGED_BY[1]:
        meta = _meta(desired)
        meta.get("labels", {}).pop(MANAGED_BY[0], None)
        meta.get("annotations", {}).pop(CANARY_ANNOTATION, None)


def _keep_other_ports(desired: Obj, live: Obj) -> None:
    ports: list[Obj] = (desired.get("spec") or {}).setdefault("ports", [])
    names = {port.get("name") for port in ports}
    numbers = {(port.get("port"), port.get("protocol", "TCP")) for port in ports}
    for port in (live.get("spec") or {}).get("ports") or []:
        number = (port.get("port"), port.get("protocol", "TCP"))
        if port.get("name") and port["name"] not in names and number not in numbers:
            ports.append(_copy(port))


def carry_node_ports(desired: Obj, live: Obj) -> None:
    """Keep the node ports the server allocated to a NodePort/LoadBalancer Service's ports.

    Replacing the ports without them would make the server allocate new ones, moving the
    Service under its external users (Flagger copies them the same way, by port name).
    """
    allocated = {
        port.get("name"): port["nodePort"]
        for port in (live.get("spec") or {}).get("ports") or []
        if port.get("nodePort")
    }
    for port in (desired.get("spec") or {}).get("ports") or []:
        if port.get("name") in allocated:
            port["nodePort"] = allocated[port["name"]]
