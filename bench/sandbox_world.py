"""Benchmark of the sandbox: the real controllers under many Deployments, Istio metrics, the mesh.

One sandbox (the real control plane with kwok's fake nodes and the data plane, no load tester;
pods ready at once) serves the whole run:

1. Mesh, as ``coalmine sandbox up`` runs it: ``hey`` through the proxy at a podinfo Service behind
   a 90/10 VirtualService (two Deployments, three pods), for ``--seconds``; reports requests/s and
   the sandbox process's resident memory (the data plane: proxy, mesh, cache, metrics).
2. Metrics: one scrape of the Istio series of ``--deployments`` canaries.
3. Controllers (kube-controller-manager, the scheduler, kwok, on kube-apiserver and etcd): create
   ``--deployments`` Deployments (each with a Service) across ``--namespaces`` namespaces through
   the API, wait until every one reports ``NewReplicaSetAvailable``; then change every pod template
   (a rollout each) and wait again. Reports wall time, Deployments/s, the objects the controllers
   made, and the CPU time and resident memory of the control plane.

The last line is the figure. Run: ``python -m bench.sandbox_world [--deployments 1000] [--seconds
5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._support import cpu_seconds, descendants, process_name, rss_kb, sandbox
from sandbox.kubecache import KubeConfig
from sandbox.mesh.metrics import IstioMetrics, Peer
from sandbox.tools import hey_bin

KUBECTL = str(Path(sys.executable).parent / "kubectl")  # the API server's minor (make setup)
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok")  # comm
LABEL = "bench=world"


def rss_mb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def control_plane(sandbox_pid: int) -> list[int]:
    return [pid for pid in descendants(sandbox_pid) if process_name(pid) in CONTROL_PLANE]


def deployment(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"bench": "world"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "bench": "world"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def settled(d: dict[str, Any], image: str) -> bool:
    """Rolled out to ``image``: observed, NewReplicaSetAvailable, one updated pod and no old one."""
    image_now = d["spec"]["template"]["spec"]["containers"][0]["image"]
    status = d.get("status") or {}
    conds = {c["type"]: c for c in status.get("conditions") or []}
    observed = status.get("observedGeneration") == d["metadata"].get("generation")
    finished = conds.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable"
    single = status.get("updatedReplicas") == 1 and status.get("replicas") == 1
    return image_now == image and observed and finished and single


class Api:
    """The admin's requests, straight to kube-apiserver."""

    def __init__(self, config: KubeConfig, session: aiohttp.ClientSession) -> None:
        self.url, self.session = config.server, session
        self.limit = asyncio.Semaphore(32)

    async def send(self, method: str, path: str, body: Any = None, ok: int = 200) -> Any:
        patch = method == "PATCH"
        headers = {"Content-Type": "application/strategic-merge-patch+json"} if patch else {}
        async with (
            self.limit,
            self.session.request(method, self.url + path, json=body, headers=headers) as r,
        ):
            assert r.status == ok, (r.status, path, await r.text())
            return await r.json()

    async def count(self, path: str) -> int:
        return len((await self.send("GET", f"{path}?labelSelector={LABEL}"))["items"])

    async def wait_all(self, expected: int, image: str) -> float:
        started = time.perf_counter()
        while True:
            listed = await self.send("GET", f"/apis/apps/v1/deployments?labelSelector={LABEL}")
            if sum(settled(d, image) for d in listed["items"]) >= expected:
                return time.perf_counter() - started
            if time.perf_counter() - started > 600:
                raise TimeoutError("controllers did not converge in 10 minutes")
            await asyncio.sleep(0.5)


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def create_targets(api: Api, targets: list[tuple[str, str]], image: str) -> None:
    for ns in sorted({ns for ns, _ in targets}):
        await api.send("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}, ok=201)
    deployments = [
        api.send("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment(name, image), 201)
        for ns, name in targets
    ]
    services = [
        api.send(
            "POST",
            f"/api/v1/namespaces/{ns}/services",
            {
                "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": [{"port": 9898}]},
            },
            201,
        )
        for ns, name in targets
    ]
    await asyncio.gather(*deployments, *services)


async def set_images(api: Api, targets: list[tuple[str, str]], image: str) -> None:
    container = {"name": "app", "image": image}
    patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
    await asyncio.gather(
        *(
            api.send("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", patch)
            for ns, name in targets
        )
    )


async def controllers(config: KubeConfig, sandbox_pid: int, count: int, namespaces: int) -> Any:
    """Create ``count`` Deployments and wait for them, then roll them all and wait again."""
    pids = control_plane(sandbox_pid)
    assert len(pids) == len(CONTROL_PLANE), f"control plane not found: {pids}"
    base_rss = sum(rss_kb(pid) for pid in pids) / 1024
    targets = [(f"bench-{i % namespaces}", f"app-{i}") for i in range(count)]
    figures: dict[str, Any] = {}
    async with config.session(connections=40) as session:
        api = Api(config, session)
        for step, image in (("create", "podinfo:1.0.0"), ("roll", "podinfo:2.0.0")):
            cpu, started = cpu_of(pids), time.perf_counter()
            if step == "create":
                await create_targets(api, targets, image)
            else:
                await set_images(api, targets, image)
            await api.wait_all(count, image)
            figures[f"{step}_s"] = time.perf_counter() - started
            figures[f"{step}_cpu"] = cpu_of(pids) - cpu
        figures["made"] = {
            "replicasets": await api.count("/apis/apps/v1/replicasets"),
            "pods": await api.count("/api/v1/pods"),
        }
    figures["rss_mb"] = sum(rss_kb(pid) for pid in pids) / 1024 - base_rss
    return figures


MESH_MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo-primary, namespace: bench}
spec:
  replicas: 2
  selector: {matchLabels: {app: podinfo-primary}}
  template:
    metadata: {labels: {app: podinfo-primary}}
    spec: {containers: [{name: podinfod, image: "podinfo:1.0.0", ports: [{containerPort: 9898}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: bench}
spec:
  replicas: 1
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec: {containers: [{name: podinfod, image: "podinfo:2.0.0", ports: [{containerPort: 9898}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: podinfo-primary, namespace: bench}
spec: {selector: {app: podinfo-primary}, ports: [{port: 9898}]}
---
apiVersion: v1
kind: Service
metadata: {name: podinfo-canary, namespace: bench}
spec: {selector: {app: podinfo}, ports: [{port: 9898}]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: podinfo, namespace: bench}
spec:
  hosts: [podinfo]
  http:
  - route:
    - {destination: {host: podinfo-primary}, weight: 90}
    - {destination: {host: podinfo-canary}, weight: 10}
"""


def mesh(handle: Any, seconds: int, concurrency: int) -> dict[str, float]:
    hey = hey_bin()
    if hey is None:
        raise SystemExit("hey not found: run scripts/fetch-tools.sh")
    kubectl = [KUBECTL, "--kubeconfig", str(handle.kubeconfig)]
    subprocess.run(
        [*kubectl, "apply", "-f", "-"],
        input=MESH_MANIFEST,
        text=True,
        check=True,
        capture_output=True,
    )
    for name in ("podinfo", "podinfo-primary"):
        subprocess.run(
            [*kubectl, "-n", "bench", "rollout", "status", f"deployment/{name}"],
            check=True,
            capture_output=True,
        )
    time.sleep(0.5)  # the mesh's cache sees the endpoints
    out = subprocess.run(
        [hey, "-z", f"{seconds}s", "-c", str(concurrency), "-x", handle.mesh_url,
         "http://podinfo.bench:9898/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    return {
        "rps": float(match.group(1)) if match else 0.0,
        "non_200": sum(int(n) for code, n in codes if code != "200"),
        "sandbox_rss_mb": rss_mb(str(handle.pid)),
    }


def exposition(rollouts: int, *, lean: bool = False, source: bool = True) -> dict[str, float]:
    """Istio metrics of ``rollouts`` canaries (primary + canary, codes 200 and 500, both reporters):
    the cost of one scrape."""
    metrics = IstioMetrics(lean=lean, source_reporter=source)
    caller = Peer("flagger-loadtester", "test")
    for i in range(rollouts):
        for workload in ("podinfo", "podinfo-primary"):
            for code in (200, 500):
                metrics.record(
                    source=caller,
                    destination=Peer(workload, f"ns-{i}", workload),
                    service_fqdn=f"{workload}.ns-{i}.svc.cluster.local",
                    code=code,
                    duration_ms=3.0,
                )
    started = time.perf_counter()
    body = metrics.expose()
    return {
        "series": len(metrics),
        "seconds": time.perf_counter() - started,
        "mb": len(body) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_world")
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with sandbox(pod_ready_delay=0.0, loadtester=False) as handle:
        m = mesh(handle, args.seconds, args.concurrency)
        print(
            f"mesh: {m['rps']:.0f} requests/s through the proxy (c={args.concurrency}), "
            f"{m['non_200']:.0f} non-200; sandbox RSS {m['sandbox_rss_mb']:.0f} MB"
        )
        for lean, source in ((False, True), (True, False)):
            e = exposition(args.deployments, lean=lean, source=source)
            print(
                f"metrics (lean={lean}, source reporter={source}): {e['series']:.0f} series "
                f"({args.deployments} canaries) exposed in {e['seconds'] * 1000:.0f} ms, "
                f"{e['mb']:.0f} MB per scrape"
            )
        config = KubeConfig.load(handle.kubeconfig)
        c = asyncio.run(controllers(config, handle.pid, args.deployments, args.namespaces))
    n = args.deployments
    print(
        f"controllers: {n} deployments ready in {c['create_s']:.1f} s "
        f"({n / c['create_s']:.0f}/s, control plane CPU {c['create_cpu']:.0f} s), "
        f"all rolled in {c['roll_s']:.1f} s ({n / c['roll_s']:.0f}/s, control plane CPU "
        f"{c['roll_cpu']:.0f} s); made {c['made']['replicasets']} ReplicaSets and "
        f"{c['made']['pods']} pods; control plane +{c['rss_mb']:.0f} MB RSS"
    )
    print(
        f"sandbox_world: mesh {m['rps']:.0f} req/s; {n} deployments "
        f"created in {c['create_s']:.1f} s "
        f"and rolled in {c['roll_s']:.1f} s by the real controllers; control plane "
        f"+{c['rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
