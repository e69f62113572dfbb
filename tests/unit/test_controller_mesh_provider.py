"""The cluster-wide default provider outside the worker: the controller's ``--mesh-provider``
(``COALMINE_MESH_PROVIDER``), which the rollouts it starts carry, and the local stack's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.launcher import SandboxHandle
from sandbox.stack import Stack, StackError, StackPorts, up
from tests import canaries
from worker.controller import _decide as d
from worker.controller.cli import mesh_provider_setting
from worker.settings import SettingsError

Obj = dict[str, Any]

TARGET: Obj = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "namespace": "test"},
    "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "podinfo:1"}]}}},
}


def lookup(plural: str, name: str) -> Obj | None:
    return TARGET if (plural, name) == ("deployments", "podinfo") else None


def decide(obj: Obj, mesh_provider: str | None) -> d.Action:
    return d.decide(obj, lookup, min_interval_seconds=1, mesh_provider=mesh_provider)


def test_a_canary_naming_no_provider_carries_the_controllers_default() -> None:
    blue_green = canaries.canary_doc(analysis={"stepWeight": None, "iterations": 3})
    action = decide(blue_green, "kubernetes")
    assert isinstance(action, d.Rollout)
    assert action.canary.spec.provider == "kubernetes"
    assert "provider" not in blue_green["spec"]  # the Canary object itself is left alone
    # Without a default the worker's decides, as before.
    unset = decide(blue_green, None)
    assert isinstance(unset, d.Rollout)
    assert unset.canary.spec.provider is None


def test_a_canarys_own_provider_wins_over_the_default() -> None:
    explicit = canaries.canary_doc(provider="istio")
    action = decide(explicit, "kubernetes")
    assert isinstance(action, d.Rollout)
    assert action.canary.spec.provider == "istio"


def test_a_canary_the_default_provider_cannot_route_is_refused_naming_the_default() -> None:
    # stepWeight under a kubernetes default: refused before anything changes, and the message
    # says the provider came from the default, not from the Canary.
    action = decide(canaries.canary_doc(), "kubernetes")
    assert isinstance(action, d.Invalid)
    assert "Blue/Green only" in action.message
    assert "--mesh-provider" in action.message
    assert isinstance(decide(canaries.canary_doc(), None), d.Rollout)


def test_the_controllers_setting_comes_from_the_flag_or_the_environment() -> None:
    assert mesh_provider_setting(None, {}) is None
    assert mesh_provider_setting(None, {"COALMINE_MESH_PROVIDER": "gatewayapi"}) == "gatewayapi:v1"
    assert mesh_provider_setting("kubernetes", {"COALMINE_MESH_PROVIDER": "istio"}) == "kubernetes"
    with pytest.raises(SettingsError, match="unknown mesh provider 'linkerd'"):
        mesh_provider_setting("linkerd", {})


def test_the_local_stack_hands_its_provider_to_worker_and_controller(tmp_path: Path) -> None:
    handle = SandboxHandle(
        state_dir=tmp_path,
        pid=1,
        kubeconfig=tmp_path / "kubeconfig",
        worker_kubeconfig=tmp_path / "worker.kubeconfig",
        api_url="https://127.0.0.1:1",
        proxy_url="https://127.0.0.1:2",
        mesh_url="http://127.0.0.1:3",
        metrics_url="http://127.0.0.1:4",
        prometheus_url="http://127.0.0.1:5",
        loadtester_url="http://flagger-loadtester.test/",
        env={},
    )
    ports = StackPorts(temporal=1, ui=2, worker_metrics=3)
    stack = Stack(tmp_path, ports, handle, mesh_provider="gatewayapi:v1")
    assert stack.env["COALMINE_MESH_PROVIDER"] == "gatewayapi:v1"
    assert "COALMINE_MESH_PROVIDER" not in Stack(tmp_path, ports, handle).env
    with pytest.raises(StackError, match="unknown mesh provider 'linkerd'"):
        up(tmp_path, mesh_provider="linkerd")  # refused before anything starts
    assert not list(tmp_path.iterdir())
