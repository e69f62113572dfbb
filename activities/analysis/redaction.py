"""Keep credentials out of the worker's logs, including the logs of the libraries we call.

Two libraries log what we must not: httpx logs every request's full URL at INFO ("HTTP Request:
POST https://hooks.slack.com/services/T…/B…/secret …"), and for Slack, Discord, Teams or Google
Chat that URL *is* the credential; the Kubernetes client logs every response body at DEBUG,
Secrets included. `install` adds a filter to each of those two loggers that rewrites the record
instead of dropping it (operators still see that a request happened): the URL keeps only its
scheme and host, a Secret's body is replaced by a placeholder. Installing twice is harmless.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

HTTPX_LOGGER = "httpx"
KUBERNETES_REST_LOGGER = "kubernetes.client.rest"


def redact_url(url: object) -> str:
    """``https://host/…`` for any URL with a path or query; the host alone is no secret."""
    parts = urlsplit(str(url))
    if not parts.scheme or not parts.netloc:
        return "<redacted url>"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


class _HttpxUrlFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # httpx: logger.info('HTTP Request: %s %s "%s %d %s"', method, url, version, code, phrase)
        if isinstance(record.args, tuple) and len(record.args) >= 2:
            args = list(record.args)
            args[1] = redact_url(args[1])
            record.args = tuple(args)
        return True


class _SecretBodyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.args) if record.args else str(record.msg)
        if '"kind":"Secret"' in text.replace(" ", "") or "'kind': 'Secret'" in text:
            record.msg, record.args = "response body: <Secret redacted>", None
        return True


def install() -> None:
    """Attach the filters once per process."""
    for name, filter_type in (
        (HTTPX_LOGGER, _HttpxUrlFilter),
        (KUBERNETES_REST_LOGGER, _SecretBodyFilter),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, filter_type) for f in logger.filters):
            logger.addFilter(filter_type())
