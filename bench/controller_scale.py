"""The controller's cost at scale: CPU seconds and memory while it follows 1,000 Canaries.

``python -m bench.controller_scale [--canaries 1000] [--rest 30]`` starts a sandbox cluster and
fills it with Canaries and their Deployments (``replicas: 0``: no pods, the objects are what is
measured) spread over ten namespaces, each Canary at rest as the workflow leaves it (status
``Succeeded`` with its target's revision as ``lastAppliedSpec``, the spec's hash recorded). Then
the controller runs in a process of its own (``--child``), as its ServiceAccount through the API
proxy, with a counting `Actions` in place of Temporal, and measures itself: CPU seconds
(``time.process_time``: every thread) and resident memory (``VmRSS``)

- after its imports (the baseline: Python, aiohttp, the spec models),
- once the first LIST of Canaries, Deployments, ConfigMaps and Secrets is cached, the watches
  open and every Canary handled once (the initial sync, what a restart costs), and
- after ``--rest`` seconds of watching with nothing changing.

The Temporal calls a real controller would make are left out on purpose: at rest it makes none
(every Canary is up to date), and a start costs one update-with-start round trip (~20-30 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from activities.kubernetes import build_api_client
from sandbox.runner import start_sandbox
from worker.controller import _decide as d

NAMESPACES = 10
PARALLEL = 8


def deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"podinfo:{name}"}]},
            },
        },
    }


def canary(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 9898},
            "analysis": {"interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        },
    }


def _populate_one(api: k8s.ApiClient, name: str, namespace: str) -> None:
    apps, custom = k8s.AppsV1Api(api), k8s.CustomObjectsApi(api)
    stored = apps.create_namespaced_deployment(namespace, deployment(name, namespace))
    target = api.sanitize_for_serialization(stored)
    revision = d.target_revision(target, lambda _plural, _name: None)
    group = ("flagger.app", "v1beta1", namespace, "canaries", name)
    created = custom.create_namespaced_custom_object(*group[:4], canary(name, namespace))
    annotations = {"metadata": {"annotations": {d.SPEC_ANNOTATION: d.spec_hash(created)}}}
    custom.patch_namespaced_custom_object(*group, annotations)
    status = {"status": {"phase": "Succeeded", "lastAppliedSpec": revision}}
    custom.patch_namespaced_custom_object_status(*group, status)


def populate(api: k8s.ApiClient, count: int) -> float:
    """Create the Canaries and Deployments; seconds taken."""
    started = time.monotonic()
    core = k8s.CoreV1Api(api)
    namespaces = [f"scale-{i}" for i in range(NAMESPACES)]
    for namespace in namespaces:
        core.create_namespace({"metadata": {"name": namespace}})
    with ThreadPoolExecutor(PARALLEL) as pool:
        jobs = [
            pool.submit(_populate_one, api, f"app-{i:04d}", namespaces[i % NAMESPACES])
            for i in range(count)
        ]
        for job in jobs:
            job.result()
    return time.monotonic() - started


# --- the child: the controller, measuring itself ------------------------------------------------


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Counter:
    """Stands in for `Actions`: counts the decisions, calls nothing."""

    def __init__(self) -> None:
        self.actions: dict[str, int] = {}

    async def apply(self, obj: Any, action: d.Action) -> None:
        kind = type(action).__name__
        self.actions[kind] = self.actions.get(kind, 0) + 1

    async def deleted(self, namespace: str, name: str) -> None:
        return None

    def forget_pauses(self) -> None:
        return None


async def child(kubeconfig: Path, expect: int, rest: float) -> dict[str, Any]:
    from worker.controller import Controller, ControllerSettings
    from worker.kubecache import KubeConfig

    figures: dict[str, Any] = {"baseline": (time.process_time(), _rss_mib())}
    counter = Counter()
    handled: set[str] = set()
    config = KubeConfig.load(kubeconfig)
    controller = Controller(
        config,
        counter,  # type: ignore[arg-type]
        ControllerSettings(),
        on_handled=lambda key, _action: handled.add(key),
    )
    started = time.monotonic()
    await controller.start()
    while len(handled) < expect:
        if time.monotonic() - started > 240:
            raise TimeoutError(f"only {len(handled)} of {expect} Canaries handled")
        await asyncio.sleep(0.05)
    await controller.idle(within=60)
    figures["synced"] = (time.process_time(), _rss_mib())
    figures["sync_seconds"] = time.monotonic() - started
    await asyncio.sleep(rest)
    figures["rest"] = (time.process_time(), _rss_mib())
    figures["actions"] = counter.actions
    await controller.close()
    return figures


# --- the parent -----------------------------------------------------------------------------------


def run(count: int, rest: float, state: Path) -> dict[str, Any]:
    with start_sandbox(state, pod_ready_delay=0.3, loadtester=False) as sb:
        api = build_api_client(kubeconfig=str(sb.kubeconfig))
        created = populate(api, count)
        print(f"created {count} Canaries and Deployments in {created:.0f} s", flush=True)
        time.sleep(5)  # the Deployments' first status writes settle
        proc = subprocess.run(
            [
                sys.executable, "-m", "bench.controller_scale", "--child",
                "--kubeconfig", str(sb.controller_kubeconfig),
                "--canaries", str(count), "--rest", str(rest),
            ],
            capture_output=True, text=True, check=False, timeout=rest + 300,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"controller process failed:\n{proc.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return figures


def report(count: int, rest: float, f: dict[str, Any]) -> str:
    (cpu0, rss0), (cpu1, rss1), (cpu2, rss2) = f["baseline"], f["synced"], f["rest"]
    actions = ", ".join(f"{n} {k}" for k, n in sorted(f["actions"].items()))
    print(f"decisions in the initial sync: {actions}")
    print(f"baseline after imports: {rss0:.0f} MiB RSS, {cpu0:.2f} CPU-s")
    return (
        f"{count:,} Canaries + Deployments: initial sync {f['sync_seconds']:.1f} s wall, "
        f"{cpu1 - cpu0:.2f} CPU-s, RSS {rss1:.0f} MiB (+{rss1 - rss0:.0f} over the "
        f"{rss0:.0f} MiB baseline); at rest {rest:.0f} s: {cpu2 - cpu1:.2f} CPU-s "
        f"({100 * (cpu2 - cpu1) / rest:.1f}% of a core), RSS {rss2:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--rest", type=float, default=30.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = asyncio.run(child(args.kubeconfig, args.canaries, args.rest))
        print(json.dumps(figures))
        return
    with tempfile.TemporaryDirectory(prefix="bench-controller-scale-") as tmp:
        figures = run(args.canaries, args.rest, Path(tmp))
    print(report(args.canaries, args.rest, figures))


if __name__ == "__main__":
    main()
