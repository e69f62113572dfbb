"""The builtin and inline metric checks against a real Prometheus scraping Istio-like series.

A local exporter serves ``istio_requests_total`` and ``istio_request_duration_milliseconds`` with
fixed rates; Prometheus scrapes it every second. The checks run through the real activity
(`AnalysisActivities.check_metric`), so the PromQL Flagger uses, the provider, and the verdict are
all exercised together.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.analysis import AnalysisActivities, AnalysisSettings
from activities.analysis.metrics.credentials import Credentials
from activities.analysis.metrics.prometheus import PrometheusProvider
from activities.errors import NoData, ProviderError
from tests.integration.analysis_support import (
    DROP,
    PrometheusProcess,
    Recorded,
    Workload,
    create_flagger_object,
    create_secret,
    fresh_namespace,
    mesh_exporter,
    prometheus_binary,
    receiver,
    run_prometheus,
    wait_for,
)
from workflows.activity_api import CanaryRef, MetricCheckInput
from workflows.model import CheckOutcome
from workflows.spec import MetricSpec

WORKLOADS = [
    Workload("test", "podinfo", ok_per_second=7, errors_per_second=3, latency_ms=120),
    Workload("test", "slow", ok_per_second=10, errors_per_second=0, latency_ms=1500),
]
INTERVAL = "5s"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    binary = prometheus_binary()
    assert binary, "no prometheus binary: run scripts/fetch-tools.sh or set COALMINE_PROMETHEUS_BIN"
    with (
        mesh_exporter(WORKLOADS) as target,
        run_prometheus(binary, [target], tmp_path_factory.mktemp("prom")) as prom,
    ):
        provider = PrometheusProvider(address=prom.url)

        def window_filled() -> bool:
            # rate() over a window only partly covered by samples under-reports absolute rates:
            # wait until the whole window holds samples (ratios are exact from the first value).
            try:
                samples = provider.run_query(
                    f"min(count_over_time(istio_requests_total[{INTERVAL}]))"
                )
            except NoData:
                return False
            return samples >= 5

        wait_for(window_filled, what="a full rate() window")
        yield prom


def _activities(url: str) -> AnalysisActivities:
    # Builtin and inline checks never read the cluster: the API client points nowhere.
    api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    return AnalysisActivities(api_client=api, settings=AnalysisSettings(prometheus_url=url))


def _check(url: str, target: str, namespace: str = "test", **metric: object) -> MetricCheckInput:
    """A check of ``target``'s metric; ``namespace``: the Canary's (by default the exporter's
    series label, where the builtin checks read nothing from the cluster)."""
    ref = CanaryRef(namespace=namespace, name=target, target=target, service=target)
    return MetricCheckInput(ref=ref, metric=MetricSpec.model_validate(metric))


def test_success_rate_of_a_failing_canary(prometheus: PrometheusProcess) -> None:
    request = _check(
        prometheus.url,
        "podinfo",
        name="request-success-rate",
        interval=INTERVAL,
        thresholdRange={"min": 99},
    )
    result = _activities(prometheus.url).check_metric(request)
    assert result.outcome == CheckOutcome.BREACH
    assert result.value == pytest.approx(70.0, abs=0.01)
    assert result.message == "success rate 70.00% < 99%"
    assert result.min == 99


def test_success_rate_within_range(prometheus: PrometheusProcess) -> None:
    request = _check(
        prometheus.url,
        "slow",
        name="request-success-rate",
        interval=INTERVAL,
        thresholdRange={"min": 99},
    )
    result = _activities(prometheus.url).check_metric(request)
    assert result.outcome == CheckOutcome.OK
    assert result.value == pytest.approx(100.0)


def test_request_duration_p99(prometheus: PrometheusProcess) -> None:
    activities = _activities(prometheus.url)
    slow = activities.check_metric(
        _check(
            prometheus.url,
            "slow",
            name="request-duration",
            interval=INTERVAL,
            thresholdRange={"max": 500},
        )
    )
    # All requests in the (1000, 2500] bucket: p99 interpolates to 1000 + 1500 × 0.99.
    assert slow.value == pytest.approx(2485, abs=1)
    assert slow.outcome == CheckOutcome.BREACH
    assert slow.message.startswith("request duration 2.48")
    assert slow.message.endswith("s > 500ms")
    fast = activities.check_metric(
        _check(
            prometheus.url,
            "podinfo",
            name="request-duration",
            interval=INTERVAL,
            thresholdRange={"max": 500},
        )
    )
    assert fast.outcome == CheckOutcome.OK
    assert fast.value == pytest.approx(100 + 150 * 0.99, abs=1)


def test_unknown_workload_is_no_data(prometheus: PrometheusProcess) -> None:
    result = _activities(prometheus.url).check_metric(
        _check(
            prometheus.url,
            "nobody",
            name="request-success-rate",
            interval=INTERVAL,
            thresholdRange={"min": 99},
        )
    )
    assert result.outcome == CheckOutcome.NO_DATA
    assert result.value is None
    assert "nobody.test is not receiving traffic" in result.message


def test_inline_query_on_the_default_prometheus(prometheus: PrometheusProcess) -> None:
    query = (
        'sum(rate(istio_requests_total{destination_workload="podinfo",response_code="500"}'
        f"[{INTERVAL}]))"
    )
    result = _activities(prometheus.url).check_metric(
        _check(prometheus.url, "podinfo", name="errors", query=query, thresholdRange={"max": 1})
    )
    # An absolute rate wobbles with scrape timing (3/s ± a little): assert the verdict's shape.
    assert result.value == pytest.approx(3.0, rel=0.25), result
    assert result.outcome == CheckOutcome.BREACH
    assert result.message.startswith("errors ")
    assert result.message.endswith(" > 1")


def test_bad_query_is_a_provider_error(prometheus: PrometheusProcess) -> None:
    result = _activities(prometheus.url).check_metric(
        _check(prometheus.url, "podinfo", name="broken", query="sum(", thresholdRange={"max": 1})
    )
    assert result.outcome == CheckOutcome.PROVIDER_ERROR
    assert "HTTP Status Code 400" in result.message


def test_provider_is_online(prometheus: PrometheusProcess) -> None:
    assert PrometheusProvider(address=prometheus.url).is_online()


def test_stopped_prometheus_is_a_provider_error(tmp_path: Path) -> None:
    binary = prometheus_binary()
    assert binary, "no prometheus binary: run scripts/fetch-tools.sh or set COALMINE_PROMETHEUS_BIN"
    with run_prometheus(binary, [], tmp_path) as prom:
        provider = PrometheusProvider(address=prom.url, credentials=Credentials(token="t0ken"))
        assert provider.is_online()
        prom.stop()
        assert not provider.is_online()
        with pytest.raises(ProviderError, match="unreachable"):
            provider.run_query("vector(1)")
        result = _activities(prom.url).check_metric(
            _check(
                prom.url,
                "podinfo",
                name="request-success-rate",
                interval=INTERVAL,
                thresholdRange={"min": 99},
            )
        )
    assert result.outcome == CheckOutcome.PROVIDER_ERROR
    assert result.message.startswith("prometheus query failed for request-success-rate:")
    assert "t0ken" not in result.message


# --- MetricTemplates from the real cluster, credentials from Secrets and the environment ----------


@dataclass(frozen=True)
class Cluster:
    """The module's namespaces on the session's cluster, and its two clients."""

    admin: k8s.ApiClient
    """Set-up: Secrets and MetricTemplates."""
    worker: k8s.ApiClient
    """The activity's (the ``coalmine`` ServiceAccount, held to the shipped ClusterRole)."""
    canary_ns: str
    """The Canary's namespace: templates and Secrets a templateRef finds without a namespace."""
    provider_ns: str
    """Flagger's ``flagger-system`` for shared templates: a namespace of our own."""


@pytest.fixture(scope="module")
def cluster(admin_client: k8s.ApiClient, worker_client: k8s.ApiClient) -> Iterator[Cluster]:
    with (
        fresh_namespace(admin_client, "metrics") as canary_ns,
        fresh_namespace(admin_client, "metrics-providers") as provider_ns,
    ):
        yield Cluster(admin_client, worker_client, canary_ns, provider_ns)


def _cluster_activities(cluster: Cluster, **settings: Any) -> AnalysisActivities:
    return AnalysisActivities(
        api_client=cluster.worker, settings=AnalysisSettings(**settings), environ={}
    )


def test_metric_template_with_variables(prometheus: PrometheusProcess, cluster: Cluster) -> None:
    create_flagger_object(
        cluster.admin,
        "metrictemplates",
        cluster.provider_ns,
        "error-rate",
        {
            "provider": {"type": "prometheus", "address": prometheus.url},
            # A ratio, so the value is exact whatever the scrape timing (absolute rates are not).
            "query": (
                'sum(rate(istio_requests_total{destination_workload_namespace="{{ namespace }}",'
                'destination_workload="{{ target }}",response_code="{{ variables.code }}"}'
                "[{{ interval }}])) / sum(rate(istio_requests_total{"
                'destination_workload_namespace="{{ namespace }}",'
                'destination_workload="{{ target }}"}[{{ interval }}])) * 100'
            ),
        },
    )
    # The Canary's namespace is the series' label ("test"): the template is read from the
    # provider namespace, nothing from the Canary's.
    request = _check(
        prometheus.url,
        "podinfo",
        name="errors-500",
        interval=INTERVAL,
        templateRef={"name": "error-rate", "namespace": cluster.provider_ns},
        templateVariables={"code": "500"},
        thresholdRange={"max": 10},
    )
    result = _cluster_activities(cluster).check_metric(request)
    assert result.value == pytest.approx(30.0, abs=0.01)
    assert result.outcome == CheckOutcome.BREACH
    assert result.message == "errors-500 30.00 > 10"


def test_missing_template_is_a_non_retryable_invalid_spec(cluster: Cluster) -> None:
    request = _check(
        "http://unused",
        "podinfo",
        cluster.canary_ns,
        name="x",
        templateRef={"name": "absent"},
        thresholdRange={"max": 1},
    )
    with pytest.raises(ApplicationError) as caught:
        _cluster_activities(cluster).check_metric(request)
    assert caught.value.type == "InvalidSpec"
    assert caught.value.non_retryable
    assert f"metric template {cluster.canary_ns}/absent not found" in str(caught.value)


def test_unknown_provider_type_is_refused(cluster: Cluster) -> None:
    create_flagger_object(
        cluster.admin,
        "metrictemplates",
        cluster.canary_ns,
        "datadog-latency",
        {"provider": {"type": "datadog", "address": "https://api.datadoghq.com"}, "query": "x"},
    )
    request = _check(
        "http://unused",
        "podinfo",
        cluster.canary_ns,
        name="x",
        templateRef={"name": "datadog-latency"},
        thresholdRange={"max": 1},
    )
    with pytest.raises(ApplicationError, match="'datadog' is not supported") as caught:
        _cluster_activities(cluster).check_metric(request)
    assert caught.value.type == "InvalidSpec"


_ANSWER = json.dumps(
    {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "42.5"]}]},
    }
).encode()


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"token": "s3cr3t-token"}, "Bearer s3cr3t-token"),
        (
            {"username": "admin", "password": "pa55word"},
            "Basic " + base64.b64encode(b"admin:pa55word").decode(),
        ),
    ],
)
def test_template_credentials_come_from_the_secret(
    cluster: Cluster, secret: dict[str, str], expected: str
) -> None:
    ns, name = cluster.canary_ns, "creds-" + next(iter(secret))
    create_secret(cluster.admin, ns, name, {**secret, "headers": '{"X-Scope-OrgID": "t1"}'})
    with receiver(lambda _r: (200, _ANSWER)) as fake_prometheus:
        create_flagger_object(
            cluster.admin,
            "metrictemplates",
            ns,
            name,
            {
                "provider": {
                    "type": "prometheus",
                    "address": fake_prometheus.url,
                    "secretRef": {"name": name},
                },
                "query": "up",
            },
        )
        request = _check(
            "http://unused",
            "podinfo",
            ns,
            name="m",
            templateRef={"name": name},
            thresholdRange={"max": 50},
        )
        result = _cluster_activities(cluster).check_metric(request)
    assert result.outcome == CheckOutcome.OK
    assert result.value == 42.5
    (seen,) = fake_prometheus.requests
    assert seen.path.startswith("/api/v1/query?query=up")
    assert seen.headers["authorization"] == expected
    assert seen.headers["x-scope-orgid"] == "t1"
    # The activity's input and result never carry the credential.
    for value in secret.values():
        assert value not in request.model_dump_json()
        assert value not in result.model_dump_json()


def test_default_prometheus_credentials_from_the_environment() -> None:
    with receiver(lambda _r: (200, _ANSWER)) as fake_prometheus:
        activities = AnalysisActivities(
            api_client=k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1")),
            settings=AnalysisSettings(),
            environ={"PROMETHEUS_URL": fake_prometheus.url, "PROMETHEUS_TOKEN": "env-token"},
        )
        result = activities.check_metric(
            _check(
                "http://unused", "podinfo", name="request-success-rate", thresholdRange={"min": 99}
            )
        )
    assert result.outcome == CheckOutcome.BREACH
    assert result.message == "success rate 42.50% < 99%"
    assert fake_prometheus.requests[0].headers["authorization"] == "Bearer env-token"


def test_a_worker_keeps_one_client_per_prometheus() -> None:
    # Every check on a worker reuses the backend's provider, and the provider its connection;
    # rotated credentials make a new provider.
    with receiver(lambda _r: (200, _ANSWER), keep_alive=True) as fake_prometheus:
        environ = {"PROMETHEUS_URL": fake_prometheus.url, "PROMETHEUS_TOKEN": "one"}
        activities = AnalysisActivities(
            api_client=k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1")),
            settings=AnalysisSettings(),
            environ=environ,
        )
        check = _check(
            "http://unused", "podinfo", name="request-success-rate", thresholdRange={"min": 99}
        )
        for _ in range(3):
            assert activities.check_metric(check).outcome == CheckOutcome.BREACH
        environ["PROMETHEUS_TOKEN"] = "two"
        assert activities.check_metric(check).outcome == CheckOutcome.BREACH
    tokens = [r.headers["authorization"] for r in fake_prometheus.requests]
    assert tokens == ["Bearer one"] * 3 + ["Bearer two"]
    ports = [r.client_port for r in fake_prometheus.requests]
    assert len(set(ports[:3])) == 1
    assert ports[3] != ports[0]


def test_a_kept_connection_closed_by_the_server_is_no_provider_error() -> None:
    # A server (or a proxy) that closes an idle kept connection as the next query goes out:
    # the query is sent again on a new connection, as Go's client (Flagger's) does.
    seen: set[int] = set()

    def reply(request: Recorded) -> tuple[int, bytes]:
        if request.client_port in seen:
            return DROP, b""
        seen.add(request.client_port)
        return 200, _ANSWER

    with receiver(reply, keep_alive=True) as fake_prometheus:
        provider = PrometheusProvider(address=fake_prometheus.url)
        assert provider.run_query("up") == 42.5
        assert provider.run_query("up") == 42.5
    ports = [r.client_port for r in fake_prometheus.requests]
    assert len(ports) == 3
    assert ports[0] == ports[1] != ports[2]


def test_no_default_prometheus_is_a_configuration_error() -> None:
    activities = AnalysisActivities(
        api_client=k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1")),
        settings=AnalysisSettings(),
        environ={},
    )
    with pytest.raises(ApplicationError, match="PROMETHEUS_URL") as caught:
        activities.check_metric(
            _check(
                "http://unused", "podinfo", name="request-success-rate", thresholdRange={"min": 99}
            )
        )
    assert caught.value.non_retryable


def test_api_server_down_is_a_retryable_kubernetes_error() -> None:
    config = k8s.Configuration(host="http://127.0.0.1:1")
    config.retries = 0  # read when the client builds its pool: set before
    dead = k8s.ApiClient(config)
    activities = AnalysisActivities(api_client=dead, settings=AnalysisSettings(), environ={})
    request = _check(
        "http://unused", "podinfo", name="m", templateRef={"name": "t"}, thresholdRange={"max": 1}
    )
    with pytest.raises(ApplicationError) as caught:
        activities.check_metric(request)
    assert caught.value.type == "KubernetesError"
    assert not caught.value.non_retryable
