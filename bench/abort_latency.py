"""Abort latency: ``abort`` update accepted → the VirtualService's canary weight 0 in the cluster.

On the real stack (sandbox, Temporal dev server, in-process worker with the product's activities)
one target is rolled out again and again. Each run sets a new image, starts the rollout (2 s
interval, the two builtin metrics, users' traffic through the load tester), waits until the
canary has traffic (weight > 0 in the VirtualService), waits a random part of an interval so the
abort lands anywhere in the step (timer, metric queries, weight patch), sends the update, and
from the moment the update call returns polls the VirtualService every few milliseconds from a
separate thread until the canary weight reads 0.

Besides the polled figure, each run is cross-checked against the sandbox's audit log (when the
weight patch reached the API server) and broken down from the history: update accepted →
set_weights scheduled (the workflow cancelling the step and starting its rollback), scheduled →
started (task queue), started → completed (the patch).

With ``--slow-query SECONDS`` every step also checks a metric whose Prometheus answers only after
that many seconds (a MetricTemplate pointing at a slow Prometheus-shaped server in this process):
an abort aimed at the checks then lands while that query is in flight, and must not wait for it.

Run: ``python -m bench.abort_latency [--runs 30] [--aim anywhere|checks] [--slow-query 5]``
(``checks``: every abort lands just after the interval timer fired, while the metric queries run).
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import random
import ssl
import threading
import time
import urllib.request
from typing import Any

from kubernetes import client as k8s
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle

from bench._real import World, canary_weight, create_target, real_world, set_image
from bench._support import BUILTIN_METRICS, CHECKS, canary, finish, history_of, percentile
from workflows.model import AbortRequest, RolloutStatus

NS, NAME = "bench", "podinfo"
INTERVAL = 2.0


def poll_until_zero(api_client: Any, every: float = 0.003, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if canary_weight(api_client, NS, NAME) == 0:
            return time.time()
        time.sleep(every)
    raise TimeoutError("the canary weight never went back to 0")


async def until_weight(api_client: Any, handle: WorkflowHandle[Any, Any]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        weight = await asyncio.to_thread(canary_weight, api_client, NS, NAME)
        if weight > 0:
            return weight
        await asyncio.sleep(0.02)
    status = await handle.query("status", result_type=RolloutStatus)
    raise TimeoutError(f"the canary never got traffic: {status.model_dump_json(indent=1)}")


def audit_patch_time(world: World, before: float) -> float | None:
    """When the last VirtualService patch before ``before`` reached the API server (the API
    proxy's audit endpoint, HTTPS with the local cluster's CA)."""
    query = f"{world.sandbox.proxy_url}/sandbox/audit?namespace={NS}&resource=virtualservices"
    ca = ssl.create_default_context(cafile=str(world.sandbox.state_dir / "cluster/pki/ca.crt"))
    with urllib.request.urlopen(query + "&verb=patch", timeout=10, context=ca) as response:
        items = json.loads(response.read())["items"]
    times = [e["time"] for e in items if e["time"] <= before]
    return max(times) if times else None


SLOW_METRIC = {
    "name": "slow-query",
    "interval": "1m",
    "templateRef": {"name": "slow-query", "namespace": NS},
    "thresholdRange": {"min": 0},
}


class _SlowPrometheus(http.server.BaseHTTPRequestHandler):
    """Answers every instant query with 100, after ``delay`` seconds."""

    delay = 5.0

    def _answer(self) -> None:
        time.sleep(self.delay)
        sample = {"metric": {}, "value": [time.time(), "100"]}
        data = {"resultType": "vector", "result": [sample]}
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def slow_prometheus(delay: float) -> str:
    """Start the slow Prometheus on a free port (a daemon thread); its URL."""
    handler = type("SlowPrometheus", (_SlowPrometheus,), {"delay": delay})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


async def one_abort(
    world: World, index: int, rng: random.Random, *, aim: str, slow_seconds: float
) -> dict[str, float]:
    slow = slow_seconds > 0
    spec = canary(
        NS,
        NAME,
        interval=f"{INTERVAL:g}s",
        max_weight=50,
        step_weight=10,
        threshold=100,
        metrics=[*BUILTIN_METRICS, SLOW_METRIC] if slow else BUILTIN_METRICS,
        progress_deadline=30,
    )
    set_image(world.api_client, NS, NAME, f"quay.io/stefanprodan/podinfo:1.4.{index + 1}")
    handle = await world.start(spec)
    weight = await until_weight(world.api_client, handle)
    # "anywhere": a random point of the interval; "checks": just after the interval timer fires,
    # while the metric queries of the next step are in flight.
    low, high = (0.0, INTERVAL) if aim == "anywhere" else (INTERVAL - 0.05, INTERVAL + 0.25)
    if slow and aim == "checks":
        # The slow query runs from just after the interval to SLOW_QUERY later: aim inside it.
        low, high = INTERVAL + 0.5, INTERVAL + slow_seconds - 0.5
    await asyncio.sleep(rng.uniform(low, high))
    sent = time.time()
    await handle.execute_update("abort", AbortRequest(reason="bench", identity="bench"))
    accepted = time.time()
    zero = await asyncio.to_thread(poll_until_zero, world.api_client)
    try:
        await handle.result()
        raise AssertionError("an aborted rollout succeeded")
    except WorkflowFailureError:
        pass
    history = await history_of(handle)
    accepted_event = next(
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )
    accepted_at = accepted_event.event_time.seconds + accepted_event.event_time.nanos / 1e9
    in_flight = sum(
        # A step abandoned by the abort (TRY_CANCEL) may never record its close: in flight.
        a.name in CHECKS
        and a.scheduled <= accepted_at
        and (a.closed is None or a.closed >= accepted_at)
        for a in history.activities
    )
    undo = next(
        a
        for a in history.set_weights()
        if a.scheduled >= accepted_at and (a.input or {}).get("canary") == 0
    )
    patched = audit_patch_time(world, zero)
    assert undo.started is not None
    assert undo.closed is not None
    return {
        "weight": weight,
        "in_flight": in_flight,
        "latency": zero - accepted,
        "round_trip": accepted - sent,
        "audit": (patched - accepted) if patched is not None else float("nan"),
        "to_scheduled": undo.scheduled - accepted_at,
        "queued": undo.started - undo.scheduled,
        "patch": undo.closed - undo.started,
        "task_failures": sum(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events
        ),
    }


async def run(runs: int, aim: str, slow_query: float) -> str:
    rng = random.Random(7)
    async with real_world() as world:
        create_target(world.api_client, NS, NAME, replicas=2)
        if slow_query:
            template = {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "MetricTemplate",
                "metadata": {"name": "slow-query", "namespace": NS},
                "spec": {
                    "provider": {"type": "prometheus", "address": slow_prometheus(slow_query)},
                    "query": "vector(100)",
                },
            }
            k8s.CustomObjectsApi(world.api_client).create_namespaced_custom_object(
                "flagger.app", "v1beta1", NS, "metrictemplates", template
            )
        spec = canary(NS, NAME, interval="2s", max_weight=50, step_weight=10)
        init = await world.start(spec)
        await init.result()  # the first rollout of a target only initializes it, as Flagger's
        failures = sum(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            for e in (await history_of(init)).events
        )
        print(f"initialization rollout: {failures} failed workflow tasks")
        world.users(NS, NAME, seconds=int(runs * 10 + 60))
        await asyncio.sleep(3)  # a first rate() value in Prometheus
        samples = []
        for index in range(runs):
            sample = await one_abort(world, index, rng, aim=aim, slow_seconds=slow_query)
            samples.append(sample)
            print(
                f"run {index + 1:2d}: weight {sample['weight']:.0f}, checks in flight "
                f"{sample['in_flight']:.0f}, update round trip "
                f"{sample['round_trip'] * 1000:.0f} ms, accepted → weight 0 read "
                f"{sample['latency'] * 1000:.0f} ms (patch at API server "
                f"{sample['audit'] * 1000:.0f} ms); history: accepted → set_weights scheduled "
                f"{sample['to_scheduled'] * 1000:.0f} ms, queued {sample['queued'] * 1000:.0f} "
                f"ms, patch {sample['patch'] * 1000:.0f} ms; failed workflow tasks "
                f"{sample['task_failures']:.0f}",
                flush=True,
            )

    def pct(key: str, fraction: float) -> float:
        return percentile([s[key] for s in samples], fraction) * 1000

    for key in ("round_trip", "latency", "audit", "to_scheduled", "queued", "patch"):
        print(f"{key:>12}: p50 {pct(key, 0.5):6.1f} ms  p99 {pct(key, 0.99):6.1f} ms")
    hits = sum(s["in_flight"] > 0 for s in samples)
    print(f"aborts that landed while metric checks were in flight: {hits} of {runs}")
    verdict = "meets" if pct("latency", 0.99) < 500 else "MISSES"
    during = f" aimed at the checks, with a {slow_query:g} s metric query" if slow_query else ""
    return (
        f"abort_latency: accepted → canary weight 0 p50 {pct('latency', 0.5):.0f} ms, p99 "
        f"{pct('latency', 0.99):.0f} ms over {runs} aborts{during} ({verdict} p99 < 500 ms); "
        f"update round trip p50 {pct('round_trip', 0.5):.0f} ms; {hits} landed during checks"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--aim", choices=["anywhere", "checks"], default="anywhere")
    parser.add_argument("--slow-query", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    finish(asyncio.run(run(args.runs, args.aim, args.slow_query)))


if __name__ == "__main__":
    main()
