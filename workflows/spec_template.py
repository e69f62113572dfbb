"""Flagger's ``MetricTemplate``: the provider and query behind a custom metric's ``templateRef``.

Part of the Canary spec (``workflows.spec`` re-exports every name). The template lives in the
cluster, so an activity reads it and hands the object to ``parse_metric_template``; the same
rules as for the Canary apply — typed as the CRD types it, the provider address http or https
only, and every problem named by its path in a ``SpecError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from workflows._base import SpecModel
from workflows.spec_errors import SpecError, problems_from
from workflows.spec_service import HttpUrl, LocalObjectRef

ProviderType = Literal[
    "prometheus",
    "influxdb",
    "datadog",
    "externalmetrics",
    "stackdriver",
    "cloudwatch",
    "newrelic",
    "graphite",
    "dynatrace",
    "keptn",
    "splunk",
]
"""Flagger's provider types; whether Coalmine can query one is the metric activity's business."""


class MetricTemplateProvider(SpecModel):
    """Where and how the query runs."""

    type: ProviderType = Field(description="Provider kind, e.g. prometheus.")
    address: HttpUrl | None = Field(
        None, description="http or https address of the provider's API."
    )
    headers: dict[str, list[str]] | None = Field(
        None, description="Extra HTTP headers sent with every query."
    )
    secret_ref: LocalObjectRef | None = Field(
        None, description="A Secret with the provider's credentials (e.g. username, password)."
    )
    region: str | None = Field(None, description="Region, for cloud providers.")
    insecure_skip_verify: bool = Field(False, description="Skip TLS certificate verification.")


class MetricTemplateSpec(SpecModel):
    """``spec`` of a MetricTemplate."""

    provider: MetricTemplateProvider = Field(description="Where and how the query runs.")
    query: str = Field(
        min_length=1,
        description="The query, a Go template: {{ namespace }}, {{ target }}, {{ interval }}, "
        "{{ variables.<name> }}…",
    )


class MetricTemplate(SpecModel):
    """A Flagger MetricTemplate as read from the cluster (its metadata and status ignored)."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["flagger.app/v1beta1", "flagger.app/v1alpha1"] = Field(
        "flagger.app/v1beta1", description="flagger.app/v1beta1."
    )
    kind: Literal["MetricTemplate"] = Field("MetricTemplate", description="MetricTemplate.")
    spec: MetricTemplateSpec = Field(description="Provider and query.")


def parse_metric_template(document: Mapping[str, Any]) -> MetricTemplate:
    """The MetricTemplate in ``document`` (a mapping as the API server returns it); raises
    ``SpecError`` naming every problem."""
    if not isinstance(document, Mapping):
        raise SpecError.single("a MetricTemplate is a mapping")
    try:
        return MetricTemplate.model_validate(dict(document))
    except ValidationError as exc:
        raise SpecError(problems_from(exc, root=MetricTemplate, document=document)) from None
