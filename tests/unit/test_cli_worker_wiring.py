"""``build_worker`` registers the rollout workflow and every activity the workflow names."""

from __future__ import annotations

from kubernetes import client as k8s
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from worker.app import activity_methods, build_worker, product_activities
from worker.settings import Settings, WorkerSettings
from workflows.activity_api import ActivityName


def _names() -> set[str]:
    return {v for k, v in vars(ActivityName).items() if not k.startswith("_")}


def test_every_activity_the_workflow_names_is_registered() -> None:
    api_client = k8s.ApiClient(k8s.Configuration())
    try:
        methods = activity_methods(*product_activities(api_client, Settings()))
        registered = {activity._Definition.must_from_callable(m).name for m in methods}
    finally:
        api_client.close()
    assert _names() <= registered, _names() - registered


async def test_worker_is_sized_from_settings(dev_server_env: WorkflowEnvironment) -> None:
    client: Client = dev_server_env.client
    settings = Settings(
        worker=WorkerSettings(
            max_cached_workflows=4321,
            max_concurrent_activities=7,
            max_concurrent_local_activities=2,
            activity_threads=9,
            graceful_shutdown_seconds=12,
        )
    )
    api_client = k8s.ApiClient(k8s.Configuration())
    try:
        worker = build_worker(client, settings, api_client=api_client)
        config = worker.config()
    finally:
        api_client.close()
    assert config["max_cached_workflows"] == 4321
    assert config["max_concurrent_activities"] == 7
    assert config["max_concurrent_local_activities"] == 2
    assert config["activity_executor"]._max_workers == 9  # type: ignore[union-attr]
    assert config["graceful_shutdown_timeout"].total_seconds() == 12
    assert [w.__name__ for w in config["workflows"]] == [
        "CanaryRolloutWorkflow",
        "CanaryFinalizeWorkflow",
    ]
