"""Alerts through Flagger's ``AlertProvider``s, read from the real cluster, to local receivers.

The AlertProviders and Secrets are set up as the admin in namespaces of this module's own (one for
the Canary, one standing for Flagger's ``flagger-system``); the activity reads them as the worker
does (``worker_client``, held by the real authorizer to the shipped ClusterRole), against Flagger's
CRDs with their full schemas.

Each provider type posts its payload to a receiver whose URL lives in a Secret (key
``address``), as Flagger users keep chat webhook URLs. Severity filtering, a receiver that is
down, and a provider that is misconfigured must never make ``record_event`` fail, and the URL
must appear neither in the activity's input nor in the logs.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from activities.analysis import AnalysisActivities, AnalysisSettings
from tests.integration.analysis_support import (
    Receiver,
    closed_port_url,
    create_flagger_object,
    create_secret,
    fresh_namespace,
    receiver,
)
from workflows.activity_api import (
    ActivityName,
    CanaryRef,
    EventInput,
    MetricCheckInput,
    WebhookInput,
    WebhookResult,
)
from workflows.model import MetricResult, Phase
from workflows.spec import AlertSpec, MetricSpec, WebhookSpec

SECRET_PATH = "/services/T0/B0/xoxb-s3cr3t"


@dataclass(frozen=True)
class Cluster:
    """The module's namespaces on the session's cluster, and its two clients."""

    admin: k8s.ApiClient
    """Set-up: Secrets and AlertProviders."""
    worker: k8s.ApiClient
    """The activity's (the ``coalmine`` ServiceAccount, held to the shipped ClusterRole)."""
    canary_ns: str
    """The Canary's namespace, where its Events go."""
    provider_ns: str
    """Flagger's ``flagger-system`` for the AlertProviders and their Secrets: one of our own."""

    @property
    def message(self) -> str:
        return f"Rolling back podinfo.{self.canary_ns} failed checks threshold reached 10"


@pytest.fixture(scope="module")
def cluster(admin_client: k8s.ApiClient, worker_client: k8s.ApiClient) -> Iterator[Cluster]:
    with (
        fresh_namespace(admin_client, "alerts") as canary_ns,
        fresh_namespace(admin_client, "alerts-providers") as provider_ns,
    ):
        yield Cluster(admin_client, worker_client, canary_ns, provider_ns)


@pytest.fixture
def chat() -> Iterator[Receiver]:
    with receiver() as peer:
        yield peer


def _provider(cluster: Cluster, name: str, type_: str, url: str, **spec: Any) -> None:
    """An AlertProvider whose address is in a Secret (the provider namespace)."""
    create_secret(cluster.admin, cluster.provider_ns, f"{name}-url", {"address": url})
    create_flagger_object(
        cluster.admin,
        "alertproviders",
        cluster.provider_ns,
        name,
        {"type": type_, "secretRef": {"name": f"{name}-url"}, **spec},
    )


def _alert(cluster: Cluster, name: str, provider: str, severity: str = "info") -> AlertSpec:
    return AlertSpec.model_validate(
        {
            "name": name,
            "severity": severity,
            "providerRef": {"name": provider, "namespace": cluster.provider_ns},
        }
    )


def _record(cluster: Cluster, alerts: list[AlertSpec], severity: str = "error") -> EventInput:
    ns = cluster.canary_ns
    ref = CanaryRef(namespace=ns, name="podinfo", target="podinfo", service="podinfo")
    event = EventInput(
        ref=ref,
        type="Warning",
        reason="Synced",
        message=cluster.message,
        phase=Phase.FAILED,
        weight=15,
        alerts=alerts,
        alert_severity=severity,
    )
    AnalysisActivities(api_client=cluster.worker, settings=AnalysisSettings()).record_event(event)
    return event


def test_slack(cluster: Cluster, chat: Receiver) -> None:
    _provider(cluster, "slack", "slack", chat.url + SECRET_PATH, channel="deploys", username="bot")
    _record(cluster, [_alert(cluster, "on-call", "slack")])
    (seen,) = chat.requests
    assert seen.path == SECRET_PATH
    body = seen.json()
    assert (body["channel"], body["username"]) == ("deploys", "bot")
    attachment = body["attachments"][0]
    assert attachment["color"] == "danger"
    assert attachment["author_name"] == f"podinfo.{cluster.canary_ns}"
    assert attachment["text"] == cluster.message
    titles = [f["title"] for f in attachment["fields"]]
    # An error alert also says how to see why: the rollout report's command.
    assert titles == ["Target", "Phase", "Canary weight", "Report"]
    assert attachment["fields"][-1]["value"].startswith("coalmine rollout report podinfo -n ")


def test_discord_posts_to_the_slack_endpoint(cluster: Cluster, chat: Receiver) -> None:
    _provider(cluster, "discord", "discord", chat.url + "/api/webhooks/1/tok")
    _record(cluster, [_alert(cluster, "d", "discord")])
    (seen,) = chat.requests
    assert seen.path == "/api/webhooks/1/tok/slack"
    body = seen.json()
    assert body["channel"] == "general"
    assert body["username"] == "flagger"  # Flagger's default, for an AlertProvider without one
    assert body["attachments"][0]["text"] == cluster.message


def test_rocket(cluster: Cluster, chat: Receiver) -> None:
    _provider(cluster, "rocket", "rocket", chat.url + "/hooks/abc", channel="ops")
    _record(cluster, [_alert(cluster, "r", "rocket")])
    body = chat.requests[0].json()
    assert body["channel"] == "ops"
    assert body["attachments"][0]["color"] == "#FF0000"


def test_msteams(cluster: Cluster, chat: Receiver) -> None:
    _provider(cluster, "teams", "msteams", chat.url + "/webhookb2/x")
    _record(cluster, [_alert(cluster, "t", "teams")])
    body = chat.requests[0].json()
    assert body["@type"] == "MessageCard"
    assert body["themeColor"] == "FF0000"
    assert body["sections"][0]["activityTitle"] == cluster.message
    assert {"name": "Canary weight", "value": "15"} in body["sections"][0]["facts"]


def test_gchat(cluster: Cluster, chat: Receiver) -> None:
    _provider(cluster, "gchat", "gchat", chat.url + "/v1/spaces/x/messages?key=k")
    _record(cluster, [_alert(cluster, "g", "gchat")])
    card = chat.requests[0].json()["cards"][0]
    assert card["header"]["subtitle"] == f"podinfo.{cluster.canary_ns}"
    assert cluster.message in card["sections"][0]["widgets"][0]["textParagraph"]["text"]


def test_plain_address_without_a_secret(cluster: Cluster, chat: Receiver) -> None:
    create_flagger_object(
        cluster.admin,
        "alertproviders",
        cluster.provider_ns,
        "plain",
        {"type": "slack", "address": chat.url + "/plain"},
    )
    _record(cluster, [_alert(cluster, "p", "plain")])
    (seen,) = chat.requests
    assert seen.path == "/plain"
    assert seen.json()["attachments"][0]["text"] == cluster.message


def test_generic_webhook_with_a_plain_address(cluster: Cluster, chat: Receiver) -> None:
    create_flagger_object(
        cluster.admin,
        "alertproviders",
        cluster.provider_ns,
        "generic",
        {"type": "generic", "address": chat.url + "/alerts"},
    )
    _record(cluster, [_alert(cluster, "gen", "generic")])
    body = chat.requests[0].json()
    assert body["message"] == cluster.message
    assert body["severity"] == "error"
    assert body["fields"]["Phase"] == "Failed"


def test_severity_filtering(cluster: Cluster) -> None:
    with receiver() as info, receiver() as warn, receiver() as error:
        _provider(cluster, "sev-info", "slack", info.url)
        _provider(cluster, "sev-warn", "slack", warn.url)
        _provider(cluster, "sev-error", "slack", error.url)
        alerts = [
            _alert(cluster, "i", "sev-info", "info"),
            _alert(cluster, "w", "sev-warn", "warn"),
            _alert(cluster, "e", "sev-error", "error"),
        ]
        _record(cluster, alerts, severity="warn")
        assert (len(info.requests), len(warn.requests), len(error.requests)) == (1, 1, 0)
        _record(cluster, alerts, severity="info")
        assert (len(info.requests), len(warn.requests), len(error.requests)) == (2, 1, 0)
        _record(cluster, alerts, severity="error")
        assert (len(info.requests), len(warn.requests), len(error.requests)) == (3, 2, 1)


def test_failing_notifiers_never_fail_the_event(
    cluster: Cluster, chat: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    down_url = closed_port_url() + SECRET_PATH
    _provider(cluster, "down", "slack", down_url)
    _provider(cluster, "refusing", "slack", chat.url + "/refuse" + SECRET_PATH)
    # An unsupported type never gets into the cluster: the CRD's enum refuses it, so the alert
    # meets no provider (the activity's own refusal of a type is a unit test's).
    with pytest.raises(ApiException) as refused:
        _provider(cluster, "pager", "pagerduty", chat.url + SECRET_PATH)
    assert refused.value.status == 422
    assert "pagerduty" in str(refused.value.body)
    _provider(cluster, "malformed", "slack", "http://\x01bad" + SECRET_PATH)
    _provider(cluster, "working", "slack", chat.url + "/ok" + SECRET_PATH)
    chat.reply = lambda r: (404, b"no") if r.path.startswith("/refuse") else (200, b"ok")
    alerts = [
        _alert(cluster, "a", "down"),
        _alert(cluster, "b", "refusing"),
        _alert(cluster, "c", "pager"),
        _alert(cluster, "d", "missing-provider"),
        _alert(cluster, "m", "malformed"),
        _alert(cluster, "e", "working"),
    ]
    event = _record(cluster, alerts)  # must not raise
    assert [r.path for r in chat.requests] == ["/refuse" + SECRET_PATH, "/ok" + SECRET_PATH]
    assert "slack notification failed: ConnectError" in caplog.text
    assert "HTTP 404" in caplog.text
    assert f"alertproviders {cluster.provider_ns}/pager not found" in caplog.text
    assert f"alertproviders {cluster.provider_ns}/missing-provider not found" in caplog.text
    assert "slack notification failed: InvalidURL" in caplog.text
    # The URL (a credential) is in no log line and not in the activity's input.
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in event.model_dump_json()


# --- through a real Temporal worker: no secret in the stored history ----------------------------


@workflow.defn(name="AnalysisSecretsProbe", sandboxed=False)
class SecretsProbe:
    """Calls the three analysis activities by their registered names, as the rollout does."""

    @workflow.run
    async def run(
        self, metric: MetricCheckInput, hook: WebhookInput, event: EventInput
    ) -> list[str]:
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=30),
            "retry_policy": RetryPolicy(maximum_attempts=1),
        }
        result = await workflow.execute_activity(
            ActivityName.CHECK_METRIC, metric, result_type=MetricResult, **options
        )
        called = await workflow.execute_activity(
            ActivityName.CALL_WEBHOOK, hook, result_type=WebhookResult, **options
        )
        await workflow.execute_activity(ActivityName.RECORD_EVENT, event, **options)
        return [result.message, called.message]


def _payload_texts(node: Any) -> Iterator[str]:
    """Every string in a history, with payload ``data`` base64-decoded."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                yield base64.b64decode(value).decode(errors="replace")
            else:
                yield from _payload_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _payload_texts(item)
    elif isinstance(node, str):
        yield node


async def test_no_secret_in_workflow_history(cluster: Cluster, time_skipping_env: Any) -> None:
    secrets = {"prom-tok-91", "hook-tok-42", "xoxb-chat-77"}
    client, ns = cluster.admin, cluster.canary_ns
    prometheus_answer = (
        b'{"status":"success","data":{"resultType":"vector","result":'
        b'[{"metric":{},"value":[1,"99.9"]}]}}'
    )
    with receiver(lambda _r: (200, prometheus_answer)) as prom, receiver() as peer:
        create_secret(client, ns, "prom-creds", {"token": "prom-tok-91"})
        create_secret(client, ns, "hook-creds", {"token": "hook-tok-42"})
        create_flagger_object(
            client,
            "metrictemplates",
            ns,
            "probe",
            {
                "provider": {
                    "type": "prometheus",
                    "address": prom.url,
                    "secretRef": {"name": "prom-creds"},
                },
                "query": "up",
            },
        )
        _provider(cluster, "probe-chat", "slack", peer.url + "/services/xoxb-chat-77")
        ref = CanaryRef(namespace=ns, name="podinfo", target="podinfo", service="podinfo")
        metric = MetricCheckInput(
            ref=ref,
            metric=MetricSpec.model_validate(
                {"name": "probe", "templateRef": {"name": "probe"}, "thresholdRange": {"min": 99}}
            ),
        )
        hook = WebhookInput(
            ref=ref,
            webhook=WebhookSpec.model_validate(
                {"name": "gate", "url": peer.url + "/gate", "secretRef": {"name": "hook-creds"}}
            ),
            phase=Phase.PROGRESSING,
        )
        event = EventInput(
            ref=ref,
            reason="Synced",
            message=f"Promotion completed! Scaling down podinfo.{ns}",
            phase=Phase.SUCCEEDED,
            alerts=[_alert(cluster, "chat", "probe-chat")],
            alert_severity="info",
        )
        activities = AnalysisActivities(api_client=cluster.worker, settings=AnalysisSettings())
        async with Worker(
            time_skipping_env.client,
            task_queue="analysis-secrets",
            workflows=[SecretsProbe],
            activities=activities.all(),
            activity_executor=ThreadPoolExecutor(4),
        ):
            handle = await time_skipping_env.client.start_workflow(
                SecretsProbe.run,
                args=[metric, hook, event],
                id=f"analysis-secrets-{uuid.uuid4().hex[:8]}",
                task_queue="analysis-secrets",
            )
            messages = await handle.result()
            history = await handle.fetch_history()
    # The secrets did their job: each reached its receiver...
    assert messages == ["probe 99.90", "HTTP 200"]
    assert prom.requests[0].headers["authorization"] == "Bearer prom-tok-91"
    assert peer.on("/gate")[0].headers["authorization"] == "Bearer hook-tok-42"
    assert peer.on("/services/xoxb-chat-77")
    # ...and none of them is anywhere in the stored history.
    texts = "\n".join(_payload_texts(history.to_json_dict()))
    assert "Promotion completed!" in texts  # payloads were decoded: the scan can see
    for secret in secrets:
        assert secret not in texts
