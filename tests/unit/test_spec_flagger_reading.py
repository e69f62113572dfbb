"""Flagger's documents read as Flagger reads them (issue 12, items 11-14).

Each rule cites the Flagger function whose behaviour it copies (fluxcd/flagger, ``pkg/``), so a
reader can check the two side by side.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from workflows.spec import Canary, SpecError, parse_canary

MINIMAL = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    stepWeight: 5
"""

# What `helm template` renders from a chart whose values leave the lists empty: bare keys.
HELM_RENDERED = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
  labels:
  annotations:
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: podinfo
    primaryScalerQueries:
  service:
    port: 9898
    gateways:
    hosts:
    match:
    backends:
    gatewayRefs:
    retries:
    headers:
  analysis:
    interval: 1m
    stepWeight: 10
    stepWeights:
    match:
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        templateVariables:
    webhooks:
      - name: load-test
        url: http://flagger-loadtester.test/
        metadata:
    alerts:
"""


def _with(**analysis: object) -> Canary:
    document = yaml.safe_load(MINIMAL)
    document["spec"]["analysis"] = analysis
    return parse_canary(document)


def _problems(document: str | dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_canary(document)
    return {p.path: p.message for p in caught.value.problems}


# --- 11. null lists --------------------------------------------------------------------------


def test_null_lists_read_as_empty_as_gos_unmarshal_does() -> None:
    # Go's encoding/json leaves a nil slice (or map) for `null`, so Flagger sees no webhooks.
    canary = parse_canary(HELM_RENDERED)
    service, analysis = canary.spec.service, canary.spec.analysis
    assert (service.gateways, service.hosts, service.match) == ([], [], None)
    assert (analysis.webhooks[0].metadata, analysis.alerts, analysis.step_weights) == ({}, [], None)
    assert analysis.metrics[0].template_variables == {}


def _list_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    """Every ``Model.field`` of the Canary tree typed as a list."""
    if model in seen:
        return set()
    seen.add(model)
    found: set[str] = set()
    for name, info in model.model_fields.items():
        stack: list[Any] = [info.annotation]
        while stack:
            annotation = stack.pop()
            origin = get_origin(annotation)
            if origin is list:
                found.add(f"{model.__name__}.{name}")
            if origin in (Union, types.UnionType, list, dict) or hasattr(
                annotation, "__metadata__"
            ):
                stack.extend(get_args(annotation))
            elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found |= _list_fields(annotation, seen)
    return found


# Each list field of the models, and where HELM_RENDERED (or the case below) leaves it bare.
NULL_LIST_CASES = {
    "ServiceSpec.gateways": "spec.service.gateways",
    "ServiceSpec.hosts": "spec.service.hosts",
    "ServiceSpec.match": "spec.service.match",
    "ServiceSpec.backends": "spec.service.backends",
    "ServiceSpec.gateway_refs": "spec.service.gatewayRefs",
    "ServiceSpec.mirror": "spec.service.mirror",
    "AnalysisSpec.step_weights": "spec.analysis.stepWeights",
    "AnalysisSpec.match": "spec.analysis.match",
    "AnalysisSpec.metrics": "spec.analysis.metrics",
    "AnalysisSpec.webhooks": "spec.analysis.webhooks",
    "AnalysisSpec.alerts": "spec.analysis.alerts",
}


def test_every_list_field_of_the_models_is_covered() -> None:
    assert _list_fields(Canary, set()) <= set(NULL_LIST_CASES)


@pytest.mark.parametrize("path", sorted(NULL_LIST_CASES.values()))
def test_each_null_list_is_read_as_absent(path: str) -> None:
    document = yaml.safe_load(MINIMAL)
    *parents, leaf = path.split(".")
    node = document
    for key in parents:
        node = node[key]
    node[leaf] = None
    assert parse_canary(document) == parse_canary(MINIMAL)


def test_null_canary_analysis_beside_analysis_is_not_a_second_block() -> None:
    document = yaml.safe_load(MINIMAL)
    document["spec"]["canaryAnalysis"] = None
    assert parse_canary(document) == parse_canary(MINIMAL)


def test_the_schema_accepts_null_where_the_models_do() -> None:
    from workflows.spec import json_schema

    analysis = json_schema()["$defs"]["AnalysisSpec"]["properties"]
    assert {"type": "null"} in analysis["webhooks"]["anyOf"]
    assert analysis["webhooks"]["description"]
    # Required fields stay required and non-null.
    assert "anyOf" not in json_schema()["$defs"]["ServiceSpec"]["properties"]["port"]


# --- 12. weights, threshold, metrics and interval as Flagger's scheduler reads them ---------


def test_step_weights_beyond_max_weight_ignore_it_as_controller_max_weight_does() -> None:
    # pkg/controller/scheduler.go, Controller.maxWeight: with stepWeights, the last step is the
    # maximum and maxWeight is not read (Flagger's own scheduler tests set both this way).
    analysis = _with(stepWeights=[10, 20, 60, 80], maxWeight=50).spec.analysis
    assert analysis.step_weights == [10, 20, 60, 80]
    assert analysis.effective_max_weight == 80


def test_step_weight_with_step_weights_steps_by_step_weight_up_to_the_last_step() -> None:
    # Controller.nextStepWeight returns stepWeight whenever it is set, while Controller.maxWeight
    # still takes the last of stepWeights: steps of stepWeight up to that weight.
    analysis = _with(stepWeight=10, stepWeights=[5, 30], maxWeight=80).spec.analysis
    assert (analysis.step_weight, analysis.step_weights) == (10, None)
    assert analysis.effective_max_weight == 30
    from workflows.decisions import next_weight

    weights = [0]
    while weights[-1] < analysis.effective_max_weight:
        weights.append(next_weight(analysis, weights[-1]))
    assert weights == [0, 10, 20, 30]
    too_big = MINIMAL.replace("stepWeight: 5", "stepWeight: 40\n    stepWeights: [5, 30]")
    assert "last of stepWeights (30)" in _problems(too_big)["spec.analysis.stepWeight"]


def test_threshold_zero_is_one_as_get_analysis_threshold_reads_it() -> None:
    # pkg/apis/flagger/v1beta1/canary.go, Canary.GetAnalysisThreshold: 0 (unset) means 1.
    assert _with(stepWeight=10, threshold=0).spec.analysis.threshold == 1
    assert "spec.analysis.threshold" in _problems(
        MINIMAL.replace("stepWeight: 5", "stepWeight: 5\n    threshold: -1")
    )


def test_max_weight_zero_is_the_total_weight_as_controller_max_weight_reads_it() -> None:
    # Controller.maxWeight: a maxWeight of 0 (unset) means the total weight, 100.
    analysis = _with(stepWeight=10, maxWeight=0).spec.analysis
    assert (analysis.max_weight, analysis.effective_max_weight) == (100, 100)


def test_zero_step_weights_mean_unset_as_the_scheduler_reads_them() -> None:
    # Controller.nextStepWeight: stepWeight 0 defers to stepWeights; runPromotionTrafficShift:
    # stepWeightPromotion 0 routes everything to the primary at once.
    analysis = _with(stepWeight=0, stepWeights=[10, 50], stepWeightPromotion=0).spec.analysis
    assert (analysis.step_weight, analysis.step_weights) == (None, [10, 50])
    assert analysis.step_weight_promotion is None
    # With nothing else, a zero step would never move traffic (Flagger's canary just sits).
    zero = _problems(MINIMAL.replace("stepWeight: 5", "stepWeight: 0"))
    assert "never moves" in zero["spec.analysis.stepWeight"]


@pytest.mark.parametrize(
    ("metric", "bounds"),
    [
        # runBuiltinMetricChecks: `metric.Threshold > val` halts, so 0 is a minimum for the
        # success rate (it always passes) ...
        ({"name": "request-success-rate"}, (0, None)),
        # ... and `val > Threshold` for the duration, so 0 ms is a maximum (any latency fails),
        ({"name": "request-duration"}, (None, 0)),
        # runMetricChecks: the same `val > metric.Threshold` for a templateRef metric.
        ({"name": "errors", "templateRef": {"name": "errors"}}, (None, 0)),
        ({"name": "istio_requests_total"}, (0, None)),
    ],
)
def test_a_metric_without_threshold_checks_against_zero_as_run_metric_checks_does(
    metric: dict[str, Any], bounds: tuple[float | None, float | None]
) -> None:
    (parsed,) = _with(stepWeight=10, metrics=[metric]).spec.analysis.metrics
    assert parsed.threshold_range is not None
    assert (parsed.threshold_range.min, parsed.threshold_range.max) == bounds


def test_an_interval_under_10s_is_raised_to_10s_as_get_analysis_interval_does() -> None:
    # Canary.GetAnalysisInterval: anything under 10s runs every 10s. parse_canary applies the
    # floor it is given (the command line gives Flagger's); the models keep what they are given,
    # so a running rollout's input reads the same after an upgrade.
    from workflows.spec import FLAGGER_MIN_INTERVAL_SECONDS

    assert FLAGGER_MIN_INTERVAL_SECONDS == 10
    fast = MINIMAL.replace("stepWeight: 5", "stepWeight: 5\n    interval: 3s")
    assert parse_canary(fast, min_interval_seconds=10).spec.analysis.interval == "10s"
    zero = fast.replace("3s", "0s")
    assert parse_canary(zero, min_interval_seconds=10).spec.analysis.interval == "10s"
    slow = fast.replace("3s", "1m")
    assert parse_canary(slow, min_interval_seconds=10).spec.analysis.interval == "1m"
    assert parse_canary(fast).spec.analysis.interval == "3s"
    old = fast.replace("v1beta1", "v1alpha3").replace("analysis:", "canaryAnalysis:")
    assert parse_canary(old, min_interval_seconds=10).spec.analysis.interval == "10s"
    # A malformed interval is still refused, not quietly replaced.
    with pytest.raises(SpecError):
        parse_canary(fast.replace("3s", "3"), min_interval_seconds=10)


def test_what_flaggers_rules_read_differently_is_noted_for_the_author() -> None:
    from workflows.spec import read_canary

    text = MINIMAL.replace(
        "stepWeight: 5",
        "interval: 5s\n    maxWeight: 50\n    stepWeight: 10\n    stepWeights: [20, 40]\n"
        "    metrics:\n    - name: request-duration\n    - name: request-success-rate",
    )
    read = read_canary(text, min_interval_seconds=10)
    notes = {note.path: note.message for note in read.notes}
    assert set(notes) == {
        "spec.analysis.interval",
        "spec.analysis.maxWeight",
        "spec.analysis.stepWeight",
        "spec.analysis.metrics[0].thresholdRange",
        "spec.analysis.metrics[1].thresholdRange",
    }
    assert "runs every 10s" in notes["spec.analysis.interval"]
    assert "any positive value fails" in notes["spec.analysis.metrics[0].thresholdRange"]
    assert "always passes" in notes["spec.analysis.metrics[1].thresholdRange"]
    assert read_canary(MINIMAL).notes == ()


# --- 13, 14. other providers' fields: refused as not supported, never "remove it" -----------

# Flagger's NGINX tutorial Canary (docs/gitbook/tutorials/nginx-progressive-delivery.md), minus
# its provider line: the case where "remove the unknown field" silently meant "use Istio".
NGINX_TUTORIAL = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  ingressRef:
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    name: podinfo
  service:
    port: 80
    targetPort: 9898
  analysis:
    interval: 10s
    threshold: 10
    maxWeight: 50
    stepWeight: 5
"""


@pytest.mark.parametrize(
    ("field", "value", "provider"),
    [
        # pkg/router/ingress.go (NGINX) and pkg/router/skipper.go read spec.ingressRef,
        (
            "ingressRef",
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "a"},
            "NGINX",
        ),
        # pkg/router/apisix.go spec.routeRef, pkg/router/gloo.go spec.upstreamRef.
        (
            "routeRef",
            {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "a"},
            "APISIX",
        ),
        ("upstreamRef", {"apiVersion": "gloo.solo.io/v1", "kind": "Upstream", "name": "a"}, "Gloo"),
    ],
)
def test_other_providers_refs_name_their_provider(
    field: str, value: dict[str, str], provider: str
) -> None:
    document = yaml.safe_load(MINIMAL)
    document["spec"][field] = value
    message = _problems(document)[f"spec.{field}"]
    assert provider in message
    assert "not supported yet" in message
    assert "unknown field" not in message
    assert "remove it" not in message


def test_the_nginx_tutorial_canary_is_refused_as_nginx_not_as_a_typo() -> None:
    message = _problems(NGINX_TUTORIAL)["spec.ingressRef"]
    assert "NGINX" in message
    assert "Skipper" in message
    assert "Istio" in message  # what Coalmine does support, so the refusal explains itself


@pytest.mark.parametrize(
    ("field", "value", "provider"),
    [
        # pkg/router/gateway_api.go: service.mirror (gatewayRefs and backendTimeout are read
        # by Coalmine's gatewayapi:v1 provider: tests/unit/test_providers.py).
        ("mirror", [{"backendRef": {"name": "podinfo-mirror"}}], "Gateway API"),
        # pkg/router/appmesh.go: meshName, backends.
        ("meshName", "global", "App Mesh"),
        ("backends", ["backend.test"], "App Mesh"),
    ],
)
def test_service_fields_of_other_providers_are_refused_naming_the_field(
    field: str, value: object, provider: str
) -> None:
    document = yaml.safe_load(MINIMAL)
    document["spec"]["service"][field] = value
    message = _problems(document)[f"spec.service.{field}"]
    assert provider in message
    assert "not supported yet by Coalmine" in message


def test_their_zero_values_are_still_read_as_unset() -> None:
    # Flagger (and Helm charts generated from its CRD) write these for "not used".
    document = yaml.safe_load(MINIMAL)
    document["spec"]["service"].update(gatewayRefs=[], backends=[], meshName="", mirror=[])
    assert parse_canary(document).spec.service.port == 9898


# Property names of Flagger's Canary CRD (artifacts/flagger/crd.yaml, v1beta1).
FLAGGER_CRD_FIELDS = {
    "CanarySpec": "analysis autoscalerRef ingressRef metricsServer progressDeadlineSeconds "
    "provider revertOnDeletion routeRef service skipAnalysis suspend targetRef upstreamRef",
    "ServiceSpec": "apex appProtocol backendTimeout backends canary corsPolicy delegation "
    "gatewayRefs gateways headers headless hosts match meshName mirror name port portDiscovery "
    "portName primary retries rewrite targetPort timeout trafficDistribution trafficPolicy "
    "unmanagedMetadata",
    "AnalysisSpec": "alerts canaryReadyThreshold interval iterations match maxWeight metrics "
    "mirror mirrorWeight primaryReadyThreshold sessionAffinity stepWeight stepWeightPromotion "
    "stepWeights threshold webhooks",
    "MetricSpec": "interval name query templateRef templateVariables threshold thresholdRange",
    "WebhookSpec": "disableTLS metadata muteAlert name retries timeout type url",
    "AlertSpec": "name providerRef severity",
    "AutoscalerRef": "apiVersion kind name primaryScalerQueries primaryScalerReplicas",
}


@pytest.mark.parametrize("model", sorted(FLAGGER_CRD_FIELDS))
def test_no_field_of_flaggers_crd_is_an_unknown_field(model: str) -> None:
    # An unknown-field error tells the author to delete the line; for a field Flagger reads that
    # is wrong advice. Each must be known: read, or refused as not supported yet.
    from workflows import spec

    known = {info.alias or name for name, info in getattr(spec, model).model_fields.items()}
    assert set(FLAGGER_CRD_FIELDS[model].split()) <= known


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("headless", True),
        ("trafficDistribution", "PreferClose"),
        ("unmanagedMetadata", {"labels": ["a"]}),
    ],
)
def test_service_options_not_acted_on_yet_are_refused(field: str, value: object) -> None:
    document = yaml.safe_load(MINIMAL)
    document["spec"]["service"][field] = value
    assert "not supported yet by Coalmine" in _problems(document)[f"spec.service.{field}"]
