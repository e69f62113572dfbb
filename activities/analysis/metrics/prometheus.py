"""`PrometheusProvider`: PromQL instant queries (and range queries for the rollout report)
through prometheus-api-client.

The client's own retries are turned off (a ``Retry`` with zero attempts): Temporal retries the
activity, and a client retrying inside it would multiply the wait and hide an outage from the
verdict. Each query has a timeout; whitespace is collapsed as Flagger does so the multi-line
templates become one short query string. Like Flagger, the value is the last sample of the result
vector; an empty vector or NaN is `NoData`, anything else that goes wrong is `ProviderError`.

A provider builds its ``PrometheusConnect`` (a ``requests`` session and its connection pool) on
its first query and keeps it: the worker keeps one provider per backend (`MetricChecker`), so a
step's queries reuse open connections instead of building a client and connecting each time.
The session is shared by the worker's activity threads (urllib3's pool is thread-safe).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from activities.analysis.metrics.credentials import Credentials
from activities.errors import InvalidSpec, NoData, ProviderError

ONLINE_QUERY = "vector(1)"
_SPACE = re.compile(r"\s+")


class PrometheusProvider:
    """Runs instant queries against one Prometheus server."""

    def __init__(
        self,
        *,
        address: str,
        credentials: Credentials | None = None,
        timeout_seconds: float = 5.0,
        insecure_skip_verify: bool = False,
    ) -> None:
        parsed = urlparse(address)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidSpec(f"prometheus address {address!r} is not an http(s) URL")
        self.address = address.rstrip("/")
        self._credentials = credentials or Credentials()
        self._timeout = timeout_seconds
        self._insecure = insecure_skip_verify
        self._connect: PrometheusConnect | None = None
        self._lock = threading.Lock()

    def run_query(self, query: str) -> float:
        """The value of ``query``; raises `NoData` or `ProviderError`."""
        result = self._query(_SPACE.sub(" ", query).strip())
        return _value(result)

    def run_range_query(
        self, query: str, *, start: datetime, end: datetime, step_seconds: float
    ) -> list[RangeSeries]:
        """Every series of ``query`` from ``start`` to ``end`` (a report's charts, not a check);
        raises `ProviderError` as ``run_query`` does. An empty list is no data."""
        text = _SPACE.sub(" ", query).strip()
        result = self._request(
            lambda connect: connect.custom_query_range(
                text, start_time=start, end_time=end, step=f"{step_seconds:g}s"
            )
        )
        return [_series(item) for item in result]

    def is_online(self) -> bool:
        try:
            return self.run_query(ONLINE_QUERY) == 1.0
        except (NoData, ProviderError):
            return False

    def _query(self, query: str) -> list[Any]:
        return self._request(lambda connect: connect.custom_query(query))

    def _client(self) -> PrometheusConnect:
        with self._lock:
            if self._connect is None:
                self._connect = PrometheusConnect(
                    url=self.address,
                    headers=self._credentials.request_headers() or None,
                    disable_ssl=self._insecure,
                    # No retries at all (False, not 0: a zero budget would turn a read timeout
                    # into a "max retries exceeded" ConnectionError). Temporal owns retries.
                    retry=Retry(total=False),
                    auth=self._credentials.basic_auth(),
                    timeout=self._timeout,
                )
            return self._connect

    def close(self) -> None:
        """Close the kept connections (a later query opens new ones)."""
        with self._lock:
            connect, self._connect = self._connect, None
        if connect is not None:
            connect.close()

    def _request(self, call: Callable[[PrometheusConnect], Any]) -> list[Any]:
        try:
            try:
                data: list[Any] = call(self._client())
            except requests.ConnectionError as exc:
                if isinstance(exc, requests.Timeout):
                    raise
                # A kept connection the server (or a proxy) closed while idle fails before any
                # answer: one more attempt, on a new connection, as Go's HTTP client (Flagger's)
                # retries an idempotent request. A backend that is down fails this one too.
                data = call(self._client())
            return data
        except PrometheusApiClientException as exc:
            raise ProviderError(f"prometheus {self.address} answered {_short(exc)}") from None
        except requests.JSONDecodeError as exc:
            raise ProviderError(
                f"prometheus {self.address} sent an unreadable answer: {exc}"
            ) from None
        except requests.Timeout:
            raise ProviderError(
                f"prometheus {self.address} timed out after {self._timeout:g}s"
            ) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            # Without a retry budget urllib3 raises some connection errors unwrapped.
            raise ProviderError(
                f"prometheus {self.address} unreachable: {type(exc).__name__}"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                f"prometheus {self.address} sent an unreadable answer: {exc}"
            ) from None


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: its labels and its (time, value) samples, NaN dropped."""

    labels: dict[str, str]
    samples: list[tuple[datetime, float]]


def _series(item: Any) -> RangeSeries:
    try:
        labels = {str(k): str(v) for k, v in item["metric"].items()}
        raw = item["values"]
    except (KeyError, TypeError, AttributeError):
        raise ProviderError("prometheus returned a range series without values") from None
    samples: list[tuple[datetime, float]] = []
    for stamp, value in raw:
        number = float(value)
        if not math.isnan(number):
            samples.append((datetime.fromtimestamp(float(stamp), UTC), number))
    return RangeSeries(labels=labels, samples=samples)


def _value(result: list[Any]) -> float:
    value: float | None = None
    for sample in result:
        try:
            raw = sample["value"][1]
        except (KeyError, IndexError, TypeError):
            raise ProviderError("prometheus returned a sample without a value") from None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ProviderError(f"prometheus returned a non-numeric value {raw!r}") from None
    if value is None:
        raise NoData("the query returned no series")
    if math.isnan(value):
        raise NoData("the query returned NaN")
    return value
