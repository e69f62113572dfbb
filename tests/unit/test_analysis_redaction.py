"""Library loggers must not print credentials: httpx request URLs, Kubernetes Secret bodies."""

from __future__ import annotations

import logging

import httpx
import pytest

from activities.analysis import redaction


def test_httpx_request_logs_keep_only_the_host(caplog: pytest.LogCaptureFixture) -> None:
    redaction.install()
    redaction.install()  # idempotent
    caplog.set_level(logging.INFO, logger="httpx")
    transport = httpx.MockTransport(lambda _request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.post("https://hooks.example:8443/services/T0/B0/s3cr3t?token=abc", json={})
    assert "s3cr3t" not in caplog.text
    assert "token=abc" not in caplog.text
    assert "https://hooks.example:8443/…" in caplog.text
    assert len(logging.getLogger("httpx").filters) == 1


def test_kubernetes_secret_bodies_are_replaced(caplog: pytest.LogCaptureFixture) -> None:
    redaction.install()
    caplog.set_level(logging.DEBUG, logger="kubernetes.client.rest")
    logger = logging.getLogger("kubernetes.client.rest")
    logger.debug("response body: %s", b'{"kind":"Secret","data":{"token":"c2VjcmV0"}}')
    logger.debug("response body: %s", b'{"kind":"ConfigMap","data":{"a":"b"}}')
    assert "c2VjcmV0" not in caplog.text
    assert "<Secret redacted>" in caplog.text
    assert "ConfigMap" in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h/x", "https://h/…"),
        ("http://127.0.0.1:9/a?b=c", "http://127.0.0.1:9/…"),
        ("not a url", "<redacted url>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redaction.redact_url(url) == shown
