"""The sandbox cluster's workload behaviour the product relies on, driven as a user drives a
cluster (kubectl and the official client): a Deployment's rollout and its status, scaling,
readiness after a per-pod delay (kwok's fake kubelets), an unpullable image running into the
progress deadline, and a HorizontalPodAutoscaler keeping its bounds.

The controllers are the real kube-controller-manager's and the scheduler's; kwok plays the
kubelets (it reports pod status, and emits no kubelet events such as Pulled or Started).
"""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client

from sandbox.settings import ready_delay


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
    assert "Scheduled" in pod  # the scheduler's event

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

    deployment_now = get_json(kubectl, "-n", ns, "deployment", "web")
    status = deployment_now["status"]
    assert status["observedGeneration"] == deployment_now["metadata"]["generation"]
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    (new_rs,) = [
        rs["metadata"]["name"]
        for rs in get_json(kubectl, "-n", ns, "replicasets")["items"]
        if "unpullable" in rs["spec"]["template"]["spec"]["containers"][0]["image"]
    ]
    assert progressing["message"] == f'ReplicaSet "{new_rs}" has timed out progressing.'
    # The old pod keeps serving: the broken one never becomes ready.
    assert status["availableReplicas"] == 1
    assert status["unavailableReplicas"] == 1
    broken = [
        p
        for p in get_json(kubectl, "-n", ns, "pods")["items"]
        if "unpullable" in p["spec"]["containers"][0]["image"]
    ]
    assert len(broken) == 1
    waiting = broken[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ImagePullBackOff"
    assert waiting["message"].startswith("Back-off pulling image")
    assert (
        "ImagePullBackOff"
        in kubectl.run("-n", ns, "describe", "pod", broken[0]["metadata"]["name"]).stdout
    )


def test_endpoints_follow_ready_pods(kubectl, sandbox_namespace):
    ns = sandbox_namespace
    # A 3 s ready delay on this Deployment's pods makes the not-ready phase observable.
    manifest = deployment("web", ns, replicas=2).replace(
        "metadata: {labels: {app: web}}",
        f"metadata: {{labels: {{app: web}}, annotations: {json.dumps(ready_delay(3))}}}",
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

    def pods_not_ready():
        pods = get_json(kubectl, "-n", ns, "pods")["items"]
        conditions = [
            {c["type"]: c["status"] for c in p["status"].get("conditions", [])} for p in pods
        ]
        return len(pods) == 2 and all(c.get("Ready") != "True" for c in conditions)

    # kwok reports a pod only once its delay has passed: until then it is Pending without an IP
    # (a kubelet would report it running and not ready), so the Service has no address of it.
    wait_for(pods_not_ready)
    before_ready = subset()
    assert pods_not_ready(), "the pods became ready before the Service was read: a slow machine"
    assert not before_ready.get("addresses")
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
    time.sleep(5.5)  # a sync later (every 5 s in the sandbox) it is still zero
    assert get_json(kubectl, "-n", ns, "deployment", "web")["spec"]["replicas"] == 0


@pytest.mark.parametrize("replicas", [0, 3])
def test_official_client_reads_a_finished_rollout(
    admin_client, kubectl, sandbox_namespace, replicas
):
    ns = sandbox_namespace
    kubectl.apply(deployment("web", ns, replicas=replicas))
    api = client.AppsV1Api(admin_client)

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
