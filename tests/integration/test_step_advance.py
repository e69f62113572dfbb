"""``advance`` on the real control plane: a step's weights, the Canary's status and its event.

The activity runs with the worker's client (the ``coalmine`` ServiceAccount through the API
proxy); the API server's audit log shows every request it made, so the test holds it to what a
step needs: the VirtualService read once and patched once; the Canary's ``/status`` patched
once, after a read of the Canary on the worker's first write to it and with none on the next
(the patch then guarded by the ``resourceVersion`` the last write left); the Event created,
naming the Canary by the uid the status write saw, as Flagger's events do.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from kubernetes import client
from temporalio.testing import ActivityEnvironment

from activities.analysis import AnalysisActivities, AnalysisSettings
from activities.kubernetes import CanaryStatusActivities
from activities.router import RouterActivities
from activities.step import StepActivities
from tests import canaries
from tests.conftest import WORKER_USER, ApiProxy
from workflows.activity_api import (
    AdvanceInput,
    CanaryRef,
    CanaryStatusInput,
    EventInput,
    RoutesInput,
    SetWeightsInput,
)
from workflows.model import Phase
from workflows.spec import Canary


@pytest.fixture
def namespace(sandbox_namespace: str) -> str:
    return sandbox_namespace


def requests(api_proxy: ApiProxy, namespace: str) -> Counter[str]:
    """The worker's requests in ``namespace``: ``verb resource[/subresource]`` → count."""
    counts: Counter[str] = Counter()
    for entry in api_proxy.audit(namespace=namespace, user=WORKER_USER):
        resource = entry["resource"] + (f"/{entry['subresource']}" if entry["subresource"] else "")
        counts[f"{entry['verb']} {resource}"] += 1
    return counts


def test_advance_writes_the_weights_then_the_status_and_the_event_on_the_canary(
    worker_client: client.ApiClient,
    admin_client: client.ApiClient,
    api_proxy: ApiProxy,
    namespace: str,
) -> None:
    doc = canaries.canary_doc(namespace, service=canaries.ARTICLE_GATEWAYS)
    custom = client.CustomObjectsApi(admin_client)
    created = custom.create_namespaced_custom_object(
        "flagger.app", "v1beta1", namespace, "canaries", doc
    )
    canary = Canary.model_validate(doc)
    ref = CanaryRef.of(canary)
    env = ActivityEnvironment()
    router = RouterActivities(worker_client)
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    step = StepActivities(
        analysis=AnalysisActivities(api_client=worker_client, settings=AnalysisSettings()),
        router=router,
        status=CanaryStatusActivities(worker_client),
    )
    message = f"Advance podinfo.{namespace} canary weight 10"
    request = AdvanceInput(
        weights=SetWeightsInput(ref=ref, primary=90, canary=10),
        event=EventInput(
            ref=ref, reason="Synced", message=message, phase=Phase.PROGRESSING, weight=10
        ),
        status=CanaryStatusInput(
            ref=ref, phase=Phase.PROGRESSING, canary_weight=10, iterations=0, revision="rev-1"
        ),
    )
    before = requests(api_proxy, namespace)

    result = env.run(step.advance, request)

    assert result.canary_exists is True
    assert request.event is not None
    # What a local activity leaves in history: the event's type, reason and message.
    assert result.event == request.event.posted()
    assert result.event.message == request.event.message
    assert (result.weights.primary, result.weights.canary) == (90, 10)
    assert requests(api_proxy, namespace) - before == Counter(
        {
            "get virtualservices": 1,
            "patch virtualservices": 1,
            "get canaries": 1,
            "patch canaries/status": 1,
            "create events": 1,
        }
    )
    vs = custom.get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", namespace, "virtualservices", "podinfo"
    )
    routes = vs["spec"]["http"][0]["route"]
    assert [(r["destination"]["host"], r["weight"]) for r in routes] == [
        ("podinfo-primary", 90),
        ("podinfo-canary", 10),
    ]
    live = custom.get_namespaced_custom_object(
        "flagger.app", "v1beta1", namespace, "canaries", "podinfo"
    )
    status = live["status"]
    assert (status["phase"], status["canaryWeight"], status["lastAppliedSpec"]) == (
        "Progressing",
        10,
        "rev-1",
    )
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Promoted", "Unknown", "Progressing")
    ]
    mine = events_of(admin_client, namespace, message)
    assert len(mine) == 1
    involved = mine[0]["involvedObject"]
    assert (involved["kind"], involved["name"]) == ("Canary", "podinfo")
    assert involved["uid"] == created["metadata"]["uid"]
    assert mine[0]["count"] == 1

    # The same step again (a retry): the weights and status stand, so neither is written (the
    # remembered status says so, and the Canary is read to be sure); the event is aggregated
    # (its count bumped), as every repeat is: one patch, the Event remembered too.
    before = requests(api_proxy, namespace)
    env.run(step.advance, request)
    delta = requests(api_proxy, namespace) - before
    assert delta["patch virtualservices"] == 0
    assert delta["get canaries"] == 1
    assert delta["patch canaries/status"] == 0
    assert (delta["get events"], delta["create events"], delta["patch events"]) == (0, 0, 1)
    assert [e["count"] for e in events_of(admin_client, namespace, message)] == [2]

    # The next step: the Canary as the last write left it is remembered, so its status is one
    # patch guarded by that resourceVersion, with no read; the event still names the Canary.
    before = requests(api_proxy, namespace)
    message = f"Advance podinfo.{namespace} canary weight 20"
    env.run(step.advance, step_to(request, 20, message))
    assert requests(api_proxy, namespace) - before == Counter(
        {
            "get virtualservices": 1,
            "patch virtualservices": 1,
            "patch canaries/status": 1,
            "create events": 1,
        }
    )
    assert status_of(custom, namespace)["canaryWeight"] == 20
    (event,) = events_of(admin_client, namespace, message)
    assert event["involvedObject"]["uid"] == created["metadata"]["uid"]

    # Someone else changes the Canary: the guarded patch is refused, and the write starts again
    # from a fresh read, so what they wrote is seen and the status ends as the workflow's.
    custom.patch_namespaced_custom_object_status(
        "flagger.app", "v1beta1", namespace, "canaries", "podinfo", {"status": {"iterations": 7}}
    )
    before = requests(api_proxy, namespace)
    env.run(step.advance, step_to(request, 30, f"Advance podinfo.{namespace} canary weight 30"))
    delta = requests(api_proxy, namespace) - before
    assert (delta["patch canaries/status"], delta["get canaries"]) == (2, 1)
    codes = [
        e["code"]
        for e in api_proxy.audit(namespace=namespace, resource="canaries", user=WORKER_USER)
        if e["verb"] == "patch"
    ]
    assert codes[-2:] == [409, 200]
    status = status_of(custom, namespace)
    assert (status["canaryWeight"], status["iterations"], status["phase"]) == (30, 0, "Progressing")

    # The Canary deleted: the remembered one is no help, the step says the Canary is gone. (Its
    # owned objects are orphaned, so the garbage collector leaves the VirtualService the step
    # patches: only the Canary is gone.)
    custom.delete_namespaced_custom_object(
        "flagger.app",
        "v1beta1",
        namespace,
        "canaries",
        "podinfo",
        body=client.V1DeleteOptions(propagation_policy="Orphan"),
    )
    # Orphaning rewrites the VirtualService (its ownerReference goes): wait for that, or the
    # step's guarded patch meets a 409 that only Temporal's retry would see past.
    deadline = time.monotonic() + 30
    while custom.get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", namespace, "virtualservices", "podinfo"
    )["metadata"].get("ownerReferences"):
        assert time.monotonic() < deadline, "the garbage collector never orphaned the route"
        time.sleep(0.1)
    gone = env.run(
        step.advance, step_to(request, 40, f"Advance podinfo.{namespace} canary weight 40")
    )
    assert gone.canary_exists is False


def step_to(request: AdvanceInput, weight: int, message: str) -> AdvanceInput:
    """``request`` moved on to ``weight``: the weights, its event and its status."""
    assert request.event is not None
    assert request.status is not None
    return AdvanceInput(
        weights=request.weights.model_copy(update={"primary": 100 - weight, "canary": weight}),
        event=request.event.model_copy(update={"message": message, "weight": weight}),
        status=request.status.model_copy(update={"canary_weight": weight}),
    )


def status_of(custom: client.CustomObjectsApi, namespace: str) -> dict:
    live = custom.get_namespaced_custom_object(
        "flagger.app", "v1beta1", namespace, "canaries", "podinfo"
    )
    status: dict = live["status"]
    return status


def events_of(admin_client: client.ApiClient, namespace: str, message: str) -> list[dict]:
    events = client.CoreV1Api(admin_client).list_namespaced_event(namespace, _preload_content=False)
    return [e for e in json.loads(events.data)["items"] if e["message"] == message]
