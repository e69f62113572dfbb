"""The table of resource types the sandbox API server serves: built-ins plus CRDs registered at run
time.

One `ResourceType` per (group, plural) describes everything the rest of the server needs: the
versions it is served in (all sharing one storage, so Istio's ``v1beta1`` and ``v1`` see the same
objects), its kind, scope, short names, categories, subresources, whether it is a custom resource
(strategic merge is refused with 415 for those, as a real server does), whether
``metadata.generation`` tracks its spec, and the printer columns ``kubectl get`` shows.

The `Registry` holds the built-in table and learns custom resources from CustomResourceDefinition
objects: the store feeds it every CRD write, so creating a CRD through any path (kubectl, Python
client, the store itself) makes the new kind appear in discovery at once, and deleting it withdraws
the kind.

Default CRDs (Istio networking and Flagger) are plain CRD documents, created in the store at
start-up exactly as an installed mesh would have them, so ``kubectl get crd`` shows them too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ScaleSpec:
    """Where /scale reads and writes: the CRD ``subresources.scale`` JSON paths."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".status.selector"


@dataclass(frozen=True)
class PrinterColumn:
    """One ``kubectl get`` column: a CRD ``additionalPrinterColumns`` entry."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ResourceType:
    """One served resource (all its versions share one storage)."""

    group: str
    versions: tuple[str, ...]  # served versions, preferred first
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # has a /status subresource: status only changes through it
    scale: ScaleSpec | None = None
    custom: bool = False  # a CRD-defined kind: no strategic merge
    generation: bool = False  # metadata.generation counts spec changes
    printer_columns: tuple[PrinterColumn, ...] = ()
    schemas: dict[str, Obj] = field(
        default_factory=dict, compare=False
    )  # version -> openAPIV3Schema
    verbs: tuple[str, ...] = VERBS

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str | None = None) -> str:
        """``apps/v1`` / ``v1`` for the given (or preferred) version."""
        version = version or self.versions[0]
        return f"{self.group}/{version}" if self.group else version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _core(kind: str, plural: str, *, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType("", ("v1",), kind, plural, kind.lower(), namespaced, **kw)


def _apps(kind: str, plural: str, short: str) -> ResourceType:
    return ResourceType(
        "apps",
        ("v1",),
        kind,
        plural,
        kind.lower(),
        True,
        short_names=(short,),
        categories=("all",),
        status=True,
        scale=ScaleSpec(),
        generation=True,
    )


def _rbac(kind: str, plural: str, *, namespaced: bool) -> ResourceType:
    group = "rbac.authorization.k8s.io"
    return ResourceType(group, ("v1",), kind, plural, kind.lower(), namespaced)


BUILTINS: tuple[ResourceType, ...] = (
    _core("Namespace", "namespaces", namespaced=False, short_names=("ns",), status=True),
    _core("Pod", "pods", short_names=("po",), categories=("all",), status=True),
    _core("Service", "services", short_names=("svc",), categories=("all",), status=True),
    _core("Endpoints", "endpoints", short_names=("ep",)),
    _core("Event", "events", short_names=("ev",)),
    _core("ConfigMap", "configmaps", short_names=("cm",)),
    _core("Secret", "secrets"),
    _core("ServiceAccount", "serviceaccounts", short_names=("sa",)),
    _apps("Deployment", "deployments", "deploy"),
    _apps("ReplicaSet", "replicasets", "rs"),
    ResourceType(
        "autoscaling",
        ("v2", "v1"),  # v1 converted (sandbox.apiserver.conversion)
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        True,
        short_names=("hpa",),
        categories=("all",),
        status=True,
    ),
    ResourceType(
        "apiextensions.k8s.io",
        ("v1",),
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        False,
        short_names=("crd", "crds"),
        status=True,
        generation=True,
    ),
    ResourceType("coordination.k8s.io", ("v1",), "Lease", "leases", "lease", True),
    _rbac("Role", "roles", namespaced=True),
    _rbac("ClusterRole", "clusterroles", namespaced=False),
    _rbac("RoleBinding", "rolebindings", namespaced=True),
    _rbac("ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    # Reviews are answered, never stored (`sandbox.apiserver.reviews`): create is their one verb.
    *(
        ResourceType(
            "authorization.k8s.io",
            ("v1",),
            kind,
            plural,
            kind.lower(),
            namespaced,
            verbs=("create",),
        )
        for kind, plural, namespaced in (
            ("SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
            ("SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
            ("SubjectAccessReview", "subjectaccessreviews", False),
            ("LocalSubjectAccessReview", "localsubjectaccessreviews", True),
        )
    ),
)


def _column(raw: Obj) -> PrinterColumn:
    return PrinterColumn(
        name=str(raw.get("name", "")),
        type=str(raw.get("type", "string")),
        json_path=str(raw.get("jsonPath", "")),
        description=str(raw.get("description", "")),
        priority=int(raw.get("priority", 0)),
        format=str(raw.get("format", "")),
    )


def _scale(raw: Obj | None) -> ScaleSpec | None:
    if raw is None:
        return None
    return ScaleSpec(
        spec_replicas=str(raw.get("specReplicasPath", ".spec.replicas")),
        status_replicas=str(raw.get("statusReplicasPath", ".status.replicas")),
        label_selector=raw.get("labelSelectorPath"),
    )


def from_crd(crd: Obj) -> ResourceType:
    """The type a CustomResourceDefinition declares (served versions, storage first)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    # Preferred version: the storage one, as kube-apiserver orders CRD versions by priority.
    versions.sort(key=lambda v: not v.get("storage", False))
    first = versions[0] if versions else {}
    subresources = first.get("subresources") or {}
    columns = first.get("additionalPrinterColumns") or []
    schemas = {
        str(v["name"]): (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in versions
    }
    plural = str(names.get("plural", ""))
    return ResourceType(
        group=str(spec.get("group", "")),
        versions=tuple(str(v["name"]) for v in versions),
        kind=str(names.get("kind", "")),
        plural=plural,
        singular=str(names.get("singular") or names.get("kind", "").lower()),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status="status" in subresources,
        scale=_scale(subresources.get("scale")),
        custom=True,
        generation=True,
        printer_columns=tuple(_column(c) for c in columns),
        schemas=schemas,
    )


class Registry:
    """Resource types by (group, plural), with the lookups discovery and routing need."""

    def __init__(self, types: Iterable[ResourceType] = BUILTINS) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        self.revision = 0  # bumped on every change; discovery documents are cached against it
        for rt in types:
            self.register(rt)

    def register(self, rt: ResourceType) -> None:
        self._types[rt.key] = rt
        self.revision += 1

    def unregister(self, group: str, plural: str) -> None:
        if self._types.pop((group, plural), None) is not None:
            self.revision += 1

    def lookup(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def served(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at ``/apis/<group>/<version>/<plural>``, or None."""
        rt = self._types.get((group, plural))
        return rt if rt is not None and version in rt.versions else None

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first, in registration order (core first)."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            for version in rt.versions:
                if version not in versions:
                    versions.append(version)
        return out

    def in_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and version in rt.versions]

    def on_crd_event(self, event_type: str, crd: Obj) -> None:
        """Keep custom kinds in step with CRD objects (called by the store on every CRD write)."""
        rt = from_crd(crd)
        if not rt.plural or not rt.group:
            return
        if event_type == "DELETED":
            self.unregister(rt.group, rt.plural)
        else:
            self.register(rt)


# --- CRDs installed by default: an Istio mesh and Flagger, as a cluster Coalmine targets has them

_OPEN_SCHEMA: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_AGE: Obj = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def crd(
    group: str,
    kind: str,
    plural: str,
    versions: Iterable[str],
    *,
    short_names: Iterable[str] = (),
    categories: Iterable[str] = (),
    columns: Iterable[Obj] = (),
    status: bool = True,
    namespaced: bool = True,
) -> Obj:
    """A CustomResourceDefinition document (the first version is the storage version)."""
    version_docs = []
    for index, version in enumerate(versions):
        doc: Obj = {
            "name": version,
            "served": True,
            "storage": index == 0,
            "schema": {"openAPIV3Schema": _OPEN_SCHEMA},
            "additionalPrinterColumns": [*columns, _AGE],
        }
        if status:
            doc["subresources"] = {"status": {}}
        version_docs.append(doc)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": list(short_names),
                "categories": list(categories),
            },
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": version_docs,
        },
    }


def _col(name: str, path: str, kind: str = "string", description: str = "") -> Obj:
    return {"name": name, "type": kind, "jsonPath": path, "description": description}


ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")


def default_crds() -> list[Obj]:
    """Istio networking (VirtualService, DestinationRule, Gateway, ServiceEntry) and Flagger."""
    istio = "networking.istio.io"
    flagger = "flagger.app"
    return [
        crd(
            istio,
            "VirtualService",
            "virtualservices",
            ISTIO_VERSIONS,
            short_names=["vs"],
            categories=["istio-io", "networking-istio-io"],
            columns=[_col("Gateways", ".spec.gateways"), _col("Hosts", ".spec.hosts")],
        ),
        crd(
            istio,
            "DestinationRule",
            "destinationrules",
            ISTIO_VERSIONS,
            short_names=["dr"],
            categories=["istio-io", "networking-istio-io"],
            columns=[_col("Host", ".spec.host")],
        ),
        crd(istio, "Gateway", "gateways", ISTIO_VERSIONS, short_names=["gw"]),
        crd(
            istio,
            "ServiceEntry",
            "serviceentries",
            ISTIO_VERSIONS,
            short_names=["se"],
            columns=[_col("Hosts", ".spec.hosts")],
        ),
        crd(
            flagger,
            "Canary",
            "canaries",
            # v1alpha3 (canaryAnalysis) too: Coalmine reads both, so the cluster accepts both.
            ["v1beta1", "v1alpha3"],
            short_names=["canary"],
            categories=["all"],
            columns=[
                _col("Status", ".status.phase"),
                _col("Weight", ".status.canaryWeight", "string"),
                _col("LastTransitionTime", ".status.lastTransitionTime", "string"),
            ],
        ),
        crd(
            flagger,
            "MetricTemplate",
            "metrictemplates",
            ["v1beta1"],
            columns=[_col("Provider", ".spec.provider.type")],
        ),
        crd(
            flagger,
            "AlertProvider",
            "alertproviders",
            ["v1beta1"],
            columns=[_col("Type", ".spec.type")],
        ),
    ]
