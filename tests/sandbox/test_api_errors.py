"""Malformed requests get a 4xx Status, as from a real apiserver: never a 500, never bad data."""

from __future__ import annotations

import pytest

from tests.sandbox.test_api_harness import Cluster, cluster

__all__ = ["cluster"]

DEPLOYMENT = {
    "metadata": {"name": "d"},
    "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    },
}
BODIES = [
    [1],
    "x",
    5,
    None,
    {"metadata": 5},
    {"metadata": {"labels": 5}},
    {"metadata": {"name": "other"}},
    {"spec": "x"},
    {"spec": {"replicas": "a"}},
    {"spec": {"replicas": -1}},
    {"spec": {"template": {"spec": {"containers": 5}}}},
    {"status": 5},
    [{"op": "bogus"}],
    [{"op": "add", "path": "/metadata", "value": 3}],
    [{"op": "replace", "path": "", "value": 5}],
]
TYPES = [
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
]


@pytest.fixture
def seeded(cluster: Cluster) -> Cluster:
    cluster.http("POST", "/api/v1/namespaces", {"metadata": {"name": "evt"}})
    assert cluster.http("POST", "/apis/apps/v1/namespaces/evt/deployments", DEPLOYMENT)[0] == 201
    cm = {"metadata": {"name": "c"}, "data": {"k": "v"}}
    assert cluster.http("POST", "/api/v1/namespaces/evt/configmaps", cm)[0] == 201
    return cluster


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/evt/configmaps/c",
        "/apis/apps/v1/namespaces/evt/deployments/d",
        "/apis/apps/v1/namespaces/evt/deployments/d/status",
        "/apis/apps/v1/namespaces/evt/deployments/d/scale",
    ],
)
def test_malformed_patches_are_client_errors(seeded: Cluster, path: str) -> None:
    codes = set()
    for content_type in TYPES:
        for body in BODIES:
            status, answer, _ = seeded.http(
                "PATCH", f"{path}?fieldManager=t", body, content_type=content_type
            )
            assert status < 500, (content_type, body, answer)
            codes.add(status)
            if status >= 400:
                assert answer["kind"] == "Status"
    assert codes & {400, 422}, "some of these bodies must be refused"
    _, deployment, _ = seeded.http("GET", "/apis/apps/v1/namespaces/evt/deployments/d")
    assert isinstance(deployment["spec"]["replicas"], int)
    assert isinstance(deployment["status"], dict)


def test_malformed_creates_and_replaces(seeded: Cluster) -> None:
    base = "/api/v1/namespaces/evt/configmaps"
    for body in (
        {"metadata": 5},
        {"metadata": {"name": "c"}, "data": 5},
        {"metadata": {"name": "x", "labels": []}},
    ):
        assert seeded.http("PUT", f"{base}/c", body)[0] in (400, 422)
        assert seeded.http("POST", base, body)[0] in (400, 409, 422)
    assert seeded.http("POST", base, [1])[0] == 400
    status, answer, _ = seeded.http("POST", base, {"metadata": {"name": "Bad_Name"}})
    assert (status, answer["reason"]) == (422, "Invalid")
    assert seeded.http("GET", f"{base}/c")[1]["data"] == {"k": "v"}
