"""``record_event``: Kubernetes Events on the target (aggregated) and ``event`` webhooks.

Events are written to the session's real API server as the worker writes them (``worker_client``:
the ``coalmine`` ServiceAccount, held by the real authorizer to the shipped ClusterRole) and read
back as the admin, in namespaces of this module's own; webhooks go to local HTTP peers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.analysis import AnalysisActivities, AnalysisSettings
from tests.integration.analysis_support import closed_port_url, fresh_namespace, receiver
from workflows.activity_api import CanaryRef, EventInput
from workflows.model import Phase
from workflows.spec import WebhookSpec


@pytest.fixture(scope="module")
def ns(admin_client: k8s.ApiClient) -> Iterator[str]:
    """The module's namespace, with the target Deployment ``podinfo``."""
    with fresh_namespace(admin_client, "events") as name:
        labels = {"app": "podinfo"}
        deployment = {
            "metadata": {"name": "podinfo", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "podinfod", "image": "quay.io/stefanprodan/podinfo:1.4.1"}
                        ]
                    },
                },
            },
        }
        k8s.AppsV1Api(admin_client).create_namespaced_deployment(name, deployment)
        yield name


@pytest.fixture(scope="module")
def nodeploy_ns(admin_client: k8s.ApiClient) -> Iterator[str]:
    """A namespace of the module's own without any Deployment."""
    with fresh_namespace(admin_client, "events-nodeploy") as name:
        yield name


def _event(namespace: str, **extra: Any) -> EventInput:
    ref = CanaryRef(namespace=namespace, name="podinfo", target="podinfo", service="podinfo")
    fields: dict[str, Any] = {
        "reason": "Synced",
        "message": f"Advance podinfo.{namespace} canary weight 10",
        "phase": Phase.PROGRESSING,
        "weight": 10,
        "revision": "rev-1",
    }
    return EventInput(ref=ref, **(fields | extra))


def _activities(worker_client: k8s.ApiClient) -> AnalysisActivities:
    return AnalysisActivities(api_client=worker_client, settings=AnalysisSettings())


def _events_of(admin_client: k8s.ApiClient, namespace: str, message: str) -> list[Any]:
    items = k8s.CoreV1Api(admin_client).list_namespaced_event(namespace).items
    return [e for e in items if e.message == message]


def test_event_is_written_on_the_target_deployment(
    worker_client: k8s.ApiClient, admin_client: k8s.ApiClient, ns: str
) -> None:
    message = f"New revision detected podinfo.{ns}"
    _activities(worker_client).record_event(_event(ns, message=message))
    (event,) = _events_of(admin_client, ns, message)
    deployment = k8s.AppsV1Api(admin_client).read_namespaced_deployment("podinfo", ns)
    involved = event.involved_object
    assert (involved.kind, involved.name, involved.namespace) == ("Deployment", "podinfo", ns)
    assert involved.api_version == "apps/v1"
    assert involved.uid == deployment.metadata.uid
    assert event.reason == "Synced"
    assert event.type == "Normal"
    assert event.source.component == "coalmine"
    assert event.count == 1
    assert event.first_timestamp is not None
    assert event.last_timestamp == event.first_timestamp


def test_repeats_are_aggregated_by_count(
    worker_client: k8s.ApiClient, admin_client: k8s.ApiClient, ns: str
) -> None:
    activities = _activities(worker_client)
    message = f"Halt podinfo.{ns} advancement success rate 69.17% < 99%"
    for _ in range(3):
        activities.record_event(_event(ns, type="Warning", message=message))
    (event,) = _events_of(admin_client, ns, message)
    assert event.count == 3
    assert event.type == "Warning"
    activities.record_event(_event(ns, type="Warning", message=message + " (again)"))
    assert len(_events_of(admin_client, ns, message + " (again)")) == 1


def test_repeats_count_right_whichever_worker_writes_them(
    worker_client: k8s.ApiClient, admin_client: k8s.ApiClient, ns: str
) -> None:
    # A worker remembers the Events it wrote and bumps a repeat with one guarded patch; a
    # worker that does not remember one (another, or restarted), and a remembered count that
    # another writer has bumped since, still add up.
    first, second = _activities(worker_client), _activities(worker_client)
    event = _event(ns, type="Warning", message=f"Halt podinfo.{ns} advancement (two workers)")
    first.record_event(event)  # created: 1
    second.record_event(event)  # not remembered: the create is refused, it is read, bumped: 2
    first.record_event(event)  # remembered at 1, refused as stale, read, bumped: 3
    first.record_event(event)  # remembered at 3: 4
    (written,) = _events_of(admin_client, ns, event.message)
    assert written.count == 4


def test_missing_deployment_still_gets_its_event(
    worker_client: k8s.ApiClient, admin_client: k8s.ApiClient, nodeploy_ns: str
) -> None:
    _activities(worker_client).record_event(_event(nodeploy_ns, message="Initializing"))
    (event,) = _events_of(admin_client, nodeploy_ns, "Initializing")
    assert event.involved_object.uid is None


def test_event_webhooks_get_the_message_in_metadata(
    worker_client: k8s.ApiClient, admin_client: k8s.ApiClient, ns: str
) -> None:
    with receiver() as peer:
        hooks = [
            WebhookSpec(
                name="events", type="event", url=peer.url + "/events", metadata={"team": "a"}
            ),
            WebhookSpec(name="down", type="event", url=closed_port_url()),
        ]
        _activities(worker_client).record_event(
            _event(ns, message=f"Advance podinfo.{ns} canary weight 20", event_webhooks=hooks)
        )
    (seen,) = peer.requests
    body = seen.json()
    assert seen.path == "/events"
    assert (body["name"], body["namespace"], body["phase"]) == ("podinfo", ns, "Progressing")
    assert body["checksum"] == "rev-1"
    assert body["metadata"]["eventMessage"] == f"Advance podinfo.{ns} canary weight 20"
    assert body["metadata"]["eventType"] == "Normal"
    assert body["metadata"]["timestamp"].isdigit()
    assert body["metadata"]["team"] == "a"
    # The Event came first (the webhook follows it): it is on the cluster.
    assert len(_events_of(admin_client, ns, f"Advance podinfo.{ns} canary weight 20")) == 1


def test_api_server_down_is_retryable_and_sends_nothing() -> None:
    config = k8s.Configuration(host=closed_port_url())
    config.retries = 0  # read when the client builds its pool: set before
    dead = k8s.ApiClient(config)
    activities = AnalysisActivities(api_client=dead, settings=AnalysisSettings())
    with receiver() as peer:
        hook = WebhookSpec(name="events", type="event", url=peer.url)
        with pytest.raises(ApplicationError) as caught:
            activities.record_event(_event("test", event_webhooks=[hook]))
    assert caught.value.type == "KubernetesError"
    assert not caught.value.non_retryable
    assert not peer.requests  # the Event is written first: a retry sends nothing twice


def test_kubectl_describe_shows_the_events(
    worker_client: k8s.ApiClient, kubectl: Any, sandbox_namespace: str
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
    activities = _activities(worker_client)
    message = f"Advance podinfo.{ns} canary weight 10"
    for _ in range(2):
        activities.record_event(_event(ns, message=message))
    activities.record_event(_event(ns, type="Warning", message=f"Halt podinfo.{ns} advancement"))
    described = kubectl.run("-n", ns, "describe", "deployment", "podinfo").stdout
    lines = described[described.index("Events:") :].splitlines()
    (advance,) = [line for line in lines if message in line]
    assert advance.split()[:2] == ["Normal", "Synced"]
    assert "(x2 over" in advance
    assert "coalmine" in advance
    (halt,) = [line for line in lines if "advancement" in line]
    assert halt.split()[:2] == ["Warning", "Synced"]
