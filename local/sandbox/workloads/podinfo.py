"""A podinfo-like workload whose behaviour is its pod spec: a bad release arrives as a Deployment
change.

Endpoints (as stefanprodan/podinfo's ``pkg/api/http``): ``/`` and ``/api/info``, ``/version`` (the
image tag as ``version``), ``/healthz`` and ``/readyz``, ``/status/{code}`` (answers that code),
``/delay/{seconds}`` (waits, then answers), ``/env``, ``/headers`` (the request's headers),
``POST /token`` (a JWT signed HS256 with podinfo's default secret, valid one minute, as Flagger's
tutorials call it: ``curl -sd 'test' http://podinfo-canary:9898/token | grep token``),
``GET /token/validate`` and ``GET /metrics`` (podinfo's own Prometheus metrics, per pod, see
podinfo_metrics.py). The gRPC health service (``grpc.health.v1`` on the pod's ``--grpc-port``,
9999 in Flagger's tutorials) is podinfo_grpc.py.

Fault knobs, read from the serving container's ``env`` on every request (so ``kubectl set env`` is a
release). They apply to every request but ``/metrics``, which podinfo serves on its own metrics
port too, where no fault middleware runs:

- ``FAULT_ERROR_RATE`` — fraction 0–1 of requests answered 500. Errors are spread evenly (an
  error-diffusion accumulator per pod, rounding to nearest), not drawn at random: after n requests a
  pod has answered round(rate × n) errors, so even a short rate window reads the configured
  fraction.
- ``FAULT_LATENCY_MS`` — milliseconds added to every request.
- ``LATENCY_P50_MS`` / ``LATENCY_P99_MS`` / ``LATENCY_MAX_MS`` — a log-normal latency per request
  (latency.py).
- ``PODINFO_UI_MESSAGE`` / ``PODINFO_UI_COLOR`` — echoed like podinfo's UI settings;
  ``PODINFO_JWT_SECRET`` — the token secret, as podinfo's ``--jwt-secret``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from sandbox.workloads.base import (
    Obj,
    WorkloadRequest,
    WorkloadResponse,
    container_env,
    image_tag,
)
from sandbox.workloads.latency import latency_seconds
from sandbox.workloads.podinfo_grpc import PodinfoGrpc
from sandbox.workloads.podinfo_metrics import PodMetrics, route_label
from sandbox.workloads.podinfo_token import issue_token, validate_token

_STATUS = re.compile(r"^/status/(\d{3})/?$")
_DELAY = re.compile(r"^/delay/(\d+(?:\.\d+)?)/?$")
MAX_DELAY_SECONDS = 60.0


def go_header(headers: dict[str, str]) -> dict[str, list[str]]:
    """The request's headers as podinfo's ``/headers`` prints Go's ``http.Header``: canonical
    names (``X-Canary``), each with a list of values, and no ``Host`` (Go keeps it apart)."""
    shown: dict[str, list[str]] = {}
    for name, value in headers.items():
        canonical = "-".join(part.capitalize() for part in name.split("-"))
        if canonical != "Host":
            shown.setdefault(canonical, []).append(value)
    return shown


def _json(status: int, payload: object) -> WorkloadResponse:
    return WorkloadResponse(status=status, body=json.dumps(payload, indent=2).encode())


def _float(env: dict[str, str], name: str) -> float:
    try:
        return max(float(env.get(name, "0") or 0), 0.0)
    except ValueError:
        return 0.0


def _uid(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("uid", ""))


class Podinfo:
    """The podinfo workload; holds each pod's error accumulator, metrics and gRPC server."""

    def __init__(self) -> None:
        self.grpc = PodinfoGrpc()
        self._debt: dict[str, float] = {}
        self._metrics: dict[str, PodMetrics] = {}
        # The info document is the hot path under load: serialise it once per pod and settings.
        self._info_cache: dict[tuple[str, ...], bytes] = {}

    def forget(self, pod_uid: str) -> None:
        self._debt.pop(pod_uid, None)
        self._metrics.pop(pod_uid, None)
        self.grpc.forget(pod_uid)

    async def __call__(
        self, pod: Obj, container: Obj, request: WorkloadRequest
    ) -> WorkloadResponse:
        started = time.perf_counter()
        if request.path == "/metrics":
            # Prometheus scrapes podinfo's --port-metrics server, which has no fault middleware.
            response = self._exposition(pod)
            self._observe(pod, request, response, started)
            return response
        env = container_env(container)
        latency = latency_seconds(env)
        if latency:
            await asyncio.sleep(latency)
        if self._inject_error(pod, _float(env, "FAULT_ERROR_RATE")):
            response = _json(500, {"error": "fault injected by FAULT_ERROR_RATE", "code": 500})
        else:
            response = await self._route(pod, container, env, request)
        self._observe(pod, request, response, started)
        return response

    def _observe(
        self, pod: Obj, request: WorkloadRequest, response: WorkloadResponse, started: float
    ) -> None:
        # As podinfo's middleware: every request is measured, /metrics and injected faults too.
        uid = _uid(pod)
        metrics = self._metrics.get(uid)
        if metrics is None:
            metrics = self._metrics[uid] = PodMetrics()
        metrics.observe(
            method=request.method,
            path=route_label(request.method, request.path, request.query),
            status=response.status,
            seconds=time.perf_counter() - started,
        )

    def _inject_error(self, pod: Obj, rate: float) -> bool:
        if rate <= 0:
            return False
        uid = _uid(pod)
        # Starting half-way rounds to nearest: after n requests the errors are within 0.5 of
        # rate × n, so even the first few requests of a canary show its error rate.
        debt = self._debt.get(uid, 0.5) + min(rate, 1.0)
        if debt >= 1.0 - 1e-9:
            self._debt[uid] = debt - 1.0
            return True
        self._debt[uid] = debt
        return False

    async def _route(  # noqa: PLR0911 - one return per endpoint reads like a routing table
        self, pod: Obj, container: Obj, env: dict[str, str], request: WorkloadRequest
    ) -> WorkloadResponse:
        path = request.path
        version = image_tag(str(container.get("image", "")))
        if path in ("/healthz", "/readyz"):
            return _json(200, {"status": "OK"})
        if path == "/version":
            return _json(200, {"commit": "sandbox", "version": version})
        if match := _STATUS.match(path):
            code = int(match.group(1))
            return _json(code, {"status": code})
        if match := _DELAY.match(path):
            seconds = min(float(match.group(1)), MAX_DELAY_SECONDS)
            await asyncio.sleep(seconds)
            return _json(200, {"delay": seconds})
        if path == "/env":
            return _json(200, [f"{k}={v}" for k, v in sorted(env.items())])
        if path == "/headers":
            return _json(200, go_header(request.headers))
        if path.startswith("/token"):
            return self._token(env, request)
        if path in ("/", "/api/info"):
            return WorkloadResponse(status=200, body=self._info_body(pod, env, version))
        return _json(404, {"code": 404, "message": "not found"})

    def _exposition(self, pod: Obj) -> WorkloadResponse:
        metrics = self._metrics.get(_uid(pod)) or PodMetrics()
        return WorkloadResponse(
            status=200, body=metrics.exposition(), content_type=PodMetrics.CONTENT_TYPE
        )

    @staticmethod
    def _token(env: dict[str, str], request: WorkloadRequest) -> WorkloadResponse:
        secret = env.get("PODINFO_JWT_SECRET") or None
        if request.path == "/token" and request.method == "POST":
            return _json(200, issue_token(request.body.decode(errors="replace"), secret=secret))
        if request.path == "/token/validate" and request.method == "GET":
            status, payload = validate_token(request.headers, secret=secret)
            return _json(status, payload)
        if request.path in ("/token", "/token/validate"):
            return _json(405, {"code": 405, "message": "method not allowed"})
        return _json(404, {"code": 404, "message": "not found"})

    def _info_body(self, pod: Obj, env: dict[str, str], version: str) -> bytes:
        key = (
            _uid(pod),
            version,
            env.get("PODINFO_UI_COLOR", ""),
            env.get("PODINFO_UI_MESSAGE", ""),
        )
        body = self._info_cache.get(key)
        if body is None:
            if len(self._info_cache) > 10_000:
                self._info_cache.clear()  # pods come and go; keep memory flat
            body = self._info_cache[key] = json.dumps(
                self._info(pod, env, version), indent=2
            ).encode()
        return body

    @staticmethod
    def _info(pod: Obj, env: dict[str, str], version: str) -> Obj:
        name = str((pod.get("metadata") or {}).get("name", ""))
        return {
            "hostname": name,
            "version": version,
            "revision": "sandbox",
            "color": env.get("PODINFO_UI_COLOR", "#34577c"),
            "logo": "https://raw.githubusercontent.com/stefanprodan/podinfo/gh-pages/cuddle_clap.gif",
            "message": env.get("PODINFO_UI_MESSAGE", f"greetings from podinfo v{version}"),
            "goos": "linux",
            "goarch": "amd64",
            "runtime": "sandbox",
            "num_goroutine": "1",
            "num_cpu": "1",
        }
