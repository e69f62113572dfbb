"""The container's command with the Deployment's environment: `coalmine worker` (the image's
ENTRYPOINT and the Deployment's args) started as a process with the variables the manifests set,
only the endpoints pointed at the local stack (Temporal dev server, the sandbox cluster as the
``coalmine`` ServiceAccount through its API proxy, a free metrics port, a task queue of its own).
It must answer the probes' path, poll its task queue, and stop cleanly on SIGTERM well within the
pod's termination grace period."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from tests.deploy._support import MANIFESTS, container, env, kustomize, one
from tests.ports import free_port

pytestmark = pytest.mark.slow

COALMINE = Path(sys.executable).parent / "coalmine"


def _wait_healthy(url: str, process: asyncio.subprocess.Process, seconds: float) -> None:
    """Poll the probe's URL until it answers 200 (blocking: run it in a thread)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.returncode is None, "the worker exited"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds}s")


async def _pollers(client, namespace: str, queue: str) -> list[str]:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return [p.identity for p in response.pollers]


async def test_worker_starts_with_the_deployments_command_and_environment(
    dev_server_env, sandbox_cluster, tmp_path
):
    objects = kustomize(MANIFESTS)
    worker = container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    variables = {name: e["value"] for name, e in env(objects).items() if "value" in e}
    port = free_port()
    queue = f"coalmine-deploy-{uuid.uuid4().hex[:8]}"
    variables |= {
        "TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": queue,
        "PROMETHEUS_URL": sandbox_cluster.prometheus_url,
        "COALMINE_METRICS_PORT": str(port),
        # The service account's token, as in the pod (there mounted, here in a kubeconfig).
        "KUBECONFIG": str(sandbox_cluster.worker_kubeconfig),
        "HOME": str(tmp_path),
        "PATH": os.environ["PATH"],
    }
    # ENTRYPOINT ["coalmine"] + the Deployment's args.
    argv = [str(COALMINE), *worker["args"]]
    log = (tmp_path / "worker.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *argv, env=variables, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        probe = worker["readinessProbe"]["httpGet"]["path"]
        url = f"http://127.0.0.1:{port}{probe}"
        await asyncio.to_thread(_wait_healthy, url, process, 30)
        namespace = variables["TEMPORAL_NAMESPACE"]
        for _ in range(50):
            if await _pollers(dev_server_env.client, namespace, queue):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"no worker polls {queue}")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), pod["terminationGracePeriodSeconds"])
        assert code == 0
        assert time.monotonic() - started < pod["terminationGracePeriodSeconds"]
    except AssertionError as err:
        log.flush()
        tail = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{err}\n--- worker log ---\n{tail}") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
