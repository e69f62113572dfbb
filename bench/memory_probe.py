"""Worker memory per parked rollout, with and without the workflow sandbox (a by-hand probe).

``bench.scale`` measures the worker's peak memory with activities in flight; this probe isolates
what one *cached* rollout costs. A worker in this process (fake activities, so nothing else grows)
serves ``--rollouts`` rollouts on a Temporal dev server; each scales up and parks in its first
analysis interval (one hour). Once all are parked, the growth of this process's RSS over a warmed
baseline, divided by the rollouts, is the memory one cached rollout holds. It runs twice, each in
a fresh process: with the SDK's sandboxed workflow runner (what the product uses), with the
sandbox passing every module through, and with ``UnsandboxedWorkflowRunner``, to show what the
sandbox's per-run module copies cost.

Run: ``python -m bench.memory_probe [--rollouts 500]``; one variant with the Python allocation
sites: ``python -m bench.memory_probe --variant sandboxed --trace``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
import tracemalloc
import uuid

from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench._fakes import article_canary
from bench._support import dev_server, finish, rss_kb
from tests.workflows.fakes import ACTIVITIES, CLUSTERS, FakeCluster
from workflows.model import RolloutInput
from workflows.rollout import CanaryRolloutWorkflow


async def probe(rollouts: int, variant: str, *, trace: bool = False) -> float:
    spec = article_canary(steps=5, interval="1h")
    async with dev_server() as server:
        queue = f"probe-{uuid.uuid4().hex[:6]}"
        options: dict[str, object] = {}
        if variant == "unsandboxed":
            options["workflow_runner"] = UnsandboxedWorkflowRunner()
        elif variant == "passthrough":
            restrictions = SandboxRestrictions.default.with_passthrough_all_modules()
            options["workflow_runner"] = SandboxedWorkflowRunner(restrictions=restrictions)
        async with Worker(
            server.client,
            task_queue=queue,
            workflows=[CanaryRolloutWorkflow],
            activities=ACTIVITIES,
            max_cached_workflows=rollouts + 100,
            **options,
        ):

            async def start(prefix: str, index: int) -> None:
                workflow_id = f"canary/probe/{prefix}{index}"
                cluster = FakeCluster()
                CLUSTERS[workflow_id] = cluster
                await server.client.start_workflow(
                    CanaryRolloutWorkflow.run,
                    RolloutInput(canary=spec, revision=cluster.revision),
                    id=workflow_id,
                    task_queue=queue,
                )

            async def parked(prefix: str, count: int) -> None:
                query = (
                    f"TaskQueue = '{queue}' AND CanaryPhase = 'Progressing' "
                    f"AND WorkflowId STARTS_WITH 'canary/probe/{prefix}'"
                )
                deadline = time.monotonic() + 300
                while (await server.client.count_workflows(query)).count < count:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the rollouts did not park")
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2)  # the parked rollouts' last tasks complete

            # Warm-up: imports and first-use caches are not charged to the rollouts.
            await asyncio.gather(*(start("warm", i) for i in range(20)))
            await parked("warm", 20)
            for cluster in CLUSTERS.values():
                cluster.calls.clear()  # the fakes' call log is the probe's, not the worker's
            gc.collect()
            if trace:
                tracemalloc.start(1)
                before = tracemalloc.take_snapshot()
            base = rss_kb(os.getpid())
            for batch in range(0, rollouts, 50):
                await asyncio.gather(
                    *(start("r", i) for i in range(batch, min(rollouts, batch + 50)))
                )
            await parked("r", rollouts)
            for cluster in CLUSTERS.values():
                cluster.calls.clear()
            gc.collect()
            grown = rss_kb(os.getpid()) - base
            if trace:
                diff = tracemalloc.take_snapshot().compare_to(before, "filename")
                python = sum(d.size_diff for d in diff) / 1024 / rollouts
                print(f"Python objects (tracemalloc): {python:.0f} KB per parked rollout")
                for d in diff[:8]:
                    name = d.traceback[0].filename.split("site-packages/")[-1]
                    print(f"  {d.size_diff / 1024 / rollouts:6.1f} KB  {name}")
    return grown / rollouts


VARIANTS = ("sandboxed", "passthrough", "unsandboxed")
"""The product's runner; the sandbox with every module passed through (no per-run module
copies — but then ``datetime.now()`` in workflow code is no longer refused: checked by hand,
it returns the wall clock); no sandbox at all."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=500)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--trace", action="store_true", help="where Python's memory goes")
    args = parser.parse_args()
    if args.variant:
        per = asyncio.run(probe(args.rollouts, args.variant, trace=args.trace))
        finish(f"{per:.0f}")
    figures = {}
    for variant in VARIANTS:
        argv = [sys.executable, "-m", "bench.memory_probe", "--rollouts", str(args.rollouts)]
        out = subprocess.run(
            [*argv, "--variant", variant], capture_output=True, text=True, check=True
        ).stdout
        figures[variant] = out.strip().splitlines()[-1]
        print(f"{variant}: {figures[variant]} KB per parked rollout", flush=True)
    finish(
        f"memory_probe: {figures['sandboxed']} KB per parked rollout in the worker's cache "
        f"(sandboxed runner), {figures['passthrough']} KB with every module passed through, "
        f"{figures['unsandboxed']} KB unsandboxed; {args.rollouts} rollouts"
    )


if __name__ == "__main__":
    main()
