"""Metric providers: credentials, the factory, and how a Prometheus answer becomes a number.

The Prometheus answers come from a real local HTTP server playing Prometheus's query API.
"""

from __future__ import annotations

import json

import pytest

from activities.analysis.metrics import credentials as creds
from activities.analysis.metrics.prometheus import PrometheusProvider
from activities.analysis.metrics.provider import provider_for
from activities.errors import InvalidSpec, NoData, ProviderError
from tests.integration.analysis_support import receiver


def test_secret_token_wins_over_basic_auth() -> None:
    found = creds.from_secret({"token": "t", "username": "u", "password": "p"}, secret="ns/s")
    assert found.request_headers() == {"Authorization": "Bearer t"}
    assert found.basic_auth() is None


def test_secret_basic_auth_and_headers() -> None:
    found = creds.from_secret(
        {"username": "u", "password": "p", "headers": '{"X-Org": "1"}'}, secret="ns/s"
    )
    assert found.basic_auth() == ("u", "p")
    assert found.request_headers() == {"X-Org": "1"}


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"username": "u"}, "no 'password'"),
        ({"password": "p"}, "no 'username'"),
        ({}, "neither"),
        ({"token": "t", "headers": "not json"}, "JSON object"),
    ],
)
def test_incomplete_secrets_are_configuration_errors(data: dict[str, str], complaint: str) -> None:
    with pytest.raises(InvalidSpec, match=complaint):
        creds.from_secret(data, secret="ns/s")


def test_environment_credentials() -> None:
    found = creds.from_environment(
        {"PROMETHEUS_TOKEN": "tok", "PROMETHEUS_HEADERS": '{"X-Scope-OrgID": "a"}'}
    )
    assert found.request_headers() == {"X-Scope-OrgID": "a", "Authorization": "Bearer tok"}
    assert creds.from_environment({}).request_headers() == {}


def test_credentials_never_print_their_values() -> None:
    found = creds.Credentials(token="tok-1", username="u", password="pw-2", headers={"A": "h-3"})
    for value in ("tok-1", "pw-2", "h-3"):
        assert value not in repr(found)


def test_unknown_provider_type_is_refused() -> None:
    with pytest.raises(InvalidSpec, match=r"'graphite' is not supported: use one of prometheus"):
        provider_for(
            "graphite", address="http://x", credentials=creds.Credentials(), timeout_seconds=1
        )


def test_prometheus_address_must_be_http() -> None:
    with pytest.raises(InvalidSpec, match="not an http"):
        PrometheusProvider(address="prometheus:9090")


def _answer(*values: str) -> bytes:
    result = [{"metric": {"i": str(i)}, "value": [1.0, v]} for i, v in enumerate(values)]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


def _provider(url: str) -> PrometheusProvider:
    return PrometheusProvider(address=url, timeout_seconds=2)


def test_the_last_sample_is_the_value_as_in_flagger() -> None:
    with receiver(lambda _r: (200, _answer("1.5", "2.5"))) as prom:
        assert _provider(prom.url).run_query("q") == 2.5


def test_whitespace_is_collapsed() -> None:
    with receiver(lambda _r: (200, _answer("1"))) as prom:
        _provider(prom.url).run_query("sum(\n\t  up\n)")
    assert prom.requests[0].path == "/api/v1/query?query=sum%28+up+%29"


@pytest.mark.parametrize("body", [_answer(), _answer("NaN")])
def test_empty_or_nan_is_no_data(body: bytes) -> None:
    with receiver(lambda _r: (200, body)) as prom, pytest.raises(NoData):
        _provider(prom.url).run_query("q")


@pytest.mark.parametrize(
    ("status", "body", "complaint"),
    [
        (503, b"overloaded", "503"),
        (200, b"<html>", "unreadable"),
        (200, _answer("abc"), "non-numeric"),
    ],
)
def test_bad_answers_are_provider_errors(status: int, body: bytes, complaint: str) -> None:
    with receiver(lambda _r: (status, body)) as prom:
        with pytest.raises(ProviderError, match=complaint):
            _provider(prom.url).run_query("q")
        # Temporal owns retries: the client must not have retried the 503 itself.
        assert len(prom.requests) == 1


def test_slow_prometheus_times_out_as_a_provider_error() -> None:
    with receiver(lambda _r: (200, _answer("1")), delay_seconds=1.5) as prom:
        provider = PrometheusProvider(address=prom.url, timeout_seconds=0.3)
        with pytest.raises(ProviderError, match=r"timed out after 0\.3s"):
            provider.run_query("q")


def test_is_online_wants_vector_one() -> None:
    with receiver(lambda _r: (200, _answer("1"))) as prom:
        assert _provider(prom.url).is_online()
    with receiver(lambda _r: (200, _answer("0"))) as prom:
        assert not _provider(prom.url).is_online()
