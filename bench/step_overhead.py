"""Per-step overhead: interval timer fired → weights patched, beyond the analysis checks' own time.

On the real stack (sandbox, Temporal dev server, in-process worker with the product's activities)
``--rollouts`` targets, each in its own namespace, are rolled out at once with the scenario's
Canary scaled down: 2 s interval, ``stepWeight 5`` (less beyond 19 steps, so ``maxWeight`` stays
under 100), the two builtin metrics and the load-test webhook at every step, the canary getting
real traffic. Each Canary is in the cluster too, as the controller's rollouts have it, so every
step writes its status and its event names it (``--without-canary``: as CI starts a rollout from
a file, with neither).

Every latency figure comes from the histories (server timestamps). For each weight step: timer
fired → weights patched (``advance``'s marker: a local activity, recorded when the workflow task
that ran it completed), minus the union of the checks' scheduled → completed spans (the
webhook first, then the metrics concurrently; the union counts overlapping checks once). What
remains is the workflow's own cost: workflow tasks between the timer and the checks and between
the checks and the patch, the task queue, and the patch itself — each printed as its own
percentile.

The worker's CPU per step is *marginal*: this process is the worker (and the little that drives
it), and the same targets are rolled out twice in one invocation, first with ``--long-steps``
weight steps, then with ``--steps``, after a one-step warm-up run that is not counted (the long
run first, so any warm-up left makes the figure larger, not smaller). Each run costs the same
scale-up, readiness polls, promotion, events and scale-down; only the number of steps differs,
so

    (process CPU of the long run − of the short run) / (its steps − the short run's steps)

is what one more step costs the worker. It includes what the worker burns while idle during
those extra intervals (its pollers): the idle rate is measured for ``--idle`` seconds before the
runs and printed too, and the figure is also given with it subtracted. The old figure, a whole
run's CPU over its steps (scale-up and promotion included, an upper bound), is printed for both
runs. The latency percentiles are over the steps of both runs. Apart from that, the thread CPU of
every call of the synchronous activities (``advance``…) and of each check ``analyse_step`` runs
is printed (`bench._real.CpuMeter`): the activity code's own share, without the SDK's.

Run: ``python -m bench.step_overhead [--rollouts 4] [--steps 2] [--long-steps 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from temporalio.client import WorkflowFailureError, WorkflowHandle

from bench._real import CpuMeter, World, create_target, real_world, set_image
from bench._support import (
    BUILTIN_METRICS,
    History,
    Step,
    canary,
    finish,
    history_of,
    percentile,
    steps,
    task_times,
    union_seconds,
)

INTERVAL_SECONDS = 2
"""The Canaries' analysis interval."""


def breakdown(history: History, step: Step) -> dict[str, float]:
    fired = step.timer.fired
    sw = step.set_weights
    assert fired is not None
    assert sw.started is not None
    assert sw.closed is not None
    spans = [(c.scheduled, c.closed or c.scheduled) for c in step.checks]
    checks = union_seconds(spans)
    first = min((c.scheduled for c in step.checks), default=sw.scheduled)
    last = max((c.closed or c.scheduled for c in step.checks), default=fired)
    tasks, task_queued, task_work = task_times(history, fired, sw.scheduled)
    return {
        "tasks": float(tasks),
        "task_queued": task_queued,
        "task_work": task_work,
        "total": sw.closed - fired,
        "checks": checks,
        "overhead": sw.closed - fired - checks,
        "to_checks": first - fired,
        "to_patch": sw.scheduled - last if step.checks else sw.scheduled - fired,
        "queued": sw.started - sw.scheduled,
        "patch": sw.closed - sw.started,
    }


async def initialize(world: World, ns: str, *, in_cluster: bool) -> None:
    """The target's first rollout only initializes it (as Flagger's): not measured.

    ``in_cluster``: the Canary is also created in the cluster, as the controller's rollouts have
    it, so every step writes its status and its event names it; without, the rollouts are as
    CI starts them from a file (no status, events on the Deployment)."""
    create_target(world.api_client, ns, "podinfo", replicas=2)
    if in_cluster:
        document = {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": ns},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {
                    "interval": f"{INTERVAL_SECONDS}s",
                    "threshold": 100,
                    "maxWeight": 50,
                    "stepWeight": 5,
                },
            },
        }
        k8s.CustomObjectsApi(world.api_client).create_namespaced_custom_object(
            "flagger.app", "v1beta1", ns, "canaries", document
        )
    init = await world.start(
        canary(ns, "podinfo", interval=f"{INTERVAL_SECONDS}s", max_weight=50, step_weight=5)
    )
    await init.result()


async def one_rollout(
    world: World, ns: str, steps_wanted: int, image: str
) -> WorkflowHandle[Any, Any]:
    name = "podinfo"
    step_weight = min(5, 95 // steps_wanted)  # up to 95 steps below a maxWeight of 100
    set_image(world.api_client, ns, name, image)
    world.users(ns, name, seconds=2 * INTERVAL_SECONDS * steps_wanted + 60)
    hook = {
        "name": "load-test",
        "url": "http://flagger-loadtester.test/",
        "timeout": "5s",
        "metadata": {"cmd": f"hey -z 1m -q 10 -c 2 http://{name}.{ns}:9898/"},
    }
    spec = canary(
        ns,
        name,
        interval=f"{INTERVAL_SECONDS}s",
        max_weight=step_weight * steps_wanted,
        step_weight=step_weight,
        threshold=100,
        metrics=BUILTIN_METRICS,
        webhooks=[hook],
    )
    handle = await world.start(spec)
    try:
        await handle.result()
    except WorkflowFailureError as err:
        print(f"{ns}: rollout failed: {err.cause}")
    return handle


async def measured(handle: WorkflowHandle[Any, Any]) -> list[dict[str, float]]:
    history = await history_of(handle)
    taken = steps(history)
    print(f"{handle.id}: steps {[s.weight for s in taken]}")
    return [breakdown(history, s) | {"n_checks": float(len(s.checks))} for s in taken]


@dataclass
class Run:
    """One round of concurrent rollouts: the worker's CPU over it and its steps' figures."""

    steps_wanted: int
    cpu: float
    samples: list[dict[str, float]]

    @property
    def cpu_per_step(self) -> float:
        return self.cpu / max(1, len(self.samples))


async def one_run(world: World, names: list[str], steps_wanted: int, image: str) -> Run:
    cpu = time.process_time()
    handles = await asyncio.gather(*(one_rollout(world, ns, steps_wanted, image) for ns in names))
    cpu = time.process_time() - cpu
    samples = [s for handle in handles for s in await measured(handle)]
    run = Run(steps_wanted, cpu, samples)
    print(
        f"run of {steps_wanted} steps: worker CPU {cpu:.2f} s for {len(samples)} steps, "
        f"{run.cpu_per_step * 1000:.1f} ms per step (whole rollouts)"
    )
    return run


async def idle_cpu_rate(seconds: float) -> float:
    """The worker's CPU seconds per second with nothing to do (its pollers)."""
    cpu, began = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu) / (time.monotonic() - began)


async def run(
    rollouts: int, short: int, long: int, idle_seconds: float, *, in_cluster: bool = True
) -> str:
    meter = CpuMeter()
    async with real_world(cpu=meter) as world:
        names = [f"step{i}" for i in range(rollouts)]
        await asyncio.gather(*(initialize(world, ns, in_cluster=in_cluster) for ns in names))
        # Warm-up, not counted: the first checks import and build what every later one reuses.
        await one_run(world, names, 1, "quay.io/stefanprodan/podinfo:1.4.0-warm")
        idle = await idle_cpu_rate(idle_seconds)
        meter.seconds.clear()
        long_run = await one_run(world, names, long, "quay.io/stefanprodan/podinfo:1.4.1")
        short_run = await one_run(world, names, short, "quay.io/stefanprodan/podinfo:1.4.2")
    extra_steps = len(long_run.samples) - len(short_run.samples)
    extra_seconds = INTERVAL_SECONDS * extra_steps / max(1, rollouts)
    marginal = (long_run.cpu - short_run.cpu) / max(1, extra_steps) * 1000
    idle_share = idle * extra_seconds / max(1, extra_steps) * 1000
    print(
        f"worker idle: {idle * 1000:.1f} ms of CPU per second; "
        f"{idle_share:.1f} ms of it per marginal step"
    )
    print(
        f"worker CPU per step, marginal: ({long_run.cpu:.2f} − {short_run.cpu:.2f}) s / "
        f"{extra_steps} steps = {marginal:.1f} ms ({marginal - idle_share:.1f} ms without idle)"
    )
    print("activity code's own CPU (thread time per call, both runs):")
    for name, seconds in sorted(meter.seconds.items()):
        print(
            f"{name:>20}: {len(seconds):4d} calls, mean {sum(seconds) / len(seconds) * 1000:5.2f} "
            f"ms, p50 {percentile(seconds, 0.5) * 1000:5.2f} ms"
        )
    samples = long_run.samples + short_run.samples
    with_checks = [s for s in samples if s["n_checks"]]

    def pct(key: str, fraction: float, of: list[dict[str, float]] = samples) -> float:
        return percentile([s[key] for s in of], fraction) * 1000

    keys = ("total", "checks", "overhead", "to_checks", "to_patch", "queued", "patch")
    for key in (*keys, "task_queued", "task_work"):
        print(f"{key:>10}: p50 {pct(key, 0.5):6.1f} ms  p99 {pct(key, 0.99):6.1f} ms")
    tasks = [s["tasks"] for s in with_checks]
    print(f"workflow tasks per step with checks: {min(tasks):.0f}–{max(tasks):.0f}")
    print(
        f"steps with checks ({len(with_checks)}): overhead p50 "
        f"{pct('overhead', 0.5, with_checks):.1f} ms, p99 {pct('overhead', 0.99, with_checks):.1f} "
        f"ms; checks p50 {pct('checks', 0.5, with_checks):.1f} ms"
    )
    verdict = "meets" if pct("overhead", 0.99) < 50 else "MISSES"
    cpu_verdict = "meets" if marginal <= 10 else "MISSES"
    whole = (long_run.cpu + short_run.cpu) / max(1, len(samples)) * 1000
    return (
        f"step_overhead: timer fired → weights patched beyond the checks p50 "
        f"{pct('overhead', 0.5):.0f} ms, p99 {pct('overhead', 0.99):.0f} ms over {len(samples)} "
        f"steps of {rollouts} concurrent rollouts ({verdict} p99 < 50 ms); checks themselves p50 "
        f"{pct('checks', 0.5, with_checks):.0f} ms; worker CPU per step {marginal:.1f} ms "
        f"marginal ({cpu_verdict} ≤ 10 ms), {whole:.0f} ms averaged over whole rollouts"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="weight steps of the short run")
    parser.add_argument("--long-steps", type=int, default=30, help="weight steps of the long run")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to measure idle CPU")
    parser.add_argument(
        "--without-canary",
        action="store_true",
        help="no Canary in the cluster (rollouts as CI starts them: no status writes)",
    )
    args = parser.parse_args()
    if not 0 < args.steps < args.long_steps <= 95:
        parser.error("want 0 < --steps < --long-steps <= 95")
    in_cluster = not args.without_canary
    finish(
        asyncio.run(
            run(args.rollouts, args.steps, args.long_steps, args.idle, in_cluster=in_cluster)
        )
    )


if __name__ == "__main__":
    main()
