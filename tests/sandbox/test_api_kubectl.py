"""The machine's real kubectl (the 1.32 binary, chosen by /version) against the sandbox."""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.sandbox.test_api_harness import KUBECTL, Cluster, cluster

__all__ = ["cluster"]

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata:
  name: test
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
  labels: {app: podinfo}
spec:
  replicas: 2
  selector:
    matchLabels: {app: podinfo}
  template:
    metadata:
      labels: {app: podinfo}
    spec:
      containers:
      - name: podinfod
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        ports:
        - {containerPort: 9898, name: http}
        env:
        - {name: PODINFO_UI_COLOR, value: "#34577c"}
---
apiVersion: v1
kind: Service
metadata:
  name: podinfo
  namespace: test
spec:
  selector: {app: podinfo}
  ports:
  - {port: 9898, name: http}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: podinfo
  namespace: test
spec:
  hosts: [podinfo.test]
  gateways: [mesh]
  http:
  - route:
    - destination: {host: podinfo-primary}
      weight: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: podinfo-primary
  namespace: test
spec:
  host: podinfo-primary
"""


def deploy(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=MANIFESTS)


def get_json(cluster: Cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def test_dispatcher_picks_the_1_32_binary(cluster: Cluster) -> None:
    out = cluster.kubectl("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["minor"] == "32"


def test_api_resources_lists_builtins_and_istio(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "deploy" in rows["deployments"]
    assert "apps/v1" in rows["deployments"]
    assert "vs" in rows["virtualservices"]
    assert "networking.istio.io/v1" in rows["virtualservices"]
    for name in (
        "pods",
        "services",
        "endpoints",
        "events",
        "configmaps",
        "secrets",
        "horizontalpodautoscalers",
        "customresourcedefinitions",
        "canaries",
    ):
        assert name in rows
    istio = cluster.kubectl("api-resources", "--api-group=networking.istio.io", "-o", "name").stdout
    assert "virtualservices.networking.istio.io" in istio.split()


def test_client_side_apply_creates_then_patches(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "-f", "-", stdin=MANIFESTS).stdout
    assert "deployment.apps/podinfo created" in out
    assert "virtualservice.networking.istio.io/podinfo created" in out
    assert "unchanged" in cluster.kubectl("apply", "-f", "-", stdin=MANIFESTS).stdout
    changed = MANIFESTS.replace("6.0.0", "6.0.1").replace("#34577c", "blue")
    assert (
        "deployment.apps/podinfo configured"
        in cluster.kubectl("apply", "-f", "-", stdin=changed).stdout
    )
    dep = get_json(cluster, "-n", "test", "deployment", "podinfo")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/stefanprodan/podinfo:6.0.1"
    assert container["env"] == [{"name": "PODINFO_UI_COLOR", "value": "blue"}]
    assert dep["metadata"]["generation"] == 2
    # Removing a field from the manifest removes it from the object (three-way merge).
    dropped = changed.replace(
        '        env:\n        - {name: PODINFO_UI_COLOR, value: "blue"}\n', ""
    )
    cluster.kubectl("apply", "-f", "-", stdin=dropped)
    dep = get_json(cluster, "-n", "test", "deployment", "podinfo")
    assert "env" not in dep["spec"]["template"]["spec"]["containers"][0]


def test_server_side_apply_records_managed_fields_and_prunes(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=MANIFESTS).stdout
    assert "deployment.apps/podinfo serverside-applied" in out
    dep = get_json(cluster, "-n", "test", "deployment", "podinfo", "--show-managed-fields")
    managers = {(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers
    without_env = MANIFESTS.replace(
        '        env:\n        - {name: PODINFO_UI_COLOR, value: "#34577c"}\n', ""
    )
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=without_env)
    dep = get_json(cluster, "-n", "test", "deployment", "podinfo")
    assert "env" not in dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["spec"]["replicas"] == 2


def test_get_prints_tables(cluster: Cluster) -> None:
    deploy(cluster)
    out = cluster.kubectl("get", "-n", "test", "deployments,services,virtualservices").stdout
    assert "READY   UP-TO-DATE   AVAILABLE   AGE" in out
    assert "0/2" in out
    assert "TYPE        CLUSTER-IP" in out
    assert "9898/TCP" in out
    assert "GATEWAYS" in out
    assert '["podinfo.test"]' in out
    dr = cluster.kubectl("get", "-n", "test", "dr").stdout
    assert dr.split("\n")[0].split() == ["NAME", "HOST", "AGE"]
    wide = cluster.kubectl("get", "-n", "test", "deploy", "-o", "wide").stdout
    assert "ghcr.io/stefanprodan/podinfo:6.0.0" in wide
    assert "app=podinfo" in wide
    ns = cluster.kubectl("get", "namespaces").stdout
    assert "test" in ns
    assert "Active" in ns


def test_get_json_and_yaml(cluster: Cluster) -> None:
    deploy(cluster)
    as_yaml = yaml.safe_load(
        cluster.kubectl("get", "-n", "test", "svc", "podinfo", "-o", "yaml").stdout
    )
    assert as_yaml["spec"]["ports"][0]["targetPort"] == 9898
    listed = get_json(cluster, "-n", "test", "deploy")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["podinfo"]
    missing = cluster.kubectl("get", "-n", "test", "deploy", "nope", check=False)
    assert missing.returncode == 1
    assert 'deployments.apps "nope" not found' in missing.stderr


def test_get_watch_streams_changes(cluster: Cluster) -> None:
    deploy(cluster)
    command = [
        KUBECTL,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--cache-dir",
        str(cluster.cache_dir),
        "get",
        "-n",
        "test",
        "deploy",
        "podinfo",
        "-w",
        "--request-timeout=6s",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        cluster.wait_for_watch("deployments")
        cluster.kubectl("scale", "-n", "test", "deploy/podinfo", "--replicas=5")
        out, _ = proc.communicate(timeout=30)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:2] == ["podinfo", "0/2"]
    assert any(line.split()[:2] == ["podinfo", "0/5"] for line in lines[2:])


def test_set_image_scale_and_rollout_status(cluster: Cluster) -> None:
    deploy(cluster)
    cluster.kubectl("set", "image", "-n", "test", "deploy/podinfo", "podinfod=podinfo:6.1.0")
    cluster.kubectl("scale", "-n", "test", "deploy/podinfo", "--replicas=3")
    dep = get_json(cluster, "-n", "test", "deploy", "podinfo")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:6.1.0"
    assert dep["spec"]["replicas"] == 3
    pending = cluster.kubectl(
        "rollout", "status", "-n", "test", "deploy/podinfo", "--timeout=1s", check=False
    )
    assert pending.returncode != 0
    status = {
        "status": {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
        }
    }
    code, _, _ = cluster.http(
        "PATCH",
        "/apis/apps/v1/namespaces/test/deployments/podinfo/status",
        status,
        content_type="application/merge-patch+json",
    )
    assert code == 200
    done = cluster.kubectl("rollout", "status", "-n", "test", "deploy/podinfo", "--timeout=10s")
    assert 'deployment "podinfo" successfully rolled out' in done.stdout


def test_describe_shows_events_by_field_selector(cluster: Cluster) -> None:
    deploy(cluster)
    uid = get_json(cluster, "-n", "test", "deploy", "podinfo")["metadata"]["uid"]
    event = {
        "metadata": {"name": "podinfo.1", "namespace": "test"},
        "involvedObject": {
            "kind": "Deployment",
            "namespace": "test",
            "name": "podinfo",
            "uid": uid,
            "apiVersion": "apps/v1",
        },
        "reason": "ScalingReplicaSet",
        "message": "Scaled up replica set podinfo-abc to 2",
        "type": "Normal",
        "source": {"component": "deployment-controller"},
        "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    other = json.loads(json.dumps(event))
    other["metadata"]["name"] = "other.1"
    other["involvedObject"].update(name="other", uid="x")
    other["message"] = "not about podinfo"
    for body in (event, other):
        assert cluster.http("POST", "/api/v1/namespaces/test/events", body)[0] == 201
    out = cluster.kubectl("describe", "-n", "test", "deployment", "podinfo").stdout
    assert "Scaled up replica set podinfo-abc to 2" in out
    assert "not about podinfo" not in out
    assert "ghcr.io/stefanprodan/podinfo:6.0.0" in out
    events = cluster.kubectl("get", "-n", "test", "events").stdout
    assert events.splitlines()[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]


def test_delete_cascades_and_namespace_takes_contents(cluster: Cluster) -> None:
    deploy(cluster)
    assert (
        'deployment.apps "podinfo" deleted'
        in cluster.kubectl("delete", "-n", "test", "deploy", "podinfo").stdout
    )
    assert cluster.kubectl("get", "-n", "test", "deploy", "-o", "name").stdout.strip() == ""
    cluster.kubectl("delete", "namespace", "test")
    assert cluster.kubectl("get", "ns", "test", check=False).returncode == 1
    assert cluster.http("GET", "/api/v1/namespaces/test/services/podinfo")[0] == 404
    assert cluster.kubectl("get", "vs", "-A", "-o", "name").stdout.strip() == ""


def test_crd_created_by_kubectl_appears_in_discovery(cluster: Cluster) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
                    ],
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(crd))
    cluster.kubectl(
        "wait", "--for=condition=established", "crd/widgets.example.com", "--timeout=10s"
    )
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": {"size": 7},
    }
    assert (
        "widget.example.com/w1 created"
        in cluster.kubectl("apply", "-f", "-", stdin=json.dumps(widget)).stdout
    )
    table = cluster.kubectl("get", "wd").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE"]
    assert table[1].split() == ["w1", "7"]
    cluster.kubectl("delete", "crd", "widgets.example.com")
    gone = cluster.kubectl("get", "widgets", check=False)
    assert gone.returncode != 0


def test_server_dry_run_and_diff_change_nothing(cluster: Cluster) -> None:
    deploy(cluster)
    changed = MANIFESTS.replace("6.0.0", "6.0.5")
    diff = cluster.kubectl("diff", "-f", "-", stdin=changed, check=False)
    assert diff.returncode == 1, diff.stderr
    assert "+        image: ghcr.io/stefanprodan/podinfo:6.0.5" in diff.stdout
    dry = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=changed).stdout
    assert "deployment.apps/podinfo configured (server dry run)" in dry
    dep = get_json(cluster, "-n", "test", "deploy", "podinfo")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":6.0.0")
    assert dep["metadata"]["generation"] == 1


def test_audit_log_counts_kubectl_writes(cluster: Cluster) -> None:
    deploy(cluster)
    cluster.http("DELETE", "/sandbox/audit")
    cluster.kubectl("scale", "-n", "test", "deploy/podinfo", "--replicas=3")
    cluster.kubectl("set", "image", "-n", "test", "deploy/podinfo", "podinfod=podinfo:2")
    _, audit, _ = cluster.http("GET", "/sandbox/audit?namespace=test&name=podinfo")
    writes = [
        (e["verb"], e["resource"], e["subresource"])
        for e in audit["items"]
        if e["verb"] in ("create", "update", "patch", "delete")
    ]
    assert writes == [("patch", "deployments", "scale"), ("patch", "deployments", "")]
    assert all(e["user_agent"].startswith("kubectl") for e in audit["items"])


def test_imperative_create_commands_send_protobuf(cluster: Cluster) -> None:
    """kubectl's typed create commands send protobuf bodies; the sandbox decodes them."""
    commands = [
        ("create", "namespace", "test"),
        ("-n", "test", "create", "configmap", "c1", "--from-literal=a=b", "--from-literal=e="),
        ("-n", "test", "create", "secret", "generic", "s1", "--from-literal=a=b"),
        (
            "-n",
            "test",
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=0",
            "--port=80",
        ),
        ("-n", "test", "create", "service", "clusterip", "web", "--tcp=80:8080"),
        ("-n", "test", "create", "serviceaccount", "robot"),
        ("-n", "test", "create", "role", "r1", "--verb=get,list", "--resource=pods"),
        ("-n", "test", "create", "rolebinding", "rb1", "--role=r1", "--serviceaccount=test:robot"),
    ]
    for command in commands:
        assert " created" in cluster.kubectl(*command).stdout
    assert get_json(cluster, "-n", "test", "cm", "c1")["data"] == {"a": "b", "e": ""}
    assert get_json(cluster, "-n", "test", "secret", "s1")["data"] == {"a": "Yg=="}
    web = get_json(cluster, "-n", "test", "deploy", "web")
    assert web["spec"]["replicas"] == 0, "a pointer field set to zero survives"
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"]) == (
        "nginx:1.25",
        [{"containerPort": 80, "protocol": "TCP"}],
    )
    assert web["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    port = get_json(cluster, "-n", "test", "svc", "web")["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (80, 8080)
    assert get_json(cluster, "-n", "test", "role", "r1")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    ]
    binding = get_json(cluster, "-n", "test", "rolebinding", "rb1")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "robot", "namespace": "test"}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "r1",
    }


def test_autoscale_posts_autoscaling_v1(cluster: Cluster) -> None:
    deploy(cluster)
    cluster.kubectl(
        "autoscale", "-n", "test", "deploy/podinfo", "--min=2", "--max=5", "--cpu-percent=70"
    )
    table = cluster.kubectl("get", "-n", "test", "hpa").stdout.splitlines()
    assert table[0].split()[:6] == [
        "NAME",
        "REFERENCE",
        "TARGETS",
        "MINPODS",
        "MAXPODS",
        "REPLICAS",
    ]
    assert "Deployment/podinfo" in table[1]
    assert "/70%" in table[1]


def test_server_side_apply_conflicts_with_other_managers(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=MANIFESTS)
    cluster.kubectl("scale", "-n", "test", "deploy/podinfo", "--replicas=5")
    dep = get_json(cluster, "-n", "test", "deploy", "podinfo", "--show-managed-fields")
    fields = dep["metadata"]["managedFields"]
    owners = {(m["manager"], m["operation"], m.get("subresource")) for m in fields}
    # kubectl scale names no fieldManager: the manager is its user agent's first word.
    assert owners == {("kubectl", "Apply", None), ("kubectl", "Update", "scale")}
    refused = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=MANIFESTS, check=False)
    assert refused.returncode == 1
    assert 'conflict with "kubectl" with subresource "scale" using apps/v1' in refused.stderr
    assert ".spec.replicas" in refused.stderr
    # Applying without the field leaves it to its owner; forcing takes it back.
    without = MANIFESTS.replace("  replicas: 2\n", "")
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=without)
    assert get_json(cluster, "-n", "test", "deploy", "podinfo")["spec"]["replicas"] == 5
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=MANIFESTS)
    dep = get_json(cluster, "-n", "test", "deploy", "podinfo", "--show-managed-fields")
    assert dep["spec"]["replicas"] == 2
    owners = {(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]}
    assert owners == {("kubectl", "Apply")}, "the forced field left the scale entry owning nothing"


def test_auth_can_i_is_truthful_about_an_open_sandbox(cluster: Cluster) -> None:
    allowed = cluster.kubectl("auth", "can-i", "patch", "deployments", "-n", "default")
    assert allowed.stdout.strip() == "yes"
    rules = cluster.kubectl("auth", "can-i", "--list", "-n", "default").stdout.splitlines()
    assert rules[1].split() == ["*.*", "[]", "[]", "[*]"]
    status, _, _ = cluster.http("GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert status == 405, "reviews are answered, never stored or listed"
