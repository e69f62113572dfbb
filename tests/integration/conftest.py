"""Helpers for the Kubernetes and router activity tests, on the session's real cluster.

The activities run as the worker runs them: with ``worker_client`` (the ``coalmine``
ServiceAccount through the API proxy, so the real authorizer holds them to the shipped
ClusterRole); a test sets up and reads back with ``admin_client`` or ``kubectl``, in its own
``sandbox_namespace`` (all shared fixtures of ``tests/conftest.py``).

Readiness comes from the real controllers, never from the test: the Deployment and ReplicaSet
controllers make the pods and kwok's fake nodes make them Ready 0.3 s after scheduling, later
with ``ready_after`` (the pod-template annotation of `sandbox.settings.ready_delay`), never with
an `UNPULLABLE` image, for which the Deployment controller reports ProgressDeadlineExceeded
once ``progress_deadline`` seconds have passed. Write counts come from the API server's audit
log, filtered to the worker's user (``api_proxy.writes``; `verbs` for the requests on one
object), which is how the idempotency tests prove a repeat writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from sandbox.settings import ready_delay
from tests import canaries
from tests.conftest import WORKER_USER, WRITE_VERBS, ApiProxy
from workflows.spec import Canary

Obj = dict[str, Any]

UNPULLABLE = "quay.io/stefanprodan/podinfo:unpullable"
"""An image kwok's nodes never pull: its pods stay in ImagePullBackOff, never Ready."""


def verbs(api_proxy: ApiProxy, namespace: str, key: str) -> list[str]:
    """The verbs of the worker's accepted write requests on one object, oldest first; ``key``
    names it as ``api_proxy.writes`` does (``resource/name[/subresource]``)."""
    resource, name, *subresource = key.split("/")
    return [
        entry["verb"]
        for entry in api_proxy.audit(namespace=namespace, resource=resource, user=WORKER_USER)
        if entry["verb"] in WRITE_VERBS
        and 200 <= entry["code"] < 300
        and (entry["object_name"] or entry["name"]) == name
        and entry["subresource"] == "/".join(subresource)
    ]


# --- the article's podinfo -----------------------------------------------------------------------


def make_canary(namespace: str, *, autoscaler: bool = True, **service: Any) -> Canary:
    """The article's Canary for podinfo (v1beta1 form), in ``namespace``."""
    return canaries.canary(
        namespace,
        service={**canaries.ARTICLE_GATEWAYS, **service},
        autoscaler="podinfo" if autoscaler else None,
    )


def podinfo_deployment(
    image: str = "quay.io/stefanprodan/podinfo:1.4.0",
    replicas: int = 2,
    *,
    ready_after: float | None = None,
    progress_deadline: int | None = None,
    pod: Obj | None = None,
) -> Obj:
    """podinfo, container ``podinfod`` on 9898, reading a ConfigMap (volume, env) and a Secret.

    ``ready_after``: seconds from scheduling until kwok reports each pod Ready (the session's
    0.3 s when None); ``progress_deadline``: the Deployment's ``progressDeadlineSeconds``;
    ``pod``: more pod-spec fields (an affinity that keeps a pod Pending, say).
    """
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
    annotations = {"prometheus.io/scrape": "true"}
    if ready_after is not None:
        annotations |= ready_delay(ready_after)
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo", "team": "web"}, "annotations": annotations},
            "spec": {
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": "podinfo-config"}}],
                **(pod or {}),
            },
        },
    }
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "labels": {"app": "podinfo", "team": "web"}},
        "spec": spec,
    }


def create_podinfo(
    api_client: client.ApiClient, namespace: str, *, hpa: bool = True, **deployment: Any
) -> None:
    """The target Deployment, its ConfigMaps and Secret, and (``hpa``) its HPA; ``deployment``:
    `podinfo_deployment`'s arguments.

    The HPA is real: the controller-manager holds the target within min 2 / max 4 replicas
    (one at zero it leaves alone), so a test that wants other sizes goes without it.
    """
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
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace, podinfo_deployment(**deployment)
    )
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
