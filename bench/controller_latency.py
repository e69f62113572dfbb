"""Detection latency of ``coalmine controller``: a Deployment's image written → the rollout decided.

``python -m bench.controller_latency [--changes 60]`` starts a sandbox cluster, one Canary and its
target, and runs the controller in-process with a recording `Actions` in place of Temporal: the
time measured is from just before the PATCH is sent to the moment the controller hands the new
revision on (watch event, cache, revision hash, decision). The update-with-start that follows is
one Temporal round trip (~20–30 ms, FACTS.md) on top.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from activities.kubernetes import build_api_client
from sandbox.runner import start_sandbox
from worker.controller import Controller, ControllerSettings
from worker.controller import _decide as d
from worker.kubecache import KubeConfig

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "namespace": "bench", "labels": {"app": "podinfo"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "podinfod", "image": "podinfo:0"}]},
        },
    },
}
CANARY = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "podinfo", "namespace": "bench"},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"interval": "10s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
    },
}


class Recorder:
    """Stands in for `Actions`: notes when each revision was handed on."""

    def __init__(self) -> None:
        self.handed: dict[str, float] = {}
        self.event = asyncio.Event()

    async def apply(self, obj: Any, action: d.Action) -> None:
        if isinstance(action, d.Rollout) and action.revision not in self.handed:
            self.handed[action.revision] = time.perf_counter()
            self.event.set()

    async def deleted(self, namespace: str, name: str) -> None:
        return None

    def forget_pauses(self) -> None:
        return None


async def run(changes: int, state: Path) -> list[float]:
    with start_sandbox(state, pod_ready_delay=0.3, loadtester=False) as sb:
        api = build_api_client(kubeconfig=str(sb.kubeconfig))
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        core.create_namespace({"metadata": {"name": "bench"}})
        apps.create_namespaced_deployment("bench", DEPLOYMENT)
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(
            "flagger.app", "v1beta1", "bench", "canaries", CANARY
        )
        recorder = Recorder()
        config = KubeConfig.load(sb.controller_kubeconfig)
        controller = Controller(config, recorder, ControllerSettings())  # type: ignore[arg-type]
        await controller.start()
        await controller.idle()
        latencies = []
        for i in range(1, changes + 1):
            recorder.event.clear()
            before = len(recorder.handed)
            patch = {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "podinfod", "image": f"podinfo:{i}"}]}
                    }
                }
            }
            sent = time.perf_counter()
            await asyncio.to_thread(apps.patch_namespaced_deployment, "podinfo", "bench", patch)
            while len(recorder.handed) == before:
                await asyncio.wait_for(recorder.event.wait(), 10)
                recorder.event.clear()
            latencies.append(max(recorder.handed.values()) - sent)
            await asyncio.sleep(0.05)
        await controller.close()
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-controller-") as tmp:
        latencies = asyncio.run(run(args.changes, Path(tmp)))
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"detection latency over {len(ms)} image changes: p50 {statistics.median(ms):.1f} ms, "
        f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
