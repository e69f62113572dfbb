"""Where a workflow task's time goes in the worker: each activation of the rollout workflow timed
and profiled (a by-hand probe, not run by ``make bench``).

The rollout runs on the time-skipping server with fake activities (``bench.ten_steps``'s setup),
so nothing but the workflow code and the SDK's Python side is measured. Every call of the SDK's
``_WorkflowInstanceImpl.activate`` (one workflow task's work on the Python side, inside the
sandbox) is timed and profiled; the slowest functions by cumulative time are printed.

Run: ``python -m bench.activation_profile [--runs 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import threading
import time
from typing import Any

from temporalio.worker import _workflow_instance

from bench._fakes import article_canary, fake_worker, start
from bench._support import finish, percentile, time_skipping

_lock = threading.Lock()
_profile = cProfile.Profile()
_times: list[float] = []
_original = _workflow_instance._WorkflowInstanceImpl.activate


def _timed(self: Any, act: Any) -> Any:
    with _lock:  # one activation at a time under the profiler (they share one GIL anyway)
        began = time.perf_counter()
        _profile.enable()
        try:
            return _original(self, act)
        finally:
            _profile.disable()
            _times.append(time.perf_counter() - began)


async def run(runs: int) -> str:
    _workflow_instance._WorkflowInstanceImpl.activate = _timed  # type: ignore[method-assign]
    spec = article_canary(steps=10)
    async with time_skipping() as env, fake_worker(env.client) as queue:
        handle = await start(env.client, queue, spec)  # warm-up, not counted
        await handle.result()
        _times.clear()
        _profile.clear()  # type: ignore[attr-defined]
        for _ in range(runs):
            handle = await start(env.client, queue, spec)
            await handle.result()
    out = io.StringIO()
    pstats.Stats(_profile, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())
    p50, p99 = percentile(_times, 0.5) * 1000, percentile(_times, 0.99) * 1000
    total = sum(_times) / runs * 1000
    return (
        f"activation_profile: {len(_times) / runs:.0f} activations per 10-step rollout, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms each, {total:.0f} ms of workflow code per rollout"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    finish(asyncio.run(run(args.runs)))


if __name__ == "__main__":
    main()
