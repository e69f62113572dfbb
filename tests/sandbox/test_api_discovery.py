"""Discovery and OpenAPI documents over HTTP, as kubectl 1.32 and the Python client read them."""

from __future__ import annotations

from tests.sandbox.test_api_harness import Cluster, cluster

__all__ = ["cluster"]

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_aggregated_discovery_has_the_exact_content_type(cluster: Cluster) -> None:
    status, body, headers = cluster.http("GET", "/apis", accept=KUBECTL_ACCEPT)
    assert status == 200
    assert headers["Content-Type"] == AGGREGATED
    assert body["kind"] == "APIGroupDiscoveryList"
    groups = {item["metadata"]["name"]: item for item in body["items"]}
    apps = groups["apps"]["versions"][0]
    deployments = next(r for r in apps["resources"] if r["resource"] == "deployments")
    assert deployments["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert deployments["shortNames"] == ["deploy"]
    assert deployments["categories"] == ["all"]
    subs = {s["subresource"]: s["responseKind"] for s in deployments["subresources"]}
    assert subs["scale"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert "status" in subs
    istio = [v["version"] for v in groups["networking.istio.io"]["versions"]]
    assert istio == ["v1", "v1beta1", "v1alpha3"]


def test_core_aggregated_and_legacy_documents(cluster: Cluster) -> None:
    _, core, headers = cluster.http("GET", "/api", accept=KUBECTL_ACCEPT)
    assert headers["Content-Type"] == AGGREGATED
    assert core["items"][0]["metadata"] == {}
    resources = {r["resource"] for r in core["items"][0]["versions"][0]["resources"]}
    assert {"pods", "services", "endpoints", "events", "configmaps", "secrets"} <= resources
    _, legacy, headers = cluster.http("GET", "/api")
    assert headers["Content-Type"] == "application/json"
    assert legacy["kind"] == "APIVersions"
    assert legacy["versions"] == ["v1"]
    _, groups, _ = cluster.http("GET", "/apis")
    assert groups["kind"] == "APIGroupList"
    apps = next(g for g in groups["groups"] if g["name"] == "apps")
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    _, v1, _ = cluster.http("GET", "/api/v1")
    pods = next(r for r in v1["resources"] if r["name"] == "pods")
    assert pods["namespaced"] is True
    assert "watch" in pods["verbs"]
    assert any(r["name"] == "pods/status" for r in v1["resources"])
    _, apps_v1, _ = cluster.http("GET", "/apis/apps/v1")
    scale = next(r for r in apps_v1["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert cluster.http("GET", "/apis/apps")[1]["kind"] == "APIGroup"
    assert cluster.http("GET", "/apis/nope/v1")[0] == 404


def test_protobuf_first_gets_json(cluster: Cluster) -> None:
    accept = "application/vnd.kubernetes.protobuf, */*"
    status, body, headers = cluster.http("GET", "/api/v1/namespaces/default", accept=accept)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body["metadata"]["name"] == "default"


def test_errors_are_status_objects(cluster: Cluster) -> None:
    status, body, _ = cluster.http("GET", "/apis/apps/v1/namespaces/default/deployments/nope")
    assert status == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
    }
    assert (
        cluster.http("GET", "/apis/apps/v1/namespaces/default/widgets")[1]["reason"] == "NotFound"
    )


def test_crd_registration_updates_discovery(cluster: Cluster) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {"name": "v2", "served": True, "storage": False},
                {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}},
            ],
        },
    }
    assert cluster.http("GET", "/apis/example.com/v1")[0] == 404
    status, created, _ = cluster.http(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert status == 201
    conditions = {c["type"]: c["status"] for c in created["status"]["conditions"]}
    assert conditions["Established"] == "True"
    _, aggregated, _ = cluster.http("GET", "/apis", accept=KUBECTL_ACCEPT)
    example = next(i for i in aggregated["items"] if i["metadata"]["name"] == "example.com")
    assert [v["version"] for v in example["versions"]] == ["v1", "v2"], "storage version first"
    _, legacy, _ = cluster.http("GET", "/apis/example.com/v2")
    assert legacy["resources"][0]["name"] == "gadgets"
    assert legacy["resources"][0]["namespaced"] is False
    gadget = {"apiVersion": "example.com/v2", "kind": "Gadget", "metadata": {"name": "g"}}
    assert cluster.http("POST", "/apis/example.com/v2/gadgets", gadget)[0] == 201
    assert (
        cluster.http("GET", "/apis/example.com/v1/gadgets/g")[1]["apiVersion"] == "example.com/v1"
    )
    cluster.http(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"
    )
    assert cluster.http("GET", "/apis/example.com/v1/gadgets/g")[0] == 404
    assert cluster.http("GET", "/apis/example.com/v1")[0] == 404


def test_openapi_v3_index_and_documents(cluster: Cluster) -> None:
    _, index, _ = cluster.http("GET", "/openapi/v3")
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    _, document, _ = cluster.http("GET", url)
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    _, istio, _ = cluster.http("GET", "/openapi/v3/apis/networking.istio.io/v1beta1")
    assert "io.istio.networking.v1beta1.VirtualService" in istio["components"]["schemas"]
    assert cluster.http("GET", "/openapi/v2")[0] == 404
