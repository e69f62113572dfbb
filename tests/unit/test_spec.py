"""The Canary spec reads Flagger's documents unchanged, with Flagger's defaults, normalized."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml

from workflows.spec import (
    REQUEST_DURATION,
    REQUEST_SUCCESS_RATE,
    AnalysisSpec,
    Canary,
    MetricSpec,
    SpecError,
    Strategy,
    WebhookSpec,
    parse_canary,
    parse_metric_template,
)

REPO = Path(__file__).resolve().parents[2]
V1ALPHA3 = REPO / "examples" / "podinfo-canary-v1alpha3.yaml"
V1BETA1 = REPO / "examples" / "podinfo-canary.yaml"

# Flagger's Istio tutorial Canary (docs/gitbook/tutorials/istio-progressive-delivery.md), as a
# Flagger user would have it in their repository.
ISTIO_TUTORIAL = """
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
  progressDeadlineSeconds: 60
  autoscalerRef:
    apiVersion: autoscaling/v2beta2
    kind: HorizontalPodAutoscaler
    name: podinfo
  service:
    port: 9898
    targetPort: 9898
    gateways:
    - public-gateway.istio-system.svc.cluster.local
    hosts:
    - app.example.com
    trafficPolicy:
      tls:
        mode: DISABLE
    retries:
      attempts: 3
      perTryTimeout: 1s
      retryOn: "gateway-error,connect-failure,refused-stream"
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange:
        min: 99
      interval: 1m
    - name: request-duration
      thresholdRange:
        max: 500
      interval: 30s
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        metadata:
          type: bash
          cmd: "curl -sd 'test' http://podinfo-canary:9898/token | grep token"
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata:
          cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
"""

# Flagger's "how it works" Canary: the smallest complete document.
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


def _analysis(path: Path) -> AnalysisSpec:
    return parse_canary(path.read_text()).spec.analysis


def test_the_articles_v1alpha3_and_the_v1beta1_example_mean_the_same() -> None:
    old, new = parse_canary(V1ALPHA3.read_text()), parse_canary(V1BETA1.read_text())
    assert old.api_version == "flagger.app/v1alpha3"
    assert new.api_version == "flagger.app/v1beta1"
    assert old.spec == new.spec
    assert old.spec.autoscaler_ref is not None
    assert old.spec.autoscaler_ref.api_version == "autoscaling/v2"


def test_v1alpha3_metrics_become_builtin_with_threshold_ranges() -> None:
    success, duration = _analysis(V1ALPHA3).metrics
    assert (success.name, duration.name) == (REQUEST_SUCCESS_RATE, REQUEST_DURATION)
    assert success.is_builtin
    assert duration.is_builtin
    assert success.threshold_range is not None
    assert duration.threshold_range is not None
    assert (success.threshold_range.min, success.threshold_range.max) == (99, None)
    assert (duration.threshold_range.min, duration.threshold_range.max) == (None, 500)
    assert success.threshold is None
    assert duration.threshold is None
    assert success.interval_seconds == 30


def test_the_article_example_as_the_workflow_reads_it() -> None:
    canary = parse_canary(V1ALPHA3.read_text())
    analysis = canary.spec.analysis
    assert (canary.name, canary.namespace, canary.service_name) == ("podinfo", "test", "podinfo")
    assert canary.spec.progress_deadline_seconds == 60
    assert (analysis.interval_seconds, analysis.threshold) == (30, 10)
    assert (analysis.step_weight, analysis.effective_max_weight) == (5, 50)
    (hook,) = analysis.webhooks
    assert (hook.type, hook.timeout, hook.metadata["cmd"][:3]) == ("rollout", "5s", "hey")
    assert analysis.webhooks_of("rollout") == [hook]


def test_flaggers_istio_tutorial_canary_parses_unchanged() -> None:
    canary = parse_canary(ISTIO_TUTORIAL)
    service = canary.spec.service
    assert service.target_port == 9898
    assert service.retries == {
        "attempts": 3,
        "perTryTimeout": "1s",
        "retryOn": "gateway-error,connect-failure,refused-stream",
    }
    assert service.traffic_policy == {"tls": {"mode": "DISABLE"}}
    assert canary.spec.autoscaler_ref is not None
    assert canary.spec.autoscaler_ref.api_version == "autoscaling/v2"
    pre, load = canary.spec.analysis.webhooks
    assert (pre.type, pre.timeout, load.type) == ("pre-rollout", "30s", "rollout")


def test_flaggers_defaults() -> None:
    canary = parse_canary(MINIMAL)
    spec, analysis = canary.spec, canary.spec.analysis
    assert canary.namespace == "default"
    assert spec.provider is None  # the cluster-wide default (the worker's --mesh-provider)
    assert spec.progress_deadline_seconds == 600
    assert (spec.skip_analysis, spec.autoscaler_ref) == (False, None)
    assert (spec.service.port_name, spec.service.target_port, spec.service.gateways) == (
        "http",
        None,
        [],
    )
    assert (analysis.interval, analysis.interval_seconds) == ("1m", 60)
    assert (analysis.threshold, analysis.max_weight, analysis.effective_max_weight) == (1, 100, 100)
    assert analysis.step_weight_promotion is None
    assert (analysis.primary_ready_threshold, analysis.canary_ready_threshold) == (100, 100)
    metric = MetricSpec.model_validate({"name": "request-success-rate", "threshold": 99})
    assert metric.interval == "1m"
    hook = WebhookSpec.model_validate({"name": "h", "url": "http://x/"})
    assert (hook.type, hook.timeout, hook.retries) == ("rollout", "10s", 0)


def test_webhook_fields_as_flagger_spells_them() -> None:
    hook = WebhookSpec.model_validate(
        {"name": "h", "type": "", "url": "https://x/", "retries": 3, "disableTLS": True}
    )
    assert (hook.type, hook.retries, hook.disable_tls) == ("rollout", 3, True)
    assert hook.model_dump()["disableTLS"] is True


def _with_analysis(**analysis: object) -> Canary:
    document = yaml.safe_load(MINIMAL)
    document["spec"]["analysis"] = analysis
    return parse_canary(document)


def test_step_weights_set_the_steps_and_the_maximum() -> None:
    analysis = _with_analysis(stepWeights=[1, 5, 20, 50], stepWeightPromotion=25).spec.analysis
    assert analysis.step_weights == [1, 5, 20, 50]
    assert analysis.step_weight is None
    assert analysis.effective_max_weight == 50
    assert analysis.step_weight_promotion == 25


@pytest.mark.parametrize(
    ("analysis", "path"),
    [
        ({"stepWeights": [5, 5, 10]}, "spec.analysis.stepWeights[1]"),
        ({"stepWeights": []}, "spec.analysis.stepWeights"),
        ({"stepWeights": [10, 120]}, "spec.analysis.stepWeights[1]"),
        ({"stepWeights": [10], "stepWeight": 20}, "spec.analysis.stepWeight"),
        ({"stepWeight": 0}, "spec.analysis.stepWeight"),
        ({"stepWeight": 10, "stepWeightPromotion": -1}, "spec.analysis.stepWeightPromotion"),
        ({"stepWeight": 10, "stepWeightPromotion": 101}, "spec.analysis.stepWeightPromotion"),
        ({"maxWeight": 50}, "spec.analysis.stepWeight"),
    ],
)
def test_step_weight_mistakes_name_their_field(analysis: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        _with_analysis(**analysis)
    assert path in caught.value.paths


def test_deprecated_threshold_forms_normalize() -> None:
    custom = MetricSpec.model_validate(
        {"name": "errors", "query": "sum(rate(x[1m]))", "threshold": 5}
    )
    assert custom.threshold_range is not None
    assert (custom.threshold_range.min, custom.threshold_range.max) == (None, 5)
    assert not custom.is_builtin
    # A metric named like a v1alpha3 builtin but carrying its own query stays custom.
    own = MetricSpec.model_validate({"name": "istio_requests_total", "query": "up", "threshold": 1})
    assert (own.name, own.is_builtin) == ("istio_requests_total", False)
    # An explicit thresholdRange wins over the bare threshold, as in Flagger.
    both = MetricSpec.model_validate(
        {"name": "request-duration", "threshold": 1, "thresholdRange": {"max": 300}}
    )
    assert both.threshold_range is not None
    assert both.threshold_range.max == 300
    templated = MetricSpec.model_validate(
        {
            "name": "latency",
            "templateRef": {"name": "lat", "namespace": "istio-system"},
            "thresholdRange": {"max": 2},
            "templateVariables": {"q": "0.99"},
        }
    )
    assert templated.template_ref is not None
    assert templated.template_ref.name == "lat"


def test_parsed_canary_round_trips_through_json_as_temporal_carries_it() -> None:
    for text in (V1ALPHA3.read_text(), V1BETA1.read_text(), ISTIO_TUTORIAL, MINIMAL):
        canary = parse_canary(text)
        assert Canary.model_validate_json(canary.model_dump_json()) == canary
        assert parse_canary(json.loads(canary.model_dump_json())) == canary
        assert parse_canary(canary.model_dump_json()) == canary


def test_multi_document_files_yield_their_canary() -> None:
    deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: podinfo}\n"
    text = f"{deployment}---\n{V1BETA1.read_text()}---\n"
    assert parse_canary(text).name == "podinfo"
    with pytest.raises(SpecError, match="none of the 2 documents is a Canary"):
        parse_canary(f"{deployment}---\n{deployment}")
    with pytest.raises(SpecError, match="2 Canary documents"):
        parse_canary(f"{MINIMAL}---\n{MINIMAL}")


def test_errors_list_every_problem_one_per_line_with_a_fix() -> None:
    document = yaml.safe_load(MINIMAL)
    document["spec"]["analysis"] = {"stepWieght": 5, "interval": "30", "threshold": "ten"}
    del document["spec"]["targetRef"]
    with pytest.raises(SpecError) as caught:
        parse_canary(document)
    error = caught.value
    assert set(error.paths) == {
        "spec.targetRef",
        "spec.analysis.stepWieght",
        "spec.analysis.interval",
        "spec.analysis.threshold",
    }
    lines = str(error).splitlines()
    assert lines[0] == "invalid Canary: 4 problems"
    assert len(lines) == 5
    assert "did you mean 'stepWeight'?" in str(error)
    assert "kind: Deployment" in str(error)  # the targetRef fix shows what to write
    assert "'30s'" in str(error)
    assert isinstance(error, ValueError)


def test_v1alpha3_errors_name_canary_analysis() -> None:
    document = yaml.safe_load(V1ALPHA3.read_text())
    document["spec"]["canaryAnalysis"]["maxWeight"] = 150
    with pytest.raises(SpecError) as caught:
        parse_canary(document)
    assert caught.value.paths == ["spec.canaryAnalysis.maxWeight"]


def test_yaml_errors_give_line_and_column() -> None:
    with pytest.raises(SpecError) as caught:
        parse_canary("kind: Canary\nspec:\n  a: [1, 2\n  b: 3\n")
    assert "invalid YAML at line 4, column 4" in str(caught.value)
    assert "flow sequence that starts at line 3, column 6" in str(caught.value)


def test_huge_documents_are_refused_before_parsing() -> None:
    text = MINIMAL + "#" + "x" * (1 << 20) + "\n"
    with pytest.raises(SpecError, match="over the 1024 KiB limit"):
        parse_canary(text)
    with pytest.raises(SpecError, match="over the 1024 KiB limit"):
        parse_canary(text.encode())


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(SpecError, match="more than"):
        parse_canary("\n".join(lines) + "\n")


def test_spec_error_pickles_with_its_problems() -> None:
    with pytest.raises(SpecError) as caught:
        parse_canary("kind: Canary\n")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.problems == caught.value.problems
    assert str(copy) == str(caught.value)


# Flagger's 2019 documentation (docs/gitbook/how-it-works.md of v0.x): the v1alpha3 form with the
# Istio metric names, a custom PromQL check with a bare threshold, and the optional fields spelt
# out.
FLAGGER_2019 = """
apiVersion: flagger.app/v1alpha3
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  provider: istio
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  progressDeadlineSeconds: 60
  autoscalerRef:
    apiVersion: autoscaling/v2beta1
    kind: HorizontalPodAutoscaler
    name: podinfo
  service:
    name: podinfo
    port: 9898
    portName: http
    targetPort: 9898
    portDiscovery: false
  skipAnalysis: false
  canaryAnalysis:
    interval: 1m
    threshold: 10
    maxWeight: 50
    stepWeight: 5
    metrics:
    - name: istio_requests_total
      threshold: 99
      interval: 1m
    - name: istio_request_duration_seconds_bucket
      threshold: 500
      interval: 30s
    - name: "404s percentage"
      threshold: 5
      interval: 1m
      query: |
        100 - sum(
            rate(istio_requests_total{destination_workload="podinfo", response_code!="404"}[1m])
        ) / sum(rate(istio_requests_total{destination_workload="podinfo"}[1m])) * 100
    webhooks:
      - name: integration-tests
        url: http://podinfo-tester.test/
        timeout: 1m
        metadata:
          test: "all"
          token: "16688eb5e9f289f1991c"
"""

# Flagger's Istio A/B testing tutorial: a strategy Coalmine does not run yet.
FLAGGER_AB_TESTING = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: abtest
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: abtest
  service:
    port: 80
    targetPort: 9898
  analysis:
    interval: 1m
    threshold: 10
    iterations: 10
    match:
      - headers:
          x-canary:
            regex: ".*insider.*"
      - headers:
          cookie:
            regex: "^(.*?;)?(canary=always)(;.*)?$"
    metrics:
    - name: request-success-rate
      thresholdRange:
        min: 99
      interval: 1m
"""


def test_flaggers_2019_v1alpha3_canary_normalizes() -> None:
    canary = parse_canary(FLAGGER_2019)
    success, duration, custom = canary.spec.analysis.metrics
    assert (success.name, duration.name) == (REQUEST_SUCCESS_RATE, REQUEST_DURATION)
    assert custom.name == "404s percentage"
    assert not custom.is_builtin
    assert custom.query is not None
    assert custom.query.startswith("100 - sum(")
    assert custom.threshold_range is not None
    assert (custom.threshold_range.min, custom.threshold_range.max) == (None, 5)
    assert canary.spec.service.name == "podinfo"
    assert canary.spec.analysis.webhooks[0].metadata == {
        "test": "all",
        "token": "16688eb5e9f289f1991c",
    }


def test_flaggers_ab_testing_canary_is_read() -> None:
    analysis = parse_canary(FLAGGER_AB_TESTING).spec.analysis
    assert analysis.strategy == Strategy.AB_TESTING
    assert analysis.iterations == 10
    cookie = analysis.match[1].headers["cookie"] if analysis.match[1].headers else None
    assert cookie is not None
    assert cookie.regex == "^(.*?;)?(canary=always)(;.*)?$"


def test_flaggers_zero_values_mean_unset() -> None:
    # Flagger writes these for "not used"; they must not trip the not-supported checks.
    canary = _with_analysis(stepWeight=10, iterations=0, mirror=False, mirrorWeight=0, match=[])
    assert canary.spec.analysis.step_weight == 10


def test_snake_case_names_are_read_too() -> None:
    document = yaml.safe_load(MINIMAL)
    document["spec"]["target_ref"] = document["spec"].pop("targetRef")
    document["spec"]["analysis"] = {"step_weight": 20, "max_weight": 60}
    analysis = parse_canary(document).spec.analysis
    assert (analysis.step_weight, analysis.effective_max_weight) == (20, 60)


def test_an_already_parsed_canary_passes_through() -> None:
    canary = parse_canary(MINIMAL)
    assert parse_canary(canary) is canary


def test_metric_templates_parse_and_refuse_non_http_addresses() -> None:
    template = parse_metric_template(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "error-rate", "namespace": "istio-system", "uid": "x"},
            "spec": {
                "provider": {
                    "type": "prometheus",
                    "address": "http://prometheus.istio-system:9090",
                },
                "query": "sum(rate(istio_requests_total[{{ interval }}]))",
            },
            "status": {},
        }
    )
    assert template.spec.provider.address == "http://prometheus.istio-system:9090"
    with pytest.raises(SpecError) as caught:
        parse_metric_template(
            {"spec": {"provider": {"type": "prometheus", "address": "unix:///prom.sock"}}}
        )
    assert set(caught.value.paths) == {"spec.provider.address", "spec.query"}
