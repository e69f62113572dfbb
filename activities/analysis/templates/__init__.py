"""What to measure: per-router query templates, kept apart from the providers that run them.

One module per traffic router (``istio`` first) maps the builtin check names to PromQL templates;
`render` fills Flagger's template variables. Adding a router means adding a module and one entry
in `BUILTIN_QUERIES`.
"""

from __future__ import annotations

from activities.analysis.templates import istio
from activities.analysis.templates.render import TemplateModel, render

BUILTIN_QUERIES: dict[str, dict[str, str]] = {"istio": istio.QUERIES}
"""Router name → builtin metric name → query template."""

REQUEST_SUCCESS_RATE = "request-success-rate"
REQUEST_DURATION = "request-duration"
BUILTIN_METRICS = (REQUEST_SUCCESS_RATE, REQUEST_DURATION)

__all__ = [
    "BUILTIN_METRICS",
    "BUILTIN_QUERIES",
    "REQUEST_DURATION",
    "REQUEST_SUCCESS_RATE",
    "TemplateModel",
    "render",
]
