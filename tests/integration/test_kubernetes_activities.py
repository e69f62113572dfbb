"""The Kubernetes activities on the real control plane, as the worker's ServiceAccount.

Each test gets a fresh namespace holding the article's podinfo (Deployment reading a ConfigMap by
volume and env, a Secret by envFrom, and an HPA), set up and read back as the cluster admin. The
activities run as Temporal runs them, in ``ActivityEnvironment`` (heartbeats, cancellation), with
the worker's client, so the real authorizer holds every call to the shipped ClusterRole; the API
server's audit log counts their writes. Readiness is the real controllers': slow pods come from
kwok's ready delay, stuck ones from an unpullable image, a half-ready Deployment from an
anti-affinity that leaves one pod Pending, and an unobserved spec from an admission policy that
keeps the Deployment controller from writing status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.errors import (
    ApiUnavailable,
    Conflict,
    InvalidSpec,
    PrimaryNotFound,
    RevisionMismatch,
    ServerError,
    TargetNotFound,
)
from activities.kubernetes import KubernetesActivities, build_api_client
from activities.router import RouterActivities
from tests.activity_env import activity_env
from tests.conftest import Kubectl
from tests.integration.conftest import (
    UNPULLABLE,
    create_podinfo,
    make_canary,
    read,
    verbs,
)
from tests.ports import free_port
from workflows import policies
from workflows.activity_api import (
    ActivityName,
    CanaryRef,
    InitializeInput,
    InitializeResult,
    PromoteInput,
    ReadRevisionInput,
    RoutesInput,
    ScaleCanaryInput,
    WaitReadyInput,
)
from workflows.spec import Canary


@pytest.fixture
def namespace(sandbox_namespace: str) -> str:
    return sandbox_namespace


@pytest.fixture
def k8s(worker_client: client.ApiClient) -> KubernetesActivities:
    """The activities as the worker registers them: the ``coalmine`` ServiceAccount's client."""
    return KubernetesActivities(worker_client, poll_interval=0.05)


@pytest.fixture
def env() -> ActivityEnvironment:
    # The timeouts the workflow gives a wait (the SDK's test default is 1 s): waits end by the
    # progress deadline's rules, not by the attempt running out of time.
    return activity_env()


def ref(namespace: str) -> CanaryRef:
    return CanaryRef.of(make_canary(namespace))


def initialize(env: ActivityEnvironment, k8s: KubernetesActivities, namespace: str, **kw):
    return env.run(k8s.initialize, InitializeInput(canary=make_canary(namespace, **kw)))


def patch_target(admin_client: client.ApiClient, namespace: str, body: dict) -> None:
    client.AppsV1Api(admin_client).patch_namespaced_deployment(
        "podinfo", namespace, body, _content_type="application/merge-patch+json"
    )


def set_image(admin_client: client.ApiClient, namespace: str, image: str) -> None:
    target = read(admin_client, "deployment", namespace, "podinfo")
    containers = target["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = image
    template = {"spec": {"containers": containers}}
    patch_target(admin_client, namespace, {"spec": {"template": template}})


# --- initialize ----------------------------------------------------------------------------


def test_initialize_creates_flaggers_objects(env, k8s, admin_client, namespace) -> None:
    create_podinfo(admin_client, namespace)
    revision = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace))).revision

    result = initialize(env, k8s, namespace)

    assert result.first_initialization
    assert result.promoted_revision == revision
    primary = read(admin_client, "deployment", namespace, "podinfo-primary")
    # The target's own labels stay on the target (Flagger's include-label-prefix default).
    assert primary["metadata"]["labels"] == {
        "app": "podinfo-primary",
        "app.kubernetes.io/managed-by": "coalmine",
    }
    assert primary["metadata"]["annotations"]["coalmine.io/revision"] == revision
    assert primary["metadata"]["annotations"]["coalmine.io/canary"] == f"{namespace}/podinfo"
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert primary["spec"]["replicas"] == 2
    template = primary["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "podinfo-primary", "team": "web"}
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    pod = template["spec"]
    # The primary reads the -primary copies of the config, so a changed ConfigMap reaches
    # production only through a promotion.
    assert pod["volumes"][0]["configMap"]["name"] == "podinfo-config-primary"
    container = pod["containers"][0]
    assert container["image"] == "quay.io/stefanprodan/podinfo:1.4.0"
    assert container["env"][1]["valueFrom"]["configMapKeyRef"]["name"] == "podinfo-env-primary"
    assert container["envFrom"][0]["secretRef"]["name"] == "podinfo-token-primary"
    for kind, name in (
        ("config_map", "podinfo-config"),
        ("config_map", "podinfo-env"),
        ("secret", "podinfo-token"),
    ):
        copy = read(admin_client, kind, namespace, name + "-primary")
        assert copy["data"] == read(admin_client, kind, namespace, name)["data"]
        assert copy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "coalmine"

    hpa = read(admin_client, "hpa", namespace, "podinfo-primary")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo-primary",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"

    selects = {"podinfo": "podinfo-primary", "podinfo-primary": "podinfo-primary"}
    selects["podinfo-canary"] = "podinfo"
    for name, pods in selects.items():
        service = read(admin_client, "service", namespace, name)
        assert service["spec"]["selector"] == {"app": pods}, name
        (port,) = service["spec"]["ports"]
        assert (port["name"], port["port"], port["targetPort"]) == ("http", 9898, 9898)
        assert service["metadata"]["labels"]["app"] == name

    # First initialization: the target (the canary) waits at zero replicas.
    assert read(admin_client, "deployment", namespace, "podinfo")["spec"]["replicas"] == 0


def test_initialize_and_routes_make_exactly_the_objects_of_the_design(
    env, k8s, admin_client, worker_client, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    canary = make_canary(namespace)
    initialize(env, k8s, namespace)
    env.run(RouterActivities(worker_client).reconcile_routes, RoutesInput(canary=canary))

    def names(items) -> set[str]:
        return {item["metadata"]["name"] for item in items}

    def listed(method, *args) -> set[str]:
        return names(json.loads(method(*args, _preload_content=False).data)["items"])

    apps, core = client.AppsV1Api(admin_client), client.CoreV1Api(admin_client)
    hpas, istio = client.AutoscalingV2Api(admin_client), client.CustomObjectsApi(admin_client)
    assert listed(apps.list_namespaced_deployment, namespace) == {"podinfo", "podinfo-primary"}
    assert listed(core.list_namespaced_service, namespace) == {
        "podinfo",
        "podinfo-primary",
        "podinfo-canary",
    }
    assert listed(hpas.list_namespaced_horizontal_pod_autoscaler, namespace) == {
        "podinfo",
        "podinfo-primary",
    }
    group = ("networking.istio.io", "v1beta1", namespace)
    assert listed(istio.list_namespaced_custom_object, *group, "virtualservices") == {"podinfo"}
    assert listed(istio.list_namespaced_custom_object, *group, "destinationrules") == {
        "podinfo-primary",
        "podinfo-canary",
    }


def test_initialize_twice_writes_nothing_the_second_time(
    env, k8s, admin_client, api_proxy, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    initialize(env, k8s, namespace)
    first = api_proxy.writes(namespace)
    # 3 config copies, primary (created, then marked initialized), its HPA, 3 Services, scale to
    # zero: 10 writes, each on the object it should be.
    assert first == Counter(
        {
            "configmaps/podinfo-config-primary": 1,
            "configmaps/podinfo-env-primary": 1,
            "secrets/podinfo-token-primary": 1,
            "deployments/podinfo-primary": 2,
            "horizontalpodautoscalers/podinfo-primary": 1,
            "services/podinfo": 1,
            "services/podinfo-primary": 1,
            "services/podinfo-canary": 1,
            "deployments/podinfo/scale": 1,
        }
    ), first
    assert first.total() == 10

    again = initialize(env, k8s, namespace)

    assert api_proxy.writes(namespace) == first
    assert not again.first_initialization


def test_initialize_retried_after_a_crash_still_scales_the_target_down(
    env, k8s, admin_client, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    initialize(env, k8s, namespace)
    # As if the first attempt died after creating the primary, before scaling the target down.
    client.AppsV1Api(admin_client).patch_namespaced_deployment(
        "podinfo-primary",
        namespace,
        {"metadata": {"annotations": {"coalmine.io/initialized": None}}},
        _content_type="application/merge-patch+json",
    )
    client.AppsV1Api(admin_client).patch_namespaced_deployment_scale(
        "podinfo",
        namespace,
        {"spec": {"replicas": 2}},
        _content_type="application/merge-patch+json",
    )

    result = initialize(env, k8s, namespace)

    assert result.first_initialization
    assert read(admin_client, "deployment", namespace, "podinfo")["spec"]["replicas"] == 0


def test_initialize_converges_a_drifted_service(
    env, k8s, admin_client, api_proxy, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    initialize(env, k8s, namespace)
    client.CoreV1Api(admin_client).patch_namespaced_service(
        "podinfo",
        namespace,
        {"spec": {"selector": {"app": "podinfo"}}},
        _content_type="application/merge-patch+json",
    )
    before = api_proxy.writes(namespace)

    initialize(env, k8s, namespace)

    assert api_proxy.writes(namespace) - before == Counter({"services/podinfo": 1})
    assert verbs(api_proxy, namespace, "services/podinfo") == ["create", "update"]
    service = read(admin_client, "service", namespace, "podinfo")
    assert service["spec"]["selector"] == {"app": "podinfo-primary"}


def test_initialize_takes_over_an_existing_node_port_service(
    env, k8s, admin_client, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    client.CoreV1Api(admin_client).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "podinfo", "labels": {"owner": "team-web"}},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "podinfo"},
                "ports": [{"name": "http", "port": 9898, "nodePort": 30080}],
            },
        },
    )

    initialize(env, k8s, namespace)

    service = read(admin_client, "service", namespace, "podinfo")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == {"app": "podinfo-primary"}
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    assert service["metadata"]["labels"]["owner"] == "team-web"
    assert read(admin_client, "service", namespace, "podinfo-canary")["spec"]["type"] == "ClusterIP"


def test_missing_target_is_a_non_retryable_target_not_found(env, k8s, namespace) -> None:
    with pytest.raises(TargetNotFound) as raised:
        initialize(env, k8s, namespace)
    assert raised.value.non_retryable
    assert raised.value.type == "TargetNotFound"
    with pytest.raises(TargetNotFound):
        env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace)))
    with pytest.raises(TargetNotFound):
        env.run(k8s.scale_canary, ScaleCanaryInput(canary=make_canary(namespace), replicas=1))


def test_invalid_targets_are_refused_before_any_write(
    env, k8s, admin_client, api_proxy, namespace
) -> None:
    create_podinfo(admin_client, namespace, hpa=False)
    # autoscalerRef names an HPA that does not exist.
    with pytest.raises(InvalidSpec, match="HorizontalPodAutoscaler podinfo"):
        initialize(env, k8s, namespace)
    assert api_proxy.writes(namespace) == Counter()
    # No selector label Coalmine (and Flagger) can suffix.
    client.AppsV1Api(admin_client).delete_namespaced_deployment("podinfo", namespace)
    deployment = {
        "metadata": {"name": "podinfo"},
        "spec": {
            "selector": {"matchLabels": {"component": "podinfo"}},
            "template": {
                "metadata": {"labels": {"component": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": "podinfo:1"}]},
            },
        },
    }
    client.AppsV1Api(admin_client).create_namespaced_deployment(namespace, deployment)
    with pytest.raises(InvalidSpec, match="matchLabels must contain one of app") as raised:
        initialize(env, k8s, namespace, autoscaler=False)
    assert raised.value.non_retryable
    # Not one write by the worker in the namespace, in either case.
    assert api_proxy.writes(namespace) == Counter()


# --- revision ------------------------------------------------------------------------------


def test_revision_follows_the_template_and_the_referenced_config(
    env, k8s, admin_client, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    info = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace)))
    assert info.promoted_revision is None
    initialize(env, k8s, namespace)
    info = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace)))
    # Scaling the target to zero is not a new revision.
    assert info.promoted_revision == info.revision

    set_image(admin_client, namespace, "quay.io/stefanprodan/podinfo:1.4.1")
    after_image = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace)))
    assert after_image.revision != info.revision
    assert after_image.promoted_revision == info.revision

    client.CoreV1Api(admin_client).patch_namespaced_config_map(
        "podinfo-config",
        namespace,
        {"data": {"config.yaml": "a: 2"}},
        _content_type="application/merge-patch+json",
    )
    after_config = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace)))
    assert after_config.revision not in (info.revision, after_image.revision)


# --- scale ---------------------------------------------------------------------------------


def test_scale_canary_up_to_the_hpa_minimum_then_down_and_converges(
    env, k8s, admin_client, api_proxy, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    initialize(env, k8s, namespace)
    canary = make_canary(namespace)
    before = api_proxy.writes(namespace)

    up = env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary))
    assert up.replicas == 2  # the target is at zero: the HPA's minimum
    assert read(admin_client, "deployment", namespace, "podinfo")["spec"]["replicas"] == 2
    env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary))
    assert api_proxy.writes(namespace) - before == Counter({"deployments/podinfo/scale": 1})
    # initialize's scale to zero, then this one.
    assert verbs(api_proxy, namespace, "deployments/podinfo/scale") == ["patch", "patch"]

    down = env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary, replicas=0))
    assert down.replicas == 0
    assert read(admin_client, "deployment", namespace, "podinfo")["spec"]["replicas"] == 0


def test_scale_canary_takes_the_targets_own_replicas_first(
    env, k8s, admin_client, namespace
) -> None:
    """Flagger's ScaleFromZero: the target's replicas, else the HPA minimum, else 1 — never the
    primary's (2 here)."""
    create_podinfo(admin_client, namespace, hpa=False)
    canary = make_canary(namespace, autoscaler=False)
    initialize(env, k8s, namespace, autoscaler=False)
    # The manifest re-applied with three replicas (GitOps): the canary runs three.
    patch_target(admin_client, namespace, {"spec": {"replicas": 3}})
    assert env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary)).replicas == 3
    # At zero, with no HPA: one.
    env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary, replicas=0))
    assert env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary)).replicas == 1
    assert read(admin_client, "deployment", namespace, "podinfo")["spec"]["replicas"] == 1
    # Reverting a deleted Canary's target (Flagger's Finalize): the primary's size.
    revert = ScaleCanaryInput(canary=canary, like_primary=True)
    assert env.run(k8s.scale_canary, revert).replicas == 2


def test_scale_canary_falls_back_to_the_hpa_minimum_then_one(
    env, k8s, admin_client, namespace
) -> None:
    create_podinfo(admin_client, namespace, replicas=0)
    canary = make_canary(namespace)
    # The target at zero: the HPA's minimum.
    assert env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary)).replicas == 2
    # At zero, no HPA: one. (The HPA goes too, or its controller would scale back to 2.)
    client.AutoscalingV2Api(admin_client).delete_namespaced_horizontal_pod_autoscaler(
        "podinfo", namespace
    )
    env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary, replicas=0))
    no_hpa = make_canary(namespace, autoscaler=False)
    assert env.run(k8s.scale_canary, ScaleCanaryInput(canary=no_hpa)).replicas == 1
    assert read(admin_client, "deployment", namespace, "podinfo")["spec"]["replicas"] == 1


# --- wait_ready ----------------------------------------------------------------------------


def wait_input(namespace: str, deployment: str = "podinfo", deadline: float = 10.0):
    return WaitReadyInput(ref=ref(namespace), deployment=deployment, deadline_seconds=deadline)


ONE_POD_SCHEDULABLE = {
    "affinity": {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "podinfo"}}, "topologyKey": "type"}
            ]
        }
    }
}
"""Pod-spec fields that let one podinfo pod run in the namespace: every fake node is in the same
``type`` domain, so a second pod stays Pending (a Deployment with 1 of 2 replicas available)."""


def wait_for_status(
    api_client: client.ApiClient,
    namespace: str,
    name: str,
    condition: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 20,
) -> dict[str, Any]:
    """The Deployment's status once its controller has observed the spec and ``condition``
    holds: the state a test starts from, reached by the real controllers."""
    deadline = time.monotonic() + timeout
    while True:
        deployment = read(api_client, "deployment", namespace, name)
        status = deployment.get("status") or {}
        observed = status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        if observed and condition(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"deployment {name}.{namespace} never got there: {status}")
        time.sleep(0.05)


@contextlib.contextmanager
def status_frozen(kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """No Deployment status can be written in ``namespace``: a ValidatingAdmissionPolicy denies
    it, so the real Deployment controller cannot record that it observed a new spec."""
    name = f"freeze-status-{namespace}"
    policy = f"""
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [UPDATE]
      resources: [deployments/status]
  validations:
  - {{expression: "false", message: status frozen by the test}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}
"""
    try:
        kubectl.apply(policy)
        # The API server loads policies asynchronously: in force once a status write is denied.
        deadline = time.monotonic() + 20
        probe = ("-n", namespace, "patch", "deployment", "podinfo", "--subresource=status")
        while "status frozen" not in kubectl.run(*probe, "-p", "{}", check=False).stderr:
            assert time.monotonic() < deadline, "the admission policy never took effect"
            time.sleep(0.1)
        yield
    finally:
        kinds = "validatingadmissionpolicybinding,validatingadmissionpolicy"
        kubectl.run("delete", kinds, name, "--ignore-not-found")


def test_wait_ready_heartbeats_until_the_rollout_finishes(
    env, k8s, admin_client, namespace
) -> None:
    # One pod, Ready 2 s after it is scheduled: the rollout is under way when the wait starts.
    create_podinfo(admin_client, namespace, hpa=False, replicas=1, ready_after=2)
    wait_for_status(
        admin_client,
        namespace,
        "podinfo",
        lambda s: s.get("updatedReplicas") == 1 and not s.get("availableReplicas"),
    )
    heartbeats: list[tuple] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details)

    result = env.run(k8s.wait_ready, wait_input(namespace))

    assert result.ready
    assert result.message == (
        f"podinfo.{namespace} rollout finished: 1 of 1 updated replicas are available"
    )
    assert heartbeats[0][0] == (
        f"Waiting for podinfo.{namespace} rollout to finish: 0 of 1 updated replicas are available"
    )
    assert len(heartbeats) >= 3  # it kept polling (and heartbeating) until the pod was Ready


def _short_since(status: dict[str, Any]) -> float:
    """When the Deployment went short of available pods (its Available condition)."""
    (available,) = [c for c in status["conditions"] if c["type"] == "Available"]
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")
    stamp = available["lastUpdateTime"].replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def test_wait_ready_gives_up_a_deadline_after_the_pods_went_missing(
    env, k8s, admin_client, namespace
) -> None:
    """Flagger's rule: the deadline counts from the Deployment's Available condition turning
    False (MinimumReplicasUnavailable), not from the start of the wait."""
    create_podinfo(admin_client, namespace, hpa=False, pod=ONE_POD_SCHEDULABLE)
    status = wait_for_status(
        admin_client,
        namespace,
        "podinfo",
        lambda s: s.get("updatedReplicas") == 2 and s.get("availableReplicas") == 1,
    )
    since = _short_since(status)
    # The condition is already a while old: a deadline counted from the wait would end later.
    while time.time() < since + 2.5:
        time.sleep(0.1)
    started = time.time()

    result = env.run(k8s.wait_ready, wait_input(namespace, deadline=4))

    ended = time.time()
    assert not result.ready
    assert ended >= since + 4
    assert ended - started < 3.5  # from the condition (~1.5 s), not from the wait (4 s)
    assert result.message == (
        f"Waiting for podinfo.{namespace} rollout to finish: 1 of 2 updated replicas are available"
    )


def test_wait_ready_stops_at_progress_deadline_exceeded(env, k8s, admin_client, namespace) -> None:
    # Pods that never become Ready, and a Deployment that gives up on them after 1 s.
    create_podinfo(admin_client, namespace, hpa=False, image=UNPULLABLE, progress_deadline=1)
    started = time.monotonic()

    result = env.run(k8s.wait_ready, wait_input(namespace, deadline=30))

    assert not result.ready
    assert result.message == f"Deployment podinfo.{namespace} exceeded its progress deadline"
    assert time.monotonic() - started < 15  # stopped at the condition, not at the deadline


def test_wait_ready_honours_the_ready_threshold_and_generation(
    env, k8s, admin_client, kubectl: Kubectl, namespace
) -> None:
    create_podinfo(admin_client, namespace, hpa=False, pod=ONE_POD_SCHEDULABLE)
    wait_for_status(
        admin_client,
        namespace,
        "podinfo",
        lambda s: s.get("updatedReplicas") == 2 and s.get("availableReplicas") == 1,
    )

    def half(deadline: float) -> WaitReadyInput:
        return WaitReadyInput(
            ref=ref(namespace), deployment="podinfo", deadline_seconds=deadline, ready_threshold=50
        )

    assert env.run(k8s.wait_ready, half(5)).ready
    assert not env.run(k8s.wait_ready, wait_input(namespace, deadline=0.2)).ready
    # A new spec the controller has not observed yet is not ready, whatever the counts say
    # (1 of 2 is enough for the 50% threshold), and no deadline ends that wait (Flagger's
    # rule): only the attempt's own time does, here 12 s less the 10 s kept to answer in.
    env.info = dataclasses.replace(
        env.info, start_to_close_timeout=timedelta(seconds=12), schedule_to_close_timeout=None
    )
    with status_frozen(kubectl, namespace):
        set_image(admin_client, namespace, "quay.io/stefanprodan/podinfo:1.4.1")
        started = time.monotonic()
        result = env.run(k8s.wait_ready, half(0.2))
        waited = time.monotonic() - started
        assert not result.ready
        assert "observed deployment generation less than desired generation" in result.message
        assert 1.8 <= waited < 6
        # A later attempt gets what is left of the bound over all attempts (schedule-to-close,
        # counted from the first schedule), here 13 s from 1 s ago, less the margin: ~2 s.
        env.info = dataclasses.replace(
            env.info,
            start_to_close_timeout=policies.WAIT_LIMIT,
            schedule_to_close_timeout=timedelta(seconds=13),
            scheduled_time=datetime.now(UTC) - timedelta(seconds=1),
        )
        started = time.monotonic()
        assert not env.run(k8s.wait_ready, half(0.2)).ready
        assert 1.5 <= time.monotonic() - started < 5


async def test_wait_ready_is_cancelled_promptly(k8s, admin_client, namespace) -> None:
    create_podinfo(admin_client, namespace, hpa=False, ready_after=600)
    env = activity_env()
    loop = asyncio.get_running_loop()
    heartbeat = asyncio.Event()
    env.on_heartbeat = lambda *details: loop.call_soon_threadsafe(heartbeat.set)
    waiting = wait_input(namespace, deadline=60)
    running = loop.run_in_executor(None, env.run, k8s.wait_ready, waiting)
    await asyncio.wait_for(heartbeat.wait(), 10)
    started = time.monotonic()
    env.cancel()
    with pytest.raises(CancelledError):
        await running
    assert time.monotonic() - started < 2


def test_activities_also_work_as_plain_method_calls(k8s, admin_client, namespace) -> None:
    """No activity context (the command line, a script): same results, no heartbeats."""
    # The primary's pods (the target's template) become Ready 2 s after they are scheduled.
    create_podinfo(admin_client, namespace, ready_after=2)
    assert k8s.initialize(InitializeInput(canary=make_canary(namespace))).first_initialization
    result = k8s.wait_ready(wait_input(namespace, "podinfo-primary", deadline=0.2))
    assert not result.ready
    assert k8s.wait_ready(wait_input(namespace, "podinfo-primary")).ready


def test_wait_ready_on_a_missing_primary(env, k8s, namespace) -> None:
    with pytest.raises(PrimaryNotFound):
        env.run(k8s.wait_ready, wait_input(namespace, deployment="podinfo-primary"))


# --- promote -------------------------------------------------------------------------------


def primary_ready(env: ActivityEnvironment, k8s: KubernetesActivities, namespace: str) -> None:
    """Wait, as a rollout does, for the new primary before promoting: until then the Deployment
    controller is still writing it, and the promotion's replace would meet a (retryable)
    Conflict that Temporal, not this test, would retry."""
    result = env.run(k8s.wait_ready, wait_input(namespace, "podinfo-primary"))
    assert result.ready, result.message


def test_promote_copies_template_and_config_and_keeps_the_selector(
    env, k8s, admin_client, api_proxy, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    initialize(env, k8s, namespace)
    primary_ready(env, k8s, namespace)
    canary = make_canary(namespace)
    set_image(admin_client, namespace, "quay.io/stefanprodan/podinfo:1.4.1")
    patch_target(admin_client, namespace, {"spec": {"minReadySeconds": 5}})
    client.CoreV1Api(admin_client).patch_namespaced_config_map(
        "podinfo-config",
        namespace,
        {"data": {"config.yaml": "a: 2"}},
        _content_type="application/merge-patch+json",
    )
    revision = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace))).revision
    before = api_proxy.writes(namespace)

    env.run(k8s.promote, PromoteInput(canary=canary, revision=revision))

    primary = read(admin_client, "deployment", namespace, "podinfo-primary")
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    template = primary["spec"]["template"]
    assert template["metadata"]["labels"]["app"] == "podinfo-primary"
    assert template["metadata"]["annotations"]["coalmine.io/revision"] == revision
    assert template["spec"]["containers"][0]["image"] == "quay.io/stefanprodan/podinfo:1.4.1"
    assert template["spec"]["volumes"][0]["configMap"]["name"] == "podinfo-config-primary"
    assert primary["spec"]["minReadySeconds"] == 5
    assert primary["metadata"]["annotations"]["coalmine.io/revision"] == revision
    config = read(admin_client, "config_map", namespace, "podinfo-config-primary")
    assert config["data"] == {"config.yaml": "a: 2"}
    # One ConfigMap copy and the primary changed (updated in place); nothing else.
    assert api_proxy.writes(namespace) - before == Counter(
        {"configmaps/podinfo-config-primary": 1, "deployments/podinfo-primary": 1}
    )
    assert verbs(api_proxy, namespace, "configmaps/podinfo-config-primary") == [
        "create",
        "update",
    ]
    # Created and marked initialized by initialize, then the promotion's update.
    assert verbs(api_proxy, namespace, "deployments/podinfo-primary")[-1] == "update"
    info = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace)))
    assert info.promoted_revision == info.revision == revision

    # Idempotent: a retry after success writes nothing.
    done = api_proxy.writes(namespace)
    env.run(k8s.promote, PromoteInput(canary=canary, revision=revision))
    assert api_proxy.writes(namespace) == done


def test_promote_mirrors_what_the_target_dropped(env, k8s, admin_client, namespace) -> None:
    create_podinfo(admin_client, namespace)
    hpas = client.AutoscalingV2Api(admin_client)
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    hpas.patch_namespaced_horizontal_pod_autoscaler(
        "podinfo",
        namespace,
        {"spec": {"behavior": behavior}},
        _content_type="application/merge-patch+json",
    )
    initialize(env, k8s, namespace)
    primary_ready(env, k8s, namespace)
    # The API server fills in the rest of a behavior; the primary's is the target's, whole.
    copied = read(admin_client, "hpa", namespace, "podinfo-primary")["spec"]["behavior"]
    assert copied == read(admin_client, "hpa", namespace, "podinfo")["spec"]["behavior"]
    assert copied["scaleDown"]["stabilizationWindowSeconds"] == 60
    # The target's HPA loses its behavior and grows; its ConfigMap loses a key.
    hpas.patch_namespaced_horizontal_pod_autoscaler(
        "podinfo",
        namespace,
        {"spec": {"behavior": None, "maxReplicas": 6}},
        _content_type="application/merge-patch+json",
    )
    client.CoreV1Api(admin_client).replace_namespaced_config_map(
        "podinfo-config", namespace, {"metadata": {"name": "podinfo-config"}, "data": {"b": "2"}}
    )
    revision = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace))).revision

    env.run(k8s.promote, PromoteInput(canary=make_canary(namespace), revision=revision))

    hpa = read(admin_client, "hpa", namespace, "podinfo-primary")["spec"]
    assert "behavior" not in hpa
    assert hpa["maxReplicas"] == 6
    config = read(admin_client, "config_map", namespace, "podinfo-config-primary")
    assert config["data"] == {"b": "2"}


def test_promote_refuses_a_revision_the_target_no_longer_has(
    env, k8s, admin_client, api_proxy, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    canary = make_canary(namespace)
    with pytest.raises(PrimaryNotFound):
        env.run(k8s.promote, PromoteInput(canary=canary, revision="0"))
    initialize(env, k8s, namespace)
    analysed = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace))).revision
    set_image(admin_client, namespace, "quay.io/stefanprodan/podinfo:9.9.9")
    before = api_proxy.writes(namespace)

    with pytest.raises(RevisionMismatch) as raised:
        env.run(k8s.promote, PromoteInput(canary=canary, revision=analysed + "x"))

    assert raised.value.non_retryable
    assert api_proxy.writes(namespace) == before


# --- API errors ----------------------------------------------------------------------------


def test_api_errors_arrive_as_our_retryable_types(
    env, k8s, admin_client, api_proxy, namespace
) -> None:
    create_podinfo(admin_client, namespace)
    api_proxy.add_fault(verb="create", resource="deployments", namespace=namespace, status=500)
    with pytest.raises(ServerError) as server_error:
        initialize(env, k8s, namespace)
    assert server_error.value.status == 500
    api_proxy.clear_faults()
    api_proxy.add_fault(
        verb="patch", resource="deployments", subresource="scale", namespace=namespace, status=409
    )
    with pytest.raises(Conflict):
        initialize(env, k8s, namespace)
    api_proxy.clear_faults()
    # The retry Temporal would make finishes the job.
    assert initialize(env, k8s, namespace).first_initialization
    assert read(admin_client, "deployment", namespace, "podinfo")["spec"]["replicas"] == 0


# --- through a real worker -----------------------------------------------------------------


@workflow.defn(sandboxed=False)
class InitializeProbe:
    """Calls initialize as the rollout workflow does, and reports how it ended."""

    @workflow.run
    async def run(self, canary: Canary) -> str:
        try:
            result = await workflow.execute_activity(
                ActivityName.INITIALIZE,
                InitializeInput(canary=canary),
                result_type=InitializeResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(0.01)),
            )
        except ActivityError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError)
            state = err.retry_state.name if err.retry_state else None
            return f"{cause.type} non_retryable={cause.non_retryable} retry_state={state}"
        return f"first={result.first_initialization}"


async def test_through_a_worker_target_not_found_fails_at_once(
    time_skipping_env, k8s, admin_client, namespace
) -> None:
    env = time_skipping_env
    queue = f"k8s-{namespace}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[InitializeProbe],
            activities=[k8s.initialize],
            activity_executor=pool,
        ):
            canary = make_canary(namespace)
            outcome = await env.client.execute_workflow(
                InitializeProbe.run, canary, id=f"probe-{namespace}", task_queue=queue
            )
            assert outcome == (
                "TargetNotFound non_retryable=True retry_state=NON_RETRYABLE_FAILURE"
            )
            create_podinfo(admin_client, namespace)
            outcome = await env.client.execute_workflow(
                InitializeProbe.run, canary, id=f"probe2-{namespace}", task_queue=queue
            )
            assert outcome == "first=True"


# --- a whole release ------------------------------------------------------------------------


def test_a_release_with_real_controllers(worker_client, admin_client, namespace) -> None:
    """Initialize, scale up, promote and scale down while the Deployment and ReplicaSet
    controllers and kwok's nodes roll the pods; pods take a second to become ready, so the
    waits surely see them coming (and heartbeat) even on a loaded machine."""
    k8s = KubernetesActivities(worker_client, poll_interval=0.1)
    env = activity_env()
    heartbeats: list[str] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    create_podinfo(admin_client, namespace, hpa=False, ready_after=1.0)
    canary = make_canary(namespace, autoscaler=False)
    ref = CanaryRef.of(canary)

    assert env.run(k8s.initialize, InitializeInput(canary=canary)).first_initialization
    primary = env.run(k8s.wait_ready, wait_input(namespace, "podinfo-primary", 30))
    assert primary.ready, primary.message

    # From zero, as Flagger's ScaleFromZero: the target's own replicas (0 now), no HPA: one.
    assert env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary)).replicas == 1
    canary_ready = env.run(k8s.wait_ready, wait_input(namespace, "podinfo", 30))
    assert canary_ready.ready, canary_ready.message
    assert canary_ready.message.endswith("1 of 1 updated replicas are available")
    assert any("updated replicas are available" in h for h in heartbeats), heartbeats

    set_image(admin_client, namespace, "quay.io/stefanprodan/podinfo:1.4.1")
    revision = env.run(k8s.read_revision, ReadRevisionInput(ref=ref)).revision
    env.run(k8s.promote, PromoteInput(canary=canary, revision=revision))
    promoted = env.run(k8s.wait_ready, wait_input(namespace, "podinfo-primary", 30))
    assert promoted.ready, promoted.message
    primary_spec = read(admin_client, "deployment", namespace, "podinfo-primary")["spec"]
    image = primary_spec["template"]["spec"]["containers"][0]["image"]
    assert image == "quay.io/stefanprodan/podinfo:1.4.1"

    env.run(k8s.scale_canary, ScaleCanaryInput(canary=canary, replicas=0))
    assert env.run(k8s.wait_ready, wait_input(namespace, "podinfo", 30)).ready
    info = env.run(k8s.read_revision, ReadRevisionInput(ref=ref))
    assert info.promoted_revision == info.revision == revision


UNREACHABLE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {{server: "http://127.0.0.1:{port}"}}
contexts:
- name: nowhere
  context: {{cluster: nowhere, user: nowhere, namespace: default}}
current-context: nowhere
users:
- name: nowhere
  user: {{token: nowhere}}
"""


def test_an_unreachable_api_server_is_a_retryable_api_unavailable(tmp_path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG.format(port=free_port()))  # nothing listens
    api = build_api_client(kubeconfig=kubeconfig)
    try:
        started = time.monotonic()
        with pytest.raises(ApiUnavailable):
            ActivityEnvironment().run(
                KubernetesActivities(api).read_revision, ReadRevisionInput(ref=ref("test"))
            )
        # One attempt, no hidden client retries with backoff: Temporal owns retries.
        assert time.monotonic() - started < 2
        assert api.configuration.retries.total == 0
    finally:
        api.close()


SPREAD = {
    "affinity": {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "podinfo"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ],
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {
                            "matchExpressions": [
                                {"key": "app", "operator": "In", "values": ["podinfo"]}
                            ]
                        },
                        "topologyKey": "topology.kubernetes.io/zone",
                    },
                }
            ],
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "podinfo"}},
        }
    ],
}
"""One podinfo pod per node, spread over zones: the selectors name the target's pods."""


def test_primary_spreads_its_own_pods(env, k8s, admin_client, kubectl, namespace) -> None:
    create_podinfo(admin_client, namespace, hpa=False, pod=SPREAD)
    kubectl.run("-n", namespace, "rollout", "status", "deployment/podinfo", "--timeout=30s")

    initialize(env, k8s, namespace, autoscaler=False)

    pod = read(admin_client, "deployment", namespace, "podinfo-primary")["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]
    required = anti["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert required["labelSelector"] == {"matchLabels": {"app": "podinfo-primary"}}
    preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert preferred["labelSelector"]["matchExpressions"][0]["values"] == ["podinfo-primary"]
    spread = pod["topologySpreadConstraints"][0]
    assert spread["labelSelector"] == {"matchLabels": {"app": "podinfo-primary"}}
    # On the cluster: the primary's two pods avoid each other, not the target's.
    kubectl.run("-n", namespace, "rollout", "status", "deployment/podinfo-primary", "--timeout=30s")
    pods = client.CoreV1Api(admin_client).list_namespaced_pod(
        namespace, label_selector="app=podinfo-primary"
    )
    nodes = [p.spec.node_name for p in pods.items if p.metadata.deletion_timestamp is None]
    assert len(nodes) == 2
    assert len(set(nodes)) == 2, nodes


def test_config_with_tracking_disabled_is_neither_tracked_nor_copied(
    env, k8s, admin_client, namespace
) -> None:
    """``flagger.app/config-tracking: disabled`` (Flagger's opt-out): the primary reads the
    original, and a change of it is no new revision."""
    create_podinfo(admin_client, namespace, hpa=False)
    core = client.CoreV1Api(admin_client)
    disabled = {"metadata": {"annotations": {"flagger.app/config-tracking": "disabled"}}}
    core.patch_namespaced_config_map("podinfo-env", namespace, disabled)
    before = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace))).revision

    initialize(env, k8s, namespace, autoscaler=False)

    primary = read(admin_client, "deployment", namespace, "podinfo-primary")
    container = primary["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][1]["valueFrom"]["configMapKeyRef"]["name"] == "podinfo-env"
    names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert "podinfo-env-primary" not in names
    assert "podinfo-config-primary" in names  # tracked as before
    core.patch_namespaced_config_map("podinfo-env", namespace, {"data": {"level": "debug"}})
    after = env.run(k8s.read_revision, ReadRevisionInput(ref=ref(namespace))).revision
    assert after == before


def test_tools_labels_are_not_copied_and_a_users_service_is_not_claimed(
    env, k8s, admin_client, kubectl, namespace
) -> None:
    """Helm's, Argo CD's and Flux's tracking stays on what they own: the primary gets none of
    the target's labels, and the user's Service, adopted as the apex, is not marked Coalmine's."""
    create_podinfo(admin_client, namespace, hpa=False)
    tracking = {
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/instance": "podinfo",
        "kustomize.toolkit.fluxcd.io/name": "apps",
    }
    annotations = {"argocd.argoproj.io/tracking-id": "podinfo:apps/Deployment:test/podinfo"}
    meta = {"metadata": {"labels": tracking, "annotations": annotations}}
    patch_target(admin_client, namespace, meta)
    kubectl.apply(
        f"""
apiVersion: v1
kind: Service
metadata: {{name: podinfo, namespace: {namespace}, labels: {{app.kubernetes.io/instance: web}}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898}}]
"""
    )

    initialize(env, k8s, namespace, autoscaler=False)

    primary = read(admin_client, "deployment", namespace, "podinfo-primary")["metadata"]
    assert primary["labels"] == {
        "app": "podinfo-primary",
        "app.kubernetes.io/managed-by": "coalmine",
    }
    assert "argocd.argoproj.io/tracking-id" not in primary["annotations"]
    apex = read(admin_client, "service", namespace, "podinfo")["metadata"]
    assert "app.kubernetes.io/managed-by" not in apex["labels"]
    assert apex["labels"]["app.kubernetes.io/instance"] == "web"
    assert "coalmine.io/canary" not in apex.get("annotations", {})
    assert not apex.get("ownerReferences")
    created = read(admin_client, "service", namespace, "podinfo-canary")["metadata"]
    assert created["labels"]["app.kubernetes.io/managed-by"] == "coalmine"
