"""Prometheus pods: served by the sandbox's real Prometheus, so cluster names reach it.

The article's cluster has Prometheus at ``http://prometheus.istio-system:9090`` (Istio's addon).
The sandbox seeds that Deployment and Service (seed.py); a pod whose image is a Prometheus image
(``prom/prometheus``, ``quay.io/prometheus/prometheus``) answers by forwarding the request, as it
came, to the real Prometheus the sandbox runs on loopback. So a MetricTemplate with
``address: http://prometheus.istio-system:9090``, a Flagger user's scripts and ``curl`` through
the mesh all reach the one Prometheus that scrapes the mesh's Istio metrics.
"""

from __future__ import annotations

import aiohttp

from sandbox.workloads.base import Obj, WorkloadRequest, WorkloadResponse

# Hop-by-hop and mesh headers are not forwarded; the rest of the request is, untouched.
_DROPPED = {"host", "connection", "proxy-connection", "keep-alive", "transfer-encoding",
            "content-length", "te", "upgrade"}  # fmt: skip


def is_prometheus_image(image: str) -> bool:
    """``prom/prometheus:v3.5.0``, ``quay.io/prometheus/prometheus`` (the repository's name)."""
    repository = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return repository == "prometheus"


class PrometheusForwarder:
    """Every Prometheus pod of the sandbox, answered by the real Prometheus at ``url``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __call__(
        self, pod: Obj, container: Obj, request: WorkloadRequest
    ) -> WorkloadResponse:
        del pod, container
        if self._session is None:
            # The proxy variables point at the mesh: the loopback Prometheus is reached directly.
            self._session = aiohttp.ClientSession(
                trust_env=False, timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        url = self._url + request.path + (f"?{request.query}" if request.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=request.body or None
            ) as answer:
                body = await answer.read()
                return WorkloadResponse(
                    status=answer.status,
                    body=body,
                    content_type=answer.headers.get("Content-Type", "text/plain"),
                )
        except (aiohttp.ClientError, TimeoutError) as err:
            # What a pod whose process is down gives its sidecar: a connection failure, 503.
            text = f"prometheus at {self._url} unreachable: {err}"
            return WorkloadResponse(status=503, body=text.encode(), content_type="text/plain")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
