"""The Canary spec: Flagger's ``Canary`` document as frozen pydantic models, and its parser.

A Flagger user's ``flagger.app/v1beta1`` Canary parses unchanged, and so does the older
``v1alpha3`` form whose analysis block is called ``canaryAnalysis`` (it is moved to ``analysis``
before validation). The models are shared by the workflow (deterministic: no I/O here) and the
command line, which validates a document before anything in the cluster changes.

Defaults follow Flagger: interval 1m, threshold 1, maxWeight 100, progressDeadlineSeconds 600,
webhook timeout 10s, metric interval 1m.

The public surface, all importable from here:

- ``parse_canary(text_or_mapping) -> Canary``: YAML text (one document, or several of which
  exactly one is a Canary) or an already-loaded mapping; raises ``SpecError`` listing every
  problem, one per line, each naming the field path as the document spells it. Keywords fill a
  missing namespace and apply Flagger's 10s interval floor (the command line uses both).
- ``read_canary(...) -> ReadCanary``: the same, with the notes of ``flagger_notes`` (what the
  document means that it does not say, e.g. a metric without threshold compared with 0).
- ``load_documents(text) -> list``: the documents of a text, checked for size and shape.
- ``parse_metric_template(mapping) -> MetricTemplate``: a custom metric's template as read from
  the cluster, validated the same way (provider address http or https only).
- ``json_schema()``: the JSON Schema of the document (``python -m workflows.spec`` prints it;
  ``make schema`` writes deploy/schema/canary.schema.json).
- The models: ``Canary`` → ``CanarySpec`` → ``TargetRef``, ``AutoscalerRef``, ``ServiceSpec``,
  ``AnalysisSpec`` → ``MetricSpec`` / ``ThresholdRange``, ``WebhookSpec``, ``AlertSpec``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from workflows import providers
from workflows._base import SpecModel, drop_nulls, format_duration
from workflows.spec_analysis import (
    BUILTIN_METRICS,
    REQUEST_DURATION,
    REQUEST_SUCCESS_RATE,
    V1ALPHA3_METRIC_NAMES,
    AlertSpec,
    AnalysisSpec,
    MetricSpec,
    ThresholdRange,
    WebhookSpec,
    WebhookType,
)
from workflows.spec_documents import MAX_DOCUMENT_BYTES, check_shape, load_documents
from workflows.spec_errors import SpecError, SpecProblem, field_error, problems_from, yaml_type
from workflows.spec_notes import (
    FLAGGER_MIN_INTERVAL_SECONDS,
    analysis_block,
    flagger_notes,
    interval_seconds,
)
from workflows.spec_service import (
    DNS_LABEL,
    AutoscalerRef,
    HttpUrl,
    LocalObjectRef,
    ObjectName,
    ScalerReplicas,
    SecretKeyRef,
    ServiceSpec,
    TargetRef,
    check_http_url,
    refuse_http_only_with_tcp,
    refuse_other_provider,
)
from workflows.spec_strategy import (
    MatchCondition,
    SessionAffinity,
    Strategy,
    StringMatch,
    strategy_of,
)
from workflows.spec_template import (
    MetricTemplate,
    MetricTemplateProvider,
    MetricTemplateSpec,
    parse_metric_template,
)

__all__ = [
    "BUILTIN_METRICS",
    "FLAGGER_MIN_INTERVAL_SECONDS",
    "MAX_DOCUMENT_BYTES",
    "REQUEST_DURATION",
    "REQUEST_SUCCESS_RATE",
    "V1ALPHA3_METRIC_NAMES",
    "AlertSpec",
    "AnalysisSpec",
    "AutoscalerRef",
    "Canary",
    "CanarySpec",
    "LocalObjectRef",
    "MatchCondition",
    "MetricSpec",
    "MetricTemplate",
    "MetricTemplateProvider",
    "MetricTemplateSpec",
    "ObjectMeta",
    "ReadCanary",
    "ScalerReplicas",
    "SecretKeyRef",
    "ServiceSpec",
    "SessionAffinity",
    "SpecError",
    "SpecProblem",
    "Strategy",
    "StringMatch",
    "TargetRef",
    "ThresholdRange",
    "WebhookSpec",
    "WebhookType",
    "check_http_url",
    "json_schema",
    "load_documents",
    "parse_canary",
    "parse_metric_template",
    "read_canary",
    "strategy_of",
]

# --- the document ----------------------------------------------------------------------------


def _schema_with_canary_analysis(schema: dict[str, Any]) -> None:
    # The v1alpha3 spelling is handled by a before-validator the schema cannot see: show it, and
    # require one of the two spellings rather than `analysis` alone.
    properties = schema.get("properties", {})
    if "analysis" in properties:
        properties["canaryAnalysis"] = {
            **properties["analysis"],
            "description": "The v1alpha3 name of analysis (deprecated; read as analysis).",
        }
    required = schema.get("required", [])
    if "analysis" in required:
        required.remove("analysis")
        schema["anyOf"] = [{"required": ["analysis"]}, {"required": ["canaryAnalysis"]}]


class CanarySpec(SpecModel):
    """``spec`` of a Canary."""

    model_config = ConfigDict(json_schema_extra=_schema_with_canary_analysis)

    provider: str | None = Field(
        None,
        description="Traffic router: istio, kubernetes (Blue/Green) or gatewayapi:v1; unset, "
        "the worker's cluster-wide default (--mesh-provider).",
    )
    metrics_server: HttpUrl | None = Field(
        None, description="Prometheus address for this Canary; the worker's default when omitted."
    )
    target_ref: TargetRef = Field(description="The Deployment or DaemonSet under canary.")
    autoscaler_ref: AutoscalerRef | None = Field(None, description="The target's HPA.")
    ingress_ref: dict[str, Any] | None = Field(
        None, description="NGINX and Skipper only: not supported yet (refused)."
    )
    route_ref: dict[str, Any] | None = Field(
        None, description="APISIX only: not supported yet (refused)."
    )
    upstream_ref: dict[str, Any] | None = Field(
        None, description="Gloo only: not supported yet (refused)."
    )
    progress_deadline_seconds: int = Field(
        600, ge=1, le=2**31 - 1, description="Seconds a Deployment may take to become ready."
    )
    skip_analysis: bool = Field(False, description="Promote without analysis.")
    revert_on_deletion: bool = Field(False, description="Accepted for compatibility; unused.")
    suspend: bool = Field(False, description="A suspended Canary is refused (set it to false).")
    service: ServiceSpec = Field(description="Services and routing.")
    analysis: AnalysisSpec = Field(description="The canary analysis (v1alpha3: canaryAnalysis).")

    @model_validator(mode="before")
    @classmethod
    def _v1alpha3_canary_analysis(cls, data: Any) -> Any:
        # Flagger's older documents call the analysis block canaryAnalysis.
        data = drop_nulls(data)
        if isinstance(data, dict) and "canaryAnalysis" in data:
            if "analysis" in data:
                raise field_error("canaryAnalysis", "give analysis or canaryAnalysis, not both")
            data = dict(data)
            data["analysis"] = data.pop("canaryAnalysis")
        return data

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None  # Flagger's zero value: the cluster-wide default
        name = providers.canonical(value)
        if name is None:
            raise ValueError(
                f"provider {value!r} is not supported yet: use one of {providers.known()}, or "
                "leave it unset for the cluster-wide default"
            )
        return name

    @model_validator(mode="after")
    def _fields_of_the_provider(self) -> CanarySpec:
        if self.provider is None:
            return self  # the default is the worker's to know; its router reads what it needs
        service = self.spec_fields_given()
        for field in sorted(service):
            owner = providers.owner_of(field)
            if owner is not None and owner != self.provider:
                raise field_error(
                    "service",
                    f"{field} belongs to the {owner} provider, but this Canary's provider is "
                    f"{self.provider}: set provider: {owner}, or remove {field}",
                )
        traits = providers.PROVIDERS[self.provider]
        if self.provider == providers.GATEWAY_API and not self.service.gateway_refs:
            raise field_error("service", "provider gatewayapi:v1 needs service.gatewayRefs")
        if not traits.weighted and not self.analysis.iterations:
            raise field_error(
                "provider",
                f"the {self.provider} provider does Blue/Green only: set analysis.iterations "
                "(Flagger uses 10 when it is unset)",
            )
        if self.provider != providers.ISTIO:
            analysis = self.analysis
            given = {
                "match": None if traits.ab_testing else analysis.match,
                "mirror": analysis.mirror,
                "sessionAffinity": analysis.session_affinity,
            }
            for field, value in given.items():
                if value:
                    raise field_error(
                        f"analysis.{field}",
                        f"analysis.{field} is not supported yet by Coalmine's {self.provider} "
                        "router (the istio provider supports it): remove it or use istio",
                    )
        return self

    @model_validator(mode="after")
    def _daemonset_has_no_autoscaler(self) -> CanarySpec:
        if self.target_ref.kind == "DaemonSet" and self.autoscaler_ref is not None:
            raise field_error(
                "autoscalerRef",
                "a DaemonSet runs one pod per node and has no autoscaler: remove autoscalerRef",
            )
        return self

    @model_validator(mode="after")
    def _tcp_routes(self) -> CanarySpec:
        analysis = self.analysis
        given = {
            "match": analysis.match,
            "mirror": analysis.mirror,
            "sessionAffinity": analysis.session_affinity,
        }
        refuse_http_only_with_tcp(self.service, given)
        return self

    def spec_fields_given(self) -> set[str]:
        """Provider-specific service fields (as written) this Canary sets."""
        service = self.service
        given = {"gatewayRefs": service.gateway_refs, "backendTimeout": service.backend_timeout}
        return {name for name, value in given.items() if value}

    @field_validator("ingress_ref", "route_ref", "upstream_ref", mode="before")
    @classmethod
    def _other_providers(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        # Any value, even {}: Flagger's routers take a non-nil ref as "this is mine".
        return refuse_other_provider(to_camel(info.field_name or ""), {"given": value})

    @field_validator("suspend")
    @classmethod
    def _not_suspended(cls, value: bool) -> bool:
        if value:
            raise ValueError("the Canary is suspended: set suspend: false to roll it out")
        return value


class ObjectMeta(SpecModel):
    """The part of ``metadata`` Coalmine reads; labels, annotations and the rest are ignored."""

    model_config = ConfigDict(extra="ignore")

    name: ObjectName = Field(description="Canary name.")
    namespace: str = Field(
        "default",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Namespace of the Canary and its target; when omitted, `coalmine` uses -n, "
        "else the kubeconfig context's namespace, else default (as kubectl apply does).",
    )


class Canary(SpecModel):
    """A Flagger Canary document (v1beta1, or v1alpha3 with ``canaryAnalysis``)."""

    api_version: Literal["flagger.app/v1beta1", "flagger.app/v1alpha3"] = Field(
        "flagger.app/v1beta1", description="flagger.app/v1beta1 or flagger.app/v1alpha3."
    )
    kind: Literal["Canary"] = Field("Canary", description="Canary.")
    metadata: ObjectMeta = Field(description="Name and namespace.")
    spec: CanarySpec = Field(description="The canary's spec.")
    status: dict[str, Any] | None = Field(None, description="Ignored on input.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def service_name(self) -> str:
        return self.spec.service.name or self.spec.target_ref.name


# --- parsing ---------------------------------------------------------------------------------


def _pick_canary(documents: list[Any]) -> Any:
    if not documents:
        raise SpecError.single("the document is empty: expected a Canary (kind: Canary)")
    if len(documents) == 1:
        return documents[0]
    canaries = [d for d in documents if isinstance(d, Mapping) and d.get("kind") == "Canary"]
    if len(canaries) == 1:
        return canaries[0]
    if canaries:
        raise SpecError.single(
            f"{len(canaries)} Canary documents in one file: give one Canary per rollout"
        )
    kinds = sorted({str(d.get("kind")) for d in documents if isinstance(d, Mapping)})
    raise SpecError.single(
        f"none of the {len(documents)} documents is a Canary (kinds found: "
        f"{', '.join(kinds) or 'none'}): add the Canary or pass its own file"
    )


def _check_document(document: Any) -> Mapping[Any, Any]:
    if not isinstance(document, Mapping):
        raise SpecError.single(
            f"the document is {yaml_type(document)}, not a mapping: a Canary starts with "
            "'apiVersion: flagger.app/v1beta1' and 'kind: Canary'"
        )
    kind = document.get("kind", "Canary")
    if kind != "Canary":
        raise SpecError.single(
            f"this is a {str(kind)[:60]!r} document, not a Canary: pass the Canary's file",
            path="kind",
        )
    return document


@dataclass(frozen=True)
class ReadCanary:
    """A Canary as ``read_canary`` found it: the model, and what it read differently from how
    it is written (Flagger's rules applied silently), for the author to see."""

    canary: Canary
    notes: tuple[SpecProblem, ...] = ()


def read_canary(
    source: str | bytes | Mapping[str, Any],
    *,
    namespace: str | None = None,
    min_interval_seconds: float = 0.0,
) -> ReadCanary:
    """The Canary in ``source`` (YAML or JSON text, or a loaded mapping), validated and
    normalized; raises ``SpecError`` naming every problem. Reads only what it is given.

    ``namespace`` fills ``metadata.namespace`` when the document has none (as ``kubectl apply``
    takes the context's namespace); a document naming its own keeps it. An analysis interval
    under ``min_interval_seconds`` is raised to it, as Flagger's ``Canary.GetAnalysisInterval``
    raises anything under 10s (`FLAGGER_MIN_INTERVAL_SECONDS`).
    """
    if isinstance(source, str | bytes):
        document = _pick_canary(load_documents(source))
    elif isinstance(source, Mapping):
        check_shape(source)
        document = source
    else:
        raise SpecError.single(f"expected YAML text or a mapping, got {type(source).__name__}")
    checked = _check_document(document)
    notes = flagger_notes(checked, min_interval_seconds=min_interval_seconds)
    prepared = _with_namespace(_with_interval_floor(checked, min_interval_seconds), namespace)
    try:
        canary = Canary.model_validate(prepared)
    except ValidationError as exc:
        raise SpecError(problems_from(exc, root=Canary, document=checked)) from None
    except RecursionError:
        raise SpecError.single("the document refers to itself: not a Canary") from None
    return ReadCanary(canary=canary, notes=tuple(notes))


def parse_canary(
    source: str | bytes | Mapping[str, Any] | Canary,
    *,
    namespace: str | None = None,
    min_interval_seconds: float = 0.0,
) -> Canary:
    """``read_canary``'s Canary, without the notes; a parsed Canary passes through."""
    if isinstance(source, Canary):
        return source  # already parsed (and so already valid)
    return read_canary(
        source, namespace=namespace, min_interval_seconds=min_interval_seconds
    ).canary


def _with_namespace(document: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    metadata = document.get("metadata")
    if namespace is None or not isinstance(metadata, Mapping) or metadata.get("namespace"):
        return document
    return {**document, "metadata": {**metadata, "namespace": namespace}}


def _with_interval_floor(document: Mapping[Any, Any], floor: float) -> dict[str, Any]:
    found = analysis_block(document)
    if floor <= 0 or found is None:
        return dict(document)
    key, analysis = found
    seconds = interval_seconds(analysis.get("interval"))
    if seconds is None or seconds >= floor:
        return dict(document)
    spec = document["spec"]
    raised = {**analysis, "interval": format_duration(floor)}
    return {**document, "spec": {**spec, key: raised}}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a Canary document (as written; defaults and aliases included)."""
    schema = Canary.model_json_schema(by_alias=True, mode="validation")
    for definition in [schema, *schema.get("$defs", {}).values()]:
        _null_means_unset(definition)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


_ANNOTATIONS = ("description", "default", "title", "examples")


def _null_means_unset(definition: dict[str, Any]) -> None:
    # The models read an optional field given as null as absent (see drop_nulls): say so, so a
    # linter using the schema accepts the bare `webhooks:` of a Helm template too.
    required = set(definition.get("required", []))
    for name, prop in definition.get("properties", {}).items():
        if name in required or prop.get("type") == "null":
            continue
        if any(option.get("type") == "null" for option in prop.get("anyOf", [])):
            continue
        core = {k: v for k, v in prop.items() if k not in _ANNOTATIONS}
        kept = {k: v for k, v in prop.items() if k in _ANNOTATIONS}
        prop.clear()
        prop.update(anyOf=[core, {"type": "null"}], **kept)


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
