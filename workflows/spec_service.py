"""The Canary's references and service: what is rolled out and how it is exposed.

Part of the Canary spec (``workflows.spec`` re-exports every name). Field names and defaults are
Flagger's ``v1beta1`` ``CanarySpec``/``CanaryService``; strategies and targets Coalmine does not
handle yet are parsed and refused with "not supported yet" rather than ignored, so nobody
believes a DaemonSet is under canary when it is not.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from workflows._base import Duration, SpecModel
from workflows.spec_errors import field_error

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A Kubernetes object name (RFC 1123 subdomain)."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A Kubernetes namespace (RFC 1123 label)."""

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]


def check_http_url(value: str) -> str:
    """Webhook and metrics-server addresses: http or https with a host, nothing else.

    Other schemes (file:, gopher:, unix sockets) would let a Canary make the worker read or
    reach what it should not; an address without a host is always a typo.
    """
    parts = urlsplit(value) if not re.search(r"\s", value) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{value[:80]!r} is not an http or https address: write it as "
            "'http://<host>[:<port>]/<path>' or 'https://…'"
        )
    return value


HttpUrl = Annotated[
    str,
    Field(min_length=1, max_length=2048),
    AfterValidator(check_http_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://"}),
]
"""An http:// or https:// address."""


def _port_or_name(value: Any) -> int | str:
    # One clear error instead of pydantic's two (one per member of int | str).
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    if isinstance(value, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?", value):
        return value
    raise ValueError(
        f"targetPort must be a port number (1-65535) or a container port name such as 'http', "
        f"got {value!r}"
    )


PortOrName = Annotated[
    int | str,
    PlainValidator(_port_or_name),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535}, {"type": "string"}]}
    ),
]


# --- other providers' fields ------------------------------------------------------------------

OTHER_PROVIDERS_FIELDS: dict[str, str] = {
    # Fields of Flagger's CanarySpec and CanaryService that only one provider's router reads
    # (fluxcd/flagger pkg/router/<provider>.go). Coalmine parses them so a document using one is
    # refused for what it is: a Canary for another router, not a typo to delete.
    "ingressRef": "the NGINX and Skipper ingress providers (provider: nginx, skipper)",
    "routeRef": "the APISIX provider (provider: apisix)",
    "upstreamRef": "the Gloo provider (provider: gloo)",
    "gatewayRefs": "the Gateway API provider (provider: gatewayapi)",
    "backendTimeout": "the Gateway API provider (provider: gatewayapi)",
    "mirror": "the Gateway API provider (provider: gatewayapi)",
    "meshName": "the App Mesh provider (provider: appmesh)",
    "backends": "the App Mesh provider (provider: appmesh)",
}
"""Field name as written → the Flagger provider it belongs to."""


def refuse_other_provider(field: str, value: Any) -> Any:
    """``value`` when empty (Flagger's zero value); otherwise the "not supported yet" error."""
    if value is None or value in ("", [], {}):
        return value
    raise ValueError(
        f"{field} belongs to {OTHER_PROVIDERS_FIELDS[field]}, not supported yet by Coalmine, "
        "which routes with Istio, Gateway API and Kubernetes Services only: keep this Canary on "
        "Flagger for now (removing the field would not make it a canary of another provider)"
    )


# --- references ------------------------------------------------------------------------------


TARGET_KINDS = ("Deployment", "DaemonSet")


class TargetRef(SpecModel):
    """The workload under canary: a Deployment or a DaemonSet in the Canary's namespace."""

    api_version: str = Field("apps/v1", description="API version of the target: apps/v1.")
    kind: str = Field(
        "Deployment",
        description="Kind of the target: Deployment, or DaemonSet (no scaling: the canary is "
        "idled with Flagger's node selector flagger.app/scale-to-zero).",
    )
    name: ObjectName = Field(description="Name of the target Deployment or DaemonSet.")

    @field_validator("api_version")
    @classmethod
    def _apps_v1(cls, value: str) -> str:
        if value != "apps/v1":
            raise ValueError(
                f"apiVersion {value!r} is not supported: Deployments and DaemonSets are apps/v1"
            )
        return value

    @field_validator("kind")
    @classmethod
    def _deployment(cls, value: str) -> str:
        if value == "Service":
            raise ValueError("a Service target is not supported yet: use a Deployment")
        if value not in TARGET_KINDS:
            raise ValueError(
                f"kind {value!r} cannot be a canary target: use Deployment or DaemonSet"
            )
        return value


class ScalerReplicas(SpecModel):
    """Replica bounds for the primary's autoscaler, overriding the target HPA's."""

    min_replicas: int | None = Field(None, ge=1, description="Minimum replicas of the primary.")
    max_replicas: int | None = Field(None, ge=1, description="Maximum replicas of the primary.")

    @model_validator(mode="after")
    def _ordered(self) -> ScalerReplicas:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise field_error(
                "minReplicas", f"minReplicas ({low}) is greater than maxReplicas ({high})"
            )
        return self


_OLD_HPA_VERSIONS = ("autoscaling/v2beta1", "autoscaling/v2beta2")


class AutoscalerRef(SpecModel):
    """The HorizontalPodAutoscaler of the target; a ``-primary`` copy is made for the primary."""

    api_version: str = Field(
        "autoscaling/v2",
        description="autoscaling/v2; v2beta1 and v2beta2 (gone since Kubernetes 1.26) are read "
        "and served as v2.",
    )
    kind: str = Field(
        "HorizontalPodAutoscaler", description="Kind of the autoscaler: HorizontalPodAutoscaler."
    )
    name: ObjectName = Field(description="Name of the target's HPA.")
    primary_scaler_queries: dict[str, str] | None = Field(
        None, description="KEDA ScaledObject queries; accepted for compatibility, unused by HPAs."
    )
    primary_scaler_replicas: ScalerReplicas | None = Field(
        None, description="Replica bounds of the primary's HPA; the target HPA's when omitted."
    )

    @field_validator("api_version")
    @classmethod
    def _served_as_v2(cls, value: str) -> str:
        # The old beta versions name the same object; the cluster only serves v2 today.
        if value in _OLD_HPA_VERSIONS:
            return "autoscaling/v2"
        if value != "autoscaling/v2":
            raise ValueError(f"apiVersion {value!r} is not an HPA version: use autoscaling/v2")
        return value

    @field_validator("kind")
    @classmethod
    def _hpa(cls, value: str) -> str:
        if value == "ScaledObject":
            raise ValueError("a KEDA ScaledObject is not supported yet: use an HPA")
        if value != "HorizontalPodAutoscaler":
            raise ValueError(f"kind {value!r} is not an autoscaler: use HorizontalPodAutoscaler")
        return value


class LocalObjectRef(SpecModel):
    """A reference to an object by name, in the Canary's namespace unless one is given."""

    name: ObjectName = Field(description="Object name.")
    namespace: str | None = Field(
        None, max_length=63, pattern=DNS_LABEL, description="Namespace; the Canary's when omitted."
    )


class SecretKeyRef(SpecModel):
    """One key of a Kubernetes Secret: resolved inside an activity, never carried in history."""

    name: ObjectName = Field(description="Secret name.")
    namespace: str | None = Field(
        None, max_length=63, pattern=DNS_LABEL, description="Namespace; the Canary's when omitted."
    )
    key: str = Field("token", min_length=1, description="Key inside the Secret's data.")


# --- service and routing ---------------------------------------------------------------------

CustomMetadata = dict[Literal["labels", "annotations"], dict[str, str]]
"""Labels and annotations for a generated Service: ``{labels: {...}, annotations: {...}}``."""


class ServiceSpec(SpecModel):
    """How the target is exposed: the Services and the Istio VirtualService Coalmine manages."""

    name: ObjectName | None = Field(None, description="Service name; the target's when omitted.")
    port: int = Field(ge=1, le=65535, description="Port the Services expose, e.g. 9898.")
    port_name: str = Field("http", min_length=1, description="Name of the Service port.")
    target_port: PortOrName | None = Field(
        None, description="Container port, number or name; the port when omitted."
    )
    app_protocol: str | None = Field(None, description="appProtocol of the Service port.")
    port_discovery: bool = Field(False, description="Expose every container port too.")
    gateways: list[str] = Field(
        default_factory=list, description="Istio gateways to bind; the mesh gateway when empty."
    )
    hosts: list[str] = Field(
        default_factory=list, description="Hosts the VirtualService serves; the service name too."
    )
    retries: dict[str, Any] | None = Field(
        None, description="Istio HTTPRetry of the route: attempts, perTryTimeout, retryOn."
    )
    timeout: Duration | None = Field(None, description="Istio route timeout, e.g. '30s'.")
    headers: dict[str, Any] | None = Field(
        None, description="Istio header operations: request/response add, set, remove."
    )
    cors_policy: dict[str, Any] | None = Field(None, description="Istio CorsPolicy of the route.")
    traffic_policy: dict[str, Any] | None = Field(
        None, description="Istio TrafficPolicy of both DestinationRules (e.g. tls.mode)."
    )
    match: list[dict[str, Any]] | None = Field(
        None, description="Istio HTTPMatchRequest list the route applies to (e.g. uri prefix)."
    )
    rewrite: dict[str, Any] | None = Field(None, description="Istio HTTPRewrite of the route.")
    mesh_name: str | None = Field(
        None, description="App Mesh only: not supported yet (refused unless empty)."
    )
    backends: list[str] | None = Field(
        None, description="App Mesh only: not supported yet (refused unless empty)."
    )
    gateway_refs: list[dict[str, Any]] | None = Field(
        None, description="Gateway API only: the HTTPRoute's parentRefs (Gateways)."
    )
    backend_timeout: Duration | None = Field(
        None, description="Gateway API only: the HTTPRoute rule's backendRequest timeout."
    )
    mirror: list[dict[str, Any]] | None = Field(
        None, description="Gateway API request mirroring: not supported yet (refused unless empty)."
    )
    apex: CustomMetadata | None = Field(
        None, description="Labels and annotations of the apex Service."
    )
    primary: CustomMetadata | None = Field(
        None, description="Labels and annotations of the -primary Service."
    )
    canary: CustomMetadata | None = Field(
        None, description="Labels and annotations of the -canary Service."
    )
    delegation: bool = Field(
        False,
        description="Istio delegate VirtualService: no hosts and no gateways, for a root "
        "VirtualService to delegate to (service.hosts and service.gateways must be empty).",
    )
    headless: bool = Field(False, description="Headless Services: not supported yet.")
    traffic_distribution: str | None = Field(
        None, description="The Services' trafficDistribution: not supported yet."
    )
    unmanaged_metadata: dict[str, Any] | None = Field(
        None, description="Labels and annotations left alone: not supported yet."
    )

    @field_validator("mesh_name", "backends", "mirror")
    @classmethod
    def _other_providers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_other_provider(to_camel(info.field_name or ""), value)

    @model_validator(mode="after")
    def _delegate_has_no_hosts(self) -> ServiceSpec:
        # Flagger's reconcileVirtualService refuses the same: a delegate VirtualService is
        # reached through its root, so it may not name hosts or gateways of its own.
        if self.delegation and (self.hosts or self.gateways):
            raise field_error(
                "delegation",
                "a delegate VirtualService (delegation: true) cannot have hosts or gateways: "
                "remove service.hosts and service.gateways, and name them in the root "
                "VirtualService that delegates to this one",
            )
        return self

    @field_validator("headless")
    @classmethod
    def _no_headless(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "headless Services are not supported yet by Coalmine: set headless: false to "
                "get ClusterIP Services, as Flagger's default"
            )
        return value

    @field_validator("traffic_distribution", "unmanaged_metadata")
    @classmethod
    def _not_yet(cls, value: Any, info: ValidationInfo) -> Any:
        if value:
            raise ValueError(
                f"{to_camel(info.field_name or '')} is not supported yet by Coalmine: remove it, "
                "and the generated Services get what Flagger gives them without it"
            )
        return value

    @property
    def tcp(self) -> bool:
        """Routed as TCP, not HTTP (Flagger's isTcp: ``appProtocol`` tcp in any case)."""
        return (self.app_protocol or "").lower() == "tcp"


def refuse_http_only_with_tcp(service: ServiceSpec, given: dict[str, Any]) -> None:
    """A TCP service cannot take what needs HTTP routing: ``given`` maps each analysis field
    (as written) to its value.

    Flagger sets the weights of its one TCP route whatever the strategy, so an A/B test (which
    routes the matched users at 0/100) would send every connection to the canary, and a
    mirror or a session cookie would silently do nothing; refused here, before anything runs.
    """
    if not service.tcp:
        return
    for field, value in given.items():
        if value:
            raise field_error(
                f"analysis.{field}",
                f"analysis.{field} needs HTTP routes, and service.appProtocol "
                f"{service.app_protocol!r} makes TCP ones (they have no headers to match, mirror "
                f"or set a cookie on): remove analysis.{field}, or give the service an HTTP "
                "appProtocol (http, http2, grpc) or none",
            )
