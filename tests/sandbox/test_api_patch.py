"""Strategic merge, JSON merge and JSON patch cases, each as Kubernetes documents it.

Every strategic-merge case is also run through ``kubectl patch --local``, which applies the patch
with apimachinery's own strategicpatch package and the Go types' merge keys: the same code a real
apiserver runs. (That is how the list order rule was found: items named by the patch take the
patch's order, so an added item comes before the live ones unless ``$setElementOrder`` says
otherwise.)

References:
- [task] kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
- [design] github.com/kubernetes/community, contributors/devel/sig-api-machinery/
  strategic-merge-patch.md
- [types] patchStrategy/patchMergeKey tags in k8s.io/api (core/v1, apps/v1, meta/v1)
- RFC 7386 (merge patch), RFC 6902 (JSON patch)
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.apiserver.jsonpatch import json_patch, merge_patch
from sandbox.apiserver.patch import strategic_merge
from sandbox.errors import Invalid
from tests.sandbox.test_api_harness import Cluster, cluster

__all__ = ["cluster"]


def deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": containers}}, **spec}}


def containers_patch(containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": containers, **extra}}}}


C1 = {"name": "patch-demo-ctr", "image": "nginx"}
C2 = {"name": "patch-demo-ctr-2", "image": "redis"}

# (id, kind, original, patch, expected); the comment above each case says where it is documented.
CASES: list[tuple[str, str, Any, Any, Any]] = [
    # [task] "Notes on the strategic merge patch": containers merge by name, so a patch with a
    # second container keeps the first; the task's output lists the added container first.
    (
        "containers-merge-by-name",
        "Deployment",
        deployment([C1]),
        containers_patch([C2]),
        deployment([C2, C1]),
    ),
    # [types] Container has patchMergeKey=name: a patch naming an existing container merges into it.
    (
        "container-fields-merge",
        "Deployment",
        deployment([C1]),
        containers_patch([{"name": "patch-demo-ctr", "image": "nginx:2"}]),
        deployment([{"name": "patch-demo-ctr", "image": "nginx:2"}]),
    ),
    # [task] tolerations have no patch strategy: the patch replaces the list.
    (
        "tolerations-replace",
        "Deployment",
        {"spec": {"template": {"spec": {"tolerations": [{"key": "disktype", "value": "ssd"}]}}}},
        {
            "spec": {
                "template": {
                    "spec": {"tolerations": [{"effect": "NoSchedule", "key": "dedicated"}]}
                }
            }
        },
        {
            "spec": {
                "template": {
                    "spec": {"tolerations": [{"effect": "NoSchedule", "key": "dedicated"}]}
                }
            }
        },
    ),
    # [task] "Use strategic merge patch to update a Deployment using the retainKeys strategy".
    (
        "retainKeys-strategy",
        "Deployment",
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        {"spec": {"strategy": {"type": "Recreate"}}},
    ),
    # [design] "$patch: replace" on a map replaces it instead of merging.
    (
        "patch-replace-map",
        "Deployment",
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"$patch": "replace", "c": "3"}}},
        {"metadata": {"labels": {"c": "3"}}},
    ),
    # [design] "$patch: delete" on a map deletes its contents (apimachinery leaves an empty map).
    (
        "patch-delete-map",
        "Deployment",
        {"metadata": {"labels": {"a": "1"}, "annotations": {"x": "y"}}},
        {"metadata": {"annotations": {"$patch": "delete"}}},
        {"metadata": {"labels": {"a": "1"}, "annotations": {}}},
    ),
    # [design] a list element with "$patch: delete" deletes the element with that merge key.
    (
        "patch-delete-element",
        "Deployment",
        deployment([C1, C2]),
        containers_patch([{"name": "patch-demo-ctr", "$patch": "delete"}]),
        deployment([C2]),
    ),
    # [design] a list element "{$patch: replace}" replaces the whole list with the patch's elements.
    (
        "patch-replace-list",
        "Deployment",
        deployment([C1, C2]),
        containers_patch([{"name": "only", "image": "x"}, {"$patch": "replace"}]),
        deployment([{"name": "only", "image": "x"}]),
    ),
    # [design] $deleteFromPrimitiveList removes values from a primitive merge list (finalizers).
    (
        "deleteFromPrimitiveList",
        "Deployment",
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
        {"metadata": {"finalizers": ["a", "c"]}},
    ),
    # [types] finalizers have patchStrategy=merge: a patch adds to the set.
    (
        "finalizers-merge",
        "Deployment",
        {"metadata": {"finalizers": ["a"]}},
        {"metadata": {"finalizers": ["b", "a"]}},
        {"metadata": {"finalizers": ["b", "a"]}},
    ),
    # [design] $setElementOrder orders the merged list as the patch says.
    (
        "setElementOrder",
        "Deployment",
        deployment([C1, C2]),
        containers_patch(
            [],
            **{
                "$setElementOrder/containers": [
                    {"name": "patch-demo-ctr-2"},
                    {"name": "patch-demo-ctr"},
                ]
            },
        ),
        deployment([C2, C1]),
    ),
    # [design] $setElementOrder with a new item: the new item lands where the order puts it.
    (
        "setElementOrder-with-new-item",
        "Deployment",
        deployment([C1, C2]),
        containers_patch(
            [{"name": "new", "image": "x"}],
            **{
                "$setElementOrder/containers": [
                    {"name": "patch-demo-ctr"},
                    {"name": "new"},
                    {"name": "patch-demo-ctr-2"},
                ]
            },
        ),
        deployment([C1, {"name": "new", "image": "x"}, C2]),
    ),
    # [design] $setElementOrder naming only some items: server-only items keep their live place.
    (
        "setElementOrder-partial",
        "Deployment",
        deployment([C1, C2]),
        containers_patch(
            [{"name": "new", "image": "x"}],
            **{"$setElementOrder/containers": [{"name": "new"}, {"name": "patch-demo-ctr"}]},
        ),
        deployment([{"name": "new", "image": "x"}, C1, C2]),
    ),
    # [design] a null inside a merged list element deletes that key of the element.
    (
        "null-in-list-element",
        "Deployment",
        deployment([{"name": "c", "env": [{"name": "A", "value": "1"}]}]),
        containers_patch([{"name": "c", "env": [{"name": "A", "value": None}]}]),
        deployment([{"name": "c", "env": [{"name": "A"}]}]),
    ),
    # [design] "$patch: delete" inside a nested merge list (env of one container).
    (
        "delete-nested-element",
        "Deployment",
        deployment(
            [{"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]
        ),
        containers_patch([{"name": "c", "env": [{"name": "A", "$patch": "delete"}]}]),
        deployment([{"name": "c", "env": [{"name": "B", "value": "2"}]}]),
    ),
    # [task] volumes use "merge,retainKeys": switching a volume's source drops the old one.
    (
        "retainKeys-volume-source",
        "Deployment",
        {"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}}},
        {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [
                            {
                                "name": "v",
                                "$retainKeys": ["configMap", "name"],
                                "configMap": {"name": "cm"},
                            }
                        ]
                    }
                }
            }
        },
        {"spec": {"template": {"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}}}},
    ),
    # [design] $setElementOrder on a primitive merge list (finalizers).
    (
        "setElementOrder-primitive",
        "Deployment",
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}},
        {"metadata": {"finalizers": ["c", "a", "b"]}},
    ),
    # [design] an empty patch list merges nothing into a merge list.
    ("empty-merge-list", "Deployment", deployment([C1]), containers_patch([]), deployment([C1])),
    # [types] EnvVar merges by name.
    (
        "env-by-name",
        "Deployment",
        deployment(
            [{"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "1"}]}]
        ),
        containers_patch(
            [{"name": "c", "env": [{"name": "B", "value": "2"}, {"name": "C", "value": "3"}]}]
        ),
        deployment(
            [
                {
                    "name": "c",
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "B", "value": "2"},
                        {"name": "C", "value": "3"},
                    ],
                }
            ]
        ),
    ),
    # [types] ContainerPort merges by containerPort.
    (
        "container-ports-by-containerPort",
        "Deployment",
        deployment([{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]),
        containers_patch(
            [
                {
                    "name": "c",
                    "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 9090}],
                }
            ]
        ),
        deployment(
            [
                {
                    "name": "c",
                    "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 9090}],
                }
            ]
        ),
    ),
    # [types] VolumeMount merges by mountPath.
    (
        "volumeMounts-by-mountPath",
        "Deployment",
        deployment([{"name": "c", "volumeMounts": [{"mountPath": "/a", "name": "v1"}]}]),
        containers_patch([{"name": "c", "volumeMounts": [{"mountPath": "/b", "name": "v2"}]}]),
        deployment(
            [
                {
                    "name": "c",
                    "volumeMounts": [
                        {"mountPath": "/b", "name": "v2"},
                        {"mountPath": "/a", "name": "v1"},
                    ],
                }
            ]
        ),
    ),
    # [types] Volumes, imagePullSecrets and initContainers merge by name.
    (
        "volumes-secrets-init-by-name",
        "Deployment",
        {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [{"name": "a", "emptyDir": {}}],
                        "imagePullSecrets": [{"name": "r1"}],
                        "initContainers": [{"name": "i", "image": "1"}],
                    }
                }
            }
        },
        {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [{"name": "b", "emptyDir": {}}],
                        "imagePullSecrets": [{"name": "r2"}],
                        "initContainers": [{"name": "i", "image": "2"}],
                    }
                }
            }
        },
        {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [{"name": "b", "emptyDir": {}}, {"name": "a", "emptyDir": {}}],
                        "imagePullSecrets": [{"name": "r2"}, {"name": "r1"}],
                        "initContainers": [{"name": "i", "image": "2"}],
                    }
                }
            }
        },
    ),
    # [types] ServicePort merges by port.
    (
        "service-ports-by-port",
        "Service",
        {"spec": {"ports": [{"port": 80, "name": "http"}]}},
        {"spec": {"ports": [{"port": 443, "name": "https"}]}},
        {"spec": {"ports": [{"port": 443, "name": "https"}, {"port": 80, "name": "http"}]}},
    ),
    # [types] DeploymentCondition merges by type.
    (
        "conditions-by-type",
        "Deployment",
        {
            "status": {
                "conditions": [
                    {"type": "Available", "status": "False"},
                    {"type": "Progressing", "status": "True"},
                ]
            }
        },
        {"status": {"conditions": [{"type": "Available", "status": "True"}]}},
        {
            "status": {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True"},
                ]
            }
        },
    ),
    # [design] null deletes a key.
    (
        "null-deletes",
        "Deployment",
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"a": None}}},
        {"metadata": {"labels": {"b": "2"}}},
    ),
    # [types] args has no patch strategy: replaced whole.
    (
        "args-atomic",
        "Deployment",
        deployment([{"name": "c", "args": ["a", "b"]}]),
        containers_patch([{"name": "c", "args": ["z"]}]),
        deployment([{"name": "c", "args": ["z"]}]),
    ),
    # [types] ownerReferences merge by uid.
    (
        "ownerReferences-by-uid",
        "ReplicaSet",
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}]}},
    ),
]


@pytest.mark.parametrize(
    ("kind", "original", "patch", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_strategic_merge(kind: str, original: Any, patch: Any, expected: Any) -> None:
    before = repr(original)
    assert strategic_merge(original, patch, kind) == expected
    assert repr(original) == before, "the original must not be modified"


def test_strategic_merge_requires_the_merge_key() -> None:
    with pytest.raises(Invalid, match="does not contain declared merge key: name"):
        strategic_merge(deployment([C1]), containers_patch([{"image": "x"}]), "Deployment")


def test_merge_patch_rfc7386() -> None:
    # RFC 7386 appendix A examples.
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}


def test_json_patch_rfc6902() -> None:
    doc = {"spec": {"hosts": ["a"], "http": [{"weight": 100}]}, "metadata": {"labels": {}}}
    ops = [
        {"op": "add", "path": "/spec/hosts/-", "value": "b"},
        {"op": "replace", "path": "/spec/http/0/weight", "value": 90},
        {"op": "add", "path": "/metadata/labels/app~1name", "value": "x"},
        {"op": "copy", "from": "/spec/hosts/0", "path": "/spec/first"},
        {"op": "move", "from": "/spec/first", "path": "/spec/moved"},
        {"op": "test", "path": "/spec/moved", "value": "a"},
        {"op": "remove", "path": "/spec/hosts/0"},
    ]
    assert json_patch(doc, ops) == {
        "spec": {"hosts": ["b"], "http": [{"weight": 90}], "moved": "a"},
        "metadata": {"labels": {"app/name": "x"}},
    }
    assert doc["spec"]["hosts"] == ["a"], "the original must not be modified"


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/b/c", "value": 1}],
        [{"op": "add", "path": "/list/5", "value": 1}],
    ],
)
def test_json_patch_failures_are_invalid(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(Invalid):
        json_patch({"a": 1, "list": []}, ops)


API_VERSIONS = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "Service": "v1"}


@pytest.mark.parametrize(
    ("kind", "original", "patch"),
    [pytest.param(*case[1:4], id=case[0]) for case in CASES],
)
def test_strategic_merge_agrees_with_kubectl(
    cluster: Cluster, kind: str, original: Any, patch: Any
) -> None:
    """kubectl's ``patch --local`` runs apimachinery's own strategic merge: the reference."""
    meta = {"name": "x", "namespace": "default", **original.get("metadata", {})}
    full = {"apiVersion": API_VERSIONS[kind], "kind": kind, **original, "metadata": meta}
    out = cluster.kubectl(
        "patch",
        "--local",
        "-f",
        "-",
        "--type",
        "strategic",
        "-p",
        json.dumps(patch),
        "-o",
        "json",
        stdin=json.dumps(full),
    )
    assert strategic_merge(full, patch, kind) == json.loads(out.stdout)
