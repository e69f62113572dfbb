"""A/B testing and Blue/Green rollouts with the real activities on the sandbox cluster and a
Temporal dev server (issue 13): each route shape in the cluster while the rollout runs, then a
promotion and a rollback of each, through the product's worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from sandbox.runner import SandboxHandle
from tests.integration.rollout_support import (
    BAD,
    GOOD,
    Scenario,
    api_client,
    canary,
    image,
    production_traffic,
    read_status,
    replicas,
    rollout_worker,
    scenario,
    watch,
)
from workflows.model import Phase, RolloutStatus
from workflows.spec import Canary

__all__ = ["api_client", "rollout_worker", "scenario"]  # fixtures used by the tests below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

INSIDER = {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}


def _strategy(ns: str, *, iterations: int, ab: bool) -> Canary:
    """The integration Canary as Flagger's A/B or Blue/Green tutorial writes it: iterations, no
    weights, the load test sending the cookie (A/B) or calling the canary Service (Blue/Green)."""
    document: dict[str, Any] = canary(ns).model_dump(by_alias=True, exclude_none=True, mode="json")
    analysis = document["spec"]["analysis"]
    for name in ("stepWeight", "maxWeight", "stepWeights"):
        analysis.pop(name, None)
    analysis["iterations"] = iterations
    if ab:
        analysis["match"] = [INSIDER]
        cmd = f"hey -z 1m -q 20 -c 2 -H 'Cookie: canary=always' http://podinfo.{ns}:9898/"
    else:
        cmd = f"hey -z 1m -q 20 -c 2 http://podinfo-canary.{ns}:9898/"
    analysis["webhooks"][0]["metadata"] = {"cmd": cmd}
    return Canary.model_validate(document)


def _routes(api_client: Any, ns: str) -> list[dict[str, Any]]:
    vs = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", ns, "virtualservices", "podinfo"
    )
    return [
        {
            "match": bool(route.get("match")),
            "weights": {r["destination"]["host"]: r.get("weight", 0) for r in route["route"]},
        }
        for route in vs["spec"]["http"]
    ]


Shapes = list[list[dict[str, Any]]]


async def _run(scenario: Scenario, spec: Canary) -> tuple[RolloutStatus, Shapes]:
    """Run a rollout to its end; its status and each route shape seen while progressing."""
    shapes: Shapes = []

    def progressing(_: RolloutStatus) -> None:
        shape = _routes(scenario.api, spec.namespace)
        if not shapes or shapes[-1] != shape:
            shapes.append(shape)

    return await scenario.run(spec, progressing=progressing), shapes


PLAIN = [{"match": False, "weights": {"podinfo-primary": 100, "podinfo-canary": 0}}]
AB_PLAIN = [
    {"match": True, "weights": {"podinfo-primary": 100, "podinfo-canary": 0}},
    {"match": False, "weights": {"podinfo-primary": 100}},
]
AB_MATCHED = [
    {"match": True, "weights": {"podinfo-primary": 0, "podinfo-canary": 100}},
    {"match": False, "weights": {"podinfo-primary": 100}},
]


async def test_ab_testing_routes_the_matched_users_then_promotes(
    scenario: Scenario,
) -> None:
    ns = scenario.ns
    spec = _strategy(ns, iterations=2, ab=True)
    await scenario.initialize(spec)
    assert _routes(scenario.api, ns) == AB_PLAIN
    scenario.release(GOOD)

    status, shapes = await _run(scenario, spec)

    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert AB_MATCHED in shapes
    assert status.iterations == 2
    assert image(scenario.api, ns, "podinfo-primary") == GOOD
    assert _routes(scenario.api, ns) == AB_PLAIN
    assert replicas(scenario.api, ns, "podinfo") == 0
    rate = status.metrics["request-success-rate"].value
    assert rate is not None  # the matched users' requests reached the canary and were judged
    assert f"Advance podinfo.{ns} canary iteration 2/2" in [e.message for e in status.events]


async def test_ab_testing_rolls_back_when_the_matched_users_see_errors(
    scenario: Scenario,
) -> None:
    ns = scenario.ns
    spec = _strategy(ns, iterations=10, ab=True)
    await scenario.initialize(spec)
    scenario.release(BAD, FAULT_ERROR_RATE="0.5")

    status, shapes = await _run(scenario, spec)

    assert status.phase == Phase.FAILED, status.model_dump_json(indent=1)
    assert AB_MATCHED in shapes
    assert _routes(scenario.api, ns) == AB_PLAIN  # compensation: the plain routes again
    assert image(scenario.api, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"
    assert replicas(scenario.api, ns, "podinfo") == 0


async def test_blue_green_switches_then_promotes(
    scenario: Scenario,
) -> None:
    ns = scenario.ns
    spec = _strategy(ns, iterations=2, ab=False)
    await scenario.initialize(spec)
    scenario.release(GOOD)

    status, shapes = await _run(scenario, spec)

    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    # No production traffic on the canary until the switch, then all of it.
    assert shapes[0] == PLAIN
    switched = [{"match": False, "weights": {"podinfo-primary": 0, "podinfo-canary": 100}}]
    assert switched in shapes
    assert status.iterations == 3
    assert image(scenario.api, ns, "podinfo-primary") == GOOD
    assert _routes(scenario.api, ns) == PLAIN


async def test_blue_green_rolls_back_before_any_user_sees_the_canary(
    scenario: Scenario,
) -> None:
    ns = scenario.ns
    spec = _strategy(ns, iterations=10, ab=False)
    await scenario.initialize(spec)
    scenario.release(BAD, FAULT_ERROR_RATE="0.5")

    status, shapes = await _run(scenario, spec)

    assert status.phase == Phase.FAILED, status.model_dump_json(indent=1)
    assert shapes == [PLAIN]  # judged on the load test alone: users never reached it
    assert _routes(scenario.api, ns) == PLAIN
    assert image(scenario.api, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"


async def test_blue_green_mirroring_judges_the_copies_then_promotes(
    scenario: Scenario,
    sandbox_cluster: SandboxHandle,
) -> None:
    ns = scenario.ns
    spec = _strategy(ns, iterations=2, ab=False)
    document = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    document["spec"]["analysis"]["mirror"] = True
    document["spec"]["analysis"]["webhooks"] = []  # no load test: only the users' copies
    spec = Canary.model_validate(document)
    await scenario.initialize(spec)
    production_traffic(sandbox_cluster, ns)
    scenario.release(GOOD)

    mirrors: list[bool] = []

    def progressing(_: RolloutStatus) -> None:
        mirrors.append("mirror" in _virtual_service(scenario.api, ns)["spec"]["http"][0])

    status = await scenario.run(spec, progressing=progressing)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert True in mirrors  # the copies were judged: no other traffic reached the canary
    assert status.metrics["request-success-rate"].value is not None
    assert "mirror" not in _virtual_service(scenario.api, ns)["spec"]["http"][0]
    assert image(scenario.api, ns, "podinfo-primary") == GOOD


async def test_session_affinity_keeps_a_canary_user_on_the_canary(
    scenario: Scenario,
    sandbox_cluster: SandboxHandle,
) -> None:
    ns = scenario.ns
    document = canary(ns, max_weight=30).model_dump(by_alias=True, exclude_none=True, mode="json")
    document["spec"]["analysis"]["sessionAffinity"] = {"cookieName": "flagger-cookie"}
    spec = Canary.model_validate(document)
    await scenario.initialize(spec)
    production_traffic(sandbox_cluster, ns)
    scenario.release(GOOD)
    handle = await scenario.start(spec)

    versions: list[str] = []
    async with httpx.AsyncClient(proxy=sandbox_cluster.mesh_url, timeout=5) as http:
        cookie = None
        for _ in range(600):
            status = await read_status(handle)
            if status.phase in (Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED, Phase.FAILED):
                break
            if status.canary_weight == 0:
                await asyncio.sleep(0.2)
                continue
            answer = await http.get(f"http://podinfo.{ns}:9898/")
            set_cookie = answer.headers.get("set-cookie", "")
            if set_cookie.startswith("flagger-cookie="):
                cookie = set_cookie.split(";")[0]
                assert "Max-Age=86400" in set_cookie
                break
            await asyncio.sleep(0.05)
        assert cookie is not None, "no answer of the canary set the session cookie"
        for _ in range(10):
            answer = await http.get(f"http://podinfo.{ns}:9898/", headers={"Cookie": cookie})
            versions.append(answer.json()["version"])
    assert set(versions) == {GOOD.rsplit(":", 1)[1]}  # every request stayed on the canary

    await watch(handle, lambda _: None)
    final = await read_status(handle)
    assert final.phase == Phase.SUCCEEDED, final.model_dump_json(indent=1)
    http_routes = _virtual_service(scenario.api, ns)["spec"]["http"]
    assert http_routes[0]["name"] == "sticky-route"
    # Promoted: the run's cookie now routes to the primary and is expired.
    assert http_routes[0]["headers"]["response"]["add"]["Set-Cookie"] == f"{cookie}; Max-Age=-1"


def _virtual_service(api: Any, ns: str) -> dict[str, Any]:
    return k8s.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[no-any-return]
        "networking.istio.io", "v1beta1", ns, "virtualservices", "podinfo"
    )
