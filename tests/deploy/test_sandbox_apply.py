"""The manifests and the chart applied to a real API server with kubectl.

Server-side apply with ``--dry-run=server`` first (nothing is stored), then a real server-side
apply: the objects appear, the worker Deployment rolls out (the controllers run its pods on kwok's
fake nodes), and a second apply changes nothing. The chart is rendered by a real helm and applied
the same way: the subject is what the chart renders, not helm's release bookkeeping.

The module has a cluster of its own, as a user's looks before Coalmine is installed: the sandbox
comes with the worker's namespace, ServiceAccount and cluster role already in place (what its
worker runs as), so they are removed first, and the session's cluster, whose worker needs them,
is left alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.runner import start_sandbox
from tests.conftest import Kubectl
from tests.deploy._support import CHART, MANIFESTS, helm, normalized_rules, run

pytestmark = pytest.mark.slow

# A CustomResourceDefinition the size the monitoring overlay needs: the Prometheus Operator's
# ServiceMonitor, its schema left open.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "listKind": "ServiceMonitorList",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
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
            }
        ],
    },
}


class Cluster:
    """kubectl (the API server's minor) as the cluster admin, and the reads the tests make."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.kubectl = kubectl

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.kubectl.run(*args, stdin=stdin, check=check, timeout=120)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        ns = ["-n", namespace] if namespace else []
        out = self("get", kind, name, *ns, "-o", "json", "--ignore-not-found")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def ensure_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self("apply", "--server-side", "-f", "-", stdin=json.dumps(body))


NAMESPACES = ("coalmine-system", "team-deploy-test", "helm-coalmine", "helm-canaries")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("apply-sandbox")
    with start_sandbox(state, pod_ready_delay=0.3, loadtester=False) as handle:
        kubectl = Cluster(Kubectl(handle.kubeconfig))
        # What deploy/manifests/cluster holds, and the ServiceAccount in its namespace.
        kubectl(
            "delete", "--ignore-not-found", "--wait=true",
            "clusterrolebinding/coalmine", "clusterrole/coalmine", "namespace/coalmine-system",
        )  # fmt: skip
        yield kubectl


def applied(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_cluster_pieces_dry_run_stores_nothing(cluster):
    out = cluster("apply", "--server-side", "--dry-run=server", "-k", str(MANIFESTS / "cluster"))
    lines = applied(out.stdout)
    assert len(lines) == 3
    assert all(line.endswith("(server dry run)") for line in lines)
    assert cluster.get("clusterrole", "coalmine") is None


def test_base_dry_run_then_apply(cluster):
    # Namespaced objects cannot be dry-run into a namespace that does not exist yet (the API
    # server answers NotFound), so the namespace is created first.
    cluster.ensure_namespace("coalmine-system")
    dry = cluster("apply", "--server-side", "--dry-run=server", "-k", str(MANIFESTS))
    assert len(applied(dry.stdout)) == 7
    assert all(line.endswith("(server dry run)") for line in applied(dry.stdout))
    assert cluster.get("deployment", "coalmine-worker", "coalmine-system") is None

    real = cluster("apply", "--server-side", "-k", str(MANIFESTS))
    assert len(applied(real.stdout)) == 7
    for kind, name, namespace in (
        ("namespace", "coalmine-system", None),
        ("clusterrole", "coalmine", None),
        ("clusterrolebinding", "coalmine", None),
        ("serviceaccount", "coalmine", "coalmine-system"),
        ("service", "coalmine-worker-metrics", "coalmine-system"),
        ("deployment", "coalmine-worker", "coalmine-system"),
        ("networkpolicy", "coalmine-worker", "coalmine-system"),
    ):
        assert cluster.get(kind, name, namespace) is not None, (kind, name)

    role = cluster.get("clusterrole", "coalmine")
    assert role is not None
    local = yaml.safe_load((MANIFESTS / "cluster" / "clusterrole.yaml").read_text())
    assert normalized_rules(role) == normalized_rules(local)


def test_worker_deployment_rolls_out_and_reapply_changes_nothing(cluster):
    cluster.ensure_namespace("coalmine-system")
    cluster("apply", "--server-side", "-k", str(MANIFESTS))
    cluster(
        "rollout", "status", "deployment/coalmine-worker", "-n", "coalmine-system", "--timeout=60s"
    )
    before = cluster.get("deployment", "coalmine-worker", "coalmine-system")
    cluster("apply", "--server-side", "-k", str(MANIFESTS))
    after = cluster.get("deployment", "coalmine-worker", "coalmine-system")
    assert before is not None
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]


def _user_kustomization(tmp_path: Path, text: str) -> Path:
    # kustomize accepts only relative paths to other kustomizations: a copy of deploy/manifests
    # beside the user's folder.
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "kustomization.yaml").write_text(text)
    return user


def test_namespaced_overlay_in_a_team_namespace(cluster, tmp_path):
    team = NAMESPACES[1]
    cluster.ensure_namespace(team)
    user = _user_kustomization(
        tmp_path, f"namespace: {team}\nresources: [../manifests/namespaced]\n"
    )
    dry = cluster("apply", "--server-side", "--dry-run=server", "-k", str(user))
    assert len(applied(dry.stdout)) == 6
    cluster("apply", "--server-side", "-k", str(user))
    assert cluster.get("role", "coalmine", team) is not None
    binding = cluster.get("rolebinding", "coalmine", team)
    assert binding is not None
    assert binding["subjects"][0]["namespace"] == team
    cluster("rollout", "status", "deployment/coalmine-worker", "-n", team, "--timeout=60s")


def test_temporal_tls_component_applies(cluster, tmp_path):
    cluster.ensure_namespace("coalmine-system")
    user = _user_kustomization(
        tmp_path, "resources: [../manifests]\ncomponents: [../manifests/temporal-tls]\n"
    )
    dry = cluster("apply", "--server-side", "--dry-run=server", "-k", str(user))
    assert len(applied(dry.stdout)) == 7


def test_monitoring_overlay_applies_once_the_crd_exists(cluster):
    cluster("apply", "--server-side", "-f", "-", stdin=json.dumps(SERVICE_MONITOR_CRD))
    cluster.ensure_namespace("coalmine-system")
    dry = cluster("apply", "--server-side", "--dry-run=server", "-k", str(MANIFESTS / "monitoring"))
    assert len(applied(dry.stdout)) == 8
    cluster("apply", "--server-side", "-k", str(MANIFESTS / "monitoring"))
    assert cluster.get("servicemonitor", "coalmine-worker", "coalmine-system") is not None


@pytest.mark.parametrize(
    ("release", "values"),
    [
        ("coalmine", ["--set", "rbac.namespaced=true"]),
        (
            "canaries",
            [
                "--set", "rbac.namespaced=true",
                "--set", "temporal.apiKey.existingSecret=temporal-key",
                "--set", "temporal.tls.existingSecret=temporal-certs",
                "--set", "replicaCount=1",
            ],
        ),
    ],
)  # fmt: skip
def test_rendered_chart_applies(cluster, release, values):
    namespace = f"helm-{release}"
    cluster.ensure_namespace(namespace)
    rendered = run(
        helm(), "template", release, str(CHART), "--namespace", namespace, *values
    ).stdout
    dry = cluster("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=rendered)
    assert all(line.endswith("(server dry run)") for line in applied(dry.stdout))
    cluster("apply", "--server-side", "-f", "-", stdin=rendered)
    name = "coalmine" if release == "coalmine" else f"{release}-coalmine"
    assert cluster.get("role", name, namespace) is not None
    assert cluster.get("deployment", f"{name}-worker", namespace) is not None
    cluster("rollout", "status", f"deployment/{name}-worker", "-n", namespace, "--timeout=60s")
