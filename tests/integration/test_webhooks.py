"""``call_webhook`` over real sockets: a local HTTP peer, then the sandbox's load tester.

The local peer checks each of the eight webhook types' payload and Flagger's status rule (≤ 202
passes; 203, 500, timeouts fail; retries retry). Secrets: a ``secretRef`` token, read from the
session's real API server as the worker reads it (``worker_client``, held to the shipped
ClusterRole) in a namespace of this module's own, reaches the peer but never the activity's input,
result or logs. The sandbox part
drives the flagger-loadtester work-alike through the mesh: gates, rollback gate, a ``hey`` load
test.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio import workflow
from temporalio.worker import Worker

from activities.analysis import AnalysisActivities, AnalysisSettings
from tests.integration.analysis_support import (
    Recorded,
    closed_port_url,
    create_secret,
    fresh_namespace,
    receiver,
)
from workflows import policies
from workflows._base import duration_seconds
from workflows.activity_api import (
    ActivityName,
    CanaryRef,
    MetricCheckInput,
    WebhookInput,
    WebhookResult,
)
from workflows.model import CheckOutcome, Phase
from workflows.spec import MetricSpec, WebhookSpec

REF = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")

PHASE_OF_TYPE = {
    "confirm-rollout": Phase.WAITING,
    "pre-rollout": Phase.PROGRESSING,
    "rollout": Phase.PROGRESSING,
    "confirm-traffic-increase": Phase.PROGRESSING,
    "confirm-promotion": Phase.WAITING_PROMOTION,
    "post-rollout": Phase.SUCCEEDED,
    "rollback": Phase.PROGRESSING,
    "event": Phase.PROGRESSING,
}


def _activities(api_client: Any = None, **settings: Any) -> AnalysisActivities:
    api = api_client or k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    return AnalysisActivities(api_client=api, settings=AnalysisSettings(**settings))


def _call(
    activities: AnalysisActivities,
    url: str,
    *,
    type_: str = "rollout",
    ref: CanaryRef = REF,
    **hook: Any,
) -> tuple[WebhookInput, Any]:
    spec = WebhookSpec.model_validate({"name": f"{type_}-hook", "type": type_, "url": url, **hook})
    request = WebhookInput(ref=ref, webhook=spec, phase=PHASE_OF_TYPE[type_], checksum="rev-1")
    return request, activities.call_webhook(request)


@pytest.mark.parametrize("type_", list(PHASE_OF_TYPE))
@pytest.mark.parametrize(("status", "ok"), [(200, True), (202, True), (203, False), (500, False)])
def test_each_type_posts_flaggers_payload(type_: str, status: int, ok: bool) -> None:
    with receiver(lambda _r: (status, b"answer")) as peer:
        _, result = _call(
            _activities(), peer.url + "/hook", type_=type_, metadata={"cmd": "echo hi"}
        )
    assert result.ok is ok
    assert result.status_code == status
    (seen,) = peer.requests
    assert seen.method == "POST"
    assert seen.path == "/hook"
    assert seen.headers["content-type"] == "application/json"
    assert seen.json() == {
        "name": "podinfo",
        "namespace": "test",
        "phase": PHASE_OF_TYPE[type_].value,
        "checksum": "rev-1",
        "metadata": {"cmd": "echo hi"},
    }
    if not ok:
        assert result.message == f"HTTP {status}: answer"


def test_timeout_fails_the_call() -> None:
    with receiver(delay_seconds=2.0) as peer:
        _, result = _call(_activities(), peer.url, timeout="500ms")
    assert not result.ok
    assert result.status_code is None
    assert result.message == "timeout after 0.5s"


@workflow.defn(name="AnalysisWebhookProbe", sandboxed=False)
class WebhookProbe:
    """Calls ``call_webhook`` with the rollout's own webhook policy (``policies.webhook``)."""

    @workflow.run
    async def run(self, request: WebhookInput) -> WebhookResult:
        hook = request.webhook
        options = policies.webhook(
            timeout_seconds=duration_seconds(hook.timeout), retries=hook.retries
        )
        return await workflow.execute_activity(
            ActivityName.CALL_WEBHOOK,
            request,
            result_type=WebhookResult,
            start_to_close_timeout=options.start_to_close,
            retry_policy=options.retry,
        )


async def _through_temporal(env: Any, url: str, retries: int) -> WebhookResult:
    hook = WebhookSpec(name="flaky", url=url, retries=retries)
    request = WebhookInput(ref=REF, webhook=hook, phase=Phase.PROGRESSING, checksum="rev-1")
    queue = f"webhooks-{uuid.uuid4().hex[:6]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[WebhookProbe],
        activities=[_activities().call_webhook],
        activity_executor=ThreadPoolExecutor(2),
    ):
        return await env.client.execute_workflow(
            WebhookProbe.run, request, id=f"webhook-probe-{queue}", task_queue=queue
        )


async def test_temporal_retries_until_the_peer_recovers(time_skipping_env: Any) -> None:
    answers = iter([(500, b"down"), (503, b"down"), (200, b"ok")])
    with receiver(lambda _r: next(answers)) as peer:
        result = await _through_temporal(time_skipping_env, peer.url, retries=2)
    assert result.ok
    assert len(peer.requests) == 3


async def test_temporal_retries_are_bounded_by_the_spec(time_skipping_env: Any) -> None:
    with receiver(lambda _r: (500, b"still down")) as peer:
        result = await _through_temporal(time_skipping_env, peer.url, retries=2)
    assert not result.ok  # the last attempt returns the failure: the workflow decides
    assert len(peer.requests) == 3
    assert result.message == "HTTP 500: still down"


async def test_an_answer_is_not_retried(time_skipping_env: Any) -> None:
    with receiver(lambda _r: (403, b"Forbidden")) as peer:
        result = await _through_temporal(time_skipping_env, peer.url, retries=3)
    assert result.status_code == 403
    assert len(peer.requests) == 1


def test_peer_down_is_a_failed_call() -> None:
    _, result = _call(_activities(), closed_port_url(), retries=1)
    assert not result.ok
    assert result.message == "request failed: ConnectError"


def test_redirect_is_not_followed() -> None:
    with receiver(lambda _r: (302, b"")) as peer:
        _, result = _call(_activities(), peer.url)
    assert not result.ok
    assert result.status_code == 302
    assert len(peer.requests) == 1


# --- a secretRef token: in the peer's request, nowhere else -----------------------------------


@pytest.fixture(scope="module")
def hook_ref(admin_client: k8s.ApiClient) -> Iterator[CanaryRef]:
    """A Canary in a namespace of the module's own, holding the Secret ``hook-token``."""
    with fresh_namespace(admin_client, "webhooks") as ns:
        create_secret(admin_client, ns, "hook-token", {"token": "tok-7f3a9c"})
        yield CanaryRef(namespace=ns, name="podinfo", target="podinfo", service="podinfo")


def test_secret_token_reaches_the_peer_only(
    worker_client: k8s.ApiClient, hook_ref: CanaryRef, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def echo_headers(recorded: Recorded) -> tuple[int, bytes]:
        # A hostile or careless peer echoing the header must not leak it into the result.
        return 500, recorded.headers["authorization"].encode()

    with receiver(echo_headers) as peer:
        request, result = _call(
            _activities(worker_client),
            peer.url,
            ref=hook_ref,
            secretRef={"name": "hook-token", "key": "token"},
        )
    assert peer.requests[0].headers["authorization"] == "Bearer tok-7f3a9c"
    assert not result.ok
    assert "tok-7f3a9c" not in request.model_dump_json()
    assert "tok-7f3a9c" not in result.model_dump_json()
    assert result.message == "HTTP 500: Bearer ***"
    assert "tok-7f3a9c" not in caplog.text


def test_missing_secret_is_a_configuration_error(
    worker_client: k8s.ApiClient, hook_ref: CanaryRef
) -> None:
    from temporalio.exceptions import ApplicationError

    missing = f"secret {hook_ref.namespace}/absent not found"  # in the Canary's namespace
    with receiver() as peer, pytest.raises(ApplicationError, match=missing) as caught:
        _call(_activities(worker_client), peer.url, ref=hook_ref, secretRef={"name": "absent"})
    assert caught.value.type == "InvalidSpec"
    assert not peer.requests


# --- the sandbox's flagger-loadtester, through the mesh ---------------------------------------


@pytest.fixture
def sandbox(sandbox_cluster: Any) -> Any:
    """The session's whole sandbox (tests/conftest.py): API server, mesh, Prometheus, tester."""
    return sandbox_cluster


def _through_mesh(sandbox: Any) -> AnalysisActivities:
    return _activities(http_proxy=sandbox.mesh_url)


def test_loadtester_gates(sandbox: Any) -> None:
    activities = _through_mesh(sandbox)
    base = sandbox.loadtester_url.rstrip("/")
    assert _call(activities, f"{base}/gate/approve", type_="confirm-rollout")[1].ok
    halted = _call(activities, f"{base}/gate/halt", type_="confirm-promotion")[1]
    assert not halted.ok
    assert halted.status_code == 403
    check = f"{base}/gate/check"
    assert not _call(activities, check, type_="confirm-traffic-increase")[1].ok
    assert _call(activities, f"{base}/gate/open", type_="confirm-rollout")[1].status_code == 202
    assert _call(activities, check, type_="confirm-traffic-increase")[1].ok
    assert _call(activities, f"{base}/gate/close", type_="confirm-rollout")[1].ok
    assert not _call(activities, check, type_="confirm-traffic-increase")[1].ok


def test_loadtester_rollback_gate(sandbox: Any) -> None:
    activities = _through_mesh(sandbox)
    base = sandbox.loadtester_url.rstrip("/")
    assert not _call(activities, f"{base}/rollback/check", type_="rollback")[1].ok
    assert _call(activities, f"{base}/rollback/open", type_="rollback")[1].ok
    assert _call(activities, f"{base}/rollback/check", type_="rollback")[1].ok


def test_loadtester_runs_a_hey_load_test(sandbox: Any) -> None:
    activities = _through_mesh(sandbox)
    cmd = "hey -z 1s -q 5 -c 1 http://flagger-loadtester.test/healthz"
    _, result = _call(activities, sandbox.loadtester_url, metadata={"cmd": cmd})
    assert result.ok
    assert result.status_code == 202  # cmd tasks start in the background
    _, refused = _call(activities, sandbox.loadtester_url)  # no metadata: the tester says 400
    assert not refused.ok
    assert refused.status_code == 400


# --- the rollback scenario, at the activity level: hey through a rollout webhook, 30% errors ---

PODINFO = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.1
        ports: [{{name: http, containerPort: 9898}}]
        env: [{env}]
---
apiVersion: v1
kind: Service
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
"""


def _wait_for_metric(
    activities: AnalysisActivities, request: Any, accept: Any, *, within: float = 60
) -> Any:
    deadline = time.monotonic() + within
    results = []
    while time.monotonic() < deadline:
        result = activities.check_metric(request)
        results.append(result)
        if accept(result):
            return result
        time.sleep(1)
    raise AssertionError(f"metric never settled: {[r.message for r in results[-5:]]}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "case",
    [
        (
            "{name: FAULT_ERROR_RATE, value: '0.3'}",
            {"name": "request-success-rate", "thresholdRange": {"min": 99}},
            lambda r: r.value is not None and abs(r.value - 70) <= 6,
            "success rate ",
        ),
        (
            "{name: FAULT_LATENCY_MS, value: '600'}",
            {"name": "request-duration", "thresholdRange": {"max": 500}},
            lambda r: r.value is not None and r.value > 500,
            "request duration ",
        ),
    ],
    ids=["errors", "latency"],
)
def test_load_test_webhook_drives_a_failing_canary_into_breach(
    sandbox: Any, kubectl: Any, sandbox_namespace: str, case: tuple[Any, ...]
) -> None:
    env, metric, accept, wording = case
    ns = sandbox_namespace
    kubectl.apply(PODINFO.format(ns=ns, env=env))
    kubectl.run("-n", ns, "rollout", "status", "deployment/podinfo", "--timeout=30s")
    activities = _activities(http_proxy=sandbox.mesh_url, prometheus_url=sandbox.prometheus_url)
    ref = CanaryRef(namespace=ns, name="podinfo", target="podinfo", service="podinfo")
    cmd = f"hey -z 40s -q 10 -c 2 http://podinfo.{ns}:9898/"
    hook = WebhookSpec(
        name="load-test", type="rollout", url=sandbox.loadtester_url, metadata={"cmd": cmd}
    )
    started = activities.call_webhook(
        WebhookInput(ref=ref, webhook=hook, phase=Phase.PROGRESSING, checksum="rev-2")
    )
    assert started.ok
    request = MetricCheckInput(
        ref=ref, metric=MetricSpec.model_validate({"interval": "10s", **metric})
    )
    result = _wait_for_metric(activities, request, accept)
    assert result.outcome == CheckOutcome.BREACH
    assert result.message.startswith(wording)
    if metric["name"] == "request-success-rate":
        assert result.message.endswith("% < 99%")
    else:
        assert result.message.endswith(" > 500ms")
