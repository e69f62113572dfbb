"""Worker memory per parked rollout: what a worker holding N rollouts in its cache costs.

``bench.scale`` measures the worker's peak memory with activities in flight; this probe isolates
what one *cached* rollout costs. A worker in this process (fake activities, so nothing else grows)
serves ``--rollouts`` rollouts on a Temporal dev server; each scales up and parks in its first
analysis interval (one hour). The worker's baseline is its resident memory (RSS) once started and
warmed by 20 rollouts (imports and first-use caches are not charged to the rollouts); the growth
of RSS over that baseline once all are parked, divided by the rollouts, is the memory one cached
rollout holds. Each figure comes from a fresh process; the default run measures three runners at
300 and 1,000 rollouts:

- ``sandboxed``: the product's runner (`worker.runner`: the SDK's sandbox, context look-ups direct);
- ``passthrough``: the sandbox passing every module through (no per-run module copies, but
  ``datetime.now()`` in workflow code is then no longer refused);
- ``unsandboxed``: ``UnsandboxedWorkflowRunner``.

Besides RSS it reports where the growth sits: glibc malloc's bytes in use and free inside its
arenas (``mallinfo2``: the SDK's Rust core and Python's objects over 512 bytes), RSS after
``worker.memory.trim()`` (``malloc_trim(0)``, which the product's worker runs once a minute: the
figure a worker settles at), and with ``--trace`` the Python objects (tracemalloc).
``--passthrough MODULE`` (repeatable) measures the product's runner with more modules passed
through; ``--park-at-step N`` parks each rollout (paused) after its N-th weight step instead of in
its first interval, to see whether the steps taken matter; ``--max-history-events N`` sets the
rollouts' continue-as-new point (``RolloutInput.max_history_events``); ``--shared-type-adapters``
gives the worker a payload converter whose pydantic ``TypeAdapter`` cache is shared by every run.

Run: ``python -m bench.memory_probe [--sizes 300,1000]``; one figure with its breakdown:
``python -m bench.memory_probe --variant sandboxed --rollouts 300 [--trace]``.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import functools
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import DataConverter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench._fakes import article_canary
from bench._support import dev_server, finish, rss_kb
from tests.workflows.fakes import ACTIVITIES, CLUSTERS, FakeCluster
from worker.memory import trim
from worker.runner import RolloutSandbox, workflow_runner
from workflows.activity_api import ActivityName, SetWeightsInput
from workflows.model import OperatorRequest, RolloutInput
from workflows.rollout import CanaryRolloutWorkflow
from workflows.spec import Canary

VARIANTS = ("sandboxed", "passthrough", "unsandboxed")
"""The product's runner; the sandbox with every module passed through; no sandbox at all."""
WARM = 20
"""Rollouts parked before the baseline is read (imports and first-use caches)."""


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _Mallinfo2


def malloc_kb() -> tuple[int, int]:
    """glibc malloc's bytes in use (mmapped blocks included) and free inside its arenas, in KB,
    summed over every arena."""
    info = _LIBC.mallinfo2()
    return (info.uordblks + info.hblkhd) // 1024, info.fordblks // 1024


@dataclass
class Figures:
    variant: str
    rollouts: int
    baseline_kb: int
    """RSS of the warmed worker before the measured rollouts."""
    rss_kb: float
    """RSS growth per parked rollout."""
    malloc_kb: float
    """Growth of malloc's bytes in use per parked rollout."""
    malloc_free_kb: float
    """Growth of the free bytes inside malloc's arenas per parked rollout (fragmentation)."""
    trimmed_kb: float
    """RSS growth per parked rollout after ``worker.memory.trim()`` (the product's steady state)."""
    trim_ms: float
    """How long that trim took."""
    python_kb: float | None = None
    """Python objects per parked rollout (tracemalloc; only with ``--trace``)."""


_SHARED_ADAPTERS = functools.lru_cache(maxsize=1024)(TypeAdapter)


class SharedAdaptersPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter with one process-wide cache of ``TypeAdapter`` s.

    The SDK builds a payload converter for every workflow run, and pydantic's converter caches
    the ``TypeAdapter`` of every type it decodes, so each cached rollout holds its own set.
    """

    def __init__(self) -> None:
        super().__init__()
        for converter in self.converters.values():
            if isinstance(converter, PydanticJSONPlainPayloadConverter):
                converter._type_adapter = _SHARED_ADAPTERS


def runner(variant: str, passthrough: list[str]) -> WorkflowRunner:
    """The workflow runner of a variant (``sandboxed``: the product's, `worker.runner`)."""
    if variant == "unsandboxed":
        return UnsandboxedWorkflowRunner()
    if variant == "passthrough":
        restrictions = SandboxRestrictions.default.with_passthrough_all_modules()
        return SandboxedWorkflowRunner(restrictions=restrictions)
    if passthrough:
        restrictions = SandboxRestrictions.default.with_passthrough_modules(*passthrough)
        return RolloutSandbox(restrictions=restrictions)
    return workflow_runner()


class _Fleet:
    """Starts the probe's rollouts and waits for them to park."""

    def __init__(
        self,
        client: Client,
        queue: str,
        spec: Canary,
        park_at_step: int | None,
        max_history_events: int | None,
    ):
        self.client, self.queue, self.spec, self.park_at_step = client, queue, spec, park_at_step
        self.max_history_events = max_history_events
        self.paused = 0

    async def start(self, prefix: str, index: int) -> None:
        workflow_id = f"canary/probe/{prefix}{index}"
        cluster = FakeCluster()
        if self.park_at_step is not None:
            step = self.park_at_step

            async def pause() -> None:
                handle = self.client.get_workflow_handle(workflow_id)
                await handle.execute_update(
                    CanaryRolloutWorkflow.pause, OperatorRequest(identity="memory-probe")
                )
                self.paused += 1

            def at_step(arg: SetWeightsInput) -> bool:
                return arg.canary == step

            cluster.on(ActivityName.SET_WEIGHTS, at_step, pause)
        CLUSTERS[workflow_id] = cluster
        await self.client.start_workflow(
            CanaryRolloutWorkflow.run,
            RolloutInput(
                canary=self.spec,
                revision=cluster.revision,
                max_history_events=self.max_history_events,
            ),
            id=workflow_id,
            task_queue=self.queue,
        )

    async def parked(self, prefix: str, count: int) -> None:
        deadline = time.monotonic() + 600
        if self.park_at_step is not None:
            target = self.paused + count if prefix == "r" else count
            while self.paused < target:
                if time.monotonic() > deadline:
                    raise TimeoutError("the rollouts did not pause")
                await asyncio.sleep(0.5)
        else:
            query = (
                f"TaskQueue = '{self.queue}' AND CanaryPhase = 'Progressing' "
                f"AND WorkflowId STARTS_WITH 'canary/probe/{prefix}'"
            )
            while (await self.client.count_workflows(query)).count < count:
                if time.monotonic() > deadline:
                    raise TimeoutError("the rollouts did not park")
                await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # the parked rollouts' last tasks complete

    async def run(self, prefix: str, count: int) -> None:
        for batch in range(0, count, 50):
            await asyncio.gather(
                *(self.start(prefix, i) for i in range(batch, min(count, batch + 50)))
            )
        await self.parked(prefix, count)
        for cluster in CLUSTERS.values():
            cluster.calls.clear()  # the fakes' call log is the probe's, not the worker's
        gc.collect()


async def probe(
    rollouts: int,
    variant: str,
    *,
    trace: bool = False,
    passthrough: list[str] | None = None,
    park_at_step: int | None = None,
    max_history_events: int | None = None,
    shared_type_adapters: bool = False,
) -> Figures:
    passthrough = passthrough or []
    if park_at_step is None:
        spec = article_canary(steps=5, interval="1h")
    else:  # one weight point per step, an interval short enough to reach the step soon
        spec = article_canary(steps=park_at_step + 20, interval="1s")
    options: dict[str, Any] = {"workflow_runner": runner(variant, passthrough)}
    async with dev_server() as server:
        queue = f"probe-{uuid.uuid4().hex[:6]}"
        fleet = _Fleet(server.client, queue, spec, park_at_step, max_history_events)
        client = server.client
        if shared_type_adapters:
            converter = DataConverter(payload_converter_class=SharedAdaptersPayloadConverter)
            client = Client(client.service_client, data_converter=converter)
        async with Worker(
            client,
            task_queue=queue,
            workflows=[CanaryRolloutWorkflow],
            activities=ACTIVITIES,
            max_cached_workflows=rollouts + WARM + 100,
            **options,
        ):
            await fleet.run("warm", WARM)
            if trace:
                tracemalloc.start(1)
                before = tracemalloc.take_snapshot()
            base, (used, free) = rss_kb(os.getpid()), malloc_kb()
            await fleet.run("r", rollouts)
            grown, (used_after, free_after) = rss_kb(os.getpid()) - base, malloc_kb()
            python = None
            if trace:
                python = _python_objects(before, rollouts)
            started = time.perf_counter()
            trim()  # what the product's worker does once a minute
            trim_ms = (time.perf_counter() - started) * 1000
            trimmed = rss_kb(os.getpid()) - base
    label = "+".join([variant, *passthrough]) if passthrough else variant
    if park_at_step is not None:
        label += f"@step{park_at_step}"
    if max_history_events is not None:
        label += f" (continue-as-new past {max_history_events} events)"
    if shared_type_adapters:
        label += " (shared TypeAdapters)"
    return Figures(
        variant=label,
        rollouts=rollouts,
        baseline_kb=base,
        rss_kb=grown / rollouts,
        malloc_kb=(used_after - used) / rollouts,
        malloc_free_kb=(free_after - free) / rollouts,
        trimmed_kb=trimmed / rollouts,
        trim_ms=trim_ms,
        python_kb=python,
    )


def _python_objects(before: tracemalloc.Snapshot, rollouts: int) -> float:
    diff = tracemalloc.take_snapshot().compare_to(before, "filename")
    per = sum(d.size_diff for d in diff) / 1024 / rollouts
    print(f"Python objects (tracemalloc): {per:.0f} KB per parked rollout", file=sys.stderr)
    for d in diff[:10]:
        name = d.traceback[0].filename.split("site-packages/")[-1]
        print(f"  {d.size_diff / 1024 / rollouts:6.1f} KB  {name}", file=sys.stderr)
    return per


def _describe(f: Figures) -> str:
    python = f" Python objects {f.python_kb:.0f} KB;" if f.python_kb is not None else ""
    return (
        f"{f.variant}, {f.rollouts} rollouts: {f.rss_kb:.0f} KB RSS per parked rollout over a "
        f"{f.baseline_kb / 1024:.0f} MB baseline;{python} malloc in use {f.malloc_kb:.0f} KB, "
        f"free in its arenas {f.malloc_free_kb:+.0f} KB; after a trim {f.trimmed_kb:.0f} KB "
        f"(it took {f.trim_ms:.0f} ms)"
    )


def _measure(args: argparse.Namespace, variant: str, rollouts: int) -> Figures:
    """One figure from a fresh process."""
    argv = [sys.executable, "-m", "bench.memory_probe", "--rollouts", str(rollouts)]
    argv += ["--variant", variant, "--json"]
    for module in args.passthrough:
        argv += ["--passthrough", module]
    if args.park_at_step is not None:
        argv += ["--park-at-step", str(args.park_at_step)]
    if args.max_history_events is not None:
        argv += ["--max-history-events", str(args.max_history_events)]
    if args.shared_type_adapters:
        argv += ["--shared-type-adapters"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return Figures(**json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, help="one size (default: --sizes)")
    parser.add_argument("--sizes", default="300,1000", help="rollouts per run, comma-separated")
    parser.add_argument("--variant", choices=VARIANTS, help="one runner (default: all three)")
    parser.add_argument("--passthrough", action="append", default=[], metavar="MODULE")
    parser.add_argument("--park-at-step", type=int, metavar="N")
    parser.add_argument(
        "--max-history-events", type=int, metavar="N", help="the rollouts' continue-as-new point"
    )
    parser.add_argument(
        "--shared-type-adapters", action="store_true", help="one TypeAdapter cache per process"
    )
    parser.add_argument("--trace", action="store_true", help="where Python's memory goes")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant and args.rollouts:
        figures = asyncio.run(
            probe(
                args.rollouts,
                args.variant,
                trace=args.trace,
                passthrough=args.passthrough,
                park_at_step=args.park_at_step,
                max_history_events=args.max_history_events,
                shared_type_adapters=args.shared_type_adapters,
            )
        )
        finish(json.dumps(asdict(figures)) if args.json else _describe(figures))
    sizes = [args.rollouts] if args.rollouts else [int(s) for s in args.sizes.split(",")]
    variants = [args.variant] if args.variant else list(VARIANTS)
    summary = []
    for rollouts in sizes:
        for variant in variants:
            figures = _measure(args, variant, rollouts)
            print(_describe(figures), flush=True)
            summary.append(
                f"{figures.variant}@{rollouts} {figures.rss_kb:.0f}/{figures.trimmed_kb:.0f} KB"
            )
    baseline = figures.baseline_kb / 1024
    finish(
        f"memory_probe: per parked rollout in the worker's cache (RSS / after the worker's trim): "
        f"{', '.join(summary)}; worker baseline ~{baseline:.0f} MB"
    )


if __name__ == "__main__":
    main()
