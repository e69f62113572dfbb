"""Webhooks: Flagger's payload POSTed to a URL, judged by Flagger's rule (status ≤ 202 passes).

The payload is ``{"name", "namespace", "phase", "checksum", "metadata"}`` — what
flagger-loadtester and every Flagger gate expect. The call:

- only ``http``/``https`` URLs (anything else is `InvalidSpec`: a ``file:`` or ``gopher:`` URL in a
  Canary must not make the worker read files or talk odd protocols);
- redirects are **not** followed: a 3xx is a failed call (status > 202). A gate that redirects
  would otherwise turn the worker's POST into a GET somewhere else, and a redirect to an internal
  address is a classic way to reach what the author of the Canary could not;
- ``timeout`` from the spec (default 10 s); one POST per activity attempt. ``retries`` are
  Temporal's: after a connection error, a timeout, 429 or 5xx (what Flagger's retryablehttp
  retries) the activity raises while the spec allows another attempt, so the retry is visible in
  the history and backs off on the server; the last attempt returns the failed result. Other
  statuses are an answer and are never retried;
- an optional ``secretRef``: the Secret key's value is sent as ``Authorization: Bearer <value>``.
  It is read here, inside the activity, and scrubbed from any response text we keep.

What a failure means (hold, failed check, roll back) is the workflow's decision per webhook type;
`WebhookResult` only reports ``ok``, the status and a short message. The caller gives each attempt
a start-to-close timeout a little above the spec's ``timeout`` and ``maximum_attempts`` of
``retries + 1`` (``workflows.policies.webhook`` does).
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx

from activities.analysis.settings import AnalysisSettings
from activities.errors import InvalidSpec
from activities.kubernetes.resources import Resources, secret_value
from workflows._base import duration_seconds
from workflows.activity_api import CanaryRef, WebhookInput, WebhookResult
from workflows.model import Phase
from workflows.spec import WebhookSpec

log = logging.getLogger(__name__)

PASSING_STATUS_MAX = 202
"""Flagger's rule: a status code above 202 fails the webhook."""

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_MESSAGE_LIMIT = 200


def payload(
    ref: CanaryRef, phase: Phase, checksum: str | None, metadata: Mapping[str, str]
) -> dict[str, Any]:
    """Flagger's ``CanaryWebhookPayload`` (``metadata`` omitted when empty, as Go's omitempty)."""
    body: dict[str, Any] = {
        "name": ref.name,
        "namespace": ref.namespace,
        "phase": phase.value,
        "checksum": checksum or "",
    }
    if metadata:
        body["metadata"] = dict(metadata)
    return body


def event_metadata(
    message: str, event_type: str, hook_metadata: Mapping[str, str], now: datetime | None = None
) -> dict[str, str]:
    """Metadata of an ``event`` webhook: the event, then the hook's own keys (never overriding)."""
    moment = now or datetime.now(UTC)
    metadata = {
        "eventMessage": message,
        "eventType": event_type,
        "timestamp": str(int(moment.timestamp() * 1000)),
    }
    for key, value in hook_metadata.items():
        metadata.setdefault(key, value)
    return metadata


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context (the system's CA bundle) for every call: building it loads and parses
    the CA bundle, which was most of the worker's CPU per analysis step when each call built its
    own. An SSLContext is safe to share between threads."""
    return ssl.create_default_context()


def check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidSpec(f"webhook URL {url!r} is not an http or https URL")


class WebhookCaller:
    """POSTs webhook payloads; `transport` is a seam for `httpx.MockTransport` in tests."""

    def __init__(
        self,
        *,
        cluster: Resources,
        settings: AnalysisSettings,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._transport = transport

    def attempt(self, request: WebhookInput) -> tuple[WebhookResult, bool]:
        """One call of a webhook of any type → (result, whether another attempt may help)."""
        hook = request.webhook
        body = payload(request.ref, request.phase, request.checksum, hook.metadata)
        timeout = duration_seconds(hook.timeout) if hook.timeout else None
        return self.post(request.ref, hook, body, timeout=timeout)

    def post(
        self,
        ref: CanaryRef,
        hook: WebhookSpec,
        body: Mapping[str, Any],
        *,
        timeout: float | None,
    ) -> tuple[WebhookResult, bool]:
        """POST ``body`` to the hook once; the token, if any, is scrubbed from the result."""
        check_url(hook.url)
        token = self._token(ref, hook)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        seconds = timeout or self._settings.webhook_default_timeout_seconds
        with httpx.Client(
            timeout=seconds,
            follow_redirects=False,
            transport=self._transport,
            proxy=self._settings.http_proxy,
            verify=tls_context(),
        ) as client:
            result, retryable = _once(client, hook.url, body, headers, seconds)
        if token:
            result = result.model_copy(update={"message": result.message.replace(token, "***")})
        log.info(
            "webhook %s (%s) for %s: %s",
            hook.name,
            hook.type,
            ref.display,
            "ok" if result.ok else result.message,
        )
        return result, retryable

    def _token(self, ref: CanaryRef, hook: WebhookSpec) -> str | None:
        if hook.secret_ref is None:
            return None
        namespace = hook.secret_ref.namespace or ref.namespace
        return secret_value(self._cluster, namespace, hook.secret_ref.name, hook.secret_ref.key)


def _once(
    client: httpx.Client,
    url: str,
    body: Mapping[str, Any],
    headers: dict[str, str],
    seconds: float,
) -> tuple[WebhookResult, bool]:
    """One POST → (result, whether another attempt may help)."""
    try:
        response = client.post(url, json=dict(body), headers=headers)
    except httpx.TimeoutException:
        return WebhookResult(ok=False, message=f"timeout after {seconds:g}s"), True
    except httpx.InvalidURL as exc:
        return WebhookResult(ok=False, message=f"invalid URL: {exc}"), False
    except httpx.HTTPError as exc:
        return WebhookResult(ok=False, message=f"request failed: {type(exc).__name__}"), True
    status = response.status_code
    if status <= PASSING_STATUS_MAX:
        return WebhookResult(ok=True, status_code=status, message=f"HTTP {status}"), False
    text = response.text.strip().replace("\n", " ")
    if len(text) > _MESSAGE_LIMIT:
        text = text[:_MESSAGE_LIMIT] + "…"
    message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    return WebhookResult(ok=False, status_code=status, message=message), (
        status in _RETRYABLE_STATUS
    )
