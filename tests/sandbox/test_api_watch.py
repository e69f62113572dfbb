"""Watch via kubernetes.watch.Watch and raw HTTP: replay, timeout, bookmarks, 410."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from sandbox.store import Store
from tests.sandbox.test_api_harness import Cluster, cluster, start_cluster

__all__ = ["cluster"]

NS = "test"


def configmap(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "data": {"v": "1"}}


@pytest.fixture
def core(cluster: Cluster) -> client.CoreV1Api:
    api = client.CoreV1Api(cluster.api_client())
    api.create_namespace({"metadata": {"name": NS}})
    return api


def once_watching(cluster: Cluster, action) -> threading.Thread:
    """Run ``action`` in a thread once a configmaps watch is open (timing-proof under load)."""

    def run() -> None:
        cluster.wait_for_watch("configmaps")
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_watch_without_version_sends_current_objects_then_changes(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(NS, configmap("a"))

    def changes() -> None:
        core.patch_namespaced_config_map("a", NS, {"data": {"v": "2"}})
        core.create_namespaced_config_map(NS, configmap("b"))
        core.delete_namespaced_config_map("a", NS)

    worker = once_watching(cluster, changes)
    started = time.monotonic()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(core.list_namespaced_config_map, NS, timeout_seconds=4)
    ]
    worker.join()
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert 3.5 < time.monotonic() - started < 15, "the server closes the stream at timeoutSeconds"


def test_watch_replays_after_a_resource_version(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, configmap("a"))
    since = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, configmap("b"))
    core.patch_namespaced_config_map("a", NS, {"data": {"v": "3"}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, NS, resource_version=since, timeout_seconds=1
    )
    events = [(e["type"], e["object"].metadata.name, e["object"].data["v"]) for e in stream]
    assert events == [("ADDED", "b", "1"), ("MODIFIED", "a", "3")]


def test_watch_all_namespaces_with_label_selector(cluster: Cluster, core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "other"}})

    def writes() -> None:
        core.create_namespaced_config_map(NS, configmap("x", app="podinfo"))
        core.create_namespaced_config_map("other", configmap("y", app="podinfo"))
        core.create_namespaced_config_map("other", configmap("z", app="else"))

    worker = once_watching(cluster, writes)
    stream = watch.Watch().stream(
        core.list_config_map_for_all_namespaces, label_selector="app=podinfo", timeout_seconds=4
    )
    events = [(e["object"].metadata.namespace, e["object"].metadata.name) for e in stream]
    worker.join()
    assert events == [(NS, "x"), ("other", "y")]


def test_watch_sends_bookmarks_when_allowed(tmp_path: Path) -> None:
    running, stop = start_cluster(tmp_path, bookmark_interval=0.3)
    try:
        core = client.CoreV1Api(running.api_client())
        stream = watch.Watch().stream(
            core.list_namespace, allow_watch_bookmarks=True, timeout_seconds=2
        )
        kinds = [e["type"] for e in stream]
        assert kinds[:4] == ["ADDED"] * 4  # default, kube-system, kube-public, kube-node-lease
        assert kinds.count("BOOKMARK") >= 2
        quiet = watch.Watch().stream(core.list_namespace, timeout_seconds=1)
        assert "BOOKMARK" not in [e["type"] for e in quiet]
    finally:
        stop()


@pytest.fixture
def short_history(tmp_path: Path) -> Iterator[Cluster]:
    running, stop = start_cluster(tmp_path, store_factory=lambda: Store(history_size=5))
    try:
        yield running
    finally:
        stop()


def test_watch_from_a_compacted_version_is_410(short_history: Cluster) -> None:
    core = client.CoreV1Api(short_history.api_client())
    first = core.list_namespaced_config_map("default").metadata.resource_version
    for index in range(10):
        core.create_namespaced_config_map("default", configmap(f"c{index}"))
    with pytest.raises(ApiException) as caught:
        list(
            watch.Watch().stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=first,
                timeout_seconds=1,
            )
        )
    assert caught.value.status == 410
    assert "Expired" in caught.value.reason
    latest = core.list_namespaced_config_map("default").metadata.resource_version
    fresh = watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=latest, timeout_seconds=1
    )
    assert list(fresh) == []


@pytest.mark.parametrize("flag", ["true", "True", "1", "t"])
def test_go_style_booleans_turn_on_watch(cluster: Cluster, flag: str) -> None:
    url = f"{cluster.url}/api/v1/namespaces?watch={flag}&timeoutSeconds=1"
    with urllib.request.urlopen(url, timeout=10) as response:
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert {line["type"] for line in lines} == {"ADDED"}
    assert lines[0]["object"]["kind"] == "Namespace"


def test_bad_boolean_is_400(cluster: Cluster) -> None:
    status, body, _ = cluster.http("GET", "/api/v1/namespaces?watch=yes")
    assert status == 400
    assert body["kind"] == "Status"


def test_watch_of_a_single_object_by_field_selector(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(NS, configmap("one"))
    core.create_namespaced_config_map(NS, configmap("two"))
    worker = once_watching(
        cluster, lambda: core.patch_namespaced_config_map("two", NS, {"data": {"v": "9"}})
    )
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, NS, field_selector="metadata.name=two", timeout_seconds=3
    )
    events = [(e["type"], e["object"].metadata.name) for e in stream]
    worker.join()
    assert events == [("ADDED", "two"), ("MODIFIED", "two")]


def test_objects_entering_or_leaving_a_selector_are_added_or_deleted(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(NS, configmap("m", track="stable"))

    def relabel() -> None:
        core.patch_namespaced_config_map("m", NS, {"metadata": {"labels": {"track": "canary"}}})
        core.patch_namespaced_config_map("m", NS, {"data": {"v": "2"}})  # not watched any more
        core.patch_namespaced_config_map("m", NS, {"metadata": {"labels": {"track": "stable"}}})

    worker = once_watching(cluster, relabel)
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, NS, label_selector="track=stable", timeout_seconds=4
    )
    events = [(e["type"], e["object"].metadata.labels["track"]) for e in stream]
    worker.join()
    assert events == [("ADDED", "stable"), ("DELETED", "canary"), ("ADDED", "stable")]
