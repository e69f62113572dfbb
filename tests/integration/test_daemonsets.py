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

from sandbox.runner import SandboxHandle
from tests.integration.rollout_support import (
    BAD,
    DAEMONSET,
    FIRST,
    GOOD,
    IDLE,
    Scenario,
    api_client,
    canary,
    rollout_worker,
    scenario,
    weights,
)
from worker.errors import BadInputError
from worker.settings import KubernetesSettings
from worker.target import prepare_target
from workflows.model import Phase, RolloutStatus
from workflows.spec import Canary

__all__ = ["api_client", "rollout_worker", "scenario"]  # fixtures used by the tests below

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


async def _run(scenario: Scenario, spec: Canary) -> tuple[RolloutStatus, int]:
    """Run a rollout to its end: its status and the most canary pods seen while it progressed."""
    most = 0

    def progressing(_: RolloutStatus) -> None:
        nonlocal most
        most = max(most, _pods(scenario.api, spec.namespace, "podinfo"))

    return await scenario.run(spec, progressing=progressing), most


async def _initialize(scenario: Scenario, spec: Canary) -> None:
    ns, api = spec.namespace, scenario.api
    scenario.kubectl.apply(DAEMONSET.format(ns=ns, image=FIRST))
    status, _ = await _run(scenario, spec)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    primary = _read(api, ns, "podinfo-primary")
    assert primary.spec.selector.match_labels == {"app": "podinfo-primary"}
    assert primary.spec.update_strategy.type == "RollingUpdate"
    assert _image(api, ns, "podinfo-primary") == FIRST
    # The user's own node selector reaches the primary; the idling one does not.
    assert _node_selector(api, ns, "podinfo-primary") == {"type": "kwok"}
    assert _node_selector(api, ns, "podinfo") == {"type": "kwok", **IDLE}
    assert primary.status.desired_number_scheduled >= 1  # a pod on each kwok node
    await _eventually_no_pods(api, ns, "podinfo")
    assert _pods(api, ns, "podinfo-primary") == primary.status.desired_number_scheduled
    assert weights(api, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}


async def test_daemonset_canary_is_woken_analysed_promoted_and_idled(
    scenario: Scenario,
) -> None:
    ns = scenario.ns
    spec = _daemonset_canary(ns)
    await _initialize(scenario, spec)
    # Idling is no release: the same revision does not start an analysis.
    status, _ = await _run(scenario, spec)
    assert status.phase == Phase.SUCCEEDED
    assert status.canary_weight == 0
    scenario.release(GOOD, kind="daemonset")

    status, most = await _run(scenario, spec)

    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert most >= 1  # the canary ran on the nodes while it was analysed
    assert status.metrics["request-success-rate"].value is not None
    assert _image(scenario.api, ns, "podinfo-primary") == GOOD
    assert _node_selector(scenario.api, ns, "podinfo-primary") == {"type": "kwok"}
    assert _node_selector(scenario.api, ns, "podinfo") == {"type": "kwok", **IDLE}
    await _eventually_no_pods(scenario.api, ns, "podinfo")
    assert weights(scenario.api, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}


async def test_daemonset_canary_that_fails_is_rolled_back_and_idled(
    scenario: Scenario,
) -> None:
    ns = scenario.ns
    spec = _daemonset_canary(ns)
    await _initialize(scenario, spec)
    scenario.release(BAD, kind="daemonset", FAULT_ERROR_RATE="0.5")

    status, most = await _run(scenario, spec)

    assert status.phase == Phase.FAILED, status.model_dump_json(indent=1)
    assert most >= 1
    assert _image(scenario.api, ns, "podinfo-primary") == FIRST
    assert _node_selector(scenario.api, ns, "podinfo") == {"type": "kwok", **IDLE}
    await _eventually_no_pods(scenario.api, ns, "podinfo")
    assert weights(scenario.api, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}


async def test_the_ci_path_sets_a_daemonsets_image_and_its_rollout_promotes_that_revision(
    scenario: Scenario,
    sandbox_cluster: SandboxHandle,
) -> None:
    """``coalmine rollout start --image`` on a DaemonSet Canary: the image goes on the DaemonSet
    (not on a Deployment), and the revision it computes is the one the rollout promotes."""
    ns = scenario.ns
    spec = _daemonset_canary(ns)
    settings = KubernetesSettings(kubeconfig=sandbox_cluster.kubeconfig)
    with pytest.raises(BadInputError, match=r"target daemonset .* not found \(spec.targetRef"):
        prepare_target(spec, settings, {"podinfod": GOOD})
    await _initialize(scenario, spec)
    with pytest.raises(BadInputError, match=r"daemonset .* has no container web"):
        prepare_target(spec, settings, {"web": GOOD})

    target = prepare_target(spec, settings, {"podinfod": GOOD})

    assert target.images == {"podinfod": GOOD}
    assert _image(scenario.api, ns, "podinfo") == GOOD
    status, _ = await _run(scenario, spec)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert status.revision == target.revision
    assert _image(scenario.api, ns, "podinfo-primary") == GOOD
