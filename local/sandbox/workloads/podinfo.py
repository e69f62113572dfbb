"""A podinfo-like workload whose behaviour is its pod spec: a bad release arrives as a Deployment
change.

Endpoints (as stefanprodan/podinfo): ``/`` and ``/version`` (the image tag as ``version``),
``/healthz`` and ``/readyz``, ``/status/{code}`` (answers that code), ``/delay/{seconds}`` (waits,
then answers), ``/env``, ``/headers``.

Fault knobs, read from the serving container's ``env`` on every request (so ``kubectl set env`` is a
release):

- ``FAULT_ERROR_RATE`` — fraction 0–1 of requests answered 500. Errors are spread evenly (an
  error-diffusion accumulator per pod, rounding to nearest), not drawn at random: after n requests a
  pod has answered round(rate × n) errors, so even a short rate window reads the configured
  fraction.
- ``FAULT_LATENCY_MS`` — milliseconds added to every request.
- ``PODINFO_UI_MESSAGE`` / ``PODINFO_UI_COLOR`` — echoed like podinfo's UI settings.
"""

from __future__ import annotations

import asyncio
import json
import re

from sandbox.workloads.base import (
    Obj,
    WorkloadRequest,
    WorkloadResponse,
    container_env,
    image_tag,
)

_STATUS = re.compile(r"^/status/(\d{3})/?$")
_DELAY = re.compile(r"^/delay/(\d+(?:\.\d+)?)/?$")
MAX_DELAY_SECONDS = 60.0


def _json(status: int, payload: object) -> WorkloadResponse:
    return WorkloadResponse(status=status, body=json.dumps(payload, indent=2).encode())


def _float(env: dict[str, str], name: str) -> float:
    try:
        return max(float(env.get(name, "0") or 0), 0.0)
    except ValueError:
        return 0.0


class Podinfo:
    """The podinfo workload; holds each pod's error accumulator."""

    def __init__(self) -> None:
        self._debt: dict[str, float] = {}
        # The info document is the hot path under load: serialise it once per pod and settings.
        self._info_cache: dict[tuple[str, ...], bytes] = {}

    def forget(self, pod_uid: str) -> None:
        self._debt.pop(pod_uid, None)

    async def __call__(
        self, pod: Obj, container: Obj, request: WorkloadRequest
    ) -> WorkloadResponse:
        env = container_env(container)
        latency = _float(env, "FAULT_LATENCY_MS") / 1000.0
        if latency:
            await asyncio.sleep(latency)
        if self._inject_error(pod, _float(env, "FAULT_ERROR_RATE")):
            return _json(500, {"error": "fault injected by FAULT_ERROR_RATE", "code": 500})
        return await self._route(pod, container, env, request)

    def _inject_error(self, pod: Obj, rate: float) -> bool:
        if rate <= 0:
            return False
        uid = str((pod.get("metadata") or {}).get("uid", ""))
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
            return _json(200, request.headers)
        if path in ("/", "/api/info"):
            return WorkloadResponse(status=200, body=self._info_body(pod, env, version))
        return _json(404, {"code": 404, "message": "not found"})

    def _info_body(self, pod: Obj, env: dict[str, str], version: str) -> bytes:
        key = (
            str((pod.get("metadata") or {}).get("uid", "")),
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
