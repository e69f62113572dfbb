"""End-to-end fixtures: everything as separate processes, as a user runs it.

- a Temporal dev server (`TemporalServer` of tests/conftest.py) with NO custom search
  attributes: the real ``coalmine temporal setup`` registers them, so the suite proves that
  command too;
- a sandbox cluster of the suite's own (the real control plane and the data plane), because its
  Prometheus must also scrape the worker's metrics port, which the session's cluster does not;
- ``coalmine worker`` as a process with the sandbox's environment (Prometheus, the mesh as HTTP
  proxy) and the worker's kubeconfig (the ``coalmine`` ServiceAccount through the API proxy, held
  to deploy/'s RBAC), stopped with SIGTERM at the end (it must exit 0: graceful shutdown);
- ``coalmine rollout …`` commands run as processes (`Coalmine.run` / `Coalmine.spawn`) with a CI
  job's environment: the cluster admin's kubeconfig.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.kubernetes import build_api_client
from sandbox.runner import SandboxHandle, start_sandbox
from tests.conftest import TemporalServer
from tests.ports import free_port

COALMINE = str(Path(sys.executable).parent / "coalmine")
TASK_QUEUE = "coalmine-e2e"


def stop_process(proc: subprocess.Popen[Any], *, timeout: float = 30) -> int:
    """SIGTERM, then wait: the process's own exit code (a graceful shutdown is 0)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    return proc.returncode


@pytest.fixture(scope="session")
def e2e_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    server = TemporalServer(tmp_path_factory.mktemp("temporal"), search_attributes=False)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def worker_metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def e2e_sandbox(
    tmp_path_factory: pytest.TempPathFactory, worker_metrics_port: int
) -> Iterator[SandboxHandle]:
    with start_sandbox(
        tmp_path_factory.mktemp("e2e-sandbox"),
        pod_ready_delay=0.3,
        extra_scrape_targets=[f"127.0.0.1:{worker_metrics_port}"],
    ) as handle:
        yield handle


@dataclass(frozen=True)
class Coalmine:
    """The ``coalmine`` command as a process, with a CI job's environment."""

    env: dict[str, str]
    temporal: TemporalServer
    sandbox: SandboxHandle

    @property
    def worker_env(self) -> dict[str, str]:
        """The worker's: the ``coalmine`` ServiceAccount through the API proxy."""
        return {**self.env, "KUBECONFIG": str(self.sandbox.worker_kubeconfig)}

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [COALMINE, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rollout(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("rollout", *args, timeout=timeout)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """A command left running (e.g. ``start --wait``) while the test acts from elsewhere."""
        return subprocess.Popen(
            [COALMINE, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def status(self, name: str, namespace: str) -> dict[str, Any]:
        proc = self.rollout("status", name, "-n", namespace, "-o", "json")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def wait_for(
        self, name: str, namespace: str, *, timeout: float = 60, **fields: Any
    ) -> dict[str, Any]:
        """Poll ``status -o json`` until every given field has the given value."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            proc = self.rollout("status", name, "-n", namespace, "-o", "json")
            if proc.returncode == 0:
                status = json.loads(proc.stdout)
                if all(status.get(k) == v for k, v in fields.items()):
                    return status
            time.sleep(0.5)
        raise AssertionError(f"{name}.{namespace} never had {fields}: {status}")


@pytest.fixture(scope="session")
def coalmine_env(e2e_temporal: TemporalServer, e2e_sandbox: SandboxHandle) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "GITHUB_", "GITLAB_"))
    }
    env.update(e2e_sandbox.env)
    env.update(
        TEMPORAL_ADDRESS=e2e_temporal.address,
        TEMPORAL_TASK_QUEUE=TASK_QUEUE,
        TEMPORAL_UI_URL=e2e_temporal.ui_url,
        COLUMNS="200",
    )
    return env


@pytest.fixture(scope="session")
def search_attributes_registered(coalmine_env: dict[str, str]) -> str:
    """``coalmine temporal setup`` on the bare dev server; its output for the tests to read."""
    proc = subprocess.run(
        [COALMINE, "temporal", "setup"],
        env=coalmine_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[Any]
    log: Path
    metrics_port: int


@pytest.fixture(scope="session")
def worker_process(
    coalmine_env: dict[str, str],
    e2e_sandbox: SandboxHandle,
    search_attributes_registered: str,
    worker_metrics_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [COALMINE, "worker", "--metrics-port", str(worker_metrics_port)],
            env={**coalmine_env, "KUBECONFIG": str(e2e_sandbox.worker_kubeconfig)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(proc=proc, log=log, metrics_port=worker_metrics_port)
    deadline = time.monotonic() + 30
    while "worker polling" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()}")
        time.sleep(0.1)
    try:
        yield worker
    finally:
        code = stop_process(proc, timeout=60)
        assert code == 0, f"worker exit {code}:\n{log.read_text()[-3000:]}"
        assert "worker stopped" in log.read_text()


@pytest.fixture(scope="session")
def coalmine(
    coalmine_env: dict[str, str],
    e2e_temporal: TemporalServer,
    e2e_sandbox: SandboxHandle,
    worker_process: WorkerProcess,
) -> Coalmine:
    return Coalmine(env=coalmine_env, temporal=e2e_temporal, sandbox=e2e_sandbox)


# --- the application under canary ----------------------------------------------------------------

_namespaces = itertools.count(1)
IMAGE = "ghcr.io/stefanprodan/podinfo"


@pytest.fixture(scope="session")
def kube(e2e_sandbox: SandboxHandle) -> Iterator[k8s.ApiClient]:
    api = build_api_client(kubeconfig=e2e_sandbox.kubeconfig)
    try:
        yield api
    finally:
        api.close()


@dataclass(frozen=True)
class App:
    """podinfo in its own namespace, and its Canary file."""

    namespace: str
    canary: Path
    api: k8s.ApiClient

    def deployment(self, name: str = "podinfo") -> Any:
        return k8s.AppsV1Api(self.api).read_namespaced_deployment(name, self.namespace)

    def image(self, name: str = "podinfo") -> str:
        image: str = self.deployment(name).spec.template.spec.containers[0].image
        return image

    def set_env(self, **values: str) -> None:
        """A release that changes only the environment (the sandbox's fault knobs)."""
        env = [{"name": k, "value": v} for k, v in values.items()]
        body = {"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "env": env}]}}}}
        k8s.AppsV1Api(self.api).patch_namespaced_deployment("podinfo", self.namespace, body)


CANARY = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  service: {{port: 9898}}
  analysis:
    interval: 2s
    threshold: {threshold}
    maxWeight: 50
    stepWeight: {step}
    metrics:
    - name: request-success-rate
      thresholdRange: {{min: 99}}
      interval: 30s
    webhooks:
    - name: load-test
      url: http://flagger-loadtester.test/
      timeout: 5s
      metadata: {{cmd: "hey -z 2m -q 10 -c 2 http://podinfo-canary.{ns}:9898/"}}
"""


def make_app(api: k8s.ApiClient, tmp_path: Path, *, threshold: int = 3, step: int = 25) -> App:
    ns = f"e2e-{next(_namespaces)}"
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    labels = {"app": "podinfo"}
    container = {"name": "podinfod", "image": f"{IMAGE}:6.5.0", "ports": [{"containerPort": 9898}]}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "podinfo", "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "podinfo", "namespace": ns},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 9898, "targetPort": 9898}],
            },
        },
    )
    canary = tmp_path / "canary.yaml"
    canary.write_text(CANARY.format(ns=ns, threshold=threshold, step=step))
    return App(namespace=ns, canary=canary, api=api)


@pytest.fixture
def app(kube: k8s.ApiClient, tmp_path: Path) -> App:
    return make_app(kube, tmp_path)
