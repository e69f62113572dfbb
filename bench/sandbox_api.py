"""Benchmark of the sandbox's Kubernetes API: requests/s and memory with thousands of objects.

The API is the sandbox's real control plane (kube-apiserver on etcd, with the controllers, the
scheduler and kwok running beside it, as in every test), started without the load tester; the
load generator is this process, a client with the admin's certificate straight to the API server.
The run:

1. creates ``--namespaces`` namespaces, each with a Deployment, Service, VirtualService and
   ConfigMap per target (``--objects`` targets in all), and reports the resident memory of
   kube-apiserver and etcd. The Deployments start at zero replicas: pods are not what this
   measures (the mix's /scale writes start and stop some, as rollouts do);
2. drives a rollout-like mix for ``--seconds`` from ``--concurrency`` concurrent clients: reads of
   Deployments and VirtualServices, strategic-merge patches of Deployments, merge patches of
   VirtualService weights, reads of /status (the controllers own status on a real API server, so
   the stand-in's /status writes are reads here), /scale writes, label-selected lists, and one
   open watch per namespace;
3. prints latency percentiles, and the figure on the last line. Throughput depends on what else
   runs on the machine; the CPU time kube-apiserver and etcd spend per request does not (though it
   includes the controllers' requests the mix causes), so both are printed.

Run: ``python -m bench.sandbox_api [--objects 1000] [--seconds 10] [--concurrency 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from typing import Any

import aiohttp

from bench._support import cpu_seconds, descendants, process_name, rss_kb, sandbox
from sandbox.kubecache import KubeConfig

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
SERVER = ("kube-apiserver", "etcd")  # the processes whose CPU and memory are the server's


def server_pids(sandbox_pid: int) -> list[int]:
    return [pid for pid in descendants(sandbox_pid) if process_name(pid) in SERVER]


def rss_mb(pids: list[int]) -> float:
    return sum(rss_kb(pid) for pid in pids) / 1024


def manifests(ns: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    labels = {"app": name}
    container = {
        "name": "app",
        "image": "podinfo:6.0.0",
        "ports": [{"containerPort": 9898}],
        "env": [{"name": "PODINFO_UI_COLOR", "value": "#34577c"}],
    }
    deployment = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    service = {"metadata": {"name": name}, "spec": {"selector": labels, "ports": [{"port": 9898}]}}
    routes = [
        {"destination": {"host": f"{name}-primary"}, "weight": 100},
        {"destination": {"host": f"{name}-canary"}, "weight": 0},
    ]
    vs = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [name], "http": [{"route": routes}]},
    }
    cm = {"metadata": {"name": name}, "data": {"k": "v" * 200}}
    return [
        (f"/apis/apps/v1/namespaces/{ns}/deployments", deployment),
        (f"/api/v1/namespaces/{ns}/services", service),
        (f"/apis/networking.istio.io/v1beta1/namespaces/{ns}/virtualservices", vs),
        (f"/api/v1/namespaces/{ns}/configmaps", cm),
    ]


async def populate(
    session: aiohttp.ClientSession, url: str, targets: list[tuple[str, str]]
) -> None:
    for ns in sorted({ns for ns, _ in targets}):
        async with session.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
            assert r.status == 201, await r.text()
    semaphore = asyncio.Semaphore(32)

    async def create(path: str, body: dict[str, Any]) -> None:
        async with semaphore, session.post(url + path, json=body) as r:
            assert r.status == 201, await r.text()

    await asyncio.gather(*(create(p, b) for ns, name in targets for p, b in manifests(ns, name)))


def request_for(ns: str, name: str) -> tuple[str, str, Any, str]:  # noqa: PLR0911
    """One request of the rollout-like mix: (method, path, body, content type)."""
    dep = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
    vs = f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}"
    roll = random.random()
    if roll < 0.30:
        return "GET", dep, None, ""
    if roll < 0.45:
        return "GET", vs, None, ""
    if roll < 0.60:
        weight = random.randint(0, 100)
        routes = [
            {"destination": {"host": f"{name}-primary"}, "weight": 100 - weight},
            {"destination": {"host": f"{name}-canary"}, "weight": weight},
        ]
        return "PATCH", vs, {"spec": {"http": [{"route": routes}]}}, MERGE
    if roll < 0.75:
        image = f"podinfo:6.0.{random.randint(0, 9)}"
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
        return "PATCH", dep, patch, STRATEGIC
    if roll < 0.85:
        return "GET", dep + "/status", None, ""
    if roll < 0.95:
        return "PATCH", dep + "/scale", {"spec": {"replicas": random.randint(0, 2)}}, MERGE
    return "GET", f"/apis/apps/v1/namespaces/{ns}/deployments?labelSelector=app%3D{name}", None, ""


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    targets: list[tuple[str, str]],
    seconds: float,
    concurrency: int,
) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            method, path, body, content_type = request_for(*random.choice(targets))
            headers = {"Content-Type": content_type} if content_type else {}
            data = json.dumps(body) if body is not None else None
            started = time.monotonic()
            async with session.request(method, url + path, data=data, headers=headers) as r:
                await r.read()
                assert r.status < 300, (r.status, path)
            latencies.append(time.monotonic() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def watchers(
    session: aiohttp.ClientSession, url: str, namespaces: list[str], seconds: float
) -> int:
    """One open deployment watch per namespace, as informers would hold; returns events received."""
    counts = [0]

    async def one(ns: str) -> None:
        path = (
            f"{url}/apis/apps/v1/namespaces/{ns}/deployments?watch=1&timeoutSeconds={int(seconds)}"
        )
        async with session.get(path) as r:
            async for _line in r.content:
                counts[0] += 1

    await asyncio.gather(*(one(ns) for ns in namespaces))
    return counts[0]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def server_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def run(args: argparse.Namespace, config: KubeConfig, pids: list[int]) -> str:
    targets = [(f"ns{i % args.namespaces}", f"app{i}") for i in range(args.objects)]
    namespaces = sorted({ns for ns, _ in targets})
    url = config.server
    async with config.session(connections=args.concurrency + len(namespaces) + 8) as session:
        base_rss = rss_mb(pids)
        started = time.monotonic()
        await populate(session, url, targets)
        populate_s = time.monotonic() - started
        loaded_rss = rss_mb(pids)
        objects = args.objects * 4 + len(namespaces)
        print(
            f"populated {objects} objects in {populate_s:.1f}s "
            f"({objects / populate_s:.0f} creates/s); kube-apiserver + etcd RSS "
            f"{base_rss:.0f} -> {loaded_rss:.0f} MB"
        )
        watch_task = asyncio.create_task(watchers(session, url, namespaces, args.seconds + 1))
        started, cpu, own_cpu = time.monotonic(), server_cpu(pids), cpu_seconds(os.getpid())
        latencies = await drive(session, url, targets, args.seconds, args.concurrency)
        elapsed = time.monotonic() - started
        busy = (server_cpu(pids) - cpu) / elapsed
        client_busy = (cpu_seconds(os.getpid()) - own_cpu) / elapsed
        events = await watch_task
    rate = len(latencies) / elapsed
    # CPU per request does not depend on what else shares the machine; throughput does.
    per_request_ms = busy * elapsed / len(latencies) * 1000
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(
        f"mixed load: {len(latencies)} requests in {elapsed:.1f}s from {args.concurrency} clients, "
        f"{len(namespaces)} watches got {events} events; p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"kube-apiserver + etcd CPU {busy:.0%}, load generator CPU {client_busy:.0%} of one core"
    )
    return (
        f"sandbox_api: {rate:.0f} req/s mixed (p99 {p99:.0f} ms); kube-apiserver + etcd CPU "
        f"{per_request_ms:.2f} ms/request (~{1000 / per_request_ms:.0f} req/s per core); "
        f"{objects} objects, kube-apiserver + etcd RSS {rss_mb(pids):.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000, help="targets (4 objects each)")
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with sandbox(loadtester=False) as handle:
        pids = server_pids(handle.pid)
        assert len(pids) == len(SERVER), f"kube-apiserver and etcd not found: {pids}"
        figure = asyncio.run(run(args, KubeConfig.load(handle.kubeconfig), pids))
    print(figure)


if __name__ == "__main__":
    main()
