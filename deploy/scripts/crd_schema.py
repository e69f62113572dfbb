"""The vocabulary of deploy/scripts/generate_crds.py: structural OpenAPI v3 nodes (a ``type`` on
every one, as a CustomResourceDefinition needs), and the Istio and Gateway API shapes that
Flagger's Canary embeds (``service.match``, ``trafficPolicy``, ``corsPolicy``, ``gatewayRefs`` …),
declared as Flagger's CRD declares them.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# --- schema builders ---------------------------------------------------------------------------


def string(description: str = "", **rules: Any) -> Schema:
    return _node("string", description, rules)


def number(description: str = "", **rules: Any) -> Schema:
    return _node("number", description, rules)


def integer(description: str = "", **rules: Any) -> Schema:
    return _node("integer", description, rules)


def boolean(description: str = "") -> Schema:
    return _node("boolean", description, {})


def array(items: Schema, description: str = "", **rules: Any) -> Schema:
    return _node("array", description, {"items": items, **rules})


def obj(properties: dict[str, Schema], description: str = "", **rules: Any) -> Schema:
    return _node("object", description, {"properties": properties, **rules})


def mapping(values: Schema, description: str = "") -> Schema:
    return _node("object", description, {"additionalProperties": values})


def _node(kind: str, description: str, rules: dict[str, Any]) -> Schema:
    node: Schema = {"type": kind}
    if description:
        node["description"] = description
    node.update(rules)
    return node


def strings(description: str = "") -> Schema:
    return array(string(), description)


def string_map(description: str = "") -> Schema:
    return mapping(string(), description)


def _one_of(keys: list[str]) -> list[Schema]:
    return [{"required": [key]} for key in keys]


def string_match(*, suffix: bool = False, optional: bool = True) -> Schema:
    """Istio's StringMatch: one of exact, prefix (suffix) or regex; at most one when optional."""
    keys = ["exact", "prefix", *(["suffix"] if suffix else []), "regex"]
    choices = _one_of(keys)
    if optional:
        choices = [{"not": {"anyOf": _one_of(keys)}}, *choices]
    properties = {key: string() for key in keys}
    properties["regex"] = string("RE2 style regex-based match.")
    return obj(properties, oneOf=choices)


def object_ref(*kinds: str, description: str, namespace: bool = False) -> Schema:
    properties = {"apiVersion": string(), "kind": string(enum=list(kinds)), "name": string()}
    if namespace:
        properties["namespace"] = string()
    return obj(properties, description, required=["apiVersion", "kind", "name"])


def named_ref(description: str, what: str) -> Schema:
    return obj(
        {"name": string(f"Name of the {what}."), "namespace": string(f"Namespace of the {what}.")},
        description,
        required=["name"],
    )


def conditions() -> Schema:
    condition = obj(
        {
            "lastTransitionTime": string(format="date-time"),
            "lastUpdateTime": string(format="date-time"),
            "message": string(),
            "reason": string(),
            "status": string(),
            "type": string(),
        },
        required=["type", "status", "reason"],
    )
    return array(condition, "Status conditions.")


# Gateway API name rules (ParentReference, BackendObjectReference), as Flagger copies them.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_GROUP = string(maxLength=253, pattern="^$|" + _DNS_SUBDOMAIN)
_KIND = string(maxLength=63, minLength=1, pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_NAMESPACE = string(maxLength=63, minLength=1, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT = integer(format="int32", minimum=1, maximum=65535)
_NAME = string(maxLength=253, minLength=1)

# --- Istio and Gateway API shapes ------------------------------------------------------------


def http_match() -> Schema:
    """Istio's HTTPMatchRequest (``service.match``)."""
    return obj(
        {
            "authority": string_match(),
            "gateways": strings("Names of gateways where the rule should be applied."),
            "headers": mapping(string_match()),
            "ignoreUriCase": boolean("Whether the URI match is case-insensitive."),
            "method": string_match(),
            "name": string("The name assigned to a match."),
            "port": integer("Port on the host being addressed."),
            "queryParams": mapping(string_match(), "Query parameters for matching."),
            "scheme": string_match(),
            "sourceLabels": string_map(),
            "sourceNamespace": string("Namespace of the workloads the rule applies to."),
            "uri": string_match(),
            "withoutHeaders": mapping(string_match(), "Headers that must not match."),
        }
    )


def header_operations() -> Schema:
    ops = obj({"add": string_map(), "remove": strings(), "set": string_map()})
    return obj({"request": ops, "response": ops}, "Headers operations.")


def cors_policy() -> Schema:
    return obj(
        {
            "allowCredentials": boolean(),
            "allowHeaders": strings(),
            "allowMethods": strings("HTTP methods allowed to access the resource."),
            "allowOrigin": strings("Origins allowed to make CORS requests."),
            "allowOrigins": array(
                obj(
                    {"exact": string(), "prefix": string(), "regex": string()},
                    oneOf=_one_of(["exact", "prefix", "regex"]),
                ),
                "String patterns that match allowed origins.",
            ),
            "exposeHeaders": strings(),
            "maxAge": string(),
        },
        "Istio Cross-Origin Resource Sharing policy (CORS).",
    )


def traffic_policy() -> Schema:
    int32 = integer(format="int32")
    http_pool = obj(
        {
            "h2UpgradePolicy": string(enum=["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]),
            "http1MaxPendingRequests": int32,
            "http2MaxRequests": int32,
            "idleTimeout": string(),
            "maxRequestsPerConnection": int32,
            "maxRetries": int32,
        },
        "HTTP connection pool settings.",
    )
    hash_keys = ["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"]
    consistent_hash = obj(
        {
            "httpCookie": obj({"name": string(), "path": string(), "ttl": string()}),
            "httpHeaderName": string(),
            "httpQueryParameterName": string(),
            "minimumRingSize": integer(),
            "useSourceIp": boolean(),
        }
    )
    locality = obj(
        {
            "distribute": array(obj({"from": string(), "to": mapping(integer())})),
            "enabled": boolean(),
            "failover": array(obj({"from": string(), "to": string()})),
        }
    )
    simple = ["ROUND_ROBIN", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "LEAST_REQUEST"]
    load_balancer = obj(
        {
            "consistentHash": consistent_hash,
            "localityLbSetting": locality,
            "simple": string(enum=simple),
            "warmupDurationSecs": string(),
        },
        "Load balancing algorithm.",
        oneOf=[
            {"required": ["simple"]},
            {
                "properties": {"consistentHash": {"oneOf": _one_of(hash_keys)}},
                "required": ["consistentHash"],
            },
        ],
    )
    outlier = obj(
        {
            "baseEjectionTime": string(),
            "consecutive5xxErrors": integer(),
            "consecutiveErrors": int32,
            "consecutiveGatewayErrors": int32,
            "consecutiveLocalOriginFailures": int32,
            "interval": string(),
            "maxEjectionPercent": int32,
            "minHealthPercent": int32,
            "splitExternalLocalOriginErrors": boolean(),
        },
        "Eviction of unhealthy hosts from the load balancing pool.",
    )
    tls = obj(
        {
            "caCertificates": string(),
            "clientCertificate": string(),
            "mode": string(enum=["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]),
            "privateKey": string(),
            "sni": string(),
            "subjectAltNames": strings(),
        },
        "TLS settings for connections to the upstream service.",
    )
    return obj(
        {
            "connectionPool": obj({"http": http_pool}),
            "loadBalancer": load_balancer,
            "outlierDetection": outlier,
            "tls": tls,
        },
        "Istio traffic policy (DestinationRule).",
    )


def gateway_refs() -> Schema:
    parent = obj(
        {
            "group": {**_GROUP, "default": "gateway.networking.k8s.io"},
            "kind": {**_KIND, "default": "Gateway"},
            "name": _NAME,
            "namespace": _NAMESPACE,
            "sectionName": string(maxLength=253, minLength=1, pattern=_DNS_SUBDOMAIN),
            "port": _PORT,
        },
        required=["name"],
    )
    return array(parent, "Parent Gateways of the HTTPRoute (Gateway API).", maxItems=32)


def mirror_filters() -> Schema:
    backend = obj(
        {
            "group": {**_GROUP, "default": ""},
            "kind": {**_KIND, "default": "Service"},
            "name": _NAME,
            "namespace": _NAMESPACE,
            "port": _PORT,
        },
        required=["name"],
    )
    backend["x-kubernetes-validations"] = [
        {
            "message": "Must have port for Service reference",
            "rule": "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true",
        }
    ]
    return array(obj({"backendRef": backend}), "Requests mirrored to other backends.")
