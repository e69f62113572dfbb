"""Decoding the Kubernetes protobuf request bodies kubectl's typed commands send.

``kubectl create namespace|configmap|secret|deployment|service|serviceaccount|role|rolebinding…``
build the object with client-go's typed clients, which send ``application/vnd.kubernetes.protobuf``
and do not fall back to JSON. So the sandbox reads that format for the kinds those commands create
(answers are always JSON, which the clients accept).

The envelope is ``k8s\\x00`` followed by a ``runtime.Unknown`` message (typeMeta = 1 {apiVersion =
1, kind = 2}, raw = 2); ``raw`` is the object in the field numbers of k8s.io/api's
``generated.proto``, restated in `MESSAGES` for the fields these commands set. Unknown fields are
skipped. Go's gogo-proto encoder writes every non-pointer field, zero values included, so zero
values are dropped again as ``omitempty`` would — except for pointer fields (``replicas`` …), which
are present only when set.
"""

from __future__ import annotations

import base64
from typing import Any

from sandbox.errors import BadRequest, UnsupportedMediaType

Obj = dict[str, Any]
MAGIC = b"k8s\x00"

# message -> field number -> (json name, type). Types: s string, i int, i* int pointer (zero kept),
# b bool, y bytes, rs repeated string, map map<string,string>, mapy map<string,bytes>, mapq
# map<string,Quantity>, ios IntOrString, a message name, or "[]" + a message name.
MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {
        1: ("name", "s"),
        2: ("generateName", "s"),
        3: ("namespace", "s"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "rs"),
    },
    "OwnerReference": {
        1: ("kind", "s"),
        3: ("name", "s"),
        4: ("uid", "s"),
        5: ("apiVersion", "s"),
        6: ("controller", "b"),
        7: ("blockOwnerDeletion", "b"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "rs")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "mapy"),
        4: ("immutable", "b"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "mapy"),
        3: ("type", "s"),
        4: ("stringData", "map"),
        5: ("immutable", "b"),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta"),
        3: ("imagePullSecrets", "[]LocalObjectReference"),
        4: ("automountServiceAccountToken", "b"),
    },
    "LocalObjectReference": {1: ("name", "s")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec")},
    "DeploymentSpec": {
        1: ("replicas", "i*"),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
        4: ("strategy", "DeploymentStrategy"),
        5: ("minReadySeconds", "i"),
        6: ("revisionHistoryLimit", "i*"),
        7: ("paused", "b"),
        9: ("progressDeadlineSeconds", "i*"),
    },
    "LabelSelector": {
        1: ("matchLabels", "map"),
        2: ("matchExpressions", "[]LabelSelectorRequirement"),
    },
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "rs")},
    "DeploymentStrategy": {1: ("type", "s"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        2: ("containers", "[]Container"),
        3: ("restartPolicy", "s"),
        4: ("terminationGracePeriodSeconds", "i*"),
        6: ("dnsPolicy", "s"),
        7: ("nodeSelector", "map"),
        8: ("serviceAccountName", "s"),
        15: ("imagePullSecrets", "[]LocalObjectReference"),
        19: ("schedulerName", "s"),
        20: ("initContainers", "[]Container"),
    },
    "Container": {
        1: ("name", "s"),
        2: ("image", "s"),
        3: ("command", "rs"),
        4: ("args", "rs"),
        5: ("workingDir", "s"),
        6: ("ports", "[]ContainerPort"),
        7: ("env", "[]EnvVar"),
        8: ("resources", "ResourceRequirements"),
        9: ("volumeMounts", "[]VolumeMount"),
        13: ("terminationMessagePath", "s"),
        14: ("imagePullPolicy", "s"),
        20: ("terminationMessagePolicy", "s"),
    },
    "ContainerPort": {
        1: ("name", "s"),
        2: ("hostPort", "i"),
        3: ("containerPort", "i"),
        4: ("protocol", "s"),
        5: ("hostIP", "s"),
    },
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "ResourceRequirements": {1: ("limits", "mapq"), 2: ("requests", "mapq")},
    "VolumeMount": {
        1: ("name", "s"),
        2: ("readOnly", "b"),
        3: ("mountPath", "s"),
        4: ("subPath", "s"),
    },
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec")},
    "ServiceSpec": {
        1: ("ports", "[]ServicePort"),
        2: ("selector", "map"),
        3: ("clusterIP", "s"),
        4: ("type", "s"),
        5: ("externalIPs", "rs"),
        7: ("sessionAffinity", "s"),
        10: ("externalName", "s"),
    },
    "ServicePort": {
        1: ("name", "s"),
        2: ("protocol", "s"),
        3: ("port", "i"),
        4: ("targetPort", "ios"),
        5: ("nodePort", "i"),
    },
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "PolicyRule": {
        1: ("verbs", "rs"),
        2: ("apiGroups", "rs"),
        3: ("resources", "rs"),
        4: ("resourceNames", "rs"),
        5: ("nonResourceURLs", "rs"),
    },
    "RoleBinding": {
        1: ("metadata", "ObjectMeta"),
        2: ("subjects", "[]Subject"),
        3: ("roleRef", "RoleRef"),
    },
    "ClusterRoleBinding": {
        1: ("metadata", "ObjectMeta"),
        2: ("subjects", "[]Subject"),
        3: ("roleRef", "RoleRef"),
    },
    "Subject": {1: ("kind", "s"), 2: ("apiGroup", "s"), 3: ("name", "s"), 4: ("namespace", "s")},
    "RoleRef": {1: ("apiGroup", "s"), 2: ("kind", "s"), 3: ("name", "s")},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSARSpec")},
    "SSARSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: ("namespace", "s"),
        2: ("verb", "s"),
        3: ("group", "s"),
        4: ("version", "s"),
        5: ("resource", "s"),
        6: ("subresource", "s"),
        7: ("name", "s"),
    },
    "NonResourceAttributes": {1: ("path", "s"), 2: ("verb", "s")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSRRSpec")},
    "SSRRSpec": {1: ("namespace", "s")},
    "HorizontalPodAutoscaler": {1: ("metadata", "ObjectMeta"), 2: ("spec", "HPASpecV1")},
    "HPASpecV1": {
        1: ("scaleTargetRef", "CrossVersionObjectReference"),
        2: ("minReplicas", "i*"),
        3: ("maxReplicas", "i"),
        4: ("targetCPUUtilizationPercentage", "i*"),
    },
    "CrossVersionObjectReference": {1: ("kind", "s"), 2: ("name", "s"), 3: ("apiVersion", "s")},
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "y")},
    "TypeMeta": {1: ("apiVersion", "s"), 2: ("kind", "s")},
    "IntOrString": {1: ("type", "i"), 2: ("intVal", "i"), 3: ("strVal", "s")},
    "Quantity": {1: ("string", "s")},
    "Entry": {1: ("key", "s"), 2: ("value", "y")},
}


DECODABLE = {
    "Namespace",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Deployment",
    "Service",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "HorizontalPodAutoscaler",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise BadRequest("truncated protobuf body")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4  # fixed-width numbers: none in the kinds decoded here
        else:
            raise BadRequest(f"unsupported protobuf wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "s":
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind in ("i", "i*"):
        return _signed(value) if isinstance(value, int) else 0
    if kind == "b":
        return bool(value)
    if kind == "y":
        return value if isinstance(value, bytes) else b""
    return _message(kind, value if isinstance(value, bytes) else b"")


def _special(kind: str, value: bytes) -> Any:
    if kind == "ios":
        parts = _message("IntOrString", value)
        return parts.get("strVal", "") if parts.get("type") == 1 else parts.get("intVal", 0)
    entry = dict(_fields(value))
    key = entry.get(1, b"")
    raw = entry.get(2, b"")
    key_text = key.decode() if isinstance(key, bytes) else str(key)
    raw_bytes = raw if isinstance(raw, bytes) else b""
    if kind == "map":
        return key_text, raw_bytes.decode()
    if kind == "mapy":
        return key_text, base64.b64encode(raw_bytes).decode()
    return key_text, _message("Quantity", raw_bytes).get("string", "")


def _message(name: str, data: bytes) -> Obj:
    schema = MESSAGES[name]
    out: Obj = {}
    for number, value in _fields(data):
        if number not in schema:
            continue  # a field these kinds do not need: skipped, as proto decoders do
        field, kind = schema[number]
        if kind.startswith("map"):
            assert isinstance(value, bytes)
            key, item = _special(kind, value)
            out.setdefault(field, {})[key] = item
        elif kind == "rs" or kind.startswith("[]"):
            out.setdefault(field, []).append(_scalar("s" if kind == "rs" else kind[2:], value))
        elif kind == "ios":
            assert isinstance(value, bytes)
            out[field] = _special(kind, value)
        else:
            out[field] = _scalar(kind, value)
    # Drop the zero values gogo-proto writes for non-pointer fields (what omitempty would omit).
    return {k: v for k, v in out.items() if v not in ("", 0, False, {}, []) or _pointer(schema, k)}


def _pointer(schema: dict[int, tuple[str, str]], field: str) -> bool:
    return any(name == field and kind == "i*" for name, kind in schema.values())


def decode(body: bytes) -> Obj:
    """A JSON-shaped object from a ``application/vnd.kubernetes.protobuf`` request body."""
    if not body.startswith(MAGIC):
        raise BadRequest("protobuf body without the k8s envelope")
    unknown = _message("Unknown", body[len(MAGIC) :])
    type_meta = unknown.get("typeMeta") or {}
    kind = str(type_meta.get("kind", ""))
    if kind not in DECODABLE:
        raise UnsupportedMediaType(
            f"the sandbox decodes protobuf only for the kinds kubectl's create commands send, "
            f"not {kind or 'this body'}: send JSON"
        )
    obj = _message(kind, unknown.get("raw") or b"")
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
