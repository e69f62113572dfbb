"""Benchmark of the simulated world: controller reconcile throughput, mesh requests/s, memory.

1. Controllers, in-process (one Store, one ControllerManager, no HTTP, pods ready at once): create
   ``--deployments`` Deployments (each with a Service) across ``--namespaces`` namespaces, wait
   until every one reports ``NewReplicaSetAvailable``; then change every pod template (a rollout
   each) and wait again. Reports wall time, reconciles/s, objects in the store and the resident
   memory they cost.
2. Metrics: one scrape of the Istio series of ``--deployments`` canaries.
3. Mesh, as ``coalmine sandbox up`` runs it (separate process): ``hey`` through the proxy at a
   podinfo Service behind a 90/10 VirtualService (two Deployments, three pods), for ``--seconds``;
   reports requests/s and the sandbox process's resident memory.

The last line is the figure. Run: ``python -m bench.sandbox_world [--deployments 1000] [--seconds
5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from sandbox.controllers import ControllerManager
from sandbox.mesh.metrics import IstioMetrics, Peer
from sandbox.runner import start_sandbox
from sandbox.settings import WorldSettings
from sandbox.store import Store
from sandbox.tools import hey_bin


def rss_mb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def deployment(name: str, ns: str, image: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def complete(store: Store, expected: int, image: str) -> int:
    done = 0
    for d in store.scan("apps", "deployments"):
        image_now = d["spec"]["template"]["spec"]["containers"][0]["image"]
        conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        progressing = conds.get("Progressing", {})
        status = d.get("status") or {}
        observed = status.get("observedGeneration") == d["metadata"].get("generation")
        finished = progressing.get("reason") == "NewReplicaSetAvailable"
        settled = status.get("updatedReplicas") == 1 and status.get("replicas") == 1
        if image_now == image and observed and finished and settled:
            done += 1
    return done if done >= expected else 0


async def wait_all(store: Store, manager: ControllerManager, expected: int, image: str) -> float:
    started = time.perf_counter()
    while not complete(store, expected, image):
        await asyncio.sleep(0.25)
        if time.perf_counter() - started > 600:
            raise TimeoutError("controllers did not converge in 10 minutes")
    del manager
    return time.perf_counter() - started


async def controllers(count: int, namespaces: int) -> dict[str, float]:
    base = rss_mb()
    store = Store()
    manager = ControllerManager(store, WorldSettings(pod_ready_delay=0.0, kubelet_events=True))
    task = asyncio.create_task(manager.run())
    for i in range(namespaces):
        store.create("", "namespaces", {"metadata": {"name": f"bench-{i}"}})
    started = time.perf_counter()
    for i in range(count):
        ns = f"bench-{i % namespaces}"
        store.create("apps", "deployments", deployment(f"app-{i}", ns, "podinfo:1.0.0"))
        service = {
            "metadata": {"name": f"app-{i}", "namespace": ns},
            "spec": {"selector": {"app": f"app-{i}"}, "ports": [{"port": 9898}]},
        }
        store.create("", "services", service)
    await wait_all(store, manager, count, "podinfo:1.0.0")
    create_s = time.perf_counter() - started
    first = manager.queue.processed
    started = time.perf_counter()
    for d in store.list("apps", "deployments"):
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:2.0.0"
        store.update("apps", "deployments", d)
    await wait_all(store, manager, count, "podinfo:2.0.0")
    roll_s = time.perf_counter() - started
    rolled = manager.queue.processed - first
    task.cancel()
    return {
        "create_s": create_s,
        "create_reconciles": first,
        "roll_s": roll_s,
        "roll_reconciles": rolled,
        "objects": store.count(),
        "rss_mb": rss_mb() - base,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


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


def mesh(seconds: int, concurrency: int) -> dict[str, float]:
    hey = hey_bin()
    if hey is None:
        raise SystemExit("hey not found: run scripts/fetch-tools.sh")
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_sandbox(Path(tmp), pod_ready_delay=0.1) as sandbox,
    ):
        kubectl = ["kubectl", "--kubeconfig", str(sandbox.kubeconfig)]
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
        time.sleep(0.5)
        out = subprocess.run(
            [
                hey,
                "-z",
                f"{seconds}s",
                "-c",
                str(concurrency),
                "-x",
                sandbox.mesh_url,
                "http://podinfo.bench:9898/",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
        return {
            "rps": float(match.group(1)) if match else 0.0,
            "non_200": sum(int(n) for code, n in codes if code != "200"),
            "sandbox_rss_mb": rss_mb(str(sandbox.pid)),
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
    c = asyncio.run(controllers(args.deployments, args.namespaces))
    print(
        f"controllers: {args.deployments} deployments ready in {c['create_s']:.1f} s "
        f"({c['create_reconciles'] / c['create_s']:.0f} reconciles/s), "
        f"all rolled in {c['roll_s']:.1f} s "
        f"({c['roll_reconciles'] / c['roll_s']:.0f} reconciles/s); {c['objects']:.0f} objects, "
        f"+{c['rss_mb']:.0f} MB RSS (peak {c['peak_rss_mb']:.0f} MB)"
    )
    for lean, source in ((False, True), (True, False)):
        e = exposition(args.deployments, lean=lean, source=source)
        print(
            f"metrics (lean={lean}, source reporter={source}): {e['series']:.0f} series "
            f"({args.deployments} canaries) exposed in {e['seconds'] * 1000:.0f} ms, "
            f"{e['mb']:.0f} MB per scrape"
        )
    m = mesh(args.seconds, args.concurrency)
    print(
        f"mesh: {m['rps']:.0f} requests/s through the proxy (c={args.concurrency}), "
        f"{m['non_200']:.0f} non-200; sandbox RSS {m['sandbox_rss_mb']:.0f} MB"
    )
    print(
        f"sandbox_world: mesh {m['rps']:.0f} req/s; {args.deployments} deployments "
        f"created in {c['create_s']:.1f} s "
        f"and rolled in {c['roll_s']:.1f} s; +{c['rss_mb']:.0f} MB for {c['objects']:.0f} objects"
    )


if __name__ == "__main__":
    main()
