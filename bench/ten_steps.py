"""Wall time of a 10-step canary on the time-skipping server (fake activities): the workflow tests'
speed, and the cost of the workflow code itself with no I/O behind the activities.

The Canary is the article's (two metrics and the load-test webhook at every step, 30 s interval),
with ``stepWeight 10`` up to ``maxWeight 100``: ten weight steps, then promotion. Five minutes of
timers pass in milliseconds; what remains is workflow tasks, activity round trips to the Java test
server and the SDK. The first run (worker warm-up, imports) is reported apart from the median.

Run: ``python -m bench.ten_steps [--runs 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench._fakes import article_canary, fake_worker, start
from bench._support import finish, history_of, steps, time_skipping


async def run(runs: int) -> str:
    spec = article_canary(steps=10)
    times: list[float] = []
    async with time_skipping() as env, fake_worker(env.client) as queue:
        for index in range(runs + 1):
            started = time.perf_counter()
            handle = await start(env.client, queue, spec)
            await handle.result()
            elapsed = time.perf_counter() - started
            history = await history_of(handle)
            taken = [s.weight for s in steps(history)]
            assert taken == list(range(10, 101, 10)), taken
            label = "warm-up" if index == 0 else f"run {index}"
            print(f"{label}: {elapsed * 1000:.0f} ms, {history.count} events, steps {taken}")
            if index:
                times.append(elapsed)
    median = statistics.median(times)
    return (
        f"ten_steps: 10-step canary on the time-skipping server median {median * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {runs} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    finish(asyncio.run(run(args.runs)))


if __name__ == "__main__":
    main()
