"""The sandbox looks like the article's cluster: a Flagger user's names and manifests work on it.

- ``istio-system`` has the ``prometheus`` Service on port 9090 and the ``public-gateway`` Gateway;
- ``http://prometheus.istio-system:9090`` answers through the mesh with the real Prometheus's
  data, and a MetricTemplate with that address works from the worker's activities (which reach
  cluster names through ``HTTP_PROXY``, the mesh, as a worker in a cluster reaches them by DNS);
- Flagger's own load tester manifest (the shape of fluxcd/flagger ``kustomize/tester/``: no
  namespace, no replicas, exec probes, a read-only root filesystem) applied to a namespace serves
  the load tester API at ``http://flagger-loadtester.<namespace>/``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from sandbox.runner import SandboxHandle
from tests.conftest import Kubectl

pytestmark = pytest.mark.timeout(120)

# Flagger's kustomize/tester/ as a user applies it with `kubectl -n <ns> apply -k`: written here
# in its shape (deployment.yaml and service.yaml), with the image the README names.
FLAGGER_LOADTESTER = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: flagger-loadtester
  labels: {app: flagger-loadtester}
spec:
  selector:
    matchLabels: {app: flagger-loadtester}
  template:
    metadata:
      labels: {app: flagger-loadtester}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8080"}
    spec:
      containers:
        - name: loadtester
          image: ghcr.io/fluxcd/flagger-loadtester:0.34.0
          imagePullPolicy: IfNotPresent
          ports: [{name: http, containerPort: 8080}]
          command: [./loadtester, -port=8080, -log-level=info, -timeout=1h]
          livenessProbe:
            exec:
              command: [wget, --quiet, --tries=1, --timeout=4, --spider,
                        "http://localhost:8080/healthz"]
            timeoutSeconds: 5
          readinessProbe:
            exec:
              command: [wget, --quiet, --tries=1, --timeout=4, --spider,
                        "http://localhost:8080/healthz"]
            timeoutSeconds: 5
          resources:
            limits: {memory: 512Mi, cpu: 1000m}
            requests: {memory: 32Mi, cpu: 10m}
          securityContext: {readOnlyRootFilesystem: true, runAsUser: 10001}
---
apiVersion: v1
kind: Service
metadata:
  name: flagger-loadtester
  labels: {app: flagger-loadtester}
spec:
  type: ClusterIP
  selector: {app: flagger-loadtester}
  ports: [{name: http, port: 80, protocol: TCP, targetPort: http}]
"""


def _mesh(sandbox: SandboxHandle) -> httpx.Client:
    return httpx.Client(proxy=sandbox.mesh_url, trust_env=False, timeout=10)


def _get(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl.run("get", *args, "-o", "json").stdout)


def test_istio_system_has_prometheus_and_the_public_gateway(kubectl: Kubectl) -> None:
    service = _get(kubectl, "-n", "istio-system", "service", "prometheus")
    assert [p["port"] for p in service["spec"]["ports"]] == [9090]
    gateway = _get(kubectl, "-n", "istio-system", "gateway.networking.istio.io", "public-gateway")
    (server,) = gateway["spec"]["servers"]
    assert server["port"]["number"] == 80
    assert server["hosts"] == ["*"]
    # The Canary CRDs are installed too (the article's cluster has Flagger's).
    kubectl.run("get", "crd", "canaries.flagger.app", "metrictemplates.flagger.app")


def test_prometheus_answers_at_its_cluster_name_through_the_mesh(
    sandbox_cluster: SandboxHandle,
) -> None:
    query = 'up{job="istio-mesh"}'
    for host in ("prometheus.istio-system:9090", "prometheus.istio-system.svc.cluster.local:9090"):
        with _mesh(sandbox_cluster) as mesh:
            answer = mesh.get(f"http://{host}/api/v1/query", params={"query": query})
        assert answer.status_code == 200, answer.text
        assert answer.headers["server"] == "istio-envoy"
        (sample,) = answer.json()["data"]["result"]
        assert sample["value"][1] == "1"


def test_a_metric_template_at_the_cluster_address_works_from_the_worker(
    sandbox_cluster: SandboxHandle,
    kubectl: Kubectl,
    worker_client: Any,
    sandbox_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from temporalio.testing import ActivityEnvironment

    from activities.analysis import AnalysisActivities, AnalysisSettings
    from workflows.activity_api import CanaryRef, MetricCheckInput
    from workflows.spec import MetricSpec

    ns = sandbox_namespace
    kubectl.apply(
        f"""
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: mesh-up, namespace: {ns}}}
spec:
  provider: {{type: prometheus, address: "http://prometheus.istio-system:9090"}}
  query: sum(up{{job="istio-mesh"}})
"""
    )
    # The worker's environment on the local stack: cluster names through the mesh.
    for name, value in sandbox_cluster.env.items():
        if name.lower() in ("http_proxy", "no_proxy"):
            monkeypatch.setenv(name, value)
    analysis = AnalysisActivities(api_client=worker_client, settings=AnalysisSettings())
    metric = MetricSpec.model_validate(
        {"name": "mesh-up", "templateRef": {"name": "mesh-up"}, "thresholdRange": {"min": 1}}
    )
    ref = CanaryRef(namespace=ns, name="podinfo", target="podinfo", service="podinfo")
    result = ActivityEnvironment().run(
        analysis.check_metric, MetricCheckInput(ref=ref, metric=metric)
    )
    assert result.passed, result.message
    assert result.value == 1


def test_flaggers_own_load_tester_manifest_works_in_any_namespace(
    sandbox_cluster: SandboxHandle, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    kubectl.run("-n", ns, "apply", "-f", "-", stdin=FLAGGER_LOADTESTER)
    kubectl.run(
        "-n", ns, "rollout", "status", "deployment/flagger-loadtester", "--timeout=60s", timeout=70
    )
    url = f"http://flagger-loadtester.{ns}/"
    payload = {
        "name": "podinfo",
        "namespace": ns,
        "phase": "Progressing",
        "metadata": {"type": "bash", "cmd": "echo ok", "returnCmdOutput": "true"},
    }
    deadline = time.monotonic() + 20
    with _mesh(sandbox_cluster) as mesh:
        # The mesh learns the new endpoints from its watch a moment after the rollout.
        while (health := mesh.get(url + "healthz")).status_code != 200:
            assert time.monotonic() < deadline, health.text
            time.sleep(0.2)
        answer = mesh.post(url, json=payload)
        assert answer.status_code == 200, answer.text
        assert answer.text.strip() == "ok"
        assert mesh.get(url + "gate/approve").status_code == 200
        assert mesh.post(url, content=b"not json").status_code == 400
