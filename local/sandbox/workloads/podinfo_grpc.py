"""podinfo's gRPC health service: ``grpc.health.v1.Health`` for each pod that serves gRPC.

podinfo started with ``--grpc-port=9999`` (Flagger's tutorials do: ``--grpc-port=9999
--grpc-service-name=podinfo``) registers the standard health server, with the overall service
(``""``) and its ``--grpc-service-name`` (``podinfo`` by default) SERVING; any other service name is
NOT_FOUND. That is what ``grpc_health_probe -addr=podinfo:9999`` and the load tester's gRPC checks
call.

A simulated pod has no socket of its own, and gRPC's server API does not tell a handler which
authority the caller dialled, so one server cannot answer for many pods: each pod that asks for a
gRPC port gets a real ``grpc.aio`` server on a loopback port of its own, started on first use
(`PodinfoGrpc.serve`) and stopped with the pod (`PodinfoGrpc.forget`). Whoever forwards a pod's
port 9999 (the mesh) asks `serve` for the local port to connect to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sandbox.workloads.base import Obj, container_env

DEFAULT_SERVICE_NAME = "podinfo"


def _flag(container: Obj, name: str) -> str | None:
    """``--name=value`` or ``--name value`` in the container's command and args."""
    words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
    # podinfo's tutorials put the whole command line in one string too (``./podinfo --port=…``).
    words = [part for word in words for part in word.split()]
    for i, word in enumerate(words):
        if word.startswith(f"--{name}="):
            return word.split("=", 1)[1]
        if word == f"--{name}" and i + 1 < len(words):
            return words[i + 1]
    return None


def grpc_port(container: Obj) -> int | None:
    """The port podinfo serves gRPC on (``--grpc-port`` or ``PODINFO_GRPC_PORT``), None if off."""
    raw = _flag(container, "grpc-port") or container_env(container).get("PODINFO_GRPC_PORT")
    try:
        port = int(raw or 0)
    except ValueError:
        return None
    return port or None


def grpc_service_name(container: Obj) -> str:
    return (
        _flag(container, "grpc-service-name")
        or container_env(container).get("PODINFO_GRPC_SERVICE_NAME")
        or DEFAULT_SERVICE_NAME
    )


@dataclass
class _PodServer:
    server: grpc.aio.Server
    port: int


class PodinfoGrpc:
    """The gRPC servers of podinfo pods, one per pod, on loopback ports."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._servers: dict[str, _PodServer] = {}
        self._lock = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()

    async def serve(self, pod: Obj, container: Obj) -> int | None:
        """The local port answering for this pod's gRPC port; None when it serves no gRPC."""
        if grpc_port(container) is None:
            return None
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        async with self._lock:  # two first calls for one pod start one server
            running = self._servers.get(uid)
            if running is None:
                running = self._servers[uid] = await self._start(grpc_service_name(container))
        return running.port

    async def _start(self, service_name: str) -> _PodServer:
        servicer = health.aio.HealthServicer()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port(f"{self._host}:0")
        await server.start()
        return _PodServer(server=server, port=port)

    def forget(self, pod_uid: str) -> None:
        """The pod is gone: stop its server (in the background: a watch callback calls this)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test's cleanup): close() stops what is left
            return
        running = self._servers.pop(pod_uid, None)
        if running is not None:
            task = loop.create_task(running.server.stop(grace=None))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for running in servers:
            await running.server.stop(grace=None)
        if self._stopping:
            await asyncio.gather(*self._stopping)
