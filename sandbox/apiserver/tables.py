"""``meta.k8s.io/v1`` Table output: the columns ``kubectl get`` prints, computed server-side.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever
columns the server sends. The columns here follow kube-apiserver's printers for the built-in kinds
(deployments: READY, UP-TO-DATE, AVAILABLE, AGE; pods: READY, STATUS, RESTARTS, AGE; …) and a CRD's
``additionalPrinterColumns`` for custom kinds (``date`` columns rendered as ages, as the CRD table
convertor does). Rows carry ``PartialObjectMetadata`` unless ``includeObject=Object`` or ``None``
asks otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox.labels import selector_string
from sandbox.resources import PrinterColumn, ResourceType

Obj = dict[str, Any]
Cells = Callable[[Obj], list[Any]]

_NAME = {"name": "Name", "type": "string", "format": "name", "priority": 0,
         "description": "Name must be unique within a namespace."}  # fmt: skip


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def age(timestamp: str | None, now: datetime | None = None) -> str:  # noqa: PLR0911
    """Kubernetes' duration.HumanDuration of the time since ``timestamp``."""
    if not timestamp:
        return "<unknown>"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"


def _col(name: str, kind: str = "string", priority: int = 0) -> Obj:
    return {"name": name, "type": kind, "format": "", "description": name, "priority": priority}


def _created(obj: Obj) -> str:
    return age(obj["metadata"].get("creationTimestamp"))


def _containers(obj: Obj) -> tuple[str, str]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    return (
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
    )


def _deployment(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _created(obj),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _replicaset(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _created(obj),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _pod(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    return [
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        str(restarts),
        _created(obj),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
    ]


def _ports(spec: Obj) -> str:
    ports = [f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []]
    return ",".join(ports) or "<none>"


def _service(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    external = ",".join(spec.get("externalIPs") or []) or "<none>"
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        external,
        _ports(spec),
        _created(obj),
        selector or "<none>",
    ]


def _endpoints(obj: Obj) -> list[Any]:
    addresses = [
        f"{a.get('ip')}:{p.get('port')}"
        for subset in obj.get("subsets") or []
        for a in subset.get("addresses") or []
        for p in subset.get("ports") or [{}]
    ]
    shown = ",".join(addresses[:3]) + (
        f" + {len(addresses) - 3} more..." if len(addresses) > 3 else ""
    )
    return [shown or "<none>", _created(obj)]


def _event(obj: Obj) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    last = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    return [
        age(str(last)[:19] + "Z" if last else None),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
        obj["metadata"]["name"],
    ]


def _hpa(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    targets = []
    for metric in spec.get("metrics") or []:
        target = ((metric.get("resource") or {}).get("target")) or {}
        if "averageUtilization" in target:
            targets.append(f"{(metric.get('resource') or {}).get('name')}: <unknown>/"
                           f"{target['averageUtilization']}%")  # fmt: skip
    return [
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        ", ".join(targets) or "<none>",
        spec.get("minReplicas", 1),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        _created(obj),
    ]


BUILTIN: dict[tuple[str, str], tuple[list[Obj], Cells]] = {
    ("apps", "deployments"): (
        [
            _col("Ready"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _deployment,
    ),
    ("apps", "replicasets"): (
        [
            _col("Desired", "integer"),
            _col("Current", "integer"),
            _col("Ready", "integer"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _replicaset,
    ),
    ("", "pods"): (
        [
            _col("Ready"),
            _col("Status"),
            _col("Restarts"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
        ],
        _pod,
    ),
    ("", "services"): (
        [
            _col("Type"),
            _col("Cluster-IP"),
            _col("External-IP"),
            _col("Port(s)"),
            _col("Age"),
            _col("Selector", priority=1),
        ],
        _service,
    ),
    ("", "endpoints"): ([_col("Endpoints"), _col("Age")], _endpoints),
    ("", "events"): (
        [
            _col("Last Seen"),
            _col("Type"),
            _col("Reason"),
            _col("Object"),
            _col("Message"),
            _col("Name", priority=1),
        ],
        _event,
    ),
    ("autoscaling", "horizontalpodautoscalers"): (
        [
            _col("Reference"),
            _col("Targets"),
            _col("MinPods", "integer"),
            _col("MaxPods", "integer"),
            _col("Replicas", "integer"),
            _col("Age"),
        ],
        _hpa,
    ),
    ("", "namespaces"): (
        [_col("Status"), _col("Age")],
        lambda o: [(o.get("status") or {}).get("phase", "Active"), _created(o)],
    ),
    ("", "configmaps"): (
        [_col("Data", "integer"), _col("Age")],
        lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), _created(o)],
    ),
    ("", "secrets"): (
        [_col("Type"), _col("Data", "integer"), _col("Age")],
        lambda o: [o.get("type", "Opaque"), len(o.get("data") or {}), _created(o)],
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [_col("Created At", "date")],
        lambda o: [o["metadata"].get("creationTimestamp")],
    ),
}


def _jsonpath(obj: Obj, path: str) -> Any:
    current: Any = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        name, _, index = part.partition("[")
        current = current.get(name) if isinstance(current, dict) else None
        if index and isinstance(current, list):
            position = int(index.rstrip("]"))
            current = current[position] if -len(current) <= position < len(current) else None
    return current


def _custom_cell(obj: Obj, column: PrinterColumn) -> Any:
    value = _jsonpath(obj, column.json_path)
    if value is None:
        return None
    if column.type == "date":
        return age(str(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _columns(rt: ResourceType) -> tuple[list[Obj], Cells]:
    if rt.key in BUILTIN:
        return BUILTIN[rt.key]
    if rt.custom and rt.printer_columns:
        defs = [
            {
                "name": c.name,
                "type": c.type,
                "format": c.format,
                "priority": c.priority,
                "description": c.description,
            }
            for c in rt.printer_columns
        ]
        return defs, lambda o: [_custom_cell(o, c) for c in rt.printer_columns]
    return [_col("Age")], lambda o: [_created(o)]


def _row_object(rt: ResourceType, obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"},
    }


def table(rt: ResourceType, objs: list[Obj], query: Mapping[str, str]) -> Obj:
    """A Table of ``objs`` with the type's columns (Name first)."""
    defs, cells = _columns(rt)
    # Events lead with LAST SEEN and keep their name in a wide column, as the real printer does.
    named = rt.key != ("", "events")
    include = query.get("includeObject", "Metadata")
    rows = []
    for obj in objs:
        row: Obj = {"cells": [obj["metadata"]["name"], *cells(obj)] if named else cells(obj)}
        embedded = _row_object(rt, obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [_NAME, *defs] if named else defs,
        "rows": rows,
    }
