"""Scale: N concurrent rollouts on ONE worker process: step lag, memory, CPU, actions per step.

One sandbox (the real control plane with kwok's fake nodes, and the data plane), one Temporal dev
server and, per configuration, a fresh ``coalmine worker`` process (the product's command, with the
sandbox's env and the worker's kubeconfig: the ``coalmine`` ServiceAccount through the API proxy,
as the local stack runs it), so its memory and CPU are its own and readable from /proc. Every
target is its own Deployment (1 replica), spread over ``--namespaces`` namespaces. All targets
are initialized first (a target's first rollout only creates the primary, as Flagger does).
Then, for each interval and size:

1. a new image is set on N targets and N rollouts start, spread evenly over one interval (as
   canaries started by many CI jobs would be), each with ``stepWeight 10`` up to
   ``10 × --steps`` and two metrics per step — inline PromQL queries on the mesh's Istio series
   that fall back to a passing value when a canary has no traffic (``… or on() vector(100)``), so
   Prometheus does the lookups of a real check without N load generators on two cores; no
   webhooks (one ``hey`` per canary would swamp the machine);
2. once every rollout has reached its last measured step (visibility: ``CanaryWeight``), they are
   cancelled (all roll back) and the benchmark waits for them to close;
3. the histories give the step lag: how late each step's set_weights completed against its
   schedule (the previous step's set_weights — for the first step, the scale-up — plus the
   interval), broken down into the timer's own delay, the checks and the workflow tasks; plus the
   history events and Temporal actions (activities, timers, markers, upserts) per step.

While it runs, RSS of the worker is sampled every second, and the CPU seconds of every process
(worker, Temporal server, the sandbox process — API proxy, mesh and metrics —, its control plane —
kube-apiserver, etcd, controller-manager, scheduler, kwok —, its Prometheus, this process, and
the whole machine — other work on the machine included) are read from /proc at the start and end
of each configuration.

Run: ``python -m bench.scale [--sizes 100,500,1000] [--intervals 60,30] [--steps 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.kubernetes import build_api_client
from bench._cluster import add_nodes
from bench._support import (
    ACTIONS,
    History,
    canary,
    cpu_seconds,
    deployment,
    descendants,
    dev_server,
    finish,
    history_of,
    percentile,
    process_name,
    rss_kb,
    sandbox,
    stop_process,
)
from workflows.model import WORKFLOW_NAME, Phase, RolloutInput, RolloutStatus, workflow_id
from workflows.spec import Canary

SUCCESS = (
    'sum(rate(istio_requests_total{{destination_workload_namespace="{ns}",'
    'destination_workload="{name}",response_code!~"5.*"}}[1m])) / '
    'sum(rate(istio_requests_total{{destination_workload_namespace="{ns}",'
    'destination_workload="{name}"}}[1m])) * 100 or on() vector(100)'
)
DURATION = (
    "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{"
    'destination_workload_namespace="{ns}",destination_workload="{name}"}}[1m])) by (le))'
    " or on() vector(0)"
)


WARMUP = ("scale-warmup", "warmup")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok")  # comm


def scale_canary(ns: str, name: str, *, interval: int, steps: int) -> Canary:
    metrics = [
        {
            "name": "success-rate",
            "query": SUCCESS.format(ns=ns, name=name),
            "thresholdRange": {"min": 99},
        },
        {
            "name": "latency-p99",
            "query": DURATION.format(ns=ns, name=name),
            "thresholdRange": {"max": 500},
        },
    ]
    return canary(
        ns,
        name,
        interval=f"{interval}s",
        max_weight=10 * steps,
        step_weight=10,
        metrics=metrics,
        progress_deadline=600,
    )


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Processes:
    """The pids whose CPU and memory are reported."""

    worker: int
    temporal: int
    sandbox: int

    def cpu(self) -> dict[str, float]:
        out = {
            "worker": cpu_seconds(self.worker),
            "temporal": cpu_seconds(self.temporal),
            "bench": cpu_seconds(os.getpid()),
        }
        parts = {"sandbox": cpu_seconds(self.sandbox), "control plane": 0.0, "prometheus": 0.0}
        parts["sandbox tools"] = 0.0
        for pid in descendants(self.sandbox):
            with contextlib.suppress(OSError):
                name = process_name(pid)
                part = "control plane" if name in CONTROL_PLANE else name
                parts[part if part in parts else "sandbox tools"] += cpu_seconds(pid)
        out |= parts
        out["machine"] = machine_busy_seconds()
        return out


def load_average() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def machine_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def worker_process(
    client: Client, env: dict[str, str], queue: str, log_dir: Path, args: tuple[str, ...] = ()
) -> Any:
    """``coalmine worker [args]`` on ``queue``; yields its pid once it polls the task queue."""
    log = (log_dir / f"worker-{queue}.log").open("wb")
    argv = [str(Path(sys.executable).parent / "coalmine"), "worker", *args]
    worker_env = {**os.environ, **env, "TEMPORAL_TASK_QUEUE": queue, "COALMINE_METRICS_PORT": "0"}
    process = _spawn(argv, worker_env, log)
    try:
        deadline = time.monotonic() + 60
        while not await _polled(client, queue):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log.name}")
            await asyncio.sleep(0.2)
        yield process.pid
    finally:
        stop_process(process, grace=20)
        log.close()


def _spawn(argv: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


async def _polled(client: Client, queue: str) -> bool:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return len(response.pollers) > 0


# --- the cluster side ----------------------------------------------------------------------------


def create_targets(api_client: Any, targets: list[tuple[str, str]]) -> None:
    core, apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
    for ns in sorted({ns for ns, _ in targets}):
        with contextlib.suppress(ApiException):
            core.create_namespace({"metadata": {"name": ns}})
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda t: apps.create_namespaced_deployment(t[0], deployment(t[0], t[1])), targets
            )
        )


def set_images(api_client: Any, targets: list[tuple[str, str]], image: str) -> None:
    apps = k8s.AppsV1Api(api_client)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": image}]}}}}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda t: apps.patch_namespaced_deployment(t[1], t[0], patch), targets))


# --- rollouts ------------------------------------------------------------------------------------


async def start_spread(
    client: Client, queue: str, specs: list[Canary], over: float
) -> list[WorkflowHandle[Any, Any]]:
    """Start one rollout per spec, evenly spread over ``over`` seconds."""
    handles: list[WorkflowHandle[Any, Any]] = []
    began = time.monotonic()
    for index, spec in enumerate(specs):
        delay = began + over * index / len(specs) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        handles.append(
            await client.start_workflow(
                WORKFLOW_NAME,
                RolloutInput(canary=spec, requested_by="bench.scale"),
                id=workflow_id(cluster="default", namespace=spec.namespace, name=spec.name),
                task_queue=queue,
            )
        )
    return handles


async def bounded(coros: list[Any], limit: int = 32) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def outcome(handle: WorkflowHandle[Any, Any]) -> str:
    try:
        await handle.result()
        return "succeeded"
    except WorkflowFailureError as err:
        cause = str(err.cause)
        if "cancelled" in cause:
            return "cancelled (rolled back)"
        # One line per reason, not per target: the targets' names are left out.
        return "failed: " + re.sub(r"\bapp\d+\.scale\d+\b", "TARGET", cause)[:90]


async def at_last_step(handle: WorkflowHandle[Any, Any], weight: int) -> bool:
    """Whether the rollout has reached ``weight`` or closed (its status query)."""
    try:
        status = await handle.query("status", result_type=RolloutStatus)
    except (RPCError, WorkflowQueryFailedError):
        return True  # closed (or no worker to answer): nothing more to wait for
    return status.canary_weight >= weight or status.phase not in (
        Phase.INITIALIZING,
        Phase.INITIALIZED,
        Phase.WAITING,
        Phase.PROGRESSING,
    )


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


# --- figures from histories ----------------------------------------------------------------------


@dataclass
class Figures:
    lag: list[float] = field(default_factory=list)
    timer_start: list[float] = field(default_factory=list)
    timer_fire: list[float] = field(default_factory=list)
    after_fire: list[float] = field(default_factory=list)
    checks: list[float] = field(default_factory=list)
    task_queued: list[float] = field(default_factory=list)
    task_work: list[float] = field(default_factory=list)
    activity_queued: list[float] = field(default_factory=list)
    run: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    events_per_step: list[int] = field(default_factory=list)
    actions_per_step: list[int] = field(default_factory=list)
    task_failures: int = 0
    steps: int = 0


def add_history(
    figures: Figures, history: History, interval: float, steps: int, until: float
) -> None:
    """Add one rollout's figures; tasks and activities only up to ``until`` (the cancellations)."""
    for task in history.tasks:
        if len(task) == 3 and task[0] < until:
            figures.task_queued.append(task[1] - task[0])
            figures.task_work.append(task[2] - task[1])
    for act in history.activities:
        if act.started is not None and act.scheduled < until and not act.local:
            figures.activity_queued.append(act.started - act.scheduled)
            if act.closed is not None:
                figures.run[act.name].append(act.closed - act.started)
    figures.task_failures += sum(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events
    )
    timers = sorted(
        (t for t in history.timers if abs(t.seconds - interval) < 0.01 and t.fired is not None),
        key=lambda t: t.started,
    )
    sets = [
        a
        for a in history.set_weights()
        if a.closed is not None and 0 < int((a.input or {}).get("canary", 0)) <= 10 * steps
    ]
    if not timers or not sets:
        return
    # The first step's schedule starts when the scale-up ended: the last activity before its timer.
    before = [a.closed for a in history.activities if a.closed and a.closed <= timers[0].started]
    previous = max(before) if before else timers[0].started
    for sw in sets:
        assert sw.closed is not None
        timer = max((t for t in timers if t.fired is not None and t.fired <= sw.scheduled),
                    key=lambda t: t.started)  # fmt: skip
        assert timer.fired is not None
        checks = [a for a in history.activities if timer.fired <= a.scheduled <= sw.scheduled]
        figures.lag.append(sw.closed - (previous + interval))
        figures.timer_start.append(timer.started - previous)
        figures.timer_fire.append(timer.fired - timer.started - interval)
        figures.after_fire.append(sw.closed - timer.fired)
        if checks:
            closed = [c.closed for c in checks if c.closed is not None]
            figures.checks.append(max(closed, default=timer.fired) - timer.fired)
        figures.steps += 1
        previous = sw.closed
    # Events and actions per step: between consecutive interval timers of steps with checks.
    bounds = [
        e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    for start, stop in itertools.pairwise(bounds[1:]):
        window = history.events[start - 1 : stop - 1]
        figures.events_per_step.append(len(window))
        figures.actions_per_step.append(sum(e.event_type in ACTIONS for e in window))


def ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction) * 1000:.0f}"


def pcts(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {ms(values, 0.5)} ms, p99 {ms(values, 0.99)} ms, max {max(values) * 1000:.0f} ms"


def mode(values: list[int]) -> int:
    return collections.Counter(values).most_common(1)[0][0] if values else 0


# --- one configuration ------------------------------------------------------------------------


@dataclass
class Result:
    size: int
    interval: int
    figures: Figures
    rss_base_kb: int
    rss_peak_kb: int
    cpu: dict[str, float]
    wall: float
    outcomes: collections.Counter[str]
    reached: int

    @property
    def kb_per_rollout(self) -> float:
        return (self.rss_peak_kb - self.rss_base_kb) / self.size

    def summary(self) -> str:
        f = self.figures
        lag = f"lag p50 {ms(f.lag, 0.5)} ms p99 {ms(f.lag, 0.99)} ms" if f.lag else "no steps"
        cores = ", ".join(f"{k} {v / self.wall:.2f}" for k, v in self.cpu.items())
        per = ", ".join(
            f"{k} {self.cpu[k] / self.size * 1000:.0f} ms"
            for k in ("worker", "temporal", "sandbox", "control plane")
        )
        return (
            f"{self.size} rollouts at {self.interval}s: {lag} ({f.steps} steps; "
            f"{self.reached}/{self.size} reached the last step); worker "
            f"{self.rss_base_kb / 1024:.0f} → {self.rss_peak_kb / 1024:.0f} MB = "
            f"{self.kb_per_rollout:.0f} KB/rollout; CPU cores: {cores}; CPU per rollout: {per}"
        )


async def sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            peak[0] = max(peak[0], rss_kb(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def run_config(
    ctx: Context, targets: list[tuple[str, str]], interval: int, steps: int, label: str
) -> Result:
    queue = f"scale-{label}"
    image = f"podinfo:{label}"
    await asyncio.to_thread(set_images, ctx.api_client, [*targets, WARMUP], image)
    async with worker_process(ctx.client, ctx.env, queue, ctx.log_dir, ctx.worker_args) as pid:
        processes = Processes(worker=pid, temporal=ctx.temporal_pid, sandbox=ctx.sandbox_pid)
        # One short rollout first, so imports and first-use caches are not charged to the N.
        warmup = await start_spread(
            ctx.client, queue, [scale_canary(*WARMUP, interval=1, steps=1)], over=0
        )
        print(f"  warm-up rollout {await outcome(warmup[0])}", flush=True)
        base = rss_kb(pid)
        peak = [base]
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(pid, peak, stop))
        cpu0, began = processes.cpu(), time.monotonic()
        specs = [scale_canary(ns, n, interval=interval, steps=steps) for ns, n in targets]
        handles = await start_spread(ctx.client, queue, specs, over=interval)
        print(f"  started {len(handles)} rollouts in {time.monotonic() - began:.0f}s", flush=True)
        # Rollouts upsert CanaryWeight with phase changes only, so visibility cannot tell who
        # reached the last step: a sample of them is asked (their status query) instead.
        sample = random.Random(0).sample(handles, min(50, len(handles)))
        deadline = began + interval * (steps + 3) + 120
        reached = 0
        while time.monotonic() < deadline:
            reached = sum(await bounded([at_last_step(h, 10 * steps) for h in sample], 25))
            if reached >= len(sample):
                break
            await asyncio.sleep(5)
        wall = time.monotonic() - began
        cpu1 = processes.cpu()
        stop.set()
        await sampler
        load = load_average()
        print(
            f"  {reached}/{len(sample)} sampled at weight {10 * steps} or done after {wall:.0f}s; "
            f"worker RSS peak {peak[0] / 1024:.0f} MB; machine load average {' '.join(load)}",
            flush=True,
        )
        # Roll every rollout back (the product's cancel path), then read the histories.
        cancel_began, cancel_at = time.monotonic(), time.time()
        await bounded([h.cancel() for h in handles])
        outcomes = collections.Counter(await bounded([outcome(h) for h in handles], 200))
        print(
            f"  cancelled and rolled back in {time.monotonic() - cancel_began:.0f}s: "
            f"{dict(outcomes)}",
            flush=True,
        )
    histories = await bounded([history_of(h) for h in handles], 16)
    figures = Figures()
    for history in histories:
        add_history(figures, history, interval, steps, cancel_at)
    reached = sum(
        any(int((a.input or {}).get("canary", 0)) == 10 * steps for a in h.set_weights())
        for h in histories
    )
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    return Result(len(targets), interval, figures, base, peak[0], cpu, wall, outcomes, reached)


def report(result: Result) -> None:
    f = result.figures
    print("  " + result.summary())
    print(f"    step lag                 {pcts(f.lag)}")
    print(f"    ├ timer started after    {pcts(f.timer_start)} (previous step → timer)")
    print(f"    ├ timer fired late by    {pcts(f.timer_fire)}")
    print(f"    └ fired → weights set    {pcts(f.after_fire)} (checks until done {pcts(f.checks)})")
    print(f"    workflow task queued     {pcts(f.task_queued)}")
    print(f"    workflow task in worker  {pcts(f.task_work)}")
    print(f"    activity task queued     {pcts(f.activity_queued)}")
    for name in sorted(name for name, times in f.run.items() if times):
        print(f"    activity {name:<15} {pcts(f.run[name])}")
    print(
        f"    per step: {mode(f.events_per_step)} history events, {mode(f.actions_per_step)} "
        f"actions (activities, timers, markers, upserts); failed workflow tasks "
        f"{f.task_failures}",
        flush=True,
    )


@dataclass
class Context:
    client: Client
    api_client: Any
    env: dict[str, str]
    temporal_pid: int
    sandbox_pid: int
    log_dir: Path
    worker_args: tuple[str, ...] = ()
    """Extra ``coalmine worker`` options (``--worker-arg``), e.g. its activity slots."""


async def initialize(ctx: Context, targets: list[tuple[str, str]]) -> None:
    """Each target's first rollout: primary, Services, routes (Flagger's initialization)."""
    began = time.monotonic()
    async with worker_process(ctx.client, ctx.env, "scale-init", ctx.log_dir, ctx.worker_args):
        specs = [scale_canary(ns, n, interval=10, steps=1) for ns, n in targets]
        handles = await start_spread(ctx.client, "scale-init", specs, over=0)
        outcomes = collections.Counter(await bounded([outcome(h) for h in handles], 200))
    print(
        f"initialized {len(targets)} targets in {time.monotonic() - began:.0f}s: {dict(outcomes)}",
        flush=True,
    )


def worker_errors(log_dir: Path) -> None:
    """Print the worker logs' error lines (counted by their first words)."""
    for path in sorted(log_dir.glob("worker-*.log")):
        lines = path.read_text(errors="replace").splitlines()
        errors = collections.Counter(
            " ".join(line.split()[:12]) for line in lines if "rror" in line or "Traceback" in line
        )
        if errors:
            print(f"{path.name}: {sum(errors.values())} error lines; {errors.most_common(3)}")


async def run(args: argparse.Namespace) -> str:
    sizes = [int(s) for s in args.sizes.split(",")]
    intervals = [int(i) for i in args.intervals.split(",")]
    targets = [(f"scale{i % args.namespaces}", f"app{i}") for i in range(max(sizes))]
    targets_and_warmup = [*targets, WARMUP]
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="coalmine-scale-") as log_dir,
        sandbox(pod_ready_delay=0.3, loadtester=False) as handle,
    ):
        async with dev_server() as server:
            api_client = build_api_client(kubeconfig=str(handle.kubeconfig), pool_size=16)
            # The worker's environment: the ServiceAccount's kubeconfig, as the local stack's.
            env = {
                **handle.env,
                "TEMPORAL_ADDRESS": server.address,
                "KUBECONFIG": str(handle.worker_kubeconfig),
            }
            ctx = Context(
                server.client,
                api_client,
                env,
                server.pid,
                handle.pid,
                Path(log_dir),
                tuple(args.worker_arg),
            )
            # The sandbox's three fake Nodes hold 750 pods; each rollout needs its target's pod
            # (until scaled down), its primary's and its canary's.
            extra = max(0, (3 * max(sizes) + 249) // 250 - 3 + 1)
            added = await asyncio.to_thread(add_nodes, api_client, extra)
            print(f"added {len(added)} fake Nodes (250 pods each) to the sandbox's 3", flush=True)
            began = time.monotonic()
            await asyncio.to_thread(create_targets, api_client, targets_and_warmup)
            print(f"created {len(targets)} Deployments in {time.monotonic() - began:.0f}s")
            await initialize(ctx, targets_and_warmup)
            for interval in intervals:
                for size in sizes:
                    label = f"{size}-{interval}"
                    print(f"== {size} rollouts at {interval}s, {args.steps} steps", flush=True)
                    result = await run_config(ctx, targets[:size], interval, args.steps, label)
                    report(result)
                    results.append(result)
            api_client.close()
            worker_errors(Path(log_dir))
    print("summary:")
    for result in results:
        print("  " + result.summary())
    return headline(results)


def headline(results: list[Result]) -> str:
    parts = []
    for r in results:
        f = r.figures
        parts.append(
            f"{r.size}@{r.interval}s lag p99 {ms(f.lag, 0.99)} ms, "
            f"{r.kb_per_rollout:.0f} KB/rollout, worker CPU {r.cpu['worker'] / r.wall:.2f} cores"
        )
    target = next((r for r in results if r.size == 1000 and r.interval == 60), None)
    verdict = ""
    if target is not None:
        lag_ok = percentile(target.figures.lag, 0.99) < 2.0
        mem_ok = target.kb_per_rollout < 150
        verdict = (
            f" — target 1000@60s: lag {'meets' if lag_ok else 'MISSES'} p99 < 2 s, memory "
            f"{'meets' if mem_ok else 'MISSES'} < 150 KB"
        )
    return "scale: " + "; ".join(parts) + verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--intervals", default="60,30")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        metavar="OPTION",
        help="an option for `coalmine worker`, e.g. --worker-arg=--max-concurrent-activities=400",
    )
    args = parser.parse_args()
    finish(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
