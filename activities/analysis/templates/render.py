"""Rendering of Flagger's query templates.

Flagger's templates use ``{{ name }}``, ``{{ namespace }}``, ``{{ target }}``, ``{{ service }}``,
``{{ ingress }}``, ``{{ interval }}`` and ``{{ variables.<name> }}``; that is valid Jinja2, so a
sandboxed Jinja2 environment renders them without a home-grown parser. The sandbox forbids
attribute tricks in a template read from the cluster; `StrictUndefined` turns a misspelt variable
into a clear configuration error instead of an empty label matcher that silently matches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from activities.analysis.errors import InvalidSpec

_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # PromQL, not HTML: quotes must stay quotes
    keep_trailing_newline=True,
)


@dataclass(frozen=True, kw_only=True)
class TemplateModel:
    """The values a query template can use (Flagger's ``MetricTemplateModel``)."""

    name: str
    namespace: str
    target: str
    service: str
    interval: str
    ingress: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, object]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "target": self.target,
            "service": self.service,
            "ingress": self.ingress or self.target,
            "interval": self.interval,
            "variables": dict(self.variables),
        }


def render(template: str, model: TemplateModel) -> str:
    """The query with every variable filled in; a bad template raises `InvalidSpec`."""
    try:
        return _ENV.from_string(template).render(model.context())
    except jinja2.UndefinedError as exc:
        raise InvalidSpec(f"query template uses an undefined variable: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise InvalidSpec(f"query template does not render: {exc}") from None
