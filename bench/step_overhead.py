"""Per-step overhead: interval timer fired → weights patched, beyond the analysis checks' own time.

On the real stack (sandbox, Temporal dev server, in-process worker with the product's activities)
``--rollouts`` targets, each in its own namespace, are rolled out at once with the scenario's
Canary scaled down: 2 s interval, ``stepWeight 5`` up to 50 (ten steps), the two builtin metrics
and the load-test webhook at every step, the canary getting real traffic.

Every figure comes from the histories (server timestamps). For each weight step: timer fired →
set_weights completed, minus the union of the checks' scheduled → completed spans (the webhook
first, then the metrics concurrently; the union counts overlapping checks once). What remains is
the workflow's own cost: workflow tasks between the timer and the checks and between the checks
and the patch, the task queue, and the patch itself — each printed as its own percentile.

Run: ``python -m bench.step_overhead [--rollouts 4] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from temporalio.client import WorkflowFailureError, WorkflowHandle

from bench._real import World, create_target, real_world, set_image
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


async def initialize(world: World, ns: str) -> None:
    """The target's first rollout only initializes it (as Flagger's): not measured."""
    create_target(world.api_client, ns, "podinfo", replicas=2)
    init = await world.start(canary(ns, "podinfo", interval="2s", max_weight=50, step_weight=5))
    await init.result()


async def one_rollout(world: World, ns: str, steps_wanted: int) -> WorkflowHandle[Any, Any]:
    name = "podinfo"
    set_image(world.api_client, ns, name, "quay.io/stefanprodan/podinfo:1.4.1")
    world.users(ns, name, seconds=90)
    hook = {
        "name": "load-test",
        "url": "http://flagger-loadtester.test/",
        "timeout": "5s",
        "metadata": {"cmd": f"hey -z 1m -q 10 -c 2 http://{name}.{ns}:9898/"},
    }
    spec = canary(
        ns,
        name,
        interval="2s",
        max_weight=5 * steps_wanted,
        step_weight=5,
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


async def run(rollouts: int, steps_wanted: int) -> str:
    async with real_world() as world:
        names = [f"step{i}" for i in range(rollouts)]
        await asyncio.gather(*(initialize(world, ns) for ns in names))
        # This process is the worker (and the little that drives it): its CPU time over the
        # rollouts, per weight step, is the worker's CPU per step — scale-up and promotion
        # included, so an upper bound.
        cpu = time.process_time()
        handles = await asyncio.gather(*(one_rollout(world, ns, steps_wanted) for ns in names))
        cpu = time.process_time() - cpu
        results = [await measured(handle) for handle in handles]
    samples = [s for r in results for s in r]
    cpu_per_step = cpu / max(1, len(samples)) * 1000
    print(f"worker CPU: {cpu:.2f} s for {len(samples)} steps, {cpu_per_step:.1f} ms per step")
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
    return (
        f"step_overhead: timer fired → weights patched beyond the checks p50 "
        f"{pct('overhead', 0.5):.0f} ms, p99 {pct('overhead', 0.99):.0f} ms over {len(samples)} "
        f"steps of {rollouts} concurrent rollouts ({verdict} p99 < 50 ms); checks themselves p50 "
        f"{pct('checks', 0.5, with_checks):.0f} ms; worker CPU {cpu_per_step:.0f} ms per step "
        "(whole rollouts)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    finish(asyncio.run(run(args.rollouts, args.steps)))


if __name__ == "__main__":
    main()
