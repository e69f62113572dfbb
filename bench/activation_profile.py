"""Where a workflow task's time goes in the worker: each activation of the rollout workflow timed
and profiled, and the payload conversion around it (a by-hand probe, not run by ``make bench``).

The rollout runs on the time-skipping server with fake activities (``bench.ten_steps``'s setup),
so nothing but the workflow code and the SDK's Python side is measured. Every call of the SDK's
``_WorkflowInstanceImpl.activate`` (one workflow task's work on the Python side, inside the
sandbox) is timed and profiled; the slowest functions by cumulative time are printed.

Around each activation the SDK decodes the activation's payloads and encodes the completion's
(``decode_activation`` / ``encode_completion``: three visits of every payload each way). Each
visit asks the workflow instance for the payload's serialization context. The SDK's sandbox
answers with an ``exec`` of a small code string inside it (``_Instance.get_serialization_context``);
the product's runner (`worker.runner`) asks the instance in the sandbox directly. Both
conversions are timed (wall time), the look-ups counted by the command they belong to, and each is
also asked the SDK's way, to show what the product's runner saves (thread CPU time, both; the
SDK's look-ups are left out of the conversion figure).

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
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import temporalio.bridge.worker as bridge_worker
from temporalio.api.enums.v1.command_type_pb2 import CommandType
from temporalio.worker import _workflow_instance
from temporalio.worker.workflow_sandbox import _runner

from bench._fakes import article_canary, fake_worker, start
from bench._support import finish, percentile, time_skipping
from worker import runner

_lock = threading.Lock()
_profile = cProfile.Profile()
_times: list[float] = []
_original = _workflow_instance._WorkflowInstanceImpl.activate
_conversions: dict[str, list[float]] = defaultdict(list)
_contexts: Counter[str] = Counter()
_context_seconds = {"sandboxed": 0.0, "direct": 0.0}
_product_context = runner._DirectContextInstance.get_serialization_context


def _timed(self: Any, act: Any) -> Any:
    with _lock:  # one activation at a time under the profiler (they share one GIL anyway)
        began = time.perf_counter()
        _profile.enable()
        try:
            return _original(self, act)
        finally:
            _profile.disable()
            _times.append(time.perf_counter() - began)


def _timed_conversion(
    name: str, convert: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await convert(*args, **kwargs)
        finally:
            _conversions[name].append(time.perf_counter() - began)

    return timed


def _counted_context(self: Any, command_info: Any) -> Any:
    # Thread CPU time, not wall time: a look-up that loses the GIL midway is not charged for
    # the other thread's work.
    began = time.thread_time()
    context = _product_context(self, command_info)  # the product's runner: asked directly
    middle = time.thread_time()
    _runner._Instance.get_serialization_context(self, command_info)  # the SDK's: exec inside
    _context_seconds["direct"] += middle - began
    _context_seconds["sandboxed"] += time.thread_time() - middle
    kind = "none" if command_info is None else CommandType.Name(command_info.command_type)
    _contexts[kind.removeprefix("COMMAND_TYPE_").lower()] += 1
    return context


def _instrument() -> None:
    _workflow_instance._WorkflowInstanceImpl.activate = _timed  # type: ignore[method-assign]
    for name in ("decode_activation", "encode_completion"):
        setattr(bridge_worker, name, _timed_conversion(name, getattr(bridge_worker, name)))
    runner._DirectContextInstance.get_serialization_context = _counted_context  # type: ignore[method-assign]


def _reset() -> None:
    _times.clear()
    _profile.clear()  # type: ignore[attr-defined]
    _conversions.clear()
    _contexts.clear()
    _context_seconds.update(sandboxed=0.0, direct=0.0)


async def run(runs: int) -> str:
    _instrument()
    spec = article_canary(steps=10)
    async with time_skipping() as env, fake_worker(env.client) as queue:
        handle = await start(env.client, queue, spec)  # warm-up, not counted
        await handle.result()
        _reset()
        for _ in range(runs):
            handle = await start(env.client, queue, spec)
            await handle.result()
    out = io.StringIO()
    pstats.Stats(_profile, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())
    p50, p99 = percentile(_times, 0.5) * 1000, percentile(_times, 0.99) * 1000
    total = sum(_times) / runs * 1000
    activations = len(_times) / runs
    for name, times in sorted(_conversions.items()):
        print(
            f"{name}: p50 {percentile(times, 0.5) * 1000:.2f} ms, "
            f"{sum(times) / runs * 1000:.0f} ms per rollout"
        )
    looked_up = sum(_contexts.values())
    sandboxed = _context_seconds["sandboxed"] / max(1, looked_up) * 1e6
    direct = _context_seconds["direct"] / max(1, looked_up) * 1e6
    print(
        f"serialization-context look-ups: {looked_up / runs:.0f} per rollout "
        f"({looked_up / max(1, len(_times)):.1f} per activation), {sandboxed:.0f} µs each through "
        f"the sandbox, {direct:.1f} µs directly; by command: "
        + ", ".join(f"{k} {v / runs:.0f}" for k, v in _contexts.most_common())
    )
    # (less the SDK's look-ups this probe adds, for comparison, to each conversion)
    added = _context_seconds["sandboxed"]
    conversion = (sum(sum(t) for t in _conversions.values()) - added) / runs * 1000
    return (
        f"activation_profile: {activations:.0f} activations per 10-step rollout, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms each, {total:.0f} ms of workflow code per rollout; "
        f"payload conversion {conversion:.0f} ms per rollout, of which "
        f"{_context_seconds['direct'] / runs * 1000:.1f} ms serialization-context look-ups "
        f"({direct:.1f} µs each; through the SDK's sandbox {sandboxed:.0f} µs each, "
        f"{added / runs * 1000:.0f} ms per rollout)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    finish(asyncio.run(run(args.runs)))


if __name__ == "__main__":
    main()
