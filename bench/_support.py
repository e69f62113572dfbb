"""What the rollout benchmarks share: servers, process figures, and reading workflow histories.

Every server a benchmark starts is a context manager that stops it by process id on the way out,
errors included: the Temporal dev server (started here as a plain subprocess so its CPU time and
memory can be read from /proc), the time-skipping server, the sandbox (whose process has the
control plane and Prometheus as children: `descendants` finds them).

Histories are read as the server recorded them (``event_time`` is stamped by the server), so the
figures derived from them do not depend on the benchmark process being scheduled on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from worker.report._payloads import local_activity
from worker.search_attributes import register_search_attributes
from workflows.search import SEARCH_ATTRIBUTES
from workflows.spec import Canary

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HISTORY_LIMIT = 51_200
"""Temporal's hard limit of events in one run's history (the server terminates the run there)."""


def binary(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        raise SystemExit(f"{path} missing: run `make setup`")
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with 30 samples, p99 is the largest one)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * fraction + 0.999999) - 1))]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """A process's children, grandchildren, … (to charge the control plane, Prometheus and hey
    to the sandbox)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


# --- servers ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        await register_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@dataclass
class DevServer:
    client: Client
    address: str
    pid: int


@contextlib.asynccontextmanager
async def dev_server() -> AsyncIterator[DevServer]:
    """``temporal server start-dev`` (in memory, no UI) with the search attributes registered."""
    port = free_port()
    argv = [
        binary("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--log-level",
        "error",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecution=true",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
    ]
    for key in SEARCH_ATTRIBUTES:
        kind = "Int" if key.indexed_value_type == SearchAttributeIndexedValueType.INT else "Keyword"
        argv += ["--search-attribute", f"{key.name}={kind}"]
    with tempfile.TemporaryFile() as log:
        process = _spawn(argv, log)
        address = f"127.0.0.1:{port}"
        try:
            client = None
            deadline = time.monotonic() + 30
            while client is None:
                try:
                    client = await Client.connect(address, data_converter=pydantic_data_converter)
                except RuntimeError as err:
                    if time.monotonic() > deadline or process.poll() is not None:
                        log.seek(0)
                        output = log.read()[-2000:]
                        raise RuntimeError(f"dev server did not start: {output!r}") from err
                    await asyncio.sleep(0.1)
            yield DevServer(client=client, address=address, pid=process.pid)
        finally:
            stop_process(process)


def _spawn(argv: list[str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; by this process's own id only."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def sandbox(pod_ready_delay: float = 0.3, **options: Any) -> Iterator[Any]:
    """A whole sandbox in a subprocess: the real control plane (kube-apiserver, etcd,
    controller-manager, scheduler, kwok's fake nodes) and the data plane (API proxy, mesh,
    Prometheus, load tester). The handle's ``kubeconfig`` is the admin's, straight to the API
    server; a worker runs with ``worker_kubeconfig`` (the ``coalmine`` ServiceAccount through the
    API proxy, whose audit log and fault rules are at ``proxy_url``)."""
    from sandbox.runner import start_sandbox

    with (
        tempfile.TemporaryDirectory(prefix="coalmine-bench-") as state_dir,
        start_sandbox(Path(state_dir), pod_ready_delay=pod_ready_delay, **options) as handle,
    ):
        yield handle


# --- the workload ------------------------------------------------------------------------------

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.0
        ports: [{{name: http, containerPort: 9898}}]
"""


def deployment(ns: str, name: str, replicas: int = 1) -> dict[str, Any]:
    import yaml

    body: dict[str, Any] = yaml.safe_load(DEPLOYMENT.format(ns=ns, name=name, replicas=replicas))
    return body


def canary(
    ns: str,
    name: str,
    *,
    interval: str,
    max_weight: int,
    step_weight: int,
    threshold: int = 5,
    metrics: list[dict[str, Any]] | None = None,
    webhooks: list[dict[str, Any]] | None = None,
    progress_deadline: int = 60,
) -> Canary:
    analysis: dict[str, Any] = {
        "interval": interval,
        "threshold": threshold,
        "maxWeight": max_weight,
        "stepWeight": step_weight,
    }
    if metrics:
        analysis["metrics"] = metrics
    if webhooks:
        analysis["webhooks"] = webhooks
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "progressDeadlineSeconds": progress_deadline,
                "service": {"port": 9898},
                "analysis": analysis,
            },
        }
    )


BUILTIN_METRICS = [
    {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}},
    {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}},
]


# --- histories ---------------------------------------------------------------------------------


@dataclass
class Activity:
    name: str
    scheduled: float
    input: Any = None
    started: float | None = None
    closed: float | None = None
    outcome: str = ""
    local: bool = False
    """A local activity: only its marker is in history (all three times are the marker's, the
    end of the workflow task that ran it; its run is inside that task's)."""


@dataclass
class Timer:
    seconds: float
    started: float
    fired: float | None = None
    cancelled: bool = False


@dataclass
class History:
    """One run's history, reduced to activities, timers and counts (times in epoch seconds)."""

    events: list[HistoryEvent]
    activities: list[Activity] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    tasks: list[list[float]] = field(default_factory=list)
    """Workflow tasks as [scheduled, started, completed] (missing times left out)."""

    @property
    def count(self) -> int:
        return len(self.events)

    def set_weights(self) -> list[Activity]:
        """Weight changes: ``set_weights``, or the one-activity step's ``advance`` (its input
        reduced to the weights)."""
        return [a for a in self.activities if a.name in WEIGHT_CHANGES]


ACTIONS = (
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
)
"""History events that are billed Temporal actions (activities, timers, local-activity markers,
search-attribute upserts)."""

CHECKS = ("check_metric", "call_webhook", "analyse_step")
"""Activities that run a step's checks (one each, or every check of a step in one)."""

WEIGHT_CHANGES = ("set_weights", "advance")


def _ts(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def _payload(payloads: Any) -> Any:
    try:
        return json.loads(payloads.payloads[0].data)
    except (IndexError, ValueError):
        return None


def parse_history(events: list[HistoryEvent]) -> History:
    history = History(events=events)
    activities: dict[int, Activity] = {}
    timers: dict[int, Timer] = {}
    for event in events:
        kind, when = event.event_type, _ts(event)
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            act = Activity(attrs.activity_type.name, when, _payload(attrs.input))
            if act.name == "advance" and isinstance(act.input, dict):
                act.input = act.input.get("weights")
            activities[event.event_id] = act
            history.activities.append(act)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            activities[
                event.activity_task_started_event_attributes.scheduled_event_id
            ].started = when
        elif kind in _ACTIVITY_CLOSED:
            attrs = getattr(event, _ACTIVITY_CLOSED[kind])
            act = activities[attrs.scheduled_event_id]
            act.closed, act.outcome = when, _ACTIVITY_CLOSED[kind].split("_")[2]
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            local = local_activity(event.marker_recorded_event_attributes)
            if local is not None and local[0] == "advance":
                # The step's weight change as a local activity (the ``local-advance`` patch):
                # in history only as this marker, written when its workflow task completed.
                weights = local[1].get("weights") if isinstance(local[1], dict) else None
                history.activities.append(
                    Activity("advance", when, weights, when, when, "completed", local=True)
                )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            history.tasks.append([when])
        elif kind in _TASK_PROGRESS and history.tasks:
            history.tasks[-1].append(when)
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            timeout = event.timer_started_event_attributes.start_to_fire_timeout
            timer = Timer(timeout.seconds + timeout.nanos / 1e9, when)
            timers[event.event_id] = timer
            history.timers.append(timer)
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            timers[event.timer_fired_event_attributes.started_event_id].fired = when
        elif kind == EventType.EVENT_TYPE_TIMER_CANCELED:
            timers[event.timer_canceled_event_attributes.started_event_id].cancelled = True
    return history


_TASK_PROGRESS = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
)

_ACTIVITY_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


async def history_of(handle: WorkflowHandle[Any, Any]) -> History:
    fetched = await handle.fetch_history()
    return parse_history(list(fetched.events))


@dataclass
class Step:
    """One weight step: the interval timer, the checks that followed it, and its set_weights."""

    weight: int
    timer: Timer
    checks: list[Activity]
    set_weights: Activity


def steps(history: History) -> list[Step]:
    """The forward weight steps of a rollout (not the undo or promotion weights).

    A step is a fired interval timer followed by its checks and a set_weights raising the canary
    weight; timers that a step did not follow (the last interval before promotion) are skipped.
    """
    out: list[Step] = []
    weight = 0
    timeline: list[tuple[float, int, Any]] = [
        (t.fired, 0, t) for t in history.timers if t.fired is not None
    ]
    timeline += [(a.scheduled, 1, a) for a in history.activities]
    timeline.sort(key=lambda item: (item[0], item[1]))
    timer: Timer | None = None
    checks: list[Activity] = []
    for _, kind, item in timeline:
        if kind == 0:
            timer, checks = item, []
        elif item.name in CHECKS:
            checks.append(item)
        elif item.name in WEIGHT_CHANGES and timer is not None and item.closed is not None:
            canary = int((item.input or {}).get("canary", 0))
            if canary > weight:
                out.append(Step(canary, timer, checks, item))
            weight = canary
            timer, checks = None, []
    return out


def task_times(history: History, start: float, stop: float) -> tuple[int, float, float]:
    """Workflow tasks scheduled in [start, stop]: count, seconds queued, seconds in the worker."""
    count, queued, working = 0, 0.0, 0.0
    for task in history.tasks:
        if len(task) == 3 and start <= task[0] <= stop:
            count += 1
            queued += task[1] - task[0]
            working += task[2] - task[1]
    return count, queued, working


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of time spans (concurrent checks count once)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def interval(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def finish(figure: str) -> None:
    """Print the figure and exit at once.

    The SDK's Rust runtime keeps threads that can abort the interpreter's finalization
    ("PyGILState_Release: thread state … must be current"), which would turn a finished
    benchmark into a failed one; every server has been stopped by now, so skip finalization.
    """
    print(figure, flush=True)
    sys.stderr.flush()
    os._exit(0)
