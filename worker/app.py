"""Wiring of the worker: the rollout workflow, every activity, sized for many rollouts.

``build_worker`` is the one place that decides what runs in a worker, so the process
(``coalmine worker``), the integration tests and the end-to-end tests all run the same thing.
The Kubernetes client is synchronous: its activities run on a thread pool
(``activity_executor``) so a blocking call never stalls the event loop that drives workflow tasks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from worker.memory import start_trimming
from worker.metrics import MetricsInterceptor, RolloutMetrics
from worker.runner import workflow_runner
from worker.settings import Settings

if TYPE_CHECKING:
    from activities.analysis import AnalysisSettings


def activity_methods(*objects: object) -> list[Callable[..., Any]]:
    """Every ``@activity.defn`` method of the given activity objects, bound to them."""
    methods: list[Callable[..., Any]] = []
    for obj in objects:
        for name, member in inspect.getmembers(type(obj)):
            if hasattr(member, "__temporal_activity_definition"):
                methods.append(getattr(obj, name))
    return methods


def product_activities(
    api_client: Any,
    settings: Settings,
    *,
    analysis: AnalysisSettings | None = None,
    executor: Executor | None = None,
) -> list[object]:
    """The activity classes of the product, sharing one Kubernetes API client (``analysis``:
    the analysis settings when not only the worker's Prometheus URL; ``executor``: the threads
    the one-activity step runs its checks on, the worker's activity threads)."""
    from activities.analysis import AnalysisActivities, AnalysisSettings
    from activities.kubernetes import CanaryStatusActivities, KubernetesActivities
    from activities.router import RouterActivities
    from activities.step import StepActivities

    analysis = analysis or AnalysisSettings(prometheus_url=settings.worker.prometheus_url)
    status = CanaryStatusActivities(api_client)
    router = RouterActivities(api_client, default_provider=settings.worker.mesh_provider)
    checks = AnalysisActivities(
        api_client=api_client, settings=analysis, default_provider=settings.worker.mesh_provider
    )
    step = StepActivities(analysis=checks, router=router, status=status, executor=executor)
    return [KubernetesActivities(api_client), status, router, checks, step]


def product_workflows() -> list[type]:
    from workflows.finalize import CanaryFinalizeWorkflow
    from workflows.rollout import CanaryRolloutWorkflow

    return [CanaryRolloutWorkflow, CanaryFinalizeWorkflow]


def build_worker(
    client: Client,
    settings: Settings,
    *,
    api_client: Any,
    metrics: RolloutMetrics | None = None,
    activities: Sequence[Callable[..., Any]] | None = None,
    workflows: Sequence[type] | None = None,
) -> Worker:
    """A worker for the rollout task queue.

    ``activities``/``workflows`` replace the product's (tests use fakes registered under the
    same names); ``metrics`` adds the interceptor that feeds the Prometheus endpoint.
    """
    sizing = settings.worker
    # Freed native memory goes back to the system once a minute (worker.memory, BENCHMARKS.md).
    start_trimming()
    executor = ThreadPoolExecutor(sizing.activity_threads, thread_name_prefix="coalmine-activity")
    if activities is None:
        activities = activity_methods(*product_activities(api_client, settings, executor=executor))
    interceptors: list[Interceptor] = []
    if metrics is not None:
        interceptors.append(MetricsInterceptor(metrics))
    return Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=list(workflows if workflows is not None else product_workflows()),
        activities=list(activities),
        activity_executor=executor,
        max_concurrent_activities=sizing.max_concurrent_activities,
        max_concurrent_local_activities=sizing.max_concurrent_local_activities,
        # At least the number of open rollouts: an evicted rollout is replayed from its
        # history on its next task, which costs several times the CPU.
        max_cached_workflows=sizing.max_cached_workflows,
        interceptors=interceptors,
        workflow_runner=workflow_runner(),
        # On shutdown, running activities get this long to finish before they are cancelled.
        graceful_shutdown_timeout=timedelta(seconds=sizing.graceful_shutdown_seconds),
    )
