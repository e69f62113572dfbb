"""The simulated controllers, driven as a user drives a cluster: kubectl and the official client."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, config


def deployment(
    name: str, namespace: str, *, replicas: int = 2, image: str = "podinfo:1.4.0", extra: str = ""
) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  {extra}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: quay.io/stefanprodan/{image}
        ports: [{{name: http, containerPort: 9898}}]
"""


def get_json(kubectl, *args: str) -> dict:
    return json.loads(kubectl.run("get", *args, "-o", "json").stdout)


def wait_for(predicate, *, timeout: float = 15.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def test_set_image_rolls_a_new_replicaset(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns))
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    first = get_json(kubectl, "-n", ns, "replicasets")["items"]
    assert [rs["metadata"]["name"].startswith("web-") for rs in first] == [True]

    kubectl.run(
        "-n", ns, "set", "image", "deployment/web", "app=quay.io/stefanprodan/podinfo:1.4.1"
    )
    out = kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s").stdout
    assert 'deployment "web" successfully rolled out' in out

    rsets = {
        rs["metadata"]["name"]: rs for rs in get_json(kubectl, "-n", ns, "replicasets")["items"]
    }
    assert len(rsets) == 2
    old = rsets[first[0]["metadata"]["name"]]
    (new,) = [rs for name, rs in rsets.items() if name != first[0]["metadata"]["name"]]
    assert old["spec"]["replicas"] == 0
    assert new["spec"]["replicas"] == 2
    assert new["metadata"]["name"] == f"web-{new['metadata']['labels']['pod-template-hash']}"
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    pods = get_json(kubectl, "-n", ns, "pods")["items"]
    assert (
        sorted(p["spec"]["containers"][0]["image"] for p in pods)
        == ["quay.io/stefanprodan/podinfo:1.4.1"] * 2
    )

    status = get_json(kubectl, "-n", ns, "deployment", "web")["status"]
    assert status["replicas"] == status["updatedReplicas"] == status["readyReplicas"] == 2
    assert status["availableReplicas"] == 2
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"


def test_scale_and_describe_show_events(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=1))
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    kubectl.run("-n", ns, "scale", "deployment/web", "--replicas=3")
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    pods = get_json(kubectl, "-n", ns, "pods")["items"]
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" for p in pods)

    described = kubectl.run("-n", ns, "describe", "deployment", "web").stdout
    assert "ScalingReplicaSet" in described
    assert "from 1 to 3" in described
    pod = kubectl.run("-n", ns, "describe", "pod", pods[0]["metadata"]["name"]).stdout
    for reason in ("Scheduled", "Pulled", "Created", "Started"):
        assert reason in pod

    kubectl.run("-n", ns, "scale", "deployment/web", "--replicas=1")
    wait_for(lambda: len(get_json(kubectl, "-n", ns, "pods")["items"]) == 1)
    rs_events = kubectl.run(
        "-n", ns, "get", "events", "--field-selector", "reason=SuccessfulDelete"
    ).stdout
    assert "Deleted pod" in rs_events


def test_unpullable_image_exceeds_the_progress_deadline(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=1, extra="progressDeadlineSeconds: 2"))
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    kubectl.run(
        "-n", ns, "set", "image", "deployment/web", "app=invalid.example/podinfo:unpullable"
    )

    proc = kubectl.run(
        "-n", ns, "rollout", "status", "deployment/web", "--timeout=30s", check=False
    )
    assert proc.returncode != 0
    assert "exceeded its progress deadline" in proc.stderr

    status = get_json(kubectl, "-n", ns, "deployment", "web")["status"]
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    # The old pod keeps serving: the broken one never becomes ready.
    assert status["availableReplicas"] == 1
    broken = [
        p
        for p in get_json(kubectl, "-n", ns, "pods")["items"]
        if "unpullable" in p["spec"]["containers"][0]["image"]
    ]
    assert len(broken) == 1
    waiting = broken[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ImagePullBackOff"
    assert (
        "Failed to pull image"
        in kubectl.run("-n", ns, "describe", "pod", broken[0]["metadata"]["name"]).stdout
    )


def test_endpoints_follow_ready_pods(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    # A 3 s ready delay on this Deployment's pods makes the not-ready phase observable.
    manifest = deployment("web", ns, replicas=2).replace(
        "metadata: {labels: {app: web}}",
        "metadata: {labels: {app: web}, annotations: {"
        '"sandbox.coalmine.dev/ready-delay-seconds": "3"}}',
    )
    kubectl.apply(manifest)
    kubectl.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
""")

    def subset() -> dict:
        subsets = get_json(kubectl, "-n", ns, "endpoints", "web").get("subsets") or [{}]
        return subsets[0]

    def subset_with(field: str):
        current = subset()  # one read: the check and the value must be the same snapshot
        return len(current.get(field, [])) == 2 and current

    not_ready = wait_for(lambda: subset_with("notReadyAddresses"))
    assert "addresses" not in not_ready
    ready = wait_for(lambda: subset_with("addresses"))
    assert "notReadyAddresses" not in ready
    assert ready["ports"] == [{"name": "http", "port": 9898, "protocol": "TCP"}]
    assert {a["targetRef"]["kind"] for a in ready["addresses"]} == {"Pod"}

    kubectl.run("-n", ns, "scale", "deployment/web", "--replicas=0")
    wait_for(lambda: not get_json(kubectl, "-n", ns, "endpoints", "web").get("subsets"))


def test_hpa_keeps_replicas_within_bounds(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=1))
    kubectl.apply(f"""
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: web, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  minReplicas: 2
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 99}}}}
""")
    wait_for(lambda: get_json(kubectl, "-n", ns, "deployment", "web")["spec"]["replicas"] == 2)
    kubectl.run("-n", ns, "scale", "deployment/web", "--replicas=7")
    wait_for(lambda: get_json(kubectl, "-n", ns, "deployment", "web")["spec"]["replicas"] == 4)
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    hpa = wait_for(
        lambda: (
            (h := get_json(kubectl, "-n", ns, "hpa", "web"))["status"].get("currentReplicas") == 4
            and h
        )
    )
    assert hpa["status"]["desiredReplicas"] == 4
    assert "SuccessfulRescale" in kubectl.run("-n", ns, "describe", "hpa", "web").stdout

    # Scaled to zero (a parked canary), the target stays there: scaling is disabled.
    kubectl.run("-n", ns, "scale", "deployment/web", "--replicas=0")
    hpa = wait_for(
        lambda: (
            (h := get_json(kubectl, "-n", ns, "hpa", "web"))["status"]["desiredReplicas"] == 0 and h
        )
    )
    active = next(c for c in hpa["status"]["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "ScalingDisabled")
    time.sleep(1.5)  # a tick later it is still zero
    assert get_json(kubectl, "-n", ns, "deployment", "web")["spec"]["replicas"] == 0


@pytest.mark.parametrize("replicas", [0, 3])
def test_official_client_reads_a_finished_rollout(
    sandbox_cluster, kubectl, sandbox_namespace, replicas
):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=replicas))
    api = client.AppsV1Api(
        config.new_client_from_config(config_file=str(sandbox_cluster.kubeconfig))
    )

    def done():
        d = api.read_namespaced_deployment_status("web", ns)
        conds = {c.type: c for c in d.status.conditions or []}
        ok = "Progressing" in conds and conds["Progressing"].reason == "NewReplicaSetAvailable"
        return d if ok else None

    d = wait_for(done)
    assert d.status.observed_generation == d.metadata.generation
    assert (d.status.ready_replicas or 0) == replicas
    assert (d.status.updated_replicas or 0) == replicas
    assert {c.type for c in d.status.conditions} == {"Available", "Progressing"}


def test_rollout_undo_returns_to_the_previous_replicaset(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=1))
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    first = get_json(kubectl, "-n", ns, "replicasets")["items"][0]["metadata"]["name"]
    kubectl.run(
        "-n", ns, "set", "image", "deployment/web", "app=quay.io/stefanprodan/podinfo:1.4.1"
    )
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")

    kubectl.run("-n", ns, "rollout", "undo", "deployment/web")
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    rsets = {
        rs["metadata"]["name"]: rs for rs in get_json(kubectl, "-n", ns, "replicasets")["items"]
    }
    assert len(rsets) == 2
    assert rsets[first]["spec"]["replicas"] == 1
    assert rsets[first]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    image = get_json(kubectl, "-n", ns, "deployment", "web")["spec"]["template"]["spec"]
    assert image["containers"][0]["image"] == "quay.io/stefanprodan/podinfo:1.4.0"
    history = kubectl.run("-n", ns, "rollout", "history", "deployment/web").stdout
    assert "2" in history
    assert "3" in history


def test_min_ready_seconds_delays_availability(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=1, extra="minReadySeconds: 4"))
    ready = wait_for(
        lambda: (
            (s := get_json(kubectl, "-n", ns, "deployment", "web").get("status", {})).get(
                "readyReplicas"
            )
            and s
        )
    )
    assert ready.get("availableReplicas", 0) == 0
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    assert get_json(kubectl, "-n", ns, "deployment", "web")["status"]["availableReplicas"] == 1


def test_recreate_strategy_replaces_all_pods_at_once(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=2, extra="strategy: {type: Recreate}"))
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    kubectl.run(
        "-n", ns, "set", "image", "deployment/web", "app=quay.io/stefanprodan/podinfo:1.4.1"
    )
    images: set[tuple[str, ...]] = set()

    def finished():
        pods = get_json(kubectl, "-n", ns, "pods")["items"]
        images.add(
            tuple(sorted({p["spec"]["containers"][0]["image"].rsplit(":", 1)[1] for p in pods}))
        )
        status = get_json(kubectl, "-n", ns, "deployment", "web")["status"]
        return (
            status.get("updatedReplicas") == 2
            and status.get("availableReplicas") == 2
            and status["replicas"] == 2
        )

    wait_for(finished, interval=0.05)
    # Never old and new pods side by side.
    assert ("1.4.0", "1.4.1") not in images
    assert ("1.4.1",) in images


def test_a_recreated_deployment_adopts_its_orphaned_replicaset(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=1))
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    (rs,) = get_json(kubectl, "-n", ns, "replicasets")["items"]
    kubectl.run("-n", ns, "delete", "deployment", "web", "--cascade=orphan")
    assert [r["metadata"]["name"] for r in get_json(kubectl, "-n", ns, "replicasets")["items"]] == [
        rs["metadata"]["name"]
    ]

    kubectl.apply(deployment("web", ns, replicas=1))
    kubectl.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    (adopted,) = get_json(kubectl, "-n", ns, "replicasets")["items"]
    assert adopted["metadata"]["uid"] == rs["metadata"]["uid"]
    owner = get_json(kubectl, "-n", ns, "deployment", "web")["metadata"]["uid"]
    assert adopted["metadata"]["ownerReferences"][0]["uid"] == owner
    assert len(get_json(kubectl, "-n", ns, "pods")["items"]) == 1
