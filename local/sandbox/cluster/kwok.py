"""kwok's part of the local cluster: the fake Nodes, and the stages that play a kubelet.

Stages are kwok's own (`kustomize/stage/`, copied by scripts/build-k8s.sh), with two changes: a
pod becomes Ready after a delay (the cluster's default, or the pod's own annotation), and an image
that can never be pulled keeps its pod Pending in ImagePullBackOff, as a kubelet would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NODES = ("kwok-node-0", "kwok-node-1", "kwok-node-2")
# kwok's own annotation: a pod (or a pod template) that sets it becomes ready after that long.
READY_DELAY_ANNOTATION = "pod-ready.stage.kwok.x-k8s.io/delay"

# A pod whose image reference names one of these can never be pulled: kwok leaves it Pending in
# ImagePullBackOff, as a kubelet would, so a bad release never becomes ready (gojq expression).
UNPULLABLE = '[.spec.containers[].image | test("unpullable|invalid[.]example")] | any'


def _image_pull_backoff_stage() -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "pod-image-pull-backoff"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                    {"key": ".spec.nodeName", "operator": "Exists"},
                    {"key": UNPULLABLE, "operator": "In", "values": ["true"]},
                    {
                        "key": ".status.containerStatuses.[0].state.waiting.reason",
                        "operator": "NotIn",
                        "values": ["ImagePullBackOff"],
                    },
                ]
            },
            "next": {
                "statusTemplate": (
                    "conditions:\n"
                    '- type: Ready\n  status: "False"\n  reason: ContainersNotReady\n'
                    "containerStatuses:\n"
                    "{{ range .spec.containers }}\n"
                    "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n"
                    "  ready: false\n  restartCount: 0\n"
                    "  state:\n    waiting:\n      reason: ImagePullBackOff\n"
                    '      message: {{ printf "Back-off pulling image %q" .image | Quote }}\n'
                    "{{ end }}\n"
                    "phase: Pending\n"
                )
            },
        },
    }


def config(stages: Path, ready_delay: float) -> str:
    """kwok's configuration: its stages, pods Ready after ``ready_delay`` seconds by default."""
    docs: list[Any] = []
    for path in sorted(stages.glob("*.yaml")):
        stage = yaml.safe_load(path.read_text())
        if stage["metadata"]["name"] == "pod-ready":
            # Ready at once, unless the pod asks for a delay with kwok's annotation: tests use
            # it to show what a slow-starting primary does to a first initialization.
            stage["spec"]["delay"] = {
                "durationMilliseconds": int(ready_delay * 1000),
                "durationFrom": {
                    "expressionFrom": f'.metadata.annotations["{READY_DELAY_ANNOTATION}"]'
                },
            }
            stage["spec"]["selector"]["matchExpressions"].append(
                {"key": UNPULLABLE, "operator": "NotIn", "values": ["true"]}
            )
        docs.append(stage)
    docs.append(_image_pull_backoff_stage())
    return yaml.safe_dump_all(docs, sort_keys=False)


def nodes(count: int) -> str:
    """``count`` fake Nodes kwok manages, one per zone."""
    manifests = []
    for name in NODES[:count]:
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "topology.kubernetes.io/zone": f"zone-{name[-1]}",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                },
            }
        )
    return yaml.safe_dump_all(manifests, sort_keys=False)
