"""Objects a fresh sandbox starts with: Flagger's load tester in namespace ``test``.

As in Flagger's tutorials (``kubectl -n test apply -f artifacts/loadtester/``): a
``flagger-loadtester`` Deployment (image ``ghcr.io/fluxcd/flagger-loadtester``, port 8080 named
``http``) and a Service on port 80, so webhooks written for Flagger
(``http://flagger-loadtester.test/``) work unchanged.

`seed_cluster` creates them through the API server (any kube-apiserver, by its kubeconfig), each
with a POST; an object that already exists (409 AlreadyExists) is left as it is, so seeding again
is harmless.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from activities.errors import AlreadyExists
from worker.kubecache import KubeConfig, request_json

log = logging.getLogger("sandbox")

LOADTESTER_IMAGE = "ghcr.io/fluxcd/flagger-loadtester:0.34.0"
LABELS = {"app": "flagger-loadtester"}


def loadtester_objects(namespace: str = "test") -> list[tuple[str, str, dict[str, Any]]]:
    """(group, plural, object) for the namespace, Deployment and Service."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "flagger-loadtester", "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "containers": [
                        {
                            "name": "loadtester",
                            "image": LOADTESTER_IMAGE,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "command": ["./loadtester", "-port=8080", "-timeout=1h"],
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "flagger-loadtester", "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "type": "ClusterIP",
            "selector": dict(LABELS),
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
        },
    }
    return [
        (
            "",
            "namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        ),
        ("apps", "deployments", deployment),
        ("", "services", service),
    ]


def collection_path(plural: str, obj: dict[str, Any]) -> str:
    """Where an object is created: ``/api/v1/namespaces/test/services``, ``/apis/apps/v1/…``."""
    api_version = str(obj["apiVersion"])
    root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    namespace = (obj.get("metadata") or {}).get("namespace")
    return f"{root}/namespaces/{namespace}/{plural}" if namespace else f"{root}/{plural}"


async def seed_cluster(
    session: aiohttp.ClientSession, config: KubeConfig, *, loadtester: bool = True
) -> list[str]:
    """Create the initial objects through the API; returns the ones created by this call.

    ``session`` is one made by ``config.session()``. Errors other than AlreadyExists are raised
    (`activities.errors`); the caller runs this once the API server is ready.
    """
    created: list[str] = []
    if not loadtester:
        return created
    for _, plural, obj in loadtester_objects():
        name = f"{plural}/{obj['metadata']['name']}"
        try:
            await request_json(session, "POST", config.url(collection_path(plural, obj)), body=obj)
        except AlreadyExists:
            log.debug("seed: %s exists already", name)
            continue
        created.append(name)
    return created
