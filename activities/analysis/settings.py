"""Settings of the analysis activities: one frozen object built by the worker at start-up.

Grouped and documented field by field (as kopf's configuration is), then passed explicitly to
`AnalysisActivities`; nothing here is read from the environment at import time. Secrets never live
here: a Prometheus token is read from the environment or from a Kubernetes Secret inside the
activity that needs it (see `activities.analysis.metrics.credentials`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class AnalysisSettings:
    """What the analysis activities need to know about their surroundings."""

    prometheus_url: str | None = None
    """Prometheus used by the builtin checks and the deprecated inline ``query`` form.

    ``None`` falls back to the ``PROMETHEUS_URL`` environment variable at call time; when neither
    is set a builtin check fails with an ``InvalidSpec`` error naming both.
    """

    query_timeout_seconds: float = 5.0
    """Per-query HTTP timeout of metric providers (Flagger uses 5 s)."""

    webhook_default_timeout_seconds: float = 10.0
    """Timeout of a webhook whose spec gives none (the spec's own default is ``10s`` too)."""

    event_webhook_timeout_seconds: float = 5.0
    """Timeout of ``event`` webhooks (Flagger sends events with a fixed 5 s timeout)."""

    notifier_timeout_seconds: float = 5.0
    """Timeout of one alert post (Slack, Teams…); a slow notifier must not hold a rollout."""

    http_proxy: str | None = None
    """Proxy for webhook and notifier calls; ``None`` uses the environment's ``HTTP_PROXY``,
    ``HTTPS_PROXY`` and ``NO_PROXY`` (as httpx reads them). The sandbox routes cluster names
    (``http://flagger-loadtester.test/``) through its mesh this way."""

    kubernetes_timeout_seconds: float = 10.0
    """Request timeout of Kubernetes reads and writes (MetricTemplates, Secrets, Events)."""

    event_component: str = "coalmine"
    """``source.component`` of the Kubernetes Events written on the target."""
