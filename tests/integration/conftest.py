"""Fixtures for the Kubernetes and router activity tests: a real sandbox API server over HTTP.

`build_api_app(Store())` runs on a free port in its own thread and event loop; the activities
reach it through a kubeconfig and `build_api_client`, exactly as the worker reaches a cluster —
no patched client. The fixtures are prefixed (``apiserver_*``, ``api_sandbox``) so they never
shadow the shared sandbox fixtures of ``tests/conftest.py``; test modules alias them.

No controllers run here: a test plays the Deployment controller itself by writing ``status``
through the ``/status`` subresource (`set_status`), so readiness is under its control. The
sandbox's audit log (``GET /sandbox/audit``) counts the write requests an activity made, which
is how the idempotency tests prove a repeat writes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from activities.kubernetes import build_api_client
from sandbox.apiserver import build_api_app
from sandbox.store import Store
from workflows.spec import Canary

Obj = dict[str, Any]

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: sandbox
  cluster: {{server: "{url}"}}
contexts:
- name: sandbox
  context: {{cluster: sandbox, user: sandbox, namespace: default}}
current-context: sandbox
users:
- name: sandbox
  user: {{token: sandbox}}
"""


class ApiSandbox:
    """A sandbox API server in a background thread, and test helpers that talk to it by HTTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sandbox-api", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._started.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(build_api_app(Store()), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the sandbox API server did not start")

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    # --- sandbox-only endpoints

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def audit(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._request("GET", f"/sandbox/audit?namespace={namespace}")["items"])

    def writes(self, namespace: str) -> list[str]:
        """The write requests made in ``namespace`` so far: ``"<verb> <resource>/<name>"``."""
        return [
            f"{e['verb']} {e['resource']}{'/' + e['subresource'] if e['subresource'] else ''}"
            f"/{e['name']}"
            for e in self.audit(namespace)
            if e["verb"] in WRITE_VERBS
        ]

    def fault(self, **rule: Any) -> None:
        self._request("POST", "/sandbox/faults", rule)

    def clear_faults(self) -> None:
        self._request("DELETE", "/sandbox/faults")


@pytest.fixture(scope="session")
def api_sandbox() -> Iterator[ApiSandbox]:
    sandbox = ApiSandbox()
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(scope="session")
def apiserver_kubeconfig(api_sandbox: ApiSandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(KUBECONFIG.format(url=api_sandbox.url))
    return path


@pytest.fixture(scope="session")
def apiserver_client(apiserver_kubeconfig: Path) -> Iterator[client.ApiClient]:
    """The client the activities get, built as the worker builds it."""
    api = build_api_client(kubeconfig=apiserver_kubeconfig)
    try:
        yield api
    finally:
        api.close()


_namespaces = itertools.count(1)


@pytest.fixture
def apiserver_namespace(
    apiserver_client: client.ApiClient, api_sandbox: ApiSandbox
) -> Iterator[str]:
    """A fresh namespace per test, so audit counts and objects never mix between tests."""
    name = f"test-{next(_namespaces)}"
    core = client.CoreV1Api(apiserver_client)
    core.create_namespace({"metadata": {"name": name}})
    api_sandbox.clear_faults()
    yield name
    api_sandbox.clear_faults()
    core.delete_namespace(name)


# --- the Deployment controller's part, played by the test --------------------------------------


def set_status(
    api_client: client.ApiClient,
    namespace: str,
    name: str,
    *,
    available: int | None = None,
    updated: int | None = None,
    stuck: bool = False,
) -> None:
    """Write a Deployment's status as its controller would, through ``/status``.

    ``available``/``updated`` default to the wanted replicas (a finished rollout);
    ``stuck`` adds the Progressing condition with reason ProgressDeadlineExceeded.
    """
    apps = client.AppsV1Api(api_client)
    deployment = apps.read_namespaced_deployment(name, namespace, _preload_content=False)
    body = json.loads(deployment.data)
    wanted = body["spec"].get("replicas", 1)
    updated = wanted if updated is None else updated
    status: dict[str, Any] = {
        "observedGeneration": body["metadata"].get("generation", 1),
        "replicas": updated,
        "updatedReplicas": updated,
        "readyReplicas": wanted if available is None else available,
        "availableReplicas": wanted if available is None else available,
    }
    if stuck:
        status["conditions"] = [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ]
    body["status"] = status
    apps.replace_namespaced_deployment_status(name, namespace, body)


# --- the article's podinfo -----------------------------------------------------------------------


def make_canary(namespace: str, *, autoscaler: bool = True, **service: Any) -> Canary:
    """The article's Canary for podinfo (v1beta1 form), in ``namespace``."""
    spec: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "progressDeadlineSeconds": 60,
        "service": {
            "port": 9898,
            "gateways": ["public-gateway.istio-system.svc.cluster.local"],
            "hosts": ["app.istio.example.com"],
            **service,
        },
        "analysis": {"interval": "30s", "threshold": 10, "maxWeight": 50, "stepWeight": 5},
    }
    if autoscaler:
        spec["autoscalerRef"] = {
            "apiVersion": "autoscaling/v2beta1",
            "kind": "HorizontalPodAutoscaler",
            "name": "podinfo",
        }
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": spec,
        }
    )


def podinfo_deployment(image: str = "quay.io/stefanprodan/podinfo:1.4.0", replicas: int = 2) -> Obj:
    """podinfo, container ``podinfod`` on 9898, reading a ConfigMap (volume, env) and a Secret."""
    container = {
        "name": "podinfod",
        "image": image,
        "ports": [{"name": "http", "containerPort": 9898}],
        "env": [
            {"name": "PODINFO_UI_COLOR", "value": "blue"},
            {
                "name": "PODINFO_LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "podinfo-env", "key": "level"}},
            },
        ],
        "envFrom": [{"secretRef": {"name": "podinfo-token"}}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/podinfo"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "labels": {"app": "podinfo", "team": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {
                    "labels": {"app": "podinfo", "team": "web"},
                    "annotations": {"prometheus.io/scrape": "true"},
                },
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": "podinfo-config"}}],
                },
            },
        },
    }


def create_podinfo(api_client: client.ApiClient, namespace: str, *, hpa: bool = True) -> None:
    """The target Deployment, its ConfigMaps and Secret, and (``hpa``) its HPA."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "podinfo-config"}, "data": {"config.yaml": "a: 1"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "podinfo-env"}, "data": {"level": "info"}}
    )
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "podinfo-token"}, "type": "Opaque", "data": {"TOKEN": "czNjcjN0"}},
    )
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, podinfo_deployment())
    if hpa:
        client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
            namespace,
            {
                "metadata": {"name": "podinfo"},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "podinfo",
                    },
                    "minReplicas": 2,
                    "maxReplicas": 4,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 99},
                            },
                        }
                    ],
                },
            },
        )


def read(api_client: client.ApiClient, kind: str, namespace: str, name: str) -> Obj:
    """An object as raw JSON (``kind``: deployment, service, config_map, secret, hpa)."""
    calls = {
        "deployment": client.AppsV1Api(api_client).read_namespaced_deployment,
        "service": client.CoreV1Api(api_client).read_namespaced_service,
        "config_map": client.CoreV1Api(api_client).read_namespaced_config_map,
        "secret": client.CoreV1Api(api_client).read_namespaced_secret,
        "hpa": client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler,
    }
    response = calls[kind](name, namespace, _preload_content=False)
    result: Obj = json.loads(response.data)
    return result
