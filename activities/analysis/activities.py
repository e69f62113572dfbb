"""The analysis activities as Temporal sees them: three synchronous methods on one class.

`AnalysisActivities` gets its Kubernetes `ApiClient` and its `AnalysisSettings` injected by the
worker (as the samples' activity classes get their clients), builds the three pieces that do the
work — `MetricChecker`, `WebhookCaller`, `EventRecorder` — and translates their errors at the
boundary:

- a metric breach, missing data or an unreachable backend is a `MetricResult`, never an error;
- a failed webhook is a `WebhookResult` with ``ok`` False — except that a failure worth retrying
  (connection error, timeout, 429, 5xx) raises a retryable ``ApplicationError`` of type
  ``WebhookFailed`` while the spec's ``retries`` and the activity's retry policy allow another
  attempt, so Temporal does the retrying;
- `InvalidSpec` (from `activities.errors`, like every error here) is already a non-retryable
  ``ApplicationError`` of type ``InvalidSpec``;
- `KubernetesError` becomes a retryable ``ApplicationError`` of type ``KubernetesError``, so the
  workflow's retry policy decides how long to insist.

Every Kubernetes read and write goes through `activities.kubernetes.resources.Resources`, the
one client the routers and the Kubernetes activities use too.

Constructing it installs log filters (`redaction`) so httpx and the Kubernetes client cannot log
a notifier URL or a Secret.

The methods are synchronous (blocking HTTP): the worker must run them on a thread pool
(``activity_executor=ThreadPoolExecutor(...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import httpx
from kubernetes import client as k8s
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.analysis import redaction
from activities.analysis.events import EventRecorder
from activities.analysis.metrics.check import MetricChecker
from activities.analysis.settings import AnalysisSettings
from activities.analysis.webhooks import WebhookCaller
from activities.errors import KubernetesError
from activities.kubernetes.resources import Resources
from activities.router.registry import provider_for
from workflows.activity_api import (
    ActivityName,
    EventInput,
    MetricCheckInput,
    WebhookInput,
    WebhookResult,
)
from workflows.model import MetricResult
from workflows.providers import DEFAULT_PROVIDER

T = TypeVar("T")


def _boundary(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except KubernetesError as exc:
        raise ApplicationError(str(exc), type="KubernetesError") from None


def _attempts_left(spec_retries: int) -> bool:
    """Whether Temporal will run another attempt: within the spec's retries and the policy's."""
    if not activity.in_activity():
        return False  # called directly (tests, tools): one attempt, its result is final
    info = activity.info()
    allowed = spec_retries + 1
    if info.retry_policy is not None and info.retry_policy.maximum_attempts > 0:
        allowed = min(allowed, info.retry_policy.maximum_attempts)
    return info.attempt < allowed


class AnalysisActivities:
    """``check_metric``, ``call_webhook`` and ``record_event``."""

    def __init__(
        self,
        *,
        api_client: k8s.ApiClient,
        settings: AnalysisSettings,
        http_transport: httpx.BaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
        default_provider: str = DEFAULT_PROVIDER,
    ) -> None:
        """``default_provider``: the cluster-wide traffic router, whose builtin checks a Canary
        naming no provider gets. ``http_transport`` and ``environ`` are test seams."""
        redaction.install()  # before any call: library loggers must not print credentials
        seconds = settings.kubernetes_timeout_seconds
        cluster = Resources(api_client, timeout=(seconds, seconds))
        self.settings = settings
        self.metrics = MetricChecker(
            cluster=cluster,
            settings=settings,
            environ=environ,
            default_provider=provider_for(default_provider).name,
        )
        self.webhooks = WebhookCaller(cluster=cluster, settings=settings, transport=http_transport)
        self.events = EventRecorder(
            cluster=cluster, settings=settings, webhooks=self.webhooks, transport=http_transport
        )

    @activity.defn(name=ActivityName.CHECK_METRIC)
    def check_metric(self, request: MetricCheckInput) -> MetricResult:
        """Run one metric check; the verdict (ok, breach, no data, provider error) is the result."""
        return _boundary(lambda: self.metrics.check(request))

    @activity.defn(name=ActivityName.CALL_WEBHOOK)
    def call_webhook(self, request: WebhookInput) -> WebhookResult:
        """POST Flagger's payload; ``ok`` is False on status > 202, timeout or connection error."""
        result, retryable = _boundary(lambda: self.webhooks.attempt(request))
        if not result.ok and retryable and _attempts_left(request.webhook.retries):
            # The message is already scrubbed of the token; it lands in the retry's last_failure.
            raise ApplicationError(
                f"webhook {request.webhook.name}: {result.message}", type="WebhookFailed"
            )
        return result

    @activity.defn(name=ActivityName.RECORD_EVENT)
    def record_event(self, request: EventInput) -> None:
        """Write the Kubernetes Event (retried on failure), then webhooks and alerts."""
        _boundary(lambda: self.events.record(request))

    def all(self) -> list[Callable[..., object]]:
        """The activity callables, for ``Worker(activities=...)``."""
        return [self.check_metric, self.call_webhook, self.record_event]
