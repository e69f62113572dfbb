"""Coalmine and Flagger side by side, on the same cluster and data plane, in one run.

``python -m bench.flagger_side_by_side [--sizes 100,500] [--canaries 4]`` builds Flagger if it is
not built yet (scripts/build-flagger.sh, once), starts one sandbox (the real control plane, the
mesh with Istio's metrics, Prometheus, the load tester) and runs each product in turn against it,
Flagger as its own binary watching its namespace, Coalmine as ``coalmine worker`` + ``coalmine
controller`` with a Temporal dev server of its own. The same Canary objects are given to both.

Latency (``--canaries`` promoted and as many aborted per product; interval 10 s — Flagger's
floor, and Coalmine's processes get the same floor — threshold 5, stepWeight 10, maxWeight 30,
the builtin request-success-rate and request-duration checks, Flagger's rollback gate as a
webhook; users' traffic to each canary Service through the load tester):

- first weight: the target's image changed → the VirtualService's canary weight above 0;
- promotion: the same change → the Canary's phase ``Succeeded``;
- abort → traffic back: a random part of an interval after the first weight, the abort is sent
  (Flagger: the load tester's ``/rollback/open``, which Flagger reads at its next run; Coalmine:
  the ``abort`` update) → the canary weight 0.

Cost (``--sizes`` concurrent Canaries; interval 30 s, the same steps, two MetricTemplates whose
queries always pass since hundreds of canaries cannot all have traffic here): fresh processes per
size; CPU seconds and resident memory from /proc over one interval at rest (every Canary
initialized) and over two intervals progressing (every target changed at once): Flagger's process;
Coalmine's worker + controller; the Temporal dev server reported apart.

Coalmine's controller watches every namespace, so it never runs while Flagger's Canaries exist:
each phase deletes its Canaries before the next one starts. Phases run Flagger, Coalmine,
Coalmine, Flagger… so a change in the machine's load falls on both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from activities.kubernetes import build_api_client
from bench import _flagger_watch as w
from bench._cluster import add_nodes, retried
from bench._flagger_figures import (
    Cost,
    Usage,
    cpu_per_step_ms,
    first_after,
    increases,
    summed,
)
from bench._flagger_procs import FlaggerBuild, Proc, coalmine, flagger, flagger_build
from bench._flagger_procs import process_usage as usage_of
from bench._flagger_report import Latency, Scale, from_record, summary, table
from bench._real import set_image
from bench._support import ROOT, dev_server, finish, sandbox
from workflows.model import AbortRequest, workflow_id

LATENCY_INTERVAL = 10.0
SCALE_INTERVAL = 30.0
PRODUCTS = ("flagger", "coalmine")


@dataclass
class Running:
    product: str
    procs: dict[str, Proc]
    temporal_pid: int | None = None
    client: Any = None

    def usage(self) -> Usage:
        readings = {name: proc.usage() for name, proc in self.procs.items()}
        return summed(readings, list(readings))

    def temporal(self) -> Usage | None:
        return usage_of(self.temporal_pid) if self.temporal_pid else None


@contextlib.asynccontextmanager
async def running(
    product: str, build: FlaggerBuild, sb: Any, namespace: str, logs: Path
) -> AsyncIterator[Running]:
    if product == "flagger":
        with flagger(build, sb, namespace, logs) as proc:
            yield Running(product, {"flagger": proc})
        return
    async with dev_server() as server:
        queue = f"side-{uuid.uuid4().hex[:6]}"
        with coalmine(sb, server.address, queue, logs) as cm:
            yield Running(
                product,
                {"worker": cm.worker, "controller": cm.controller},
                temporal_pid=server.pid,
                client=server.client,
            )


async def abort(run: Running, sb: Any, namespace: str, name: str) -> None:
    if run.product == "flagger":

        def open_gate() -> None:
            with httpx.Client(proxy=sb.mesh_url, timeout=10) as http:
                r = http.post(
                    f"{sb.loadtester_url}rollback/open", json={"name": name, "namespace": namespace}
                )
            r.raise_for_status()

        await asyncio.to_thread(open_gate)
    else:
        wid = workflow_id(cluster="default", namespace=namespace, name=name)
        handle = run.client.get_workflow_handle(wid)
        await handle.execute_update("abort", AbortRequest(reason="side by side", identity="bench"))


def users(sb: Any, namespace: str, name: str, seconds: int) -> None:
    """Traffic to the canary Service (5 requests/s), run by the load tester as a user would."""
    cmd = f"hey -z {seconds}s -q 5 -c 1 http://{name}-canary.{namespace}:9898/"
    payload = {"name": f"users-{name}", "namespace": namespace, "metadata": {"cmd": cmd}}
    with httpx.Client(proxy=sb.mesh_url, timeout=10) as http:
        http.post(sb.loadtester_url, json=payload).raise_for_status()


# --- latency ---------------------------------------------------------------------------------


async def latency_phase(
    product: str, build: FlaggerBuild, sb: Any, api: Any, *, count: int, logs: Path
) -> Latency:
    ns = f"side-{product}-latency"
    promoted = [f"podinfo-p{i}" for i in range(count)]
    aborted = [f"podinfo-a{i}" for i in range(count)]
    names = promoted + aborted
    w.create_namespace(api, ns)
    recorder = w.Recorder(str(sb.kubeconfig), ns)
    result = Latency()
    rng = random.Random(11)
    try:
        async with running(product, build, sb, ns, logs) as run:
            bodies = [
                w.canary_body(
                    ns,
                    name,
                    interval=f"{LATENCY_INTERVAL:g}s",
                    max_weight=30,
                    step_weight=10,
                    threshold=5,
                    metrics=w.LATENCY_METRICS,
                    webhooks=[w.rollback_gate(sb.loadtester_url)],
                )
                for name in names
            ]
            await asyncio.to_thread(w.create_canaries, api, bodies)
            took = await asyncio.to_thread(
                w.wait_phases, recorder, names, {"Initialized"}, 240, f"{product}: initialization"
            )
            print(f"[{product} latency] {len(names)} Canaries initialized in {took:.0f} s")
            for name in names:
                await asyncio.to_thread(users, sb, ns, name, 180)
            await asyncio.sleep(3)
            sent: dict[str, float] = {}

            async def drive(name: str) -> None:
                # Each target changes at a random point of an interval: Flagger notices a change
                # at its next run of that Canary, so one common instant would sample one phase.
                await asyncio.sleep(rng.uniform(0, LATENCY_INTERVAL))
                sent[name] = time.time()
                await asyncio.to_thread(
                    retried, set_image, api, ns, name, "quay.io/stefanprodan/podinfo:6.0.1"
                )
                if name not in aborted:
                    return
                await poll(lambda: first_after(recorder.weight_series(name), sent[name], _up))
                await asyncio.sleep(rng.uniform(0, LATENCY_INTERVAL))
                asked = time.time()
                await abort(run, sb, ns, name)
                back = await poll(lambda: first_after(recorder.weight_series(name), asked, _zero))
                result.abort.values.append(back - asked)

            await asyncio.wait_for(asyncio.gather(*(drive(n) for n in names)), 300)
            await asyncio.to_thread(
                w.wait_phases, recorder, promoted, {"Succeeded"}, 300, f"{product}: promotion"
            )
            for name in names:
                first = first_after(recorder.weight_series(name), sent[name], _up)
                if first is not None:
                    result.first_weight.values.append(first - sent[name])
                seen = first_after(recorder.phase_series(name), sent[name], _progressing)
                if seen is not None:
                    result.progressing.values.append(seen - sent[name])
            for name in promoted:
                done = first_after(recorder.phase_series(name), sent[name], _succeeded)
                if done is not None:
                    result.promotion.values.append(done - sent[name])
            failed = [n for n in aborted if recorder.phase(n) != "Failed"]
            if failed:
                result.notes.append(f"aborted but not Failed (yet): {failed}")
    finally:
        recorder.stop()
        await asyncio.to_thread(w.delete_namespace, api, ns)
    print(
        f"[{product} latency] Progressing {result.progressing.text()}; first weight "
        f"{result.first_weight.text()}; promotion "
        f"{result.promotion.text()}; abort → weight 0 {result.abort.text()}",
        flush=True,
    )
    return result


async def poll(read: Callable[[], float | None], within: float = 240.0) -> float:
    """Wait for a time to appear in the watched series (every 10 ms)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = read()
        if value is not None:
            return value
        await asyncio.sleep(0.01)
    raise TimeoutError("the watched weight never changed as expected")


def _up(weight: Any) -> bool:
    return weight is not None and weight > 0


def _zero(weight: Any) -> bool:
    return weight == 0


def _progressing(phase: Any) -> bool:
    return phase == "Progressing"


def _succeeded(phase: Any) -> bool:
    return phase == "Succeeded"


# --- cost at scale ---------------------------------------------------------------------------


async def scale_phase(
    product: str,
    build: FlaggerBuild,
    sb: Any,
    api: Any,
    *,
    count: int,
    logs: Path,
    init_timeout: float,
) -> Scale:
    ns = f"side-{product}-{count}"
    names = [f"app-{i:04d}" for i in range(count)]
    w.create_namespace(api, ns)
    for template in w.constant_templates(ns, sb.prometheus_url):
        w.create_custom(api, template, "metrictemplates")
    recorder = w.Recorder(str(sb.kubeconfig), ns)
    try:
        async with running(product, build, sb, ns, logs) as run:
            await asyncio.sleep(3)
            base, t_base = run.usage(), run.temporal()
            bodies = [
                w.canary_body(
                    ns,
                    name,
                    interval=f"{SCALE_INTERVAL:g}s",
                    max_weight=50,
                    step_weight=10,
                    threshold=5,
                    metrics=w.template_metrics(ns),
                )
                for name in names
            ]
            started = time.monotonic()
            await asyncio.to_thread(w.create_canaries, api, bodies)
            try:
                await asyncio.to_thread(
                    w.wait_phases, recorder, names, {"Initialized"}, init_timeout, product
                )
            except TimeoutError as err:
                # Measured anyway (every Canary exists and is being worked on), and said.
                print(f"[{product} {count}] initialization cut short: {err}", flush=True)
            initialized = time.monotonic() - started
            ready = sum(recorder.phase(n) == "Initialized" for n in names)
            print(
                f"[{product} {count}] created; {ready} initialized after {initialized:.0f} s",
                flush=True,
            )
            await asyncio.sleep(5)
            rest0, t_rest0 = run.usage(), run.temporal()
            await asyncio.sleep(SCALE_INTERVAL)
            rest1, t_rest1 = run.usage(), run.temporal()
            changed = time.time()
            await asyncio.to_thread(w.change_images, api, ns, names, "6.0.1")
            await asyncio.sleep(max(0.0, 2 * SCALE_INTERVAL - (time.time() - changed)))
            prog1, t_prog1 = run.usage(), run.temporal()
            window = time.time() - changed
            steps = sum(
                increases(recorder.weight_series(n), changed, changed + window) for n in names
            )
            result = Scale(
                count,
                ready,
                initialized,
                Cost.between(count, SCALE_INTERVAL, base, rest0, rest1),
                Cost.between(count, window, base, rest1, prog1),
                steps,
            )
            if t_base and t_rest0 and t_rest1 and t_prog1:
                result.temporal_rest = Cost.between(count, SCALE_INTERVAL, t_base, t_rest0, t_rest1)
                result.temporal_progressing = Cost.between(count, window, t_base, t_rest1, t_prog1)
    finally:
        recorder.stop()
        await asyncio.to_thread(w.delete_namespace, api, ns)
    print(
        f"[{product} {count}] at rest: {result.rest.text()}; progressing: "
        f"{result.progressing.text()}; {steps} weight steps "
        f"({cpu_per_step_ms(result.progressing, steps):.0f} ms CPU each)"
        + (
            f"; Temporal server progressing: {result.temporal_progressing.text()}"
            if result.temporal_progressing
            else ""
        ),
        flush=True,
    )
    return result


# --- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def admin(sb: Any) -> Iterator[Any]:
    """The cluster admin's client, fresh for each phase (no connection kept idle across phases)."""
    api = build_api_client(kubeconfig=str(sb.kubeconfig), pool_size=16)
    try:
        yield api
    finally:
        api.close()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def run(args: argparse.Namespace, build: FlaggerBuild) -> str:
    logs = ROOT / ".state" / "bench" / "flagger_side_by_side"
    logs.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    lat: dict[str, Latency] = {}
    scale: dict[str, dict[int, Scale]] = {p: {} for p in PRODUCTS}
    loads = [f"start {time.strftime('%H:%M:%S', time.gmtime())} UTC: {load()}"]
    with sandbox(pod_ready_delay=0.3, lean_metrics=True, source_reporter=False) as sb:
        if sizes:
            with admin(sb) as api:
                extra = max(0, (3 * max(sizes) + 249) // 250 - 3 + 1)
                added = await asyncio.to_thread(add_nodes, api, extra)
            print(f"added {len(added)} fake Nodes (250 pods each) to the sandbox's 3", flush=True)
        order = list(PRODUCTS)
        if args.canaries:
            for product in order:
                with admin(sb) as api:
                    lat[product] = await latency_phase(
                        product, build, sb, api, count=args.canaries, logs=logs
                    )
                loads.append(f"after {product} latency: {load()}")
            order.reverse()
        for size in sizes:
            for product in order:
                with admin(sb) as api:
                    scale[product][size] = await scale_phase(
                        product,
                        build,
                        sb,
                        api,
                        count=size,
                        logs=logs,
                        init_timeout=args.init_timeout,
                    )
                loads.append(f"after {product} {size}: {load()}")
            order.reverse()
    loads.append(f"end {time.strftime('%H:%M:%S', time.gmtime())} UTC: {load()}")
    print("load averages (1, 5, 15 min): " + "; ".join(loads))
    record = {
        "flagger": build.version,
        "latency": {p: asdict(v) for p, v in lat.items()},
        "scale": {p: {str(n): asdict(s) for n, s in v.items()} for p, v in scale.items()},
        "loads": loads,
    }
    (logs / "result.json").write_text(json.dumps(record, indent=1))
    markdown = table(lat, scale)
    (logs / "table.md").write_text(markdown + "\n")
    print(markdown)
    print(f"figures: {logs / 'result.json'}")
    return f"flagger_side_by_side: Flagger {build.version} ÷ Coalmine: {summary(lat, scale)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500", help="concurrent Canaries (comma-separated)")
    parser.add_argument(
        "--canaries", type=int, default=4, help="promoted (and aborted) per product"
    )
    parser.add_argument(
        "--init-timeout",
        type=float,
        default=600,
        help="seconds to wait for the Canaries' initialization before measuring anyway",
    )
    parser.add_argument("--table", type=Path, help="print the table of a run's result.json")
    parser.add_argument("--no-build", action="store_true", help="do not build Flagger if absent")
    args = parser.parse_args()
    if args.table:
        lat, scale = from_record(json.loads(args.table.read_text()))
        print(table(lat, scale))
        print(summary(lat, scale))
        return
    build, why = flagger_build(build=not args.no_build)
    if build is None:
        print(why, flush=True)
        finish(f"flagger_side_by_side: not run — {why.splitlines()[0]}")
        return
    finish(asyncio.run(run(args, build)))


if __name__ == "__main__":
    main()
