"""Objects a fresh sandbox starts with: Flagger's load tester in namespace ``test``.

As in Flagger's tutorials (``kubectl -n test apply -f artifacts/loadtester/``): a
``flagger-loadtester`` Deployment (image ``ghcr.io/fluxcd/flagger-loadtester``, port 8080 named
``http``) and a Service on port 80, so webhooks written for Flagger
(``http://flagger-loadtester.test/``) work unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sandbox.errors import AlreadyExists

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


def seed(store: Any, *, loadtester: bool = True) -> None:
    if not loadtester:
        return
    for group, plural, obj in loadtester_objects():
        with contextlib.suppress(AlreadyExists):
            store.create(group, plural, obj)
