"""The official Python client against the sandbox: typed APIs, CustomObjectsApi, DynamicClient."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError

from tests.sandbox.test_api_harness import Cluster, cluster

__all__ = ["cluster"]

NS = "test"


def deployment(name: str = "podinfo", replicas: int = 2, image: str = "podinfo:6.0.0") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "podinfod", "image": image, "ports": [{"containerPort": 9898}]}
                    ]
                },
            },
        },
    }


@pytest.fixture
def api(cluster: Cluster) -> client.ApiClient:
    api_client = cluster.api_client()
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NS}})
    return api_client


def status_of(call: Any) -> ApiException:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value


def test_typed_deployment_crud_and_metadata(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(NS, deployment())
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted, as the apiserver does
    rv = int(created.metadata.resource_version)
    again = status_of(lambda: apps.create_namespaced_deployment(NS, deployment()))
    assert (again.status, again.reason) == (409, "Conflict")
    assert '"reason":"AlreadyExists"' in again.body
    patched = apps.patch_namespaced_deployment("podinfo", NS, {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.generation == 1, "metadata changes do not bump generation"
    assert int(patched.metadata.resource_version) > rv
    patched = apps.patch_namespaced_deployment("podinfo", NS, {"spec": {"replicas": 4}})
    assert patched.metadata.generation == 2
    stale = created
    stale.spec.replicas = 1
    conflict = status_of(lambda: apps.replace_namespaced_deployment("podinfo", NS, stale))
    assert conflict.status == 409
    assert "the object has been modified" in conflict.body
    fresh = apps.read_namespaced_deployment("podinfo", NS)
    fresh.spec.replicas = 1
    assert apps.replace_namespaced_deployment("podinfo", NS, fresh).spec.replicas == 1
    apps.delete_namespaced_deployment("podinfo", NS, body=client.V1DeleteOptions())
    missing = status_of(lambda: apps.read_namespaced_deployment("podinfo", NS))
    assert missing.status == 404


def test_status_subresource_separates_spec_and_status(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment())
    # Status sent to the main resource is ignored; spec sent to /status is ignored.
    through_main = apps.patch_namespaced_deployment("podinfo", NS, {"status": {"replicas": 9}})
    assert through_main.status.replicas is None
    body = {
        "spec": {"replicas": 7},
        "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1},
    }
    through_status = apps.patch_namespaced_deployment_status("podinfo", NS, body)
    assert through_status.status.ready_replicas == 2
    assert through_status.spec.replicas == 2
    assert through_status.metadata.generation == 1, "status writes do not bump generation"
    read = apps.read_namespaced_deployment_status("podinfo", NS)
    read.status.available_replicas = 2
    replaced = apps.replace_namespaced_deployment_status("podinfo", NS, read)
    assert replaced.status.available_replicas == 2
    # A spec update keeps the status the controllers wrote.
    kept = apps.patch_namespaced_deployment("podinfo", NS, {"spec": {"replicas": 3}})
    assert kept.status.ready_replicas == 2


def test_scale_subresource(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment())
    scale = apps.read_namespaced_deployment_scale("podinfo", NS)
    assert scale.api_version == "autoscaling/v1"
    assert scale.kind == "Scale"
    assert scale.spec.replicas == 2
    assert scale.status.selector == "app=podinfo"
    assert (
        apps.patch_namespaced_deployment_scale(
            "podinfo", NS, {"spec": {"replicas": 5}}
        ).spec.replicas
        == 5
    )
    scale = apps.read_namespaced_deployment_scale("podinfo", NS)
    scale.spec.replicas = 0
    assert apps.replace_namespaced_deployment_scale("podinfo", NS, scale).spec.replicas == 0
    assert apps.read_namespaced_deployment("podinfo", NS).spec.replicas == 0
    scale.spec.replicas = 3  # scale still carries the old resourceVersion
    assert (
        status_of(lambda: apps.replace_namespaced_deployment_scale("podinfo", NS, scale)).status
        == 409
    )


def test_validation_errors_are_422(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    nameless = deployment()
    del nameless["metadata"]["name"]
    error = status_of(lambda: apps.create_namespaced_deployment(NS, nameless))
    assert error.status == 422
    assert "name or generateName is required" in error.body
    mismatched = deployment()
    mismatched["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    assert status_of(lambda: apps.create_namespaced_deployment(NS, mismatched)).status == 422
    core = client.CoreV1Api(api)
    absent_ns = status_of(
        lambda: core.create_namespaced_config_map("nope", {"metadata": {"name": "c"}})
    )
    assert absent_ns.status == 404


def test_core_objects_generate_name_and_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for index, tier in enumerate(["web", "web", "db", None]):
        labels = {"app": "shop", "n": str(index)} | ({"tier": tier} if tier else {})
        core.create_namespaced_config_map(
            NS, {"metadata": {"generateName": "cfg-", "labels": labels}}
        )
    names = [c.metadata.name for c in core.list_namespaced_config_map(NS).items]
    assert len(names) == 4
    assert all(n.startswith("cfg-") and len(n) == 9 for n in names)

    def selected(selector: str) -> list[str]:
        items = core.list_namespaced_config_map(NS, label_selector=selector).items
        return sorted(c.metadata.labels["n"] for c in items)

    assert selected("tier=web") == ["0", "1"]
    assert selected("tier in (web,db)") == ["0", "1", "2"]
    assert selected("tier notin (web)") == ["2", "3"]
    assert selected("!tier") == ["3"]
    assert selected("app=shop,tier!=db,tier") == ["0", "1"]
    one = names[0]
    by_name = core.list_namespaced_config_map(NS, field_selector=f"metadata.name={one}").items
    assert [c.metadata.name for c in by_name] == [one]


def test_list_pages_with_limit_and_continue(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for index in range(7):
        core.create_namespaced_secret(
            NS, {"metadata": {"name": f"s{index}"}, "stringData": {"k": "v"}}
        )
    seen: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_secret(NS, limit=3, _continue=token)
        seen += [s.metadata.name for s in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert seen == [f"s{i}" for i in range(7)]
    assert core.read_namespaced_secret("s0", NS).data == {"k": "dg=="}


def test_events_by_involved_object(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name, target in (("e1", "podinfo"), ("e2", "other"), ("e3", "podinfo")):
        core.create_namespaced_event(
            NS,
            {
                "metadata": {"name": name},
                "involvedObject": {"kind": "Deployment", "name": target, "namespace": NS},
                "reason": "Test",
                "message": name,
                "type": "Normal",
            },
        )
    selector = "involvedObject.kind=Deployment,involvedObject.name=podinfo"
    found = core.list_namespaced_event(NS, field_selector=selector).items
    assert [e.metadata.name for e in found] == ["e1", "e3"]
    bad = status_of(lambda: core.list_namespaced_event(NS, field_selector="spec.nope=1"))
    assert bad.status == 400


def test_services_pods_and_deletecollection(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(
        NS,
        {
            "metadata": {"name": "podinfo"},
            "spec": {"selector": {"app": "podinfo"}, "ports": [{"port": 9898}]},
        },
    )
    assert svc.spec.cluster_ip
    assert svc.spec.ports[0].target_port == 9898
    replaced = core.replace_namespaced_service(
        "podinfo", NS, {"metadata": {"name": "podinfo"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert replaced.spec.cluster_ip == svc.spec.cluster_ip, (
        "clusterIP survives a replace without it"
    )
    for index in range(3):
        pod = {
            "metadata": {"name": f"p{index}", "labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        }
        assert core.create_namespaced_pod(NS, pod).status.phase == "Pending"
    core.delete_collection_namespaced_pod(NS, label_selector="app=podinfo")
    assert core.list_namespaced_pod(NS).items == []


def test_delete_preconditions_and_owner_cascade(api: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    dep = apps.create_namespaced_deployment(NS, deployment())
    owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo",
        "uid": dep.metadata.uid,
    }
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "owned", "ownerReferences": [owner]}}
    )
    wrong = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-it"))
    assert (
        status_of(lambda: apps.delete_namespaced_deployment("podinfo", NS, body=wrong)).status
        == 409
    )
    right = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=dep.metadata.uid))
    apps.delete_namespaced_deployment("podinfo", NS, body=right)
    assert status_of(lambda: core.read_namespaced_config_map("owned", NS)).status == 404


def test_autoscaling_v2(api: client.ApiClient) -> None:
    hpa_api = client.AutoscalingV2Api(api)
    hpa = {
        "metadata": {"name": "podinfo-primary"},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "podinfo-primary",
            },
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }
    created = hpa_api.create_namespaced_horizontal_pod_autoscaler(NS, hpa)
    assert created.spec.metrics[0].resource.target.average_utilization == 80
    body = {"status": {"currentReplicas": 2, "desiredReplicas": 2}}
    status = hpa_api.patch_namespaced_horizontal_pod_autoscaler_status("podinfo-primary", NS, body)
    assert status.status.current_replicas == 2
    patched = hpa_api.patch_namespaced_horizontal_pod_autoscaler(
        "podinfo-primary", NS, {"spec": {"maxReplicas": 6}}
    )
    assert patched.spec.max_replicas == 6
    assert patched.status.current_replicas == 2


VS = {
    "apiVersion": "networking.istio.io/v1beta1",
    "kind": "VirtualService",
    "metadata": {"name": "podinfo"},
    "spec": {
        "hosts": ["podinfo"],
        "http": [{"route": [{"destination": {"host": "podinfo-primary"}, "weight": 100}]}],
    },
}


def test_custom_objects_istio_versions_share_storage(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    group = "networking.istio.io"
    custom.create_namespaced_custom_object(group, "v1beta1", NS, "virtualservices", VS)
    as_v1 = custom.get_namespaced_custom_object(group, "v1", NS, "virtualservices", "podinfo")
    assert as_v1["apiVersion"] == "networking.istio.io/v1"
    routes = [
        {"destination": {"host": "podinfo-primary"}, "weight": 90},
        {"destination": {"host": "podinfo-canary"}, "weight": 10},
    ]
    merged = custom.patch_namespaced_custom_object(
        group, "v1", NS, "virtualservices", "podinfo", {"spec": {"http": [{"route": routes}]}}
    )
    assert merged["spec"]["http"][0]["route"] == routes
    assert merged["metadata"]["generation"] == 2
    refused = status_of(
        lambda: custom.patch_namespaced_custom_object(
            group,
            "v1",
            NS,
            "virtualservices",
            "podinfo",
            {"spec": {"hosts": ["x"]}},
            _content_type="application/strategic-merge-patch+json",
        )
    )
    assert refused.status == 415
    ops = [
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 80},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 20},
    ]
    jp = custom.patch_namespaced_custom_object(
        group,
        "v1beta1",
        NS,
        "virtualservices",
        "podinfo",
        ops,
        _content_type="application/json-patch+json",
    )
    assert [r["weight"] for r in jp["spec"]["http"][0]["route"]] == [80, 20]
    listed = custom.list_cluster_custom_object(group, "v1", "virtualservices")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["podinfo"]
    custom.delete_namespaced_custom_object(group, "v1", NS, "virtualservices", "podinfo")
    assert custom.list_namespaced_custom_object(group, "v1", NS, "virtualservices")["items"] == []


def test_custom_object_status_subresource(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"}},
        "status": {"phase": "ignored on create"},
    }
    created = custom.create_namespaced_custom_object(
        "flagger.app", "v1beta1", NS, "canaries", canary
    )
    assert "status" not in created
    body = {"status": {"phase": "Progressing", "canaryWeight": 10}}
    custom.patch_namespaced_custom_object_status(
        "flagger.app", "v1beta1", NS, "canaries", "podinfo", body
    )
    read = custom.get_namespaced_custom_object("flagger.app", "v1beta1", NS, "canaries", "podinfo")
    assert read["status"] == {"phase": "Progressing", "canaryWeight": 10}
    assert read["metadata"]["generation"] == 1


def test_dynamic_client_discovers_and_uses_resources(api: client.ApiClient, tmp_path: Any) -> None:
    dynamic = DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.create(body=deployment(), namespace=NS)
    assert deployments.get(name="podinfo", namespace=NS).spec.replicas == 2
    deployments.patch(
        body={"spec": {"replicas": 3}},
        name="podinfo",
        namespace=NS,
        content_type="application/merge-patch+json",
    )
    vs = dynamic.resources.get(api_version="networking.istio.io/v1", kind="VirtualService")
    vs.create(body={**VS, "apiVersion": "networking.istio.io/v1"}, namespace=NS)
    assert [i.metadata.name for i in vs.get(namespace=NS).items] == ["podinfo"]
    scale = deployments.subresources["scale"]
    assert scale.get(name="podinfo", namespace=NS).spec.replicas == 3
    # The client's own patches own spec.replicas (manager "OpenAPI-Generator", from its user agent).
    with pytest.raises(ConflictError) as caught:
        deployments.server_side_apply(
            body=deployment(replicas=4), name="podinfo", namespace=NS, field_manager="coalmine"
        )
    assert 'conflict with \\"OpenAPI-Generator\\"' in caught.value.body
    assert ".spec.replicas" in caught.value.body
    server_side = deployments.server_side_apply(
        body=deployment(replicas=4),
        name="podinfo",
        namespace=NS,
        field_manager="coalmine",
        force_conflicts=True,
    )
    assert server_side.spec.replicas == 4
    managers = {(m.manager, m.operation) for m in server_side.metadata.managedFields}
    assert managers == {("OpenAPI-Generator", "Update"), ("coalmine", "Apply")}


def test_patch_carrying_a_resource_version_is_optimistic(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    group = "networking.istio.io"
    created = custom.create_namespaced_custom_object(group, "v1beta1", NS, "virtualservices", VS)
    rv = created["metadata"]["resourceVersion"]
    body = {"metadata": {"resourceVersion": rv}, "spec": {"hosts": ["a"]}}
    done = custom.patch_namespaced_custom_object(
        group, "v1beta1", NS, "virtualservices", "podinfo", body
    )
    assert done["spec"]["hosts"] == ["a"]
    body = {"metadata": {"resourceVersion": rv}, "spec": {"hosts": ["b"]}}  # rv is stale now
    stale = status_of(
        lambda: custom.patch_namespaced_custom_object(
            group, "v1beta1", NS, "virtualservices", "podinfo", body
        )
    )
    assert stale.status == 409
    assert '"reason":"Conflict"' in stale.body


def test_autoscaling_v1_is_converted_from_v2_storage(api: client.ApiClient) -> None:
    v1, v2 = client.AutoscalingV1Api(api), client.AutoscalingV2Api(api)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"}
    spec = {"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 3}
    v1.create_namespaced_horizontal_pod_autoscaler(
        NS, {"metadata": {"name": "a"}, "spec": {**spec, "targetCPUUtilizationPercentage": 60}}
    )
    as_v2 = v2.read_namespaced_horizontal_pod_autoscaler("a", NS)
    assert as_v2.spec.metrics[0].resource.name == "cpu"
    assert as_v2.spec.metrics[0].resource.target.average_utilization == 60
    memory = {
        "type": "Resource",
        "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}},
    }
    cpu = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
    v2.create_namespaced_horizontal_pod_autoscaler(
        NS, {"metadata": {"name": "b"}, "spec": {**spec, "metrics": [cpu, memory]}}
    )
    as_v1 = v1.read_namespaced_horizontal_pod_autoscaler("b", NS)
    assert as_v1.spec.target_cpu_utilization_percentage == 80
    assert "memory" in as_v1.metadata.annotations["autoscaling.alpha.kubernetes.io/metrics"]
    as_v1.spec.max_replicas = 7
    v1.replace_namespaced_horizontal_pod_autoscaler("b", NS, as_v1)
    again = v2.read_namespaced_horizontal_pod_autoscaler("b", NS)
    assert again.spec.max_replicas == 7
    assert [m.resource.name for m in again.spec.metrics] == ["cpu", "memory"], (
        "a v1 round trip loses nothing"
    )
    assert again.metadata.annotations in (None, {})
