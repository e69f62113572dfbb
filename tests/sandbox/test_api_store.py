"""The Store as the controllers use it directly: copies, notifications, writes, cascades."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.errors import AlreadyExists, BadRequest, Conflict, Expired, Invalid, NotFound
from sandbox.labels import parse_selector, selector_string
from sandbox.resources import crd
from sandbox.store import Store


def deployment(name: str = "podinfo", namespace: str = "test") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "podinfo:1"}]},
            },
        },
    }


@pytest.fixture
def store() -> Store:
    s = Store()
    s.create("", "namespaces", {"metadata": {"name": "test"}})
    return s


def test_objects_are_copied_in_and_out(store: Store) -> None:
    original = deployment()
    created = store.create("apps", "deployments", original)
    original["spec"]["replicas"] = 99
    created["spec"]["replicas"] = 98
    fetched = store.get("apps", "deployments", "test", "podinfo")
    assert fetched is not None
    assert fetched["spec"]["replicas"] == 1  # defaulted, untouched by either mutation
    fetched["metadata"]["labels"]["x"] = "y"
    assert "x" not in store.get("apps", "deployments", "test", "podinfo")["metadata"]["labels"]
    assert fetched["apiVersion"] == "apps/v1"
    assert fetched["kind"] == "Deployment"


def test_subscribers_see_every_committed_write(store: Store) -> None:
    seen: list[tuple[str, str, str, str]] = []
    unsubscribe = store.subscribe(lambda t, g, p, o: seen.append((t, g, p, o["metadata"]["name"])))
    created = store.create("apps", "deployments", deployment())
    store.update("apps", "deployments", created)  # unchanged: not committed, no event
    created["spec"]["replicas"] = 3
    store.update("apps", "deployments", created)
    store.delete("apps", "deployments", "test", "podinfo")
    unsubscribe()
    store.create("apps", "deployments", deployment("later"))
    assert seen == [
        ("ADDED", "apps", "deployments", "podinfo"),
        ("MODIFIED", "apps", "deployments", "podinfo"),
        ("DELETED", "apps", "deployments", "podinfo"),
    ]


def test_resource_versions_conflicts_and_generation(store: Store) -> None:
    created = store.create("apps", "deployments", deployment())
    assert int(created["metadata"]["resourceVersion"]) == store.resource_version
    with pytest.raises(AlreadyExists):
        store.create("apps", "deployments", deployment())
    status = store.update_status("apps", "deployments", {**created, "status": {"replicas": 1}})
    assert status["metadata"]["generation"] == 1
    with pytest.raises(Conflict):
        store.update("apps", "deployments", created)  # stale resourceVersion
    latest = dict(status)
    latest["spec"] = {**latest["spec"], "replicas": 2}
    latest["status"] = {"replicas": 42}
    updated = store.update("apps", "deployments", latest)
    assert updated["metadata"]["generation"] == 2
    assert updated["status"] == {"replicas": 1}, "update keeps status"
    del updated["metadata"]["resourceVersion"]  # no resourceVersion: last write wins
    updated["metadata"]["labels"] = {"app": "podinfo", "extra": "1"}
    assert store.update("apps", "deployments", updated)["metadata"]["generation"] == 2
    with pytest.raises(NotFound):
        store.update("apps", "deployments", deployment("missing"))


def test_validation_and_generate_name(store: Store) -> None:
    with pytest.raises(Invalid):
        store.create("", "configmaps", {"metadata": {"namespace": "test"}})
    with pytest.raises(Invalid):
        store.create("", "configmaps", {"metadata": {"name": "Bad_Name", "namespace": "test"}})
    made = store.create(
        "",
        "pods",
        {
            "metadata": {"generateName": "podinfo-", "namespace": "test"},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    assert made["metadata"]["name"].startswith("podinfo-")
    assert made["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    with pytest.raises(NotFound):
        store.create("nope.io", "things", {"metadata": {"name": "x"}})


def test_delete_cascades_to_owned_objects_unless_orphaned(store: Store) -> None:
    owner = store.create("apps", "deployments", deployment())
    ref = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo",
        "uid": owner["metadata"]["uid"],
    }
    rs = deployment("podinfo-abc")
    rs["metadata"]["ownerReferences"] = [ref]
    rs_made = store.create("apps", "replicasets", rs)
    pod_ref = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "podinfo-abc",
        "uid": rs_made["metadata"]["uid"],
    }
    store.create(
        "",
        "pods",
        {
            "metadata": {"name": "p", "namespace": "test", "ownerReferences": [pod_ref]},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    assert store.delete("apps", "deployments", "test", "podinfo") is not None
    assert store.list("apps", "replicasets", "test") == []
    assert store.list("", "pods", "test") == []
    assert store.delete("apps", "deployments", "test", "podinfo") is None
    kept = store.create("apps", "deployments", deployment())
    orphan = deployment("orphan")
    orphan["metadata"]["ownerReferences"] = [{**ref, "uid": kept["metadata"]["uid"]}]
    store.create("apps", "replicasets", orphan)
    store.delete("apps", "deployments", "test", "podinfo", propagation="Orphan")
    assert [r["metadata"]["name"] for r in store.list("apps", "replicasets", "test")] == ["orphan"]


def test_namespace_delete_takes_its_contents(store: Store) -> None:
    store.create("apps", "deployments", deployment())
    store.create("", "configmaps", {"metadata": {"name": "c", "namespace": "test"}})
    store.create("", "configmaps", {"metadata": {"name": "c", "namespace": "default"}})
    store.delete("", "namespaces", None, "test")
    assert store.list("apps", "deployments") == []
    assert [c["metadata"]["namespace"] for c in store.list("", "configmaps")] == ["default"]


def test_crds_register_and_withdraw_kinds(store: Store) -> None:
    doc = crd("example.com", "Widget", "widgets", ["v1"])
    store.create("apiextensions.k8s.io", "customresourcedefinitions", doc)
    rt = store.registry.lookup("example.com", "widgets")
    assert rt is not None
    assert rt.custom
    assert rt.status
    store.create(
        "example.com", "widgets", {"metadata": {"name": "w", "namespace": "test"}, "spec": {}}
    )
    store.delete("apiextensions.k8s.io", "customresourcedefinitions", None, "widgets.example.com")
    assert store.registry.lookup("example.com", "widgets") is None
    assert store.scan("example.com", "widgets") == []


def test_list_selectors_and_order(store: Store) -> None:
    for ns, name, tier in (("test", "b", "web"), ("default", "a", "db"), ("test", "a", None)):
        labels = {"tier": tier} if tier else {}
        store.create(
            "", "configmaps", {"metadata": {"name": name, "namespace": ns, "labels": labels}}
        )
    names = [
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.list("", "configmaps")
    ]
    assert names == [("default", "a"), ("test", "a"), ("test", "b")]
    assert [
        o["metadata"]["name"] for o in store.list("", "configmaps", "test", label_selector="tier")
    ] == ["b"]
    assert len(store.list("", "configmaps", label_selector="tier notin (web)")) == 2


def test_history_replay_and_expiry() -> None:
    store = Store(history_size=3)
    for index in range(5):
        store.create("", "namespaces", {"metadata": {"name": f"ns{index}"}})
    latest = store.resource_version
    assert [e.obj["metadata"]["name"] for e in store.history("", "namespaces", latest - 2)] == [
        "ns3",
        "ns4",
    ]
    with pytest.raises(Expired):
        store.history("", "namespaces", 1)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app in (web, db)", {"app": "db"}, True),
        ("app notin (web,db)", {"app": "db"}, False),
        ("app notin (web)", {}, True),
        ("!canary", {"canary": "1"}, False),
        ("app,!canary", {"app": "x"}, True),
        ("replicas>2", {"replicas": "3"}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector).matches(labels) is expected


def test_label_selector_errors_and_rendering() -> None:
    with pytest.raises(BadRequest):
        parse_selector("app in web")
    rendered = selector_string(
        {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [
                {"key": "t", "operator": "In", "values": ["y", "x"]},
                {"key": "c", "operator": "DoesNotExist"},
            ],
        }
    )
    assert rendered == "a=1,b=2,t in (x,y),!c"
