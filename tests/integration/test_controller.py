"""The declarative way on the real control plane: Canaries applied with kubectl, rollouts started
by the controller on a change of the target, the status where Flagger users look.

The controller runs in the test process as its own ServiceAccount (``coalmine-controller``,
bound to exactly deploy/manifests/controller's ClusterRole) through the API proxy; the worker as
the ``coalmine`` ServiceAccount. kubectl calls go through a thread: the controller and the worker
share the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.kubernetes import build_api_client
from sandbox.runner import SandboxHandle
from tests.conftest import Kubectl
from tests.integration.rollout_support import DAEMONSET, FIRST, GOOD, IDLE
from worker.app import activity_methods, build_worker, product_activities
from worker.controller import Actions, Controller, ControllerSettings
from worker.kubecache import Change, KubeConfig
from worker.settings import Settings, TemporalSettings, WorkerSettings
from workflows.model import workflow_id

pytestmark = pytest.mark.timeout(240)

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {ns}, labels: {{app: podinfo}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.0
        ports: [{{name: http, containerPort: 9898}}]
        envFrom: [{{configMapRef: {{name: podinfo-config, optional: true}}}}]
"""

CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  service: {{port: 9898}}
  analysis: {{interval: {interval}, threshold: 5, maxWeight: 50, stepWeight: {step}}}
"""


def _canary(ns: str, *, interval: str = "1s", step: int = 25) -> str:
    return CANARY.format(ns=ns, interval=interval, step=step)


@pytest.fixture(scope="module")
def task_queue() -> str:
    return f"declarative-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
async def worker(
    dev_server_env: WorkflowEnvironment, sandbox_cluster: SandboxHandle, task_queue: str
) -> AsyncIterator[Worker]:
    api_client = build_api_client(kubeconfig=str(sandbox_cluster.worker_kubeconfig))
    settings = Settings(
        temporal=TemporalSettings(task_queue=task_queue),
        worker=WorkerSettings(prometheus_url=sandbox_cluster.prometheus_url),
    )
    activities = activity_methods(*product_activities(api_client, settings))
    async with build_worker(
        dev_server_env.client, settings, api_client=api_client, activities=activities
    ) as running:
        yield running


class Running:
    """Controllers started by a test, stopped at its end."""

    def __init__(self, client: Client, sandbox: SandboxHandle, task_queue: str) -> None:
        self.client, self.sandbox, self.queue = client, sandbox, task_queue
        self.started: list[tuple[Controller, Any]] = []

    async def start(self) -> Controller:
        config = KubeConfig.load(self.sandbox.controller_kubeconfig)
        session = config.session(user_agent="coalmine-controller-test")
        actions = Actions(
            client=self.client,
            temporal=TemporalSettings(task_queue=self.queue),
            config=config,
            session=session,
            cluster="default",
        )
        controller = Controller(config, actions, ControllerSettings(min_interval_seconds=1.0))
        await controller.start()
        self.started.append((controller, session))
        return controller

    async def stop(self, controller: Controller) -> None:
        for entry in list(self.started):
            if entry[0] is controller:
                await controller.close()
                await entry[1].close()
                self.started.remove(entry)


@pytest.fixture
async def controllers(
    dev_server_env: WorkflowEnvironment,
    sandbox_cluster: SandboxHandle,
    task_queue: str,
    worker: Worker,
) -> AsyncIterator[Running]:
    running = Running(dev_server_env.client, sandbox_cluster, task_queue)
    yield running
    for controller, _ in list(running.started):
        await running.stop(controller)


async def kube(kubectl: Kubectl, *args: str, stdin: str | None = None, timeout: float = 60) -> str:  # noqa: ASYNC109
    proc = await asyncio.to_thread(kubectl.run, *args, stdin=stdin, timeout=timeout)
    return str(proc.stdout)


async def canary_status(kubectl: Kubectl, ns: str) -> dict[str, Any]:
    obj = json.loads(await kube(kubectl, "get", "canary", "podinfo", "-n", ns, "-o", "json"))
    status: dict[str, Any] = obj.get("status") or {}
    return status


async def until(
    kubectl: Kubectl, ns: str, ok: Callable[[dict[str, Any]], bool], *, within: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await canary_status(kubectl, ns)
        if ok(status):
            return status
        await asyncio.sleep(0.3)
    raise AssertionError(f"canary status never got there: {status}")


def phases_seen(controller: Controller, ns: str) -> list[str]:
    seen: list[str] = []

    def record(change: Change) -> None:
        if change.namespace == ns:
            phase = (change.obj.get("status") or {}).get("phase")
            if phase and (not seen or seen[-1] != phase):
                seen.append(phase)

    controller.cache.listen(record, group="flagger.app", plural="canaries")
    return seen


async def runs_of(client: Client, ns: str) -> int:
    wid = workflow_id(cluster="default", namespace=ns, name="podinfo")
    return len([w async for w in client.list_workflows(f"WorkflowId = '{wid}'")])


async def test_apply_initializes_then_set_image_rolls_out_to_promoted(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    controller = await controllers.start()
    seen = phases_seen(controller, ns)
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns))
    initialized = await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    promoted = initialized["conditions"][0]
    assert (promoted["type"], promoted["status"]) == ("Promoted", "True")
    assert promoted["message"] == "Deployment initialization completed."
    listed = await kube(kubectl, "get", "canaries", "-n", ns)
    assert "Initialized" in listed
    assert "STATUS" in listed
    assert "WEIGHT" in listed

    started = time.monotonic()
    await kube(
        kubectl,
        "-n",
        ns,
        "set",
        "image",
        "deployment/podinfo",
        "podinfod=quay.io/stefanprodan/podinfo:1.4.1",
    )
    await until(kubectl, ns, lambda s: s.get("phase") == "Progressing", within=30)
    await kube(
        kubectl,
        "-n",
        ns,
        "wait",
        "canary/podinfo",
        "--for=condition=promoted",
        "--timeout=120s",
        timeout=130,
    )
    final = await canary_status(kubectl, ns)
    assert final["phase"] == "Succeeded"
    assert final["lastAppliedSpec"] == final["lastPromotedSpec"]
    assert "Progressing" in seen
    assert seen[-1] == "Succeeded"
    print(f"set image → Succeeded in {time.monotonic() - started:.1f}s; phases {seen}")
    image = await kube(
        kubectl,
        "-n",
        ns,
        "get",
        "deploy",
        "podinfo-primary",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert image.endswith(":1.4.1")
    events = await kube(
        kubectl, "-n", ns, "get", "events", "--field-selector", "involvedObject.kind=Canary"
    )
    assert "New revision detected! Scaling up podinfo." in events
    assert "Promotion completed!" in events


async def test_a_configmap_change_triggers_and_two_controllers_start_one_rollout(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str, dev_server_env: Any
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    await controllers.start()
    await kube(
        kubectl,
        "-n",
        ns,
        "create",
        "configmap",
        "podinfo-config",
        "--from-literal=PODINFO_UI_MESSAGE=one",
    )
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns))
    first = await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    assert "configmap/podinfo-config" in first["trackedConfigs"]
    patch = '{"data": {"PODINFO_UI_MESSAGE": "two"}}'
    await kube(kubectl, "-n", ns, "patch", "configmap", "podinfo-config", "-p", patch)
    done = await until(
        kubectl,
        ns,
        lambda s: (
            s.get("phase") == "Succeeded" and s["lastAppliedSpec"] != first["lastAppliedSpec"]
        ),
        within=120,
    )
    assert done["trackedConfigs"] != first["trackedConfigs"]
    # Initialization and the one rollout: two runs, whatever the two controllers raced.
    assert await runs_of(dev_server_env.client, ns) == 2


async def test_a_change_mid_analysis_restarts_it(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns, interval="2s", step=10))
    await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    image = "podinfod=quay.io/stefanprodan/podinfo:{}"
    await kube(kubectl, "-n", ns, "set", "image", "deployment/podinfo", image.format("1.4.1"))
    first = await until(kubectl, ns, lambda s: s.get("canaryWeight", 0) >= 20)
    await kube(kubectl, "-n", ns, "set", "image", "deployment/podinfo", image.format("1.4.2"))
    await until(
        kubectl,
        ns,
        lambda s: s["lastAppliedSpec"] != first["lastAppliedSpec"] and s.get("canaryWeight") == 0,
        within=30,
    )
    done = await until(kubectl, ns, lambda s: s.get("phase") == "Succeeded", within=120)
    assert done["lastPromotedSpec"] == done["lastAppliedSpec"] != first["lastAppliedSpec"]
    events = await kube(kubectl, "-n", ns, "get", "events")
    assert "Restarting analysis" in events


async def route_timeout(kubectl: Kubectl, ns: str) -> str:
    jsonpath = "jsonpath={.spec.http[0].timeout}"
    return await kube(kubectl, "-n", ns, "get", "virtualservice", "podinfo", "-o", jsonpath)


async def test_a_spec_change_at_rest_reinitializes_at_once_even_across_a_restart(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str, dev_server_env: Any
) -> None:
    # As Flagger's scheduler converges the routes from the current spec on every tick, but at
    # once: the change is no new revision, so no analysis runs and lastAppliedSpec stays.
    ns = sandbox_namespace
    controller = await controllers.start()
    seen = phases_seen(controller, ns)
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns))
    first = await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    assert await route_timeout(kubectl, ns) == ""
    runs = await runs_of(dev_server_env.client, ns)

    changed = _canary(ns).replace("service: {port: 9898}", "service: {port: 9898, timeout: 7s}")
    started = time.monotonic()
    await kube(kubectl, "apply", "-f", "-", stdin=changed)
    while await route_timeout(kubectl, ns) != "7s":
        assert time.monotonic() - started < 30, "the route never got the new timeout"
        await asyncio.sleep(0.2)
    print(f"spec change → route converged in {time.monotonic() - started:.1f}s")
    status = await until(kubectl, ns, lambda s: s.get("phase") in ("Initialized", "Succeeded"))
    assert status["lastAppliedSpec"] == first["lastAppliedSpec"]
    assert status["lastPromotedSpec"] == first["lastPromotedSpec"]
    assert "Progressing" not in seen  # no analysis
    assert await runs_of(dev_server_env.client, ns) == runs + 1

    # Changed while no controller runs: the next one finds it (the converged spec's hash is on
    # the Canary, not in the controller's memory).
    await controllers.stop(controller)
    await kube(kubectl, "apply", "-f", "-", stdin=changed.replace("timeout: 7s", "timeout: 9s"))
    await controllers.start()
    deadline = time.monotonic() + 30
    while await route_timeout(kubectl, ns) != "9s":
        assert time.monotonic() < deadline, "the restarted controller missed the spec change"
        await asyncio.sleep(0.2)
    await until(kubectl, ns, lambda s: s.get("phase") in ("Initialized", "Succeeded"))
    assert await runs_of(dev_server_env.client, ns) == runs + 2
    events = await kube(kubectl, "-n", ns, "get", "events")
    assert "New revision detected" not in events


async def test_a_bad_canary_gets_a_message_and_a_warning_and_changes_nothing(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    bad = _canary(ns).replace("maxWeight: 50, stepWeight: 25", "maxWeight: 50, stepWeight: 60")
    await kube(kubectl, "apply", "-f", "-", stdin=bad)
    status = await until(kubectl, ns, lambda s: s.get("phase") == "Failed", within=30)
    message = status["conditions"][0]["message"]
    assert "spec.analysis.stepWeight" in message
    events = await kube(kubectl, "-n", ns, "get", "events", "-o", "json")
    warnings = [e for e in json.loads(events)["items"] if e["type"] == "Warning"]
    assert any("stepWeight" in e["message"] for e in warnings)
    objects = await kube(kubectl, "-n", ns, "get", "deploy,svc", "-o", "name")
    assert "podinfo-primary" not in objects  # nothing changed in the cluster


async def test_a_missing_target_waits_with_a_clear_message_then_initializes(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns))
    status = await until(kubectl, ns, lambda s: bool(s.get("conditions")), within=30)
    assert "Deployment podinfo." in status["conditions"][0]["message"]
    assert "does not exist" in status["conditions"][0]["message"]
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")


async def test_a_controller_killed_mid_rollout_loses_no_change_and_starts_nothing_twice(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str, dev_server_env: Any
) -> None:
    ns = sandbox_namespace
    first = await controllers.start()
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns, interval="2s", step=10))
    await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    image = "podinfod=quay.io/stefanprodan/podinfo:{}"
    await kube(kubectl, "-n", ns, "set", "image", "deployment/podinfo", image.format("1.4.1"))
    running = await until(kubectl, ns, lambda s: s.get("canaryWeight", 0) >= 10)
    await controllers.stop(first)  # gone mid-rollout
    await kube(kubectl, "-n", ns, "set", "image", "deployment/podinfo", image.format("1.4.2"))
    await asyncio.sleep(1)
    await controllers.start()  # finds the change made while it was down
    done = await until(
        kubectl,
        ns,
        lambda s: (
            s.get("phase") == "Succeeded" and s["lastAppliedSpec"] != running["lastAppliedSpec"]
        ),
        within=150,
    )
    primary = await kube(
        kubectl,
        "-n",
        ns,
        "get",
        "deploy",
        "podinfo-primary",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert primary.endswith(":1.4.2"), done
    # Initialization and one rollout that took the second revision mid-way.
    assert await runs_of(dev_server_env.client, ns) == 2


async def test_suspend_pauses_the_rollout_and_stops_new_ones(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str, dev_server_env: Any
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns, interval="1s", step=10))
    await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    image = "podinfod=quay.io/stefanprodan/podinfo:{}"
    await kube(kubectl, "-n", ns, "set", "image", "deployment/podinfo", image.format("1.4.1"))
    await until(kubectl, ns, lambda s: s.get("canaryWeight", 0) >= 10)
    suspend = '{"spec": {"suspend": true}}'
    await kube(kubectl, "-n", ns, "patch", "canary", "podinfo", "--type=merge", "-p", suspend)
    await asyncio.sleep(1.5)
    held = await canary_status(kubectl, ns)
    await asyncio.sleep(3)  # three intervals: a running rollout would have moved on
    assert (await canary_status(kubectl, ns))["canaryWeight"] == held["canaryWeight"]
    lift = '{"spec": {"suspend": false}}'
    await kube(kubectl, "-n", ns, "patch", "canary", "podinfo", "--type=merge", "-p", lift)
    await until(kubectl, ns, lambda s: s.get("phase") == "Succeeded", within=60)
    # Suspended again: a new image starts nothing.
    await kube(kubectl, "-n", ns, "patch", "canary", "podinfo", "--type=merge", "-p", suspend)
    await kube(kubectl, "-n", ns, "set", "image", "deployment/podinfo", image.format("1.4.2"))
    await asyncio.sleep(3)
    assert await runs_of(dev_server_env.client, ns) == 2
    assert (await canary_status(kubectl, ns))["phase"] == "Succeeded"


USER_SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898, targetPort: 9898}}]
"""

GENERATED = (
    "deployment/podinfo-primary",
    "service/podinfo-primary",
    "service/podinfo-canary",
    "virtualservice/podinfo",
    "destinationrule/podinfo-primary",
    "destinationrule/podinfo-canary",
)


async def owners(kubectl: Kubectl, ns: str, what: str) -> list[dict[str, Any]]:
    obj = json.loads(await kube(kubectl, "-n", ns, "get", what, "-o", "json"))
    refs: list[dict[str, Any]] = obj["metadata"].get("ownerReferences") or []
    return refs


async def gone(kubectl: Kubectl, ns: str, names: tuple[str, ...], *, within: float = 60) -> None:
    """Until the garbage collector has deleted every one of ``names``."""
    deadline = time.monotonic() + within
    left = list(names)
    while left and time.monotonic() < deadline:
        left = [n for n in left if await kube(kubectl, "-n", ns, "get", n, "--ignore-not-found")]
        await asyncio.sleep(0.5)
    assert not left, f"never garbage-collected: {left}"


async def test_delete_with_revert_on_deletion_restores_the_target(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=USER_SERVICE.format(ns=ns))
    revert = _canary(ns).replace("  targetRef:", "  revertOnDeletion: true\n  targetRef:")
    await kube(kubectl, "apply", "-f", "-", stdin=revert)
    await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    finalizers = await kube(
        kubectl, "-n", ns, "get", "canary", "podinfo", "-o", "jsonpath={.metadata.finalizers}"
    )
    assert "finalizer.flagger.app" in finalizers
    replicas = "jsonpath={.spec.replicas}"
    assert await kube(kubectl, "-n", ns, "get", "deploy", "podinfo", "-o", replicas) == "0"
    await kube(kubectl, "-n", ns, "delete", "canary", "podinfo", "--timeout=90s", timeout=100)
    assert await kube(kubectl, "-n", ns, "get", "deploy", "podinfo", "-o", replicas) == "1"
    # The user's own Service, adopted as the apex, selects the target again and stays; what
    # Coalmine created (owned by the Canary) is garbage-collected after the revert.
    selector = await kube(
        kubectl, "-n", ns, "get", "svc", "podinfo", "-o", "jsonpath={.spec.selector.app}"
    )
    assert selector == "podinfo"
    await gone(kubectl, ns, GENERATED)
    assert (
        await kube(kubectl, "-n", ns, "get", "svc", "podinfo", "-o", "name") == "service/podinfo\n"
    )


async def test_generated_objects_are_owned_by_the_canary_and_go_with_it(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    await kube(kubectl, "apply", "-f", "-", stdin=DEPLOYMENT.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=USER_SERVICE.format(ns=ns))
    await kube(kubectl, "apply", "-f", "-", stdin=_canary(ns))
    await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    uid = await kube(
        kubectl, "-n", ns, "get", "canary", "podinfo", "-o", "jsonpath={.metadata.uid}"
    )
    for what in GENERATED:
        refs = await owners(kubectl, ns, what)
        assert refs == [
            {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "Canary",
                "name": "podinfo",
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], what
    # Adopted, not created: the user's Service gets no owner, as Flagger leaves it.
    assert await owners(kubectl, ns, "service/podinfo") == []
    assert await owners(kubectl, ns, "deployment/podinfo") == []

    await kube(kubectl, "-n", ns, "delete", "canary", "podinfo", "--timeout=30s", timeout=40)
    await gone(kubectl, ns, GENERATED)
    # The target and the user's Service stay (the target at zero replicas, as Flagger leaves
    # it without revertOnDeletion).
    assert await kube(kubectl, "-n", ns, "get", "deploy/podinfo", "svc/podinfo", "-o", "name")


async def test_a_daemonset_target_is_followed_like_a_deployment(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    """Declarative mode for ``targetRef.kind: DaemonSet``: the controller watches DaemonSets, a
    new image starts the rollout, and the canary is idled again once promoted."""
    ns = sandbox_namespace
    await controllers.start()
    # A Deployment of the same name (its own pods) must not be taken for the target.
    other = DEPLOYMENT.format(ns=ns).replace("app: podinfo", "app: other")
    await kube(kubectl, "apply", "-f", "-", stdin=other)
    await kube(kubectl, "apply", "-f", "-", stdin=DAEMONSET.format(ns=ns, image=FIRST))
    daemonset_canary = _canary(ns).replace("kind: Deployment", "kind: DaemonSet")
    await kube(kubectl, "apply", "-f", "-", stdin=daemonset_canary)
    initialized = await until(kubectl, ns, lambda s: s.get("phase") == "Initialized")
    applied = initialized["lastAppliedSpec"]
    primary = await kube(kubectl, "-n", ns, "get", "daemonset", "podinfo-primary", "-o", "name")
    assert primary.strip() == "daemonset.apps/podinfo-primary"

    # The Deployment's change is no release of the DaemonSet's Canary.
    await kube(kubectl, "-n", ns, "set", "image", "deployment/podinfo", f"podinfod={GOOD}")
    await asyncio.sleep(2)
    assert (await canary_status(kubectl, ns))["lastAppliedSpec"] == applied

    await kube(kubectl, "-n", ns, "set", "image", "daemonset/podinfo", f"podinfod={GOOD}")
    await until(kubectl, ns, lambda s: s.get("phase") == "Progressing", within=30)
    final = await until(kubectl, ns, lambda s: s.get("phase") == "Succeeded", within=120)
    assert final["lastAppliedSpec"] != applied
    image = await kube(
        kubectl,
        "-n",
        ns,
        "get",
        "daemonset",
        "podinfo-primary",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert image == GOOD
    selector = await kube(
        kubectl,
        "-n",
        ns,
        "get",
        "daemonset",
        "podinfo",
        "-o",
        "jsonpath={.spec.template.spec.nodeSelector}",
    )
    assert json.loads(selector) == {"type": "kwok", **IDLE}


async def test_a_missing_daemonset_target_names_its_kind(
    controllers: Running, kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns = sandbox_namespace
    await controllers.start()
    daemonset_canary = _canary(ns).replace("kind: Deployment", "kind: DaemonSet")
    await kube(kubectl, "apply", "-f", "-", stdin=daemonset_canary)
    waiting = await until(kubectl, ns, lambda s: bool(s.get("conditions")), within=30)
    message = waiting["conditions"][0]["message"]
    assert message.startswith(f"Waiting for DaemonSet podinfo.{ns}")
    assert "targetRef.kind" in message
