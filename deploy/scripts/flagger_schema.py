"""The field shapes of Flagger's kinds (Canary, MetricTemplate, AlertProvider), as
fluxcd/flagger's CRDs and Go types (``pkg/apis/flagger/v1beta1``) declare them; written out as
CustomResourceDefinitions by deploy/scripts/generate_crds.py, whose docstring lists where these
differ from Flagger's and why.
"""

from __future__ import annotations

from crd_schema import (
    Schema,
    array,
    boolean,
    conditions,
    cors_policy,
    gateway_refs,
    header_operations,
    http_match,
    integer,
    mapping,
    mirror_filters,
    named_ref,
    number,
    obj,
    object_ref,
    string,
    string_map,
    string_match,
    strings,
    traffic_policy,
)

# --- Canary ------------------------------------------------------------------------------------


def ab_match() -> Schema:
    """``analysis.match``: the A/B testing conditions, as Flagger declares them."""
    return obj(
        {
            "headers": mapping(string_match(suffix=True, optional=False)),
            "queryParams": mapping(string_match(), "Query parameters for matching."),
            "sourceLabels": string_map("Only with the 'mesh' gateway in service.gateways."),
        }
    )


def service_metadata(which: str) -> Schema:
    return obj({"labels": string_map(), "annotations": string_map()}, f"Metadata of the {which}.")


def service() -> Schema:
    return obj(
        {
            "name": string("Name of the Kubernetes Services (default: the target's)."),
            "port": number("Container port number."),
            "portName": string("Container port name."),
            "appProtocol": string("Application protocol of the port."),
            "trafficDistribution": string(
                "Traffic distribution of the Services.",
                enum=["PreferClose", "PreferSameZone", "PreferSameNode"],
            ),
            "targetPort": {
                "description": "Container target port, a number or a name.",
                "x-kubernetes-int-or-string": True,
            },
            "portDiscovery": boolean("Enable port discovery."),
            "headless": boolean("Generate headless Kubernetes Services."),
            "timeout": string("HTTP or gRPC request timeout."),
            "backendTimeout": string("Backend request timeout (Gateway API only)."),
            "meshName": string("App Mesh mesh name."),
            "backends": strings("App Mesh backends."),
            "hosts": strings("Host names of the Service."),
            "delegation": boolean("Behave as a delegate VirtualService."),
            "match": array(http_match(), "URI match conditions."),
            "retries": obj(
                {
                    "attempts": integer("Number of retries.", format="int32"),
                    "perTryTimeout": string("Timeout per retry attempt."),
                    "retryOn": string("Conditions under which a retry takes place."),
                },
                "Retry policy for HTTP requests.",
            ),
            "rewrite": obj(
                {"uri": string(), "authority": string(), "type": string()},
                "Rewrite HTTP URIs.",
            ),
            "mirror": mirror_filters(),
            "headers": header_operations(),
            "gateways": strings("Istio gateways of the VirtualService."),
            "gatewayRefs": gateway_refs(),
            "corsPolicy": cors_policy(),
            "trafficPolicy": traffic_policy(),
            "apex": service_metadata("apex Service"),
            "primary": service_metadata("primary Service"),
            "canary": service_metadata("canary Service"),
            "unmanagedMetadata": obj(
                {"annotations": strings(), "labels": strings()},
                "Metadata keys Flagger leaves alone.",
            ),
        },
        "The Kubernetes Services and the routing to them.",
        required=["port"],
    )


_DURATION = "^[0-9]+(m|s)"


def metric() -> Schema:
    return obj(
        {
            "name": string("Name of the metric."),
            "interval": string("Interval of the query.", pattern=_DURATION),
            "threshold": number("Max value accepted for this metric."),
            "thresholdRange": obj(
                {"min": number("Min value accepted."), "max": number("Max value accepted.")},
                "Range accepted for this metric.",
            ),
            "query": string("Prometheus query."),
            "templateRef": named_ref("MetricTemplate reference.", "MetricTemplate"),
            "templateVariables": string_map("Variables of the template's query."),
            "compare": compare(),
        },
        required=["name"],
    )


def compare() -> Schema:
    """Coalmine's canary-versus-primary judge (not Flagger's: see generate_crds.py)."""
    return obj(
        {
            "against": string("The workload compared with.", enum=["primary"]),
            "direction": string(
                "Which change counts as worse.", enum=["increase", "decrease", "either"]
            ),
            "allowedEffect": number("Tolerated shift, a fraction of the primary's median."),
            "minSamples": integer("Samples each workload needs.", minimum=3),
            "removeOutliers": boolean("Drop values outside Tukey's fences first."),
            "confidence": number("Confidence level of the test and the shift's interval."),
            "step": string("Time between samples.", pattern=_DURATION),
        },
        "Also judge the canary against the primary (Mann-Whitney U test).",
    )


def webhook() -> Schema:
    types = [
        "",
        *[
            "confirm-rollout",
            "pre-rollout",
            "rollout",
            "confirm-promotion",
            "post-rollout",
            "event",
            "rollback",
            "confirm-traffic-increase",
        ],
    ]
    return obj(
        {
            "name": string("Name of the webhook."),
            "type": string("When the webhook is called.", enum=types),
            "muteAlert": boolean("Mute all alerts for the webhook."),
            "url": string("URL address of this webhook."),
            "timeout": string("Request timeout for this webhook.", pattern=_DURATION),
            "retries": number("Number of retries for this webhook."),
            "disableTLS": boolean("Disable TLS verification for this webhook."),
            "metadata": string_map("Metadata (key-value pairs) sent with the call."),
        },
        required=["name", "url"],
    )


def session_affinity() -> Schema:
    return obj(
        {
            "cookieName": string("Cookie that pins a session to the canary."),
            "primaryCookieName": string("Cookie that pins a session to the primary."),
            "domain": string("Host the cookie is sent to."),
            "httpOnly": boolean("Forbid JavaScript access to the cookie."),
            "maxAge": number("Seconds until the cookie expires.", default=86400),
            "partitioned": boolean("Store the cookie in partitioned storage."),
            "path": string("Path that must exist in the URL to send the cookie."),
            "sameSite": string("Cross-site sending.", enum=["Strict", "Lax", "None"]),
            "secure": boolean("Send the cookie only over https."),
        },
        "Session affinity during a canary run.",
        required=["cookieName"],
    )


def analysis(description: str) -> Schema:
    alert = obj(
        {
            "name": string("Name of the alert."),
            "severity": string("info, warn or error.", enum=["", "info", "warn", "error"]),
            "providerRef": named_ref("AlertProvider reference.", "AlertProvider"),
        },
        required=["providerRef", "name"],
    )
    return obj(
        {
            "interval": string("Time between two steps.", pattern=_DURATION),
            "iterations": number("Number of checks (A/B testing, blue/green)."),
            "threshold": number("Failed checks before rollback."),
            "maxWeight": number("Max traffic weight routed to the canary."),
            "stepWeight": number("Weight added at each step."),
            "stepWeights": array(number(), "Weights of the steps."),
            "stepWeightPromotion": number("Weight added at each step of the promotion."),
            "mirror": boolean("Mirror traffic to the canary."),
            "mirrorWeight": number("Weight of the mirrored traffic."),
            "primaryReadyThreshold": number("Percent of primary pods that must be ready."),
            "canaryReadyThreshold": number("Percent of canary pods that must be ready."),
            "match": array(ab_match(), "A/B testing match conditions."),
            "metrics": array(metric(), "Metric checks."),
            "alerts": array(alert, "Alerts."),
            "webhooks": array(webhook(), "Webhooks."),
            "sessionAffinity": session_affinity(),
        },
        description,
        oneOf=[
            {"required": ["interval", "threshold", "iterations"]},
            {"required": ["interval", "threshold", "stepWeight"]},
            {"required": ["interval", "threshold", "stepWeights"]},
        ],
    )


PROVIDERS = [
    "apisix",
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "knative",
    "kubernetes",
    "kuma",
    "linkerd",
    "nginx",
    "osm",
    "skipper",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "traefik",
]


def canary_spec() -> Schema:
    scaler = object_ref("HorizontalPodAutoscaler", "ScaledObject", description="Scaler.")
    scaler["properties"]["primaryScalerQueries"] = string_map("KEDA queries of the primary.")
    scaler["properties"]["primaryScalerReplicas"] = obj(
        {"minReplicas": integer(minimum=1), "maxReplicas": integer(minimum=1)}
    )
    return obj(
        {
            "provider": string("Traffic management provider.", enum=PROVIDERS),
            "metricsServer": string("Prometheus URL."),
            "progressDeadlineSeconds": number("Seconds a rollout may wait for readiness."),
            "targetRef": object_ref("DaemonSet", "Deployment", "Service", description="Target."),
            "autoscalerRef": scaler,
            "ingressRef": object_ref("Ingress", description="Ingress (NGINX)."),
            "routeRef": object_ref("ApisixRoute", description="APISIX route."),
            "upstreamRef": object_ref("Upstream", description="Gloo Upstream.", namespace=True),
            "service": service(),
            "skipAnalysis": boolean("Skip the analysis and promote."),
            "revertOnDeletion": boolean("Revert mutated resources on deletion."),
            "suspend": boolean("Suspend all canary runs."),
            "analysis": analysis("The canary analysis."),
            "canaryAnalysis": analysis("The v1alpha3 name of analysis."),
        },
        "The desired state of a Canary.",
        required=["targetRef"],
        # Either spelling, in either version: Coalmine reads both (see the module docstring).
        anyOf=[{"required": ["analysis"]}, {"required": ["canaryAnalysis"]}],
    )


PHASES = [
    "",
    *[
        "Initializing",
        "Initialized",
        "Waiting",
        "Progressing",
        "WaitingPromotion",
        "Promoting",
        "Finalising",
        "Succeeded",
        "Failed",
        "Terminating",
        "Terminated",
    ],
]


def canary_status() -> Schema:
    return obj(
        {
            "phase": string("Phase of the analysis.", enum=PHASES),
            "failedChecks": number("Failed checks of the current analysis."),
            "canaryWeight": number("Traffic weight routed to the canary."),
            "iterations": number("Iterations of the current analysis."),
            "trackedConfigs": string_map("Checksums of the ConfigMaps and Secrets tracked."),
            "lastAppliedSpec": string("Hash of the last applied spec."),
            "lastPromotedSpec": string("Hash of the last promoted spec."),
            "lastTransitionTime": string("Last phase change.", format="date-time"),
            "sessionAffinityCookie": string("Session affinity cookie of the current run."),
            "primarySessionAffinityCookie": string("Primary's session affinity cookie."),
            "previousSessionAffinityCookie": string("Session affinity cookie of the last run."),
            "conditions": conditions(),
        },
        "The observed state of a Canary.",
    )


# --- MetricTemplate, AlertProvider -------------------------------------------------------------

METRIC_PROVIDERS = [
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


def secret_ref(description: str) -> Schema:
    return obj({"name": string("Name of the Secret.")}, description, required=["name"])


def metric_template_spec() -> Schema:
    provider = obj(
        {
            "type": string("Type of the provider.", enum=METRIC_PROVIDERS),
            "address": string("API address of the provider."),
            "headers": mapping(strings(), "Headers of the HTTP(S) requests."),
            "secretRef": secret_ref("Secret holding the provider's credentials."),
            "region": string("Region of the provider."),
            "insecureSkipVerify": boolean("Skip the address's certificate check."),
        },
        "The metrics backend.",
        required=["type"],
    )
    return obj(
        {"provider": provider, "query": string("The query, a Go template.")},
        "The desired state of a MetricTemplate.",
        required=["provider", "query"],
    )


def alert_provider_spec() -> Schema:
    return obj(
        {
            # Flagger's five types, and Coalmine's `generic` JSON webhook (incident tools, bots).
            "type": string(
                "Type of the provider.",
                enum=["slack", "msteams", "discord", "rocket", "gchat", "generic"],
            ),
            "channel": string("Channel of the alerts."),
            "username": string("Bot user name."),
            "address": string("Hook URL."),
            "proxy": string("HTTP(S) proxy."),
            "secretRef": secret_ref("Secret holding the hook URL (key address)."),
        },
        "The desired state of an AlertProvider.",
        oneOf=[{"required": ["type", "address"]}, {"required": ["type", "secretRef"]}],
    )
