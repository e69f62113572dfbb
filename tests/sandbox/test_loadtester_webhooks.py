"""The flagger-loadtester work-alike at ``http://flagger-loadtester.test/``, through the mesh."""

from __future__ import annotations

import time

import httpx
import pytest

LOADTESTER = "http://flagger-loadtester.test/"


@pytest.fixture
def http(sandbox_cluster):
    with httpx.Client(proxy=sandbox_cluster.mesh_url, timeout=30, trust_env=False) as client:
        yield client


def podinfo(ns: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.1
        ports: [{{containerPort: 9898}}]
---
apiVersion: v1
kind: Service
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898, targetPort: 9898}}]
"""


def test_gates_follow_flagger_semantics(sandbox_cluster, http):
    canary = {"name": "gated", "namespace": "gates", "phase": "Progressing"}
    assert sandbox_cluster.loadtester_url == LOADTESTER
    assert http.post(f"{LOADTESTER}gate/approve", json=canary).status_code == 200
    assert http.post(f"{LOADTESTER}gate/halt", json=canary).status_code == 403
    assert http.post(f"{LOADTESTER}gate/check", json=canary).status_code == 403
    assert http.post(f"{LOADTESTER}gate/open", json=canary).status_code == 202
    assert http.post(f"{LOADTESTER}gate/check", json=canary).status_code == 200
    # State is per canary name.namespace.
    other = {**canary, "name": "other"}
    assert http.post(f"{LOADTESTER}gate/check", json=other).status_code == 403
    assert http.post(f"{LOADTESTER}gate/close", json=canary).status_code == 202
    assert http.post(f"{LOADTESTER}gate/check", json=canary).status_code == 403

    assert http.post(f"{LOADTESTER}rollback/check", json=canary).status_code == 403
    assert http.post(f"{LOADTESTER}rollback/open", json=canary).status_code == 202
    assert http.post(f"{LOADTESTER}rollback/check", json=canary).status_code == 200
    # The rollback gate is separate from the promotion gate.
    assert http.post(f"{LOADTESTER}gate/check", json=canary).status_code == 403
    assert http.post(f"{LOADTESTER}rollback/close", json=canary).status_code == 202
    assert http.post(f"{LOADTESTER}rollback/check", json=canary).status_code == 403


def test_bad_webhook_payloads_are_refused(http):
    assert http.post(LOADTESTER, json={"name": "x", "namespace": "y"}).status_code == 400
    unknown = http.post(
        LOADTESTER, json={"name": "x", "namespace": "y", "metadata": {"type": "helm", "cmd": "x"}}
    )
    assert unknown.status_code == 400
    assert "unknown task type" in unknown.text
    assert http.post(LOADTESTER, content=b"not json").status_code == 400


def test_bash_webhook_blocks_and_reaches_cluster_names(kubectl, sandbox_namespace, http):
    ns = sandbox_namespace
    kubectl.apply(podinfo(ns))
    kubectl.run("-n", ns, "rollout", "status", "deployment/podinfo", "--timeout=30s")
    time.sleep(0.3)
    payload = {
        "name": "podinfo",
        "namespace": ns,
        "metadata": {
            "type": "bash",
            "cmd": f"curl -sf http://podinfo.{ns}:9898/version",
            "returnCmdOutput": "true",
        },
    }
    response = http.post(LOADTESTER, json=payload)
    assert response.status_code == 200, response.text
    assert '"version": "1.4.1"' in response.text
    failing = {
        **payload,
        "metadata": {"type": "bash", "cmd": f"curl -sf http://podinfo.{ns}:9898/status/500"},
    }
    assert http.post(LOADTESTER, json=failing).status_code == 500


def test_hey_cmd_webhook_runs_in_the_background_through_the_mesh(
    kubectl, sandbox_namespace, sandbox_cluster, http
):
    ns = sandbox_namespace
    kubectl.apply(podinfo(ns))
    kubectl.run("-n", ns, "rollout", "status", "deployment/podinfo", "--timeout=30s")
    time.sleep(0.3)
    cmd = f"hey -z 2s -q 10 -c 2 http://podinfo.{ns}:9898/"
    payload = {"name": "podinfo", "namespace": ns, "phase": "Progressing", "metadata": {"cmd": cmd}}
    started = time.monotonic()
    assert http.post(LOADTESTER, json=payload).status_code == 202
    # The same command for the same canary is not started twice while it runs.
    assert http.post(LOADTESTER, json=payload).status_code == 202
    assert time.monotonic() - started < 1.5

    def requests_from_loadtester() -> float:
        text = httpx.get(f"{sandbox_cluster.metrics_url}/metrics").text
        wanted = (
            'reporter="destination"',
            'source_workload="flagger-loadtester"',
            'source_workload_namespace="test"',
            f'destination_workload_namespace="{ns}"',
            'destination_workload="podinfo"',
        )
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("istio_requests_total{") and all(w in line for w in wanted)
        )

    # hey runs for 2 s; after that the count stops growing.
    time.sleep(max(0.0, started + 2.5 - time.monotonic()))
    deadline = time.monotonic() + 15
    previous = -1.0
    while time.monotonic() < deadline:
        count = requests_from_loadtester()
        if count == previous and count > 0:
            break  # hey has finished
        previous = count
        time.sleep(1.0)
    # One hey run: 2 workers × 10 qps × 2 s ≈ 40 requests (not 80: the duplicate was skipped).
    assert 20 <= previous <= 50, previous
