"""``record_event``: Kubernetes Events on the target (aggregated) and ``event`` webhooks.

Events are written to a real API server (the sandbox's) through the official client; webhooks go
to local HTTP peers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.analysis import AnalysisActivities, AnalysisSettings
from tests.integration.analysis_support import (
    SandboxApi,
    closed_port_url,
    create_namespace,
    receiver,
    sandbox_api,
)
from workflows.activity_api import CanaryRef, EventInput
from workflows.model import Phase
from workflows.spec import WebhookSpec


@pytest.fixture(scope="module")
def api() -> Iterator[SandboxApi]:
    with sandbox_api() as running:
        client = running.api_client()
        for namespace in ("test", "nodeploy"):
            create_namespace(client, namespace)
        labels = {"app": "podinfo"}
        deployment = {
            "metadata": {"name": "podinfo", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "podinfod", "image": "podinfo:1"}]},
                },
            },
        }
        k8s.AppsV1Api(client).create_namespaced_deployment("test", deployment)
        yield running


def _event(namespace: str = "test", **extra: Any) -> EventInput:
    ref = CanaryRef(namespace=namespace, name="podinfo", target="podinfo", service="podinfo")
    fields: dict[str, Any] = {
        "reason": "Synced",
        "message": "Advance podinfo.test canary weight 10",
        "phase": Phase.PROGRESSING,
        "weight": 10,
        "revision": "rev-1",
    }
    return EventInput(ref=ref, **(fields | extra))


def _activities(api: SandboxApi) -> AnalysisActivities:
    return AnalysisActivities(api_client=api.api_client(), settings=AnalysisSettings())


def _events_of(api: SandboxApi, namespace: str, message: str) -> list[Any]:
    items = k8s.CoreV1Api(api.api_client()).list_namespaced_event(namespace).items
    return [e for e in items if e.message == message]


def test_event_is_written_on_the_target_deployment(api: SandboxApi) -> None:
    _activities(api).record_event(_event(message="New revision detected podinfo.test"))
    (event,) = _events_of(api, "test", "New revision detected podinfo.test")
    deployment = k8s.AppsV1Api(api.api_client()).read_namespaced_deployment("podinfo", "test")
    involved = event.involved_object
    assert (involved.kind, involved.name, involved.namespace) == ("Deployment", "podinfo", "test")
    assert involved.api_version == "apps/v1"
    assert involved.uid == deployment.metadata.uid
    assert event.reason == "Synced"
    assert event.type == "Normal"
    assert event.source.component == "coalmine"
    assert event.count == 1
    assert event.first_timestamp is not None
    assert event.last_timestamp == event.first_timestamp


def test_repeats_are_aggregated_by_count(api: SandboxApi) -> None:
    activities = _activities(api)
    message = "Halt podinfo.test advancement success rate 69.17% < 99%"
    for _ in range(3):
        activities.record_event(_event(type="Warning", message=message))
    (event,) = _events_of(api, "test", message)
    assert event.count == 3
    assert event.type == "Warning"
    activities.record_event(_event(type="Warning", message=message + " (again)"))
    assert len(_events_of(api, "test", message + " (again)")) == 1


def test_missing_deployment_still_gets_its_event(api: SandboxApi) -> None:
    _activities(api).record_event(_event(namespace="nodeploy", message="Initializing"))
    (event,) = _events_of(api, "nodeploy", "Initializing")
    assert event.involved_object.uid is None


def test_event_webhooks_get_the_message_in_metadata(api: SandboxApi) -> None:
    with receiver() as peer:
        hooks = [
            WebhookSpec(
                name="events", type="event", url=peer.url + "/events", metadata={"team": "a"}
            ),
            WebhookSpec(name="down", type="event", url=closed_port_url()),
        ]
        _activities(api).record_event(
            _event(message="Advance podinfo.test canary weight 20", event_webhooks=hooks)
        )
    (seen,) = peer.requests
    body = seen.json()
    assert seen.path == "/events"
    assert (body["name"], body["namespace"], body["phase"]) == ("podinfo", "test", "Progressing")
    assert body["checksum"] == "rev-1"
    assert body["metadata"]["eventMessage"] == "Advance podinfo.test canary weight 20"
    assert body["metadata"]["eventType"] == "Normal"
    assert body["metadata"]["timestamp"].isdigit()
    assert body["metadata"]["team"] == "a"


def test_api_server_down_is_retryable_and_sends_nothing() -> None:
    config = k8s.Configuration(host=closed_port_url())
    config.retries = 0  # read when the client builds its pool: set before
    dead = k8s.ApiClient(config)
    activities = AnalysisActivities(api_client=dead, settings=AnalysisSettings())
    with receiver() as peer:
        hook = WebhookSpec(name="events", type="event", url=peer.url)
        with pytest.raises(ApplicationError) as caught:
            activities.record_event(_event(event_webhooks=[hook]))
    assert caught.value.type == "KubernetesError"
    assert not caught.value.non_retryable
    assert not peer.requests  # the Event is written first: a retry sends nothing twice


def test_kubectl_describe_shows_the_events(
    sandbox_cluster: Any, kubectl: Any, sandbox_namespace: str
) -> None:
    """What a Flagger user types: the events appear under the Deployment, counted."""
    ns = sandbox_namespace
    kubectl.apply(
        f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers: [{{name: podinfod, image: quay.io/stefanprodan/podinfo:1.4.1}}]
"""
    )
    from activities.kubernetes import build_api_client

    activities = AnalysisActivities(
        api_client=build_api_client(kubeconfig=str(sandbox_cluster.kubeconfig)),
        settings=AnalysisSettings(),
    )
    message = f"Advance podinfo.{ns} canary weight 10"
    for _ in range(2):
        activities.record_event(_event(namespace=ns, message=message))
    activities.record_event(
        _event(namespace=ns, type="Warning", message=f"Halt podinfo.{ns} advancement")
    )
    described = kubectl.run("-n", ns, "describe", "deployment", "podinfo").stdout
    lines = described[described.index("Events:") :].splitlines()
    (advance,) = [line for line in lines if message in line]
    assert advance.split()[:2] == ["Normal", "Synced"]
    assert "(x2 over" in advance
    assert "coalmine" in advance
    (halt,) = [line for line in lines if "advancement" in line]
    assert halt.split()[:2] == ["Warning", "Synced"]
