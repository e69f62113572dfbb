"""The worker as the manifests and the chart configure it: the environment they set is what the
worker's settings read, and the probe and scrape paths answer on the real metrics server."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.deploy._support import MANIFESTS, Doc, container, env, helm_template, kustomize


def plain_env(objects: list[Doc], **pod: str) -> dict[str, str]:
    """The container's literal variables, plus what Kubernetes adds in a pod."""
    values = {name: e["value"] for name, e in env(objects).items() if "value" in e}
    return values | pod


@pytest.fixture(scope="module", params=["manifests", "chart", "chart-tls"])
def objects(request) -> list[Doc]:
    if request.param == "manifests":
        return kustomize(MANIFESTS)
    if request.param == "chart":
        return helm_template()
    return helm_template(
        "--set", "temporal.tls.existingSecret=certs", "--set", "temporal.tls.serverName=t.example"
    )


def test_worker_settings_read_the_deployments_environment(objects):
    from worker.settings import KubernetesSettings, TemporalSettings, WorkerSettings

    variables = plain_env(objects, KUBERNETES_SERVICE_HOST="10.96.0.1")
    temporal = TemporalSettings.from_env(variables)
    assert temporal.address == variables["TEMPORAL_ADDRESS"]
    assert temporal.namespace == variables["TEMPORAL_NAMESPACE"]
    assert temporal.task_queue == variables["TEMPORAL_TASK_QUEUE"]
    if "TEMPORAL_TLS_CERT" in variables:
        assert temporal.tls_cert == Path(variables["TEMPORAL_TLS_CERT"])
        assert temporal.tls_key == Path(variables["TEMPORAL_TLS_KEY"])
        assert temporal.tls_ca == Path(variables["TEMPORAL_TLS_CA"])
        assert temporal.tls_server_name == "t.example"
        assert temporal.tls_enabled
    worker = WorkerSettings.from_env(variables)
    port = container(objects)["ports"][0]["containerPort"]
    assert worker.metrics_port == port
    assert worker.metrics_address == "0.0.0.0"  # scraped and probed from outside the pod
    assert worker.prometheus_url == variables["PROMETHEUS_URL"]
    kubernetes = KubernetesSettings.from_env(variables)
    assert kubernetes.in_cluster  # the service account, no kubeconfig
    assert kubernetes.cluster == variables["COALMINE_CLUSTER"]


def test_every_variable_set_is_one_the_worker_reads(objects):
    import inspect

    from worker import settings

    source = inspect.getsource(settings)
    for name in env(objects):
        if name == "HOME":
            continue  # for libraries that write under ~ (the root file system is read-only)
        assert f'"{name}"' in source, f"{name} is set but worker/settings.py never reads it"


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_probe_and_scrape_paths_answer_on_the_worker_metrics_server():
    from worker.metrics import RolloutMetrics

    deployment = kustomize(MANIFESTS)
    worker = container(deployment)
    server: Any = RolloutMetrics().serve(port=0, address="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        for probe in ("livenessProbe", "readinessProbe"):
            status, _ = _get(base + worker[probe]["httpGet"]["path"])
            assert status == 200
        status, body = _get(base + "/metrics")
        assert status == 200
        assert "# TYPE coalmine_canary_weight gauge" in body
    finally:
        server.shutdown()
        server.server_close()
