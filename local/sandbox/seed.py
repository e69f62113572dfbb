"""Objects a fresh sandbox starts with: the article's ``istio-system``, and Flagger's load tester.

The article's cluster (Istio, its Prometheus addon, a public gateway), so a Flagger user's own
scripts and Canaries work as written:

- namespace ``istio-system`` with a ``prometheus`` Deployment (a Prometheus image, which the mesh
  answers with the sandbox's real Prometheus: workloads/prometheus.py) and Service on port 9090,
  so ``http://prometheus.istio-system:9090`` reaches it through the mesh;
- the Istio ``Gateway`` ``public-gateway`` in ``istio-system`` (HTTP on port 80, every host), the
  one the article's Canary names in ``service.gateways``. The mesh does not tell gateways apart
  (one proxy is both the ingress and the mesh), but the object is there for whoever looks.

Then, as in Flagger's tutorials (``kubectl -n test apply -f artifacts/loadtester/``): a
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
PROMETHEUS_IMAGE = "docker.io/prom/prometheus:v3.5.0"
ISTIO_NAMESPACE = "istio-system"
PUBLIC_GATEWAY = "public-gateway"


def article_objects() -> list[tuple[str, str, dict[str, Any]]]:
    """(group, plural, object): ``istio-system``, its Prometheus and the public Gateway."""
    ns = ISTIO_NAMESPACE
    labels = {"app": "prometheus"}
    container = {
        "name": "prometheus",
        "image": PROMETHEUS_IMAGE,
        "ports": [{"name": "http", "containerPort": 9090}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "prometheus", "namespace": ns, "labels": dict(labels)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "prometheus", "namespace": ns, "labels": dict(labels)},
        "spec": {
            "selector": dict(labels),
            "ports": [{"name": "http", "port": 9090, "protocol": "TCP", "targetPort": 9090}],
        },
    }
    gateway = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": PUBLIC_GATEWAY, "namespace": ns},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }
    return [
        ("", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        ("apps", "deployments", deployment),
        ("", "services", service),
        ("networking.istio.io", "gateways", gateway),
    ]


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
    (`activities.errors`); the caller runs this once the API server is ready. ``loadtester``
    False leaves out namespace ``test`` and the load tester (``istio-system`` is always there).
    """
    created: list[str] = []
    objects = article_objects() + (loadtester_objects() if loadtester else [])
    for _, plural, obj in objects:
        name = f"{plural}/{obj['metadata']['name']}"
        try:
            await request_json(session, "POST", config.url(collection_path(plural, obj)), body=obj)
        except AlreadyExists:
            log.debug("seed: %s exists already", name)
            continue
        created.append(name)
    return created
