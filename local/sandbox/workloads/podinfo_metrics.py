"""podinfo's own Prometheus metrics, kept per pod as each podinfo process keeps its own.

podinfo's HTTP middleware (``pkg/api/http/metrics.go``) measures every request it serves:

- ``http_requests_total{status}``: a counter by response code (the series its HPA examples use);
- ``http_request_duration_seconds{method, path, status}``: a histogram with the Prometheus Go
  client's default buckets, where ``path`` is the route's name or path template turned into a label
  (``/`` → ``root``, ``/api/info`` → ``api_info``, ``/delay/{wait}`` → ``delay``,
  ``/status/{code}`` → ``status``) and, for a request no route matched, its URI turned the same way.

Served at ``GET /metrics`` in the text format 0.0.4, families sorted by name as the Go client does.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

# prometheus.DefBuckets
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_INVALID = re.compile(r"[^a-zA-Z0-9]+")
# podinfo's routes with a variable part are named; the label is the name.
_NAMED = (
    (re.compile(r"^/delay/[0-9]+(?:\.[0-9]+)?/?$"), "delay"),
    (re.compile(r"^/status/[0-9]+/?$"), "status"),
)
# The fixed routes this workload serves: the label is the path template's.
_FIXED = frozenset(
    {"/", "/api/info", "/version", "/env", "/headers", "/healthz", "/readyz", "/metrics"}
    | {"/token", "/token/validate"}
)


def url_to_label(path: str) -> str:
    """podinfo's ``urlToLabel``: runs of other characters become ``_``, trimmed, lower-cased."""
    result = _INVALID.sub("_", path).strip("_").lower()
    return result or "root"


def route_label(method: str, path: str, query: str) -> str:
    """The ``path`` label podinfo's middleware gives a request."""
    del method  # podinfo labels a route alike for every method it accepts
    for pattern, name in _NAMED:
        if pattern.match(path):
            return name
    if path in _FIXED:
        return url_to_label(path)
    return url_to_label(f"{path}?{query}" if query else path)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    count: int = 0


class PodMetrics:
    """One pod's counter and histogram."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._requests: dict[str, int] = {}
        self._durations: dict[tuple[str, str, str], _Histogram] = {}

    def observe(self, *, method: str, path: str, status: int, seconds: float) -> None:
        code = str(status)
        self._requests[code] = self._requests.get(code, 0) + 1
        key = (method, path, code)
        histogram = self._durations.get(key)
        if histogram is None:
            histogram = self._durations[key] = _Histogram()
        # Buckets are stored non-cumulative; the exposition sums them.
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            histogram.buckets[index] += 1
        histogram.total += seconds
        histogram.count += 1

    def requests(self, status: int) -> int:
        """``http_requests_total`` for one response code."""
        return self._requests.get(str(status), 0)

    def exposition(self) -> bytes:
        lines = [
            "# HELP http_request_duration_seconds Seconds spent serving HTTP requests.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for (method, path, code), histogram in sorted(self._durations.items()):
            labels = f'method="{_escape(method)}",path="{_escape(path)}",status="{code}"'
            cumulative = 0
            for bound, count in zip(BUCKETS, histogram.buckets, strict=True):
                cumulative += count
                lines.append(
                    f'http_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} {cumulative}'
                )
            lines.append(
                f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {histogram.count}'
            )
            lines.append(f"http_request_duration_seconds_sum{{{labels}}} {histogram.total!r}")
            lines.append(f"http_request_duration_seconds_count{{{labels}}} {histogram.count}")
        lines += [
            "# HELP http_requests_total The total number of HTTP requests.",
            "# TYPE http_requests_total counter",
        ]
        for code, count in sorted(self._requests.items()):
            lines.append(f'http_requests_total{{status="{code}"}} {count}')
        return ("\n".join(lines) + "\n").encode()
