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
