"""Discovery documents: ``/version``, aggregated discovery v2 and the legacy group/resource lists.

kubectl 1.32 asks ``/api`` and ``/apis`` for ``apidiscovery.k8s.io/v2`` and accepts the answer only
if the response Content-Type is exactly `AGGREGATED_CONTENT_TYPE`; otherwise (and for the Python
client, which knows only the legacy form) the same paths answer ``APIVersions`` / ``APIGroupList``,
and ``/api/v1`` and ``/apis/<group>/<version>`` answer ``APIResourceList``. Every document is
derived from the `Registry` and cached against its revision, so a new CRD shows up on the next
request.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.resources import Registry, ResourceType

Obj = dict[str, Any]

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
SUBRESOURCE_VERBS = ["get", "patch", "update"]
VERSION_INFO: Obj = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def wants_aggregated(accept: str) -> bool:
    """Whether the Accept header asks for aggregated discovery v2 first among what we can answer."""
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "g=apidiscovery.k8s.io" in params and "v=v2" in params:
            return True
        media = part.split(";")[0].strip()
        if media in ("application/json", "*/*") and not params:
            return False
    return False


def _gvk(group: str, version: str, kind: str) -> Obj:
    return {"group": group, "version": version, "kind": kind}


def _storage_hash(rt: ResourceType) -> str:
    return hashlib.sha256(f"{rt.group}/{rt.versions[0]}/{rt.kind}".encode()).hexdigest()[:11]


def _subresources(rt: ResourceType) -> list[tuple[str, str, str, str]]:
    """(name, group, version, kind) of each subresource."""
    subs = []
    if rt.scale is not None:
        subs.append(("scale", "autoscaling", "v1", "Scale"))
    if rt.status:
        subs.append(("status", rt.group, "", rt.kind))
    return subs


def _aggregated_resource(rt: ResourceType, version: str) -> Obj:
    doc: Obj = {
        "resource": rt.plural,
        "responseKind": _gvk(rt.group, version, rt.kind),
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        doc["shortNames"] = list(rt.short_names)
    if rt.categories:
        doc["categories"] = list(rt.categories)
    subs = [
        {
            "subresource": name,
            "responseKind": _gvk(group, sub_version or version, kind),
            "verbs": SUBRESOURCE_VERBS,
        }
        for name, group, sub_version, kind in _subresources(rt)
    ]
    if subs:
        doc["subresources"] = subs
    return doc


def _legacy_resources(rt: ResourceType, version: str) -> list[Obj]:
    main: Obj = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
        "storageVersionHash": _storage_hash(rt),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    for name, group, sub_version, kind in _subresources(rt):
        sub: Obj = {
            "name": f"{rt.plural}/{name}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": kind,
            "verbs": SUBRESOURCE_VERBS,
        }
        if group != rt.group:
            sub["group"], sub["version"] = group, sub_version
        out.append(sub)
    return out


class Discovery:
    """Discovery documents of one registry, rebuilt when the registry changes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cache: dict[str, Any] = {}
        self._revision = -1

    def _cached(self, key: str, build: Any) -> Any:
        if self._revision != self.registry.revision:
            self._cache.clear()
            self._revision = self.registry.revision
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def aggregated(self, *, core: bool) -> Obj:
        return self._cached(f"agg:{core}", lambda: self._aggregated(core))  # type: ignore[no-any-return]

    def _aggregated(self, core: bool) -> Obj:
        items = []
        for group, versions in self.registry.groups().items():
            if (group == "") != core:
                continue
            version_docs = []
            for version in versions:
                types = self.registry.in_version(group, version)
                resources = [_aggregated_resource(rt, version) for rt in types]
                resources.sort(key=lambda r: r["resource"])
                version_docs.append(
                    {"version": version, "resources": resources, "freshness": "Current"}
                )
            items.append({"metadata": {"name": group} if group else {}, "versions": version_docs})
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }

    def api_versions(self, server_address: str) -> Obj:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }

    def group(self, group: str) -> Obj | None:
        versions = self.registry.groups().get(group)
        if not versions or not group:
            return None
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def group_list(self) -> Obj:
        def build() -> Obj:
            groups = [self.group(g) for g in self.registry.groups() if g]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

        return self._cached("groups", build)  # type: ignore[no-any-return]

    def resource_list(self, group: str, version: str) -> Obj | None:
        types = self.registry.in_version(group, version)
        if not types:
            return None
        resources = [r for rt in types for r in _legacy_resources(rt, version)]
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }
