"""The ClusterRole against the API calls the activities really make, on the real control plane.

The session's cluster (tests/conftest.py) runs the real kube-apiserver, whose audit log the API
proxy serves (verb, group, resource, subresource, user, user agent). A module fixture runs the
product's activities — the same classes the worker registers, with the worker's credentials: the
``coalmine`` ServiceAccount through the proxy, bound to deploy/manifests/cluster/clusterrole.yaml,
so the real RBAC authorizer judges every call — through two rollouts with a user agent of its
own: the first creates everything, the second brings a new image, changed config, a changed HPA
and a changed Canary, so the update paths run too. Its tests share that activity:

- the (group, resource, verb) set the worker's audit entries show is exactly what the ClusterRole
  grants (and so the namespaced Role and the chart, which other tests hold equal to it): every
  call is allowed and every rule was used;
- every rule is needed: for each rule in turn, a fresh ServiceAccount bound to all the other
  rules replays one request per permission of that rule the rollouts used, and the API server
  answers 403 Forbidden naming the resource — while the same request as ``coalmine`` is not 403.
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as kube

from tests.activity_env import activity_env
from tests.conftest import WORKER_USER, ApiProxy, Kubectl
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


# --- the real activities on the real cluster ---------------------------------------------------

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


def _canary_doc(namespace: str, peer: str) -> dict[str, Any]:
    from tests.canaries import canary_doc

    return canary_doc(
        namespace,
        autoscaler="podinfo",
        progress_deadline=None,
        analysis={
            "interval": "1s",
            "threshold": 2,
            "maxWeight": 50,
            "stepWeight": 10,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {
                    "name": "one",
                    "templateRef": {"name": "always-one"},
                    "thresholdRange": {"max": 2},
                },
            ],
            "webhooks": [{"name": "gate", "type": "rollout", "url": f"{peer}/hook"}],
            "alerts": [{"name": "chat", "severity": "info", "providerRef": {"name": "chat"}}],
        },
    )


def run_rollout(api_client: Any, canary: Any, prometheus: str) -> None:
    """One promoted rollout, activity by activity, as the workflow calls them."""

    from activities.analysis import AnalysisActivities, AnalysisSettings
    from activities.kubernetes import CanaryStatusActivities, KubernetesActivities
    from activities.router import RouterActivities
    from workflows.activity_api import (
        CanaryRef,
        CanaryStatusInput,
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

    env = activity_env()
    k8s = KubernetesActivities(api_client, poll_interval=0.1)
    router = RouterActivities(api_client)
    analysis = AnalysisActivities(
        api_client=api_client, settings=AnalysisSettings(prometheus_url=prometheus)
    )
    status = CanaryStatusActivities(api_client)
    ref = CanaryRef.of(canary)

    def ready(deployment: str) -> None:
        result = env.run(
            k8s.wait_ready, WaitReadyInput(ref=ref, deployment=deployment, deadline_seconds=60)
        )
        assert result.ready, result.message

    env.run(k8s.initialize, InitializeInput(canary=canary))
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    revision = env.run(k8s.read_revision, ReadRevisionInput(ref=ref)).revision
    progressing = CanaryStatusInput(ref=ref, phase=Phase.PROGRESSING, revision=revision)
    assert env.run(status.sync_canary_status, progressing).exists
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
    done = CanaryStatusInput(
        ref=ref, phase=Phase.SUCCEEDED, revision=revision, last_promoted_revision=revision
    )
    env.run(status.sync_canary_status, done)


def _second_revision(kubectl: Kubectl, namespace: str, canary: Any) -> Any:
    """A new image, changed config and autoscaler, and a changed Canary (routing and traffic
    policy): what a later rollout of the same target brings. Returns the changed Canary."""
    from workflows.spec import Canary

    for change in (
        ["set", "image", "deployment/podinfo", "podinfod=ghcr.io/stefanprodan/podinfo:6.5.1"],
        ["patch", "configmap", "podinfo-env", "--type=merge", "-p", '{"data":{"level":"debug"}}'],
        ["patch", "secret", "podinfo-token", "--type=merge", "-p", '{"stringData":{"TOKEN":"u"}}'],
        ["patch", "hpa", "podinfo", "--type=merge", "-p", '{"spec":{"maxReplicas":3}}'],
    ):
        kubectl.run("-n", namespace, *change)
    doc = canary.model_dump(by_alias=True, mode="json", exclude_none=True)
    doc["spec"]["service"] |= {
        "hosts": ["app.example.com"],
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
        "portName": "http-podinfo",
    }
    return Canary.model_validate(doc)


@dataclass(frozen=True)
class Rollouts:
    """What the module's two rollouts left: their namespace and the worker's audit entries."""

    namespace: str
    entries: list[dict[str, Any]]


@pytest.fixture(scope="module")
def rollouts(
    sandbox_cluster, kubectl: Kubectl, api_proxy: ApiProxy, peer: str
) -> Iterator[Rollouts]:
    """Two rollouts as the worker (its kubeconfig: the ServiceAccount, through the proxy), with
    this module's user agent so its entries are told apart in the session's shared log."""
    from activities.kubernetes import build_api_client
    from workflows.spec import Canary

    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    prometheus = sandbox_cluster.prometheus_url
    # The Canary is in the cluster, as the controller's rollouts have it: its status is written,
    # events go on it, and what the activities create is owned by it.
    document = _canary_doc(namespace, peer)
    kubectl.apply(yaml.safe_dump_all([*_podinfo(namespace, prometheus, peer), document]))
    try:
        api_client = build_api_client(kubeconfig=sandbox_cluster.worker_kubeconfig)
        api_client.user_agent = USER_AGENT
        try:
            canary = Canary.model_validate(document)
            run_rollout(api_client, canary, prometheus)
            run_rollout(api_client, _second_revision(kubectl, namespace, canary), prometheus)
        finally:
            api_client.close()
        yield Rollouts(namespace, api_proxy.audit(user=WORKER_USER, user_agent=USER_AGENT))
    finally:
        # The cluster is shared by the whole session: leave it as it was found.
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.mark.slow
def test_cluster_role_is_exactly_the_calls_the_activities_make(rollouts: Rollouts, record_property):
    entries = rollouts.entries
    needed = required_permissions(entries)
    record_property("permissions_used", sorted(needed))
    # Every call was made in the rollout's namespace: the namespaced Role is enough for a team
    # that confines the worker.
    assert {e["namespace"] for e in entries if e["resource"]} == {rollouts.namespace}

    role = cluster_role()
    missing = missing_permissions(role["rules"], needed)
    assert not missing, f"the ClusterRole does not allow: {sorted(missing)}"
    unused = unused_permissions(role, needed) - other_providers_only() - daemonset_only()
    record_property("permissions_unused", sorted(unused))
    assert not unused, f"rules no call used in two rollouts (remove them): {sorted(unused)}"


def daemonset_only() -> set[Permission]:
    """What only a DaemonSet target needs (the rollouts here target Deployments; DaemonSet
    targets are tests/integration/test_daemonsets.py's)."""
    return {("apps", "daemonsets", verb) for verb in ("get", "create", "update", "patch")}


def other_providers_only() -> set[Permission]:
    """What only the routers other than Istio need (the rollouts here run on Istio; those rules
    are held to their providers by tests/deploy/test_provider_rbac.py)."""
    from activities.router.registry import PROVIDERS

    def of(name: str) -> set[Permission]:
        return {p for rule in PROVIDERS[name].rbac for p in rule.permissions()}

    others = set().union(*(of(name) for name in PROVIDERS if name != "istio"))
    return others - of("istio")


# --- every rule is needed: the API server refuses what a missing rule allowed -----------------


def _replays(entries: list[dict[str, Any]]) -> dict[Permission, dict[str, Any]]:
    """One recorded request per permission used, preferring one the server accepted (its object
    exists, so a replay by an allowed account finds it)."""
    chosen: dict[Permission, dict[str, Any]] = {}
    for entry in entries:
        if not entry["resource"]:
            continue
        (permission,) = required_permissions([entry])
        if permission not in chosen or 200 <= entry["code"] < 300:
            chosen[permission] = entry
    return chosen


@dataclass(frozen=True)
class Cluster:
    """The API server as the admin (client certificate) and as ServiceAccounts (tokens)."""

    admin: httpx.Client
    bearer: httpx.Client

    def replay(self, entry: dict[str, Any], token: str) -> httpx.Response:
        """The recorded request again, made harmless: a GET; an empty merge patch; an update to
        the object as it is; a create of the object that already exists (409 when allowed).
        Authorization comes first, so a refused account gets its 403 whatever the body."""
        auth = {"Authorization": f"Bearer {token}"}
        method, path = entry["method"], entry["path"]
        if method == "GET":
            return self.bearer.get(path, headers=auth)
        if method == "PATCH":
            patch = {"Content-Type": "application/merge-patch+json"}
            return self.bearer.patch(path, content=b"{}", headers=auth | patch)
        if method == "POST":
            path = f"{path}/{entry['object_name']}"
        live = self.admin.get(path)
        live.raise_for_status()
        body = live.json()
        if method == "POST":
            body.pop("status", None)
            for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
                body["metadata"].pop(key, None)
            return self.bearer.post(entry["path"], json=body, headers=auth)
        return self.bearer.put(path, json=body, headers=auth)


@pytest.fixture(scope="module")
def cluster(sandbox_cluster) -> Iterator[Cluster]:
    config = yaml.safe_load(sandbox_cluster.kubeconfig.read_text())
    user = config["users"][0]["user"]
    ca = config["clusters"][0]["cluster"]["certificate-authority"]
    as_admin = ssl.create_default_context(cafile=ca)
    as_admin.load_cert_chain(user["client-certificate"], user["client-key"])
    url = sandbox_cluster.api_url
    with (
        httpx.Client(base_url=url, verify=as_admin, trust_env=False, timeout=10) as admin,
        httpx.Client(
            base_url=url, verify=ssl.create_default_context(cafile=ca), trust_env=False, timeout=10
        ) as bearer,
    ):
        yield Cluster(admin, bearer)


def _without_each_rule(namespace: str, rules: list[Doc]) -> list[Doc]:
    """Per rule i: ServiceAccount rbac-minus-i, bound to a ClusterRole of every rule but i."""
    objects: list[Doc] = []
    for index in range(len(rules)):
        name = f"{namespace}-minus-{index}"
        meta = {"name": name, "labels": {"coalmine.io/test": namespace}}
        subject = {"kind": "ServiceAccount", "name": f"rbac-minus-{index}", "namespace": namespace}
        objects += [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": subject["name"], "namespace": namespace}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta,
             "rules": rules[:index] + rules[index + 1 :]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": meta, "subjects": [subject],
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": name}},
        ]  # fmt: skip
    return objects


def _token(admin_client: Any, namespace: str, account: str) -> str:
    """A short-lived token for ``account`` (TokenRequest, as the admin)."""
    request = {"spec": {"expirationSeconds": 600}}
    answer = kube.CoreV1Api(admin_client).create_namespaced_service_account_token(
        account, namespace, request
    )
    token: str = answer.status.token
    return token


def _once_authorized(cluster: Cluster, entry: dict[str, Any], token: str) -> None:
    """Wait until the API server's authorizer has the new binding (its RBAC cache follows the
    API by watch): until a request the remaining rules allow is no longer refused."""
    deadline = time.monotonic() + 20
    while (code := cluster.replay(entry, token).status_code) == 403:
        assert time.monotonic() < deadline, f"the binding never took effect: {entry['path']}"
        time.sleep(0.1)
    assert code != 401, f"the token was not accepted: {entry['path']}"


@pytest.mark.slow
def test_without_any_one_rule_the_api_server_refuses_what_it_allowed(
    rollouts: Rollouts, cluster: Cluster, kubectl: Kubectl, admin_client, sandbox_cluster
):
    rules: list[Doc] = cluster_role()["rules"]
    replays = _replays(rollouts.entries)
    used = set(replays)
    full = yaml.safe_load(sandbox_cluster.worker_kubeconfig.read_text())["users"][0]["user"]
    namespace = rollouts.namespace
    kubectl.apply(yaml.safe_dump_all(_without_each_rule(namespace, rules)))
    try:
        foreign = other_providers_only() | daemonset_only()
        for index, rule in enumerate(rules):
            others = rules[:index] + rules[index + 1 :]
            if {
                (group, resource, verb)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            } <= foreign:
                continue  # another router's or a DaemonSet's rule: these rollouts never need it
            granted = sorted(p for p in used if allows([rule], p))
            assert granted, f"rule {index} ({rule}) allows nothing the rollouts did"
            token = _token(admin_client, namespace, f"rbac-minus-{index}")
            control = sorted(p for p in used if allows(others, p) and p[2] == "get")[0]
            _once_authorized(cluster, replays[control], token)
            for group, resource, verb in granted:
                entry = replays[(group, resource, verb)]
                refused = cluster.replay(entry, token)
                what = f"{verb} {group}/{resource} without rule {index}"
                assert refused.status_code == 403, (what, refused.status_code, refused.text)
                status = refused.json()
                assert status["reason"] == "Forbidden", what
                assert (
                    f'cannot {verb} resource "{resource}" in API group "{group}"'
                    in status["message"]
                ), (what, status["message"])
                # The same request as the worker's own account is allowed (whatever else the
                # server says of it: 200, or 409 for the create of an existing object).
                allowed = cluster.replay(entry, full["token"])
                assert allowed.status_code != 403, (what, allowed.text)
    finally:
        kubectl.run(
            "delete", "clusterrolebinding,clusterrole", "-l", f"coalmine.io/test={namespace}"
        )
