"""Rendering query templates as Flagger does.

What to measure is the traffic-router provider's business: each plugin in ``activities/router``
exports the PromQL of its builtin checks (``Provider.queries``), kept apart from the metric
providers that run them; `render` fills Flagger's template variables in either those or a
MetricTemplate's query.
"""

from __future__ import annotations

from activities.analysis.templates.render import TemplateModel, render

REQUEST_SUCCESS_RATE = "request-success-rate"
REQUEST_DURATION = "request-duration"
BUILTIN_METRICS = (REQUEST_SUCCESS_RATE, REQUEST_DURATION)

__all__ = [
    "BUILTIN_METRICS",
    "REQUEST_DURATION",
    "REQUEST_SUCCESS_RATE",
    "TemplateModel",
    "render",
]
