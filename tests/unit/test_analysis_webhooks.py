"""Webhook payloads and Flagger's pass/fail rules, against `httpx.MockTransport` handlers."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.analysis import AnalysisActivities
from activities.analysis.settings import AnalysisSettings
from activities.analysis.webhooks import WebhookCaller, event_metadata, payload
from activities.errors import InvalidSpec
from activities.kubernetes.resources import Resources
from workflows.activity_api import CanaryRef, WebhookInput, WebhookResult
from workflows.model import Phase
from workflows.spec import WebhookSpec

REF = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")
SETTINGS = AnalysisSettings()


def _unused_cluster() -> Resources:
    # No secretRef in these tests: the cluster is never asked anything.
    config = k8s.Configuration(host="http://127.0.0.1:1")
    return Resources(k8s.ApiClient(config), timeout=(1, 1))


def _caller(handler: httpx.MockTransport) -> WebhookCaller:
    return WebhookCaller(cluster=_unused_cluster(), settings=SETTINGS, transport=handler)


def _input(**hook: object) -> WebhookInput:
    spec = WebhookSpec.model_validate({"name": "load-test", "url": "http://tester/", **hook})
    return WebhookInput(ref=REF, webhook=spec, phase=Phase.PROGRESSING, checksum="abc123")


def test_payload_is_flaggers() -> None:
    body = payload(REF, Phase.PROGRESSING, "abc", {"cmd": "hey"})
    assert body == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "abc",
        "metadata": {"cmd": "hey"},
    }
    assert "metadata" not in payload(REF, Phase.WAITING, None, {})
    assert payload(REF, Phase.WAITING, None, {})["checksum"] == ""


def test_event_metadata_keeps_the_event_keys() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    metadata = event_metadata("Advance", "Normal", {"eventType": "x", "team": "a"}, moment)
    assert metadata == {
        "eventMessage": "Advance",
        "eventType": "Normal",
        "timestamp": str(int(moment.timestamp() * 1000)),
        "team": "a",
    }


@pytest.mark.parametrize(("status", "ok"), [(200, True), (202, True), (203, False), (500, False)])
def test_status_202_or_lower_passes(status: int, ok: bool) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="nope" if status > 202 else "ok")

    result, retryable = _caller(httpx.MockTransport(handle)).attempt(
        _input(metadata={"cmd": "hey -z 1m"})
    )
    assert result.ok is ok
    assert retryable is (status == 500)
    assert result.status_code == status
    sent = json.loads(seen[0].content)
    assert sent["metadata"] == {"cmd": "hey -z 1m"}
    assert sent["checksum"] == "abc123"
    assert seen[0].headers["content-type"] == "application/json"
    if not ok:
        assert result.message == f"HTTP {status}: nope"


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (403, False), (404, False)]
)
def test_which_failures_are_worth_another_attempt(status: int, retryable: bool) -> None:
    def handle(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="gate closed")

    result, again = _caller(httpx.MockTransport(handle)).attempt(_input(retries=3))
    assert not result.ok
    assert again is retryable
    assert result.message == f"HTTP {status}: gate closed"


def test_redirects_are_not_followed() -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(302, headers={"Location": "http://internal/secret"})

    result, again = _caller(httpx.MockTransport(handle)).attempt(_input())
    assert not result.ok
    assert not again
    assert result.status_code == 302
    assert paths == ["/"]


def test_connection_error_is_a_failed_call_not_an_exception() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result, again = _caller(httpx.MockTransport(handle)).attempt(_input(retries=1))
    assert not result.ok
    assert again
    assert result.status_code is None
    assert result.message == "request failed: ConnectError"


def test_timeout_is_a_failed_call() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    result, again = _caller(httpx.MockTransport(handle)).attempt(_input(timeout="2s"))
    assert not result.ok
    assert again
    assert result.message == "timeout after 2s"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "tester/gate"])
def test_only_http_urls(url: str) -> None:
    def handle(_request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not be called")

    # The spec refuses these too; the activity checks again (defence in depth).
    hook = WebhookSpec.model_construct(
        name="h", type="rollout", url=url, timeout="10s", retries=0, metadata={}, secret_ref=None
    )
    request = WebhookInput.model_construct(
        ref=REF, webhook=hook, phase=Phase.PROGRESSING, checksum=None
    )
    with pytest.raises(InvalidSpec, match="not an http or https URL"):
        _caller(httpx.MockTransport(handle)).attempt(request)


# --- the activity: Temporal retries a retryable failure while attempts are left ----------------


def _run_activity(
    status: int, *, retries: int, attempt: int, maximum_attempts: int = 0
) -> WebhookResult:
    transport = httpx.MockTransport(lambda _request: httpx.Response(status, text="boom"))
    activities = AnalysisActivities(
        api_client=_unused_cluster_client(), settings=SETTINGS, http_transport=transport
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=attempt, retry_policy=RetryPolicy(maximum_attempts=maximum_attempts)
    )
    return env.run(activities.call_webhook, _input(retries=retries))


def _unused_cluster_client() -> k8s.ApiClient:
    return k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))


def test_retryable_failure_raises_while_the_spec_allows_more_attempts() -> None:
    with pytest.raises(ApplicationError) as caught:
        _run_activity(503, retries=2, attempt=2)
    assert caught.value.type == "WebhookFailed"
    assert not caught.value.non_retryable
    assert "HTTP 503: boom" in str(caught.value)


def test_last_attempt_returns_the_failure() -> None:
    result = _run_activity(503, retries=2, attempt=3)
    assert not result.ok
    assert result.status_code == 503


def test_policy_maximum_attempts_caps_the_spec() -> None:
    assert not _run_activity(500, retries=5, attempt=2, maximum_attempts=2).ok


def test_answers_and_hooks_without_retries_return_at_once() -> None:
    assert _run_activity(403, retries=3, attempt=1).status_code == 403
    assert _run_activity(500, retries=0, attempt=1).status_code == 500
    assert _run_activity(202, retries=3, attempt=1).ok
