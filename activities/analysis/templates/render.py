"""Rendering of Flagger's query templates, in Go's template language as Flagger renders them.

A template names the model's values as functions — ``{{ name }}``, ``{{ namespace }}``,
``{{ target }}``, ``{{ service }}``, ``{{ ingress }}``, ``{{ route }}``, ``{{ interval }}``,
``{{ variables.<name> }}`` — and may use Go's builtins on them (``{{ printf "%s-primary" target
}}``, ``{{ index variables "q" }}``, ``{{ if eq namespace "prod" }}…{{ end }}``), exactly what
Flagger's ``RenderQuery`` offers (see `gotemplate`). A misspelt function or a missing variable is a
clear configuration error, as ``missingkey=error`` makes it in Flagger, instead of an empty label
matcher that silently matches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from activities.analysis.templates.gotemplate import TemplateError, UndefinedError, execute
from activities.errors import InvalidSpec


@dataclass(frozen=True, kw_only=True)
class TemplateModel:
    """The values a query template can use (Flagger's ``MetricTemplateModel``)."""

    name: str
    namespace: str
    target: str
    service: str
    interval: str
    ingress: str = ""
    route: str = ""
    """Flagger's Knative revision name; empty, as for every non-Knative Canary."""
    variables: dict[str, str] = field(default_factory=dict)

    def functions(self) -> dict[str, Callable[[], Any]]:
        """One function per value, as Flagger's ``MetricTemplateModel.TemplateFunctions``."""
        values: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "target": self.target,
            "service": self.service,
            "ingress": self.ingress or self.target,
            "route": self.route,
            "interval": self.interval,
        }
        functions = {key: _returning(value) for key, value in values.items()}
        functions["variables"] = _returning(dict(self.variables))
        return functions


def _returning(value: Any) -> Callable[[], Any]:
    return lambda: value


def render(template: str, model: TemplateModel) -> str:
    """The query with every variable filled in; a bad template raises `InvalidSpec`."""
    try:
        return execute(template, model.functions())
    except UndefinedError as exc:
        raise InvalidSpec(f"query template uses an undefined name: {exc}") from None
    except TemplateError as exc:
        raise InvalidSpec(f"query template does not render: {exc}") from None
