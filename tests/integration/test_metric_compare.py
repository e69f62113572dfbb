"""The compare option through the real metric activity and a real Prometheus: both workloads
sampled with range queries, judged, and the judgement carried on the result.

A local exporter serves Istio's series with a fixed latency per workload (all requests in one
bucket, so every p99 sample is that bucket's interpolation): ``podinfo`` (the canary) at 300 ms,
p99 497.5 ms, under a 500 ms threshold; ``podinfo-primary`` at 40 ms, p99 49.5 ms. A threshold
alone passes the canary; the comparison fails it. MetricTemplates come from the session's
cluster: one that selects the workload with ``{{ target }}`` is compared through it, one that
does not is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.analysis import AnalysisActivities, AnalysisSettings
from activities.analysis.metrics.prometheus import PrometheusProvider
from activities.errors import NoData
from tests.integration.analysis_support import (
    PrometheusProcess,
    Workload,
    create_flagger_object,
    fresh_namespace,
    mesh_exporter,
    prometheus_binary,
    run_prometheus,
    wait_for,
)
from workflows.activity_api import CanaryRef, MetricCheckInput
from workflows.model import CheckOutcome
from workflows.spec import MetricSpec

WORKLOADS = [
    Workload("test", "podinfo", ok_per_second=10, errors_per_second=0, latency_ms=300),
    Workload("test", "podinfo-primary", ok_per_second=10, errors_per_second=0, latency_ms=40),
    Workload("test", "steady", ok_per_second=10, errors_per_second=0, latency_ms=40),
    Workload("test", "steady-primary", ok_per_second=10, errors_per_second=0, latency_ms=40),
    Workload("test", "lonely", ok_per_second=10, errors_per_second=0, latency_ms=40),
]
INTERVAL = "10s"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    binary = prometheus_binary()
    assert binary, "no prometheus binary: run scripts/fetch-tools.sh or set COALMINE_PROMETHEUS_BIN"
    with (
        mesh_exporter(WORKLOADS) as target,
        run_prometheus(binary, [target], tmp_path_factory.mktemp("prom")) as prom,
    ):
        provider = PrometheusProvider(address=prom.url)

        def samples_cover_the_interval() -> bool:
            # Every point of a 10 s range needs a rate() over the 10 s before it: 20 s of data.
            try:
                scrapes = provider.run_query("min(count_over_time(istio_requests_total[20s]))")
            except NoData:
                return False
            return scrapes >= 20

        wait_for(samples_cover_the_interval, timeout=60, what="20 s of scrapes")
        yield prom


def _activities(url: str) -> AnalysisActivities:
    # Builtin checks never read the cluster: the API client points nowhere.
    api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    return AnalysisActivities(api_client=api, settings=AnalysisSettings(prometheus_url=url))


def _check(target: str, namespace: str = "test", **metric: Any) -> MetricCheckInput:
    ref = CanaryRef(namespace=namespace, name=target, target=target, service=target)
    return MetricCheckInput(ref=ref, metric=MetricSpec.model_validate(metric))


@pytest.fixture(scope="module")
def template_namespace(admin_client: k8s.ApiClient) -> Iterator[str]:
    """A namespace on the session's cluster for the MetricTemplates a templateRef reads."""
    with fresh_namespace(admin_client, "compare") as namespace:
        yield namespace


def _latency_template(
    admin: k8s.ApiClient, namespace: str, name: str, url: str, workload: str
) -> None:
    query = (
        "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
        f'destination_workload_namespace="test",destination_workload="{workload}"'
        "}[{{ interval }}])) by (le))"
    )
    spec = {"provider": {"type": "prometheus", "address": url}, "query": query}
    create_flagger_object(admin, "metrictemplates", namespace, name, spec)


def test_a_regression_under_the_threshold_fails_the_comparison(
    prometheus: PrometheusProcess,
) -> None:
    activities = _activities(prometheus.url)
    plain = activities.check_metric(
        _check("podinfo", name="request-duration", interval=INTERVAL, thresholdRange={"max": 500})
    )
    assert plain.outcome == CheckOutcome.OK
    assert plain.value == pytest.approx(497.5, abs=0.1)
    assert plain.judgement is None

    compared = activities.check_metric(
        _check(
            "podinfo",
            name="request-duration",
            interval=INTERVAL,
            thresholdRange={"max": 500},
            compare={"step": "1s"},
        )
    )
    assert compared.outcome == CheckOutcome.BREACH
    assert compared.value == pytest.approx(497.5, abs=0.1)  # the threshold alone would pass
    judgement = compared.judgement
    assert judgement is not None
    assert judgement.verdict == "High"
    assert judgement.canary_n == judgement.primary_n == 11  # 10 s every 1 s, both ends
    assert judgement.canary_median == pytest.approx(497.5, abs=0.1)
    assert judgement.primary_median == pytest.approx(49.5, abs=0.1)
    assert judgement.shift == pytest.approx(448, abs=0.5)
    assert judgement.p_value is not None
    assert judgement.p_value < 1e-4
    assert compared.message.startswith(
        "request-duration: canary median 498ms is 10x the primary's 50ms (Mann-Whitney p="
    )


def test_a_canary_like_its_primary_passes(prometheus: PrometheusProcess) -> None:
    result = _activities(prometheus.url).check_metric(
        _check("steady", name="request-duration", interval=INTERVAL, compare={"step": "1s"})
    )
    assert result.outcome == CheckOutcome.OK
    assert result.judgement is not None
    assert result.judgement.verdict == "Pass"
    assert result.judgement.primary_n == 11


def test_a_primary_without_samples_is_no_data(prometheus: PrometheusProcess) -> None:
    result = _activities(prometheus.url).check_metric(
        _check("lonely", name="request-success-rate", interval=INTERVAL, compare={"step": "1s"})
    )
    assert result.outcome == CheckOutcome.NO_DATA
    assert result.judgement is not None
    assert result.judgement.verdict == "NoData"
    assert result.judgement.direction == "decrease"
    assert result.judgement.primary_n == 0
    assert result.message == (
        "request-success-rate: too few samples to compare with the primary: canary 11, "
        "primary 0 (minSamples 10)"
    )


def test_a_metric_template_is_compared_through_its_target(
    prometheus: PrometheusProcess,
    admin_client: k8s.ApiClient,
    worker_client: k8s.ApiClient,
    template_namespace: str,
) -> None:
    ns = template_namespace
    _latency_template(admin_client, ns, "latency", prometheus.url, "{{ target }}")
    activities = AnalysisActivities(api_client=worker_client, settings=AnalysisSettings())
    result = activities.check_metric(
        _check(
            "podinfo",
            ns,
            name="latency",
            interval=INTERVAL,
            templateRef={"name": "latency"},
            compare={"step": "1s"},
        )
    )
    assert result.outcome == CheckOutcome.BREACH
    assert result.judgement is not None
    assert result.judgement.verdict == "High"
    assert result.judgement.primary_median == pytest.approx(49.5, abs=0.1)
    assert result.message.startswith("latency: canary median 497.5 is 10x the primary's 49.5")


def test_a_template_blind_to_the_workload_cannot_be_compared(
    prometheus: PrometheusProcess,
    admin_client: k8s.ApiClient,
    worker_client: k8s.ApiClient,
    template_namespace: str,
) -> None:
    ns = template_namespace
    _latency_template(admin_client, ns, "fixed-latency", prometheus.url, "podinfo")
    activities = AnalysisActivities(api_client=worker_client, settings=AnalysisSettings())
    request = _check(
        "podinfo",
        ns,
        name="latency",
        interval=INTERVAL,
        templateRef={"name": "fixed-latency"},
        compare={"step": "1s"},
    )
    with pytest.raises(ApplicationError, match="does not name the workload") as caught:
        activities.check_metric(request)
    assert caught.value.type == "InvalidSpec"
