"""History events per analysis step and per rollout, and how far a rollout is from Temporal's limit.

A rollout of the article's Canary (two metrics and the load-test webhook at every step) runs on the
time-skipping server with fake activities; its history is what a real rollout records (the same
workflow code issues the same commands; only the activities' answers are scripted). Events per
step are counted between the interval timers of consecutive weight steps; the fixed part
(initialization, scale-up, promotion) is the rest.

Temporal terminates a run at 51,200 events. The workflow continues as new past
``max_history_events`` (default 10,000) or when the server suggests it; this benchmark says
whether that code is in place (it greps ``workflows/``) and proves it works by running a long
rollout with a low limit and checking that it finished across several runs.

Run: ``python -m bench.history [--steps 10] [--long-steps 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from bench._fakes import article_canary, fake_worker, start
from bench._support import ACTIONS, HISTORY_LIMIT, ROOT, finish, history_of, steps, time_skipping
from workflows._core import DEFAULT_MAX_HISTORY_EVENTS


def continue_as_new_sites() -> list[str]:
    hits = []
    for path in sorted((ROOT / "workflows").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "workflow.continue_as_new(" in line:
                hits.append(f"{path.relative_to(ROOT)}:{number}")
    return hits


def _step_windows(history, step_list) -> list[list]:  # type: ignore[no-untyped-def]
    starts = {s.timer.started for s in step_list}
    ids = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and e.event_time.seconds + e.event_time.nanos / 1e9 in starts
    ]
    return [history.events[a - 1 : b - 1] for a, b in itertools.pairwise(ids)]


def per_step_events(history, step_list) -> list[int]:  # type: ignore[no-untyped-def]
    """Events from one step's interval timer start to the next step's."""
    return [len(window) for window in _step_windows(history, step_list)]


def per_step_actions(history, step_list) -> list[int]:  # type: ignore[no-untyped-def]
    """Temporal actions from one step's interval timer start to the next step's."""
    return [
        sum(e.event_type in ACTIONS for e in window) for window in _step_windows(history, step_list)
    ]


async def run(step_count: int, long_steps: int) -> str:
    async with time_skipping() as env, fake_worker(env.client) as queue:
        handle = await start(env.client, queue, article_canary(steps=step_count))
        await handle.result()
        history = await history_of(handle)
        taken = steps(history)
        assert len(taken) == step_count, [s.weight for s in taken]
        per_step = per_step_events(history, taken)
        typical = collections.Counter(per_step).most_common(1)[0][0]
        fixed = history.count - typical * step_count
        kinds = collections.Counter(EventType.Name(e.event_type) for e in history.events)
        print(f"rollout of {step_count} steps: {history.count} events; per step {per_step}")
        print("event types:", ", ".join(f"{k[11:]} {v}" for k, v in kinds.most_common()))
        print(
            f"per step {typical} events ({len(taken[1].checks)} check activities + weight change "
            "+ timer); "
            f"fixed part {fixed} events"
        )
        actions = collections.Counter(per_step_actions(history, taken)).most_common(1)[0][0]
        no_hooks = await start(env.client, queue, article_canary(steps=step_count, webhook=False))
        await no_hooks.result()
        plain = await history_of(no_hooks)
        plain_steps = steps(plain)
        plain_actions = collections.Counter(per_step_actions(plain, plain_steps)).most_common(1)
        plain_action = plain_actions[0][0]
        print(
            f"without the webhook: {plain.count} events for {step_count} steps; Temporal actions "
            f"per step {plain_action} (with the webhook {actions})"
        )

        until_limit = (HISTORY_LIMIT - fixed) // typical
        per_run = (DEFAULT_MAX_HISTORY_EVENTS - fixed) // typical
        sites = continue_as_new_sites()
        print(f"continue_as_new in workflows/: {', '.join(sites) or 'none'}")

        # Prove it: a long rollout with a low limit must continue as new and still finish.
        long_handle = await start(
            env.client, queue, article_canary(steps=long_steps), max_history_events=200
        )
        result = await long_handle.result()
        runs, total, run_id = 0, 0, None
        first = env.client.get_workflow_handle(
            long_handle.id, run_id=long_handle.first_execution_run_id
        )
        run_id = first.run_id
        while run_id is not None:
            h = env.client.get_workflow_handle(long_handle.id, run_id=run_id)
            desc = await h.describe()
            total += (await history_of(h)).count
            runs += 1
            run_id = None
            if desc.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
                run_id = (
                    (await h.fetch_history())
                    .events[-1]
                    .workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                )
        print(
            f"{long_steps}-step rollout with max_history_events=200: {runs} runs, "
            f"{total} events in all, result {result.phase}"
        )
    can = (
        f"continue-as-new in place ({len(sites)} site(s); every {DEFAULT_MAX_HISTORY_EVENTS:,} "
        f"events ≈ {per_run} steps; verified: {long_steps} steps over {runs} runs)"
        if sites and runs > 1
        else "continue-as-new NOT in place"
    )
    return (
        f"history: {typical} events per analysis step (2 metrics + 1 webhook), {history.count} per "
        f"{step_count}-step rollout; Temporal actions per step {plain_action} (2 metrics, no "
        f"webhook; target ≤ 3), {actions} with the webhook; 51,200-event limit at "
        f"~{until_limit:,} steps; {can}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--long-steps", type=int, default=40)
    args = parser.parse_args()
    finish(asyncio.run(run(args.steps, args.long_steps)))


if __name__ == "__main__":
    main()
