"""DaemonSet targets on the local cluster (kwok nodes; kube-controller-manager's DaemonSet
controller runs the pods), through the product's worker: Flagger's rules for daemonsets — a
``-primary`` DaemonSet, no scaling, the canary idled with the node selector
``flagger.app/scale-to-zero: "true"`` and woken for the analysis — then a promotion and a rollback.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sandbox.runner import SandboxHandle
from tests.conftest import Kubectl
from tests.integration.rollout_support import (
    BAD,
    DAEMONSET,
    FIRST,
    GOOD,
    IDLE,
    api_client,
    canary,
    read_status,
    rollout_worker,
    start,
    watch,
    weights,
)
from worker.errors import BadInputError
from worker.settings import KubernetesSettings
from worker.target import prepare_target
from workflows.model import Phase, RolloutStatus
from workflows.spec import Canary

__all__ = ["api_client", "rollout_worker"]  # fixtures used by the tests below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _daemonset_canary(ns: str) -> Canary:
    document = canary(ns).model_dump(by_alias=True, exclude_none=True, mode="json")
    document["spec"]["targetRef"]["kind"] = "DaemonSet"
    return Canary.model_validate(document)


def _read(api_client: Any, ns: str, name: str) -> Any:
    return k8s.AppsV1Api(api_client).read_namespaced_daemon_set(name, ns)


def _image(api_client: Any, ns: str, name: str) -> str:
    image: str = _read(api_client, ns, name).spec.template.spec.containers[0].image
    return image


def _node_selector(api_client: Any, ns: str, name: str) -> dict[str, str]:
    return dict(_read(api_client, ns, name).spec.template.spec.node_selector or {})


def _pods(api_client: Any, ns: str, app: str) -> int:
    pods = k8s.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=f"app={app}")
    return len([p for p in pods.items if p.metadata.deletion_timestamp is None])


async def _eventually_no_pods(api_client: Any, ns: str, app: str) -> None:
    deadline = time.monotonic() + 20
    while _pods(api_client, ns, app):
        assert time.monotonic() < deadline, f"{app} still has pods: not idled"
        await asyncio.sleep(0.2)


async def _run(
    env: WorkflowEnvironment, worker: Worker, spec: Canary, api_client: Any
) -> tuple[RolloutStatus, int]:
    """Run a rollout to its end: its status and the most canary pods seen while it progressed."""
    handle = await start(env, worker, spec)
    most = 0

    def seen(status: RolloutStatus) -> None:
        nonlocal most
        if status.phase == Phase.PROGRESSING:
            most = max(most, _pods(api_client, spec.namespace, "podinfo"))

    await watch(handle, seen)
    return await read_status(handle), most


async def _initialize(
    env: WorkflowEnvironment, worker: Worker, kubectl: Kubectl, spec: Canary, api_client: Any
) -> None:
    ns = spec.namespace
    kubectl.apply(DAEMONSET.format(ns=ns, image=FIRST))
    status, _ = await _run(env, worker, spec, api_client)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    primary = _read(api_client, ns, "podinfo-primary")
    assert primary.spec.selector.match_labels == {"app": "podinfo-primary"}
    assert primary.spec.update_strategy.type == "RollingUpdate"
    assert _image(api_client, ns, "podinfo-primary") == FIRST
    # The user's own node selector reaches the primary; the idling one does not.
    assert _node_selector(api_client, ns, "podinfo-primary") == {"type": "kwok"}
    assert _node_selector(api_client, ns, "podinfo") == {"type": "kwok", **IDLE}
    assert primary.status.desired_number_scheduled >= 1  # a pod on each kwok node
    await _eventually_no_pods(api_client, ns, "podinfo")
    assert _pods(api_client, ns, "podinfo-primary") == primary.status.desired_number_scheduled
    assert weights(api_client, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}


async def test_daemonset_canary_is_woken_analysed_promoted_and_idled(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    api_client: Any,
) -> None:
    ns = sandbox_namespace
    spec = _daemonset_canary(ns)
    await _initialize(dev_server_env, rollout_worker, kubectl, spec, api_client)
    # Idling is no release: the same revision does not start an analysis.
    status, _ = await _run(dev_server_env, rollout_worker, spec, api_client)
    assert status.phase == Phase.SUCCEEDED
    assert status.canary_weight == 0
    kubectl.run("-n", ns, "set", "image", "daemonset/podinfo", f"podinfod={GOOD}")

    status, most = await _run(dev_server_env, rollout_worker, spec, api_client)

    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert most >= 1  # the canary ran on the nodes while it was analysed
    assert status.metrics["request-success-rate"].value is not None
    assert _image(api_client, ns, "podinfo-primary") == GOOD
    assert _node_selector(api_client, ns, "podinfo-primary") == {"type": "kwok"}
    assert _node_selector(api_client, ns, "podinfo") == {"type": "kwok", **IDLE}
    await _eventually_no_pods(api_client, ns, "podinfo")
    assert weights(api_client, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}


async def test_daemonset_canary_that_fails_is_rolled_back_and_idled(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    api_client: Any,
) -> None:
    ns = sandbox_namespace
    spec = _daemonset_canary(ns)
    await _initialize(dev_server_env, rollout_worker, kubectl, spec, api_client)
    kubectl.run("-n", ns, "set", "env", "daemonset/podinfo", "FAULT_ERROR_RATE=0.5")
    kubectl.run("-n", ns, "set", "image", "daemonset/podinfo", f"podinfod={BAD}")

    status, most = await _run(dev_server_env, rollout_worker, spec, api_client)

    assert status.phase == Phase.FAILED, status.model_dump_json(indent=1)
    assert most >= 1
    assert _image(api_client, ns, "podinfo-primary") == FIRST
    assert _node_selector(api_client, ns, "podinfo") == {"type": "kwok", **IDLE}
    await _eventually_no_pods(api_client, ns, "podinfo")
    assert weights(api_client, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}


async def test_the_ci_path_sets_a_daemonsets_image_and_its_rollout_promotes_that_revision(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
) -> None:
    """``coalmine rollout start --image`` on a DaemonSet Canary: the image goes on the DaemonSet
    (not on a Deployment), and the revision it computes is the one the rollout promotes."""
    ns = sandbox_namespace
    spec = _daemonset_canary(ns)
    settings = KubernetesSettings(kubeconfig=sandbox_cluster.kubeconfig)
    with pytest.raises(BadInputError, match=r"target daemonset .* not found \(spec.targetRef"):
        prepare_target(spec, settings, {"podinfod": GOOD})
    await _initialize(dev_server_env, rollout_worker, kubectl, spec, api_client)
    with pytest.raises(BadInputError, match=r"daemonset .* has no container web"):
        prepare_target(spec, settings, {"web": GOOD})

    target = prepare_target(spec, settings, {"podinfod": GOOD})

    assert target.images == {"podinfod": GOOD}
    assert _image(api_client, ns, "podinfo") == GOOD
    status, _ = await _run(dev_server_env, rollout_worker, spec, api_client)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert status.revision == target.revision
    assert _image(api_client, ns, "podinfo-primary") == GOOD
