"""The ClusterRole against the API calls the activities really make.

The sandbox's API server records every request in an audit log (verb, group, resource,
subresource, user agent). The integration test runs the product's activities — the same classes
the worker registers — through a whole rollout against the sandbox, with a user agent of its own,
then derives the (group, resource, verb) set from the log and checks each is allowed by the
ClusterRole in deploy/manifests (and so by the namespaced Role and the chart, which other tests
hold equal to it). Two rollouts are run — the first creates everything, the second brings a new
image, changed config, a changed HPA and a changed Canary, so the update paths run too — and the
check goes both ways: every call is allowed, and every rule was used (the role is exact).
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from tests.deploy._support import MANIFESTS, Doc, normalized_rules

Permission = tuple[str, str, str]
"""(API group, resource or resource/subresource, verb), as RBAC rules name them."""

CLUSTER_ROLE = MANIFESTS / "cluster" / "clusterrole.yaml"


# --- the comparison ---------------------------------------------------------------------------


def required_permissions(entries: Iterable[dict[str, Any]]) -> set[Permission]:
    """The permissions an audit log shows were needed. Requests to non-resource paths
    (discovery, /version) are left out: every authenticated user may make them."""
    needed = set()
    for entry in entries:
        if not entry["resource"]:
            continue
        resource = entry["resource"]
        if entry["subresource"]:
            resource += "/" + entry["subresource"]
        needed.add((entry["group"], resource, entry["verb"]))
    return needed


def allows(rules: list[Doc], permission: Permission) -> bool:
    """Whether any rule grants the permission (RBAC's matching, wildcards included)."""
    group, resource, verb = permission
    base, _, subresource = resource.partition("/")
    for rule in rules:
        groups, resources, verbs = rule["apiGroups"], rule["resources"], rule["verbs"]
        if group not in groups and "*" not in groups:
            continue
        if verb not in verbs and "*" not in verbs:
            continue
        if resource in resources or "*" in resources:
            return True
        if subresource and f"{base}/*" in resources:
            return True
    return False


def missing_permissions(rules: list[Doc], needed: set[Permission]) -> set[Permission]:
    return {p for p in needed if not allows(rules, p)}


def unused_permissions(role: Doc, needed: set[Permission]) -> set[Permission]:
    """What the role grants that no recorded call used."""
    return normalized_rules(role) - needed


def cluster_role() -> Doc:
    role: Doc = yaml.safe_load(CLUSTER_ROLE.read_text())
    return role


# --- unit test of the comparison, on a hand-written log ----------------------------------------

SAMPLE_AUDIT = [
    {"verb": "get", "group": "", "resource": "", "subresource": "", "code": 200},  # /version
    {"verb": "get", "group": "apps", "resource": "deployments", "subresource": "", "code": 404},
    {"verb": "create", "group": "apps", "resource": "deployments", "subresource": "", "code": 201},
    {"verb": "patch", "group": "apps", "resource": "deployments", "subresource": "scale",
     "code": 200},
    {"verb": "create", "group": "", "resource": "events", "subresource": "", "code": 201},
    {"verb": "patch", "group": "networking.istio.io", "resource": "virtualservices",
     "subresource": "", "code": 200},
    {"verb": "delete", "group": "apps", "resource": "deployments", "subresource": "", "code": 200},
    {"verb": "get", "group": "", "resource": "pods", "subresource": "log", "code": 200},
]  # fmt: skip


def test_required_permissions_from_an_audit_log():
    assert required_permissions(SAMPLE_AUDIT) == {
        ("apps", "deployments", "get"),
        ("apps", "deployments", "create"),
        ("apps", "deployments/scale", "patch"),
        ("", "events", "create"),
        ("networking.istio.io", "virtualservices", "patch"),
        ("apps", "deployments", "delete"),
        ("", "pods/log", "get"),
    }


def test_missing_permissions_are_the_calls_no_rule_allows():
    needed = required_permissions(SAMPLE_AUDIT)
    assert missing_permissions(cluster_role()["rules"], needed) == {
        ("apps", "deployments", "delete"),
        ("", "pods/log", "get"),
    }


def test_rbac_wildcards_and_subresources():
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments/*"], "verbs": ["get"]},
        {"apiGroups": ["*"], "resources": ["configmaps"], "verbs": ["*"]},
    ]
    assert allows(rules, ("apps", "deployments/scale", "get"))
    assert not allows(rules, ("apps", "deployments", "get"))  # the subresource rule only
    assert allows(rules, ("", "configmaps", "delete"))
    assert not allows(rules, ("", "secrets", "get"))


def test_unused_permissions_are_reported():
    unused = unused_permissions(cluster_role(), required_permissions(SAMPLE_AUDIT))
    assert ("flagger.app", "metrictemplates", "get") in unused
    assert ("apps", "deployments", "get") not in unused


# --- the real activities against the sandbox ---------------------------------------------------

USER_AGENT = "coalmine-rbac-test"


class _Peer(BaseHTTPRequestHandler):
    """Answers 200 to anything: the webhook and the alert's chat endpoint."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture(scope="module")
def peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Peer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _kubectl_apply(kubeconfig: str, objects: list[Doc]) -> None:
    body = yaml.safe_dump_all(objects)
    result = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-"],
        input=body,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _podinfo(namespace: str, prometheus: str, peer: str) -> list[Doc]:
    """The target with the config it references, its HPA, a MetricTemplate and an AlertProvider
    whose credentials are in Secrets (so the secret reads happen as in production)."""
    meta = {"namespace": namespace}
    container = {
        "name": "podinfod",
        "image": "ghcr.io/stefanprodan/podinfo:6.5.0",
        "ports": [{"name": "http", "containerPort": 9898}],
        "env": [
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "podinfo-env", "key": "level"}},
            }
        ],
        "envFrom": [{"secretRef": {"name": "podinfo-token"}}],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podinfo-env", **meta},
         "data": {"level": "info"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "podinfo-token", **meta},
         "stringData": {"TOKEN": "t"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "prom-auth", **meta},
         "stringData": {"token": "prom-token"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-url", **meta},
         "stringData": {"address": f"{peer}/chat"}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "podinfo", **meta},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "podinfo"}},
                "template": {
                    "metadata": {"labels": {"app": "podinfo"}},
                    "spec": {"containers": [container]},
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "podinfo", **meta},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": "podinfo"},
                "minReplicas": 1,
                "maxReplicas": 2,
            },
        },
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "always-one", **meta},
            "spec": {
                "provider": {"type": "prometheus", "address": prometheus,
                             "secretRef": {"name": "prom-auth"}},
                "query": "vector(1)",
            },
        },
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": "chat", **meta},
            "spec": {"type": "slack", "channel": "deploys", "secretRef": {"name": "chat-url"}},
        },
    ]  # fmt: skip


def _canary(namespace: str, peer: str) -> Any:
    from workflows.spec import Canary

    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "autoscalerRef": {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "name": "podinfo",
                },
                "service": {"port": 9898},
                "analysis": {
                    "interval": "1s",
                    "threshold": 2,
                    "maxWeight": 50,
                    "stepWeight": 10,
                    "metrics": [
                        {"name": "request-success-rate", "thresholdRange": {"min": 99},
                         "interval": "1m"},
                        {"name": "one", "templateRef": {"name": "always-one"},
                         "thresholdRange": {"max": 2}},
                    ],
                    "webhooks": [{"name": "gate", "type": "rollout", "url": f"{peer}/hook"}],
                    "alerts": [{"name": "chat", "severity": "info",
                                "providerRef": {"name": "chat"}}],
                },
            },
        }
    )  # fmt: skip


def run_rollout(api_client: Any, canary: Any, prometheus: str) -> None:
    """One promoted rollout, activity by activity, as the workflow calls them."""
    from temporalio.testing import ActivityEnvironment

    from activities.analysis import AnalysisActivities, AnalysisSettings
    from activities.kubernetes import KubernetesActivities
    from activities.router import RouterActivities
    from workflows.activity_api import (
        CanaryRef,
        EventInput,
        InitializeInput,
        MetricCheckInput,
        PromoteInput,
        ReadRevisionInput,
        RoutesInput,
        ScaleCanaryInput,
        SetWeightsInput,
        WaitReadyInput,
        WebhookInput,
    )
    from workflows.model import Phase

    env = ActivityEnvironment()
    k8s = KubernetesActivities(api_client, poll_interval=0.1)
    router = RouterActivities(api_client)
    analysis = AnalysisActivities(
        api_client=api_client, settings=AnalysisSettings(prometheus_url=prometheus)
    )
    ref = CanaryRef.of(canary)

    def ready(deployment: str) -> None:
        result = env.run(
            k8s.wait_ready, WaitReadyInput(ref=ref, deployment=deployment, deadline_seconds=60)
        )
        assert result.ready, result.message

    env.run(k8s.initialize, InitializeInput(canary=canary))
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    revision = env.run(k8s.read_revision, ReadRevisionInput(ref=ref)).revision
    env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary))
    ready(ref.target)
    env.run(router.set_weights, SetWeightsInput(ref=ref, primary=90, canary=10))
    env.run(router.get_weights, ref)
    for metric in canary.spec.analysis.metrics:
        env.run(analysis.check_metric, MetricCheckInput(ref=ref, metric=metric))
    (webhook,) = canary.spec.analysis.webhooks
    hook = WebhookInput(ref=ref, webhook=webhook, phase=Phase.PROGRESSING, checksum=revision)
    assert env.run(analysis.call_webhook, hook).ok
    env.run(k8s.promote, PromoteInput(canary=canary, revision=revision))
    ready(ref.primary)
    env.run(router.set_weights, SetWeightsInput(ref=ref, primary=100, canary=0))
    env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary, replicas=0))
    event = EventInput(
        ref=ref,
        reason="Synced",
        message="Promotion completed! Scaling down podinfo.",
        phase=Phase.SUCCEEDED,
        revision=revision,
        alerts=list(canary.spec.analysis.alerts),
        alert_severity="info",
    )
    env.run(analysis.record_event, event)


def audit(api_url: str) -> list[dict[str, Any]]:
    url = f"{api_url}/sandbox/audit?user_agent={USER_AGENT}"
    with urllib.request.urlopen(url, timeout=10) as response:
        items: list[dict[str, Any]] = json.loads(response.read())["items"]
    return items


def _second_revision(kubeconfig: str, namespace: str, canary: Any) -> Any:
    """A new image, changed config and autoscaler, and a changed Canary (routing and traffic
    policy): what a later rollout of the same target brings. Returns the changed Canary."""
    from workflows.spec import Canary

    kubectl = ["kubectl", "--kubeconfig", kubeconfig, "-n", namespace]
    for change in (
        ["set", "image", "deployment/podinfo", "podinfod=ghcr.io/stefanprodan/podinfo:6.5.1"],
        ["patch", "configmap", "podinfo-env", "--type=merge", "-p", '{"data":{"level":"debug"}}'],
        ["patch", "secret", "podinfo-token", "--type=merge", "-p", '{"stringData":{"TOKEN":"u"}}'],
        ["patch", "hpa", "podinfo", "--type=merge", "-p", '{"spec":{"maxReplicas":3}}'],
    ):
        result = subprocess.run(
            [*kubectl, *change], capture_output=True, text=True, check=False, timeout=60
        )
        assert result.returncode == 0, result.stderr
    doc = canary.model_dump(by_alias=True, mode="json", exclude_none=True)
    doc["spec"]["service"] |= {
        "hosts": ["app.example.com"],
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
        "portName": "http-podinfo",
    }
    return Canary.model_validate(doc)


@pytest.mark.slow
def test_cluster_role_is_exactly_the_calls_the_activities_make(
    sandbox_cluster, peer, record_property
):
    from activities.kubernetes import build_api_client

    namespace = "rbac-rollout"
    kubeconfig = str(sandbox_cluster.kubeconfig)
    prometheus = sandbox_cluster.prometheus_url
    _kubectl_apply(kubeconfig, _podinfo(namespace, prometheus, peer))
    api_client = build_api_client(kubeconfig=sandbox_cluster.kubeconfig)
    api_client.user_agent = USER_AGENT  # this test's calls only, in the shared sandbox
    try:
        canary = _canary(namespace, peer)
        run_rollout(api_client, canary, prometheus)
        run_rollout(api_client, _second_revision(kubeconfig, namespace, canary), prometheus)
    finally:
        api_client.close()
        # The sandbox is shared by the whole session: leave it as it was found.
        subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "delete", "namespace", namespace,
             "--ignore-not-found", "--wait=false"],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip

    entries = audit(sandbox_cluster.api_url)
    needed = required_permissions(entries)
    record_property("permissions_used", sorted(needed))
    # Every call was made in the rollout's namespace: the namespaced Role is enough for a team
    # that confines the worker.
    assert {e["namespace"] for e in entries if e["resource"]} == {namespace}

    role = cluster_role()
    missing = missing_permissions(role["rules"], needed)
    assert not missing, f"the ClusterRole does not allow: {sorted(missing)}"
    unused = unused_permissions(role, needed)
    record_property("permissions_unused", sorted(unused))
    assert not unused, f"rules no call used in two rollouts (remove them): {sorted(unused)}"
