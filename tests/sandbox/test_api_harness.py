"""A sandbox API server for tests: `build_api_app` on a free port, in its own thread and event loop.

Import the ``cluster`` fixture (``from tests.sandbox.test_api_harness import cluster``) to get a
`Cluster`: its URL, a kubeconfig in ``tmp_path``, a fresh kubectl discovery cache directory, helpers
to run the machine's real ``kubectl`` and to build official Python clients, and `Cluster.in_loop` to
touch the store from the test thread safely (the store belongs to the server's loop). The tests at
the bottom check the harness itself and the sandbox-only endpoints (audit log, fault injection).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from kubernetes import client, config

from sandbox.apiserver import build_api_app
from sandbox.store import Store

T = TypeVar("T")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

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


@dataclass
class Cluster:
    """A running sandbox API server and the ways to talk to it."""

    url: str
    store: Store
    app: web.Application
    kubeconfig: Path
    cache_dir: Path
    loop: asyncio.AbstractEventLoop
    clients: list[client.ApiClient] = field(default_factory=list)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server (fresh discovery cache per server)."""
        command = [
            KUBECTL,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir),
        ]
        result = subprocess.run(
            [*command, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def api_client(self) -> client.ApiClient:
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.clients.append(api)
        return api

    def in_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (the store is single-threaded) and return its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def wait_for_watch(self, resource: str, timeout: float = 30) -> None:
        """Block until a watch on ``resource`` is open (in flight in the audit log)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, log, _ = self.http("GET", f"/sandbox/audit?verb=watch&resource={resource}&code=0")
            if log["items"]:
                return
            time.sleep(0.05)
        raise AssertionError(f"no watch on {resource} opened within {timeout}s")

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, Any, dict[str, str]]:
        """A raw HTTP request; returns (status, decoded JSON body or text, headers)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", content_type)
        request.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status, headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, headers = error.read(), error.code, dict(error.headers)
            error.close()
        try:
            return status, json.loads(raw), headers
        except ValueError:
            return status, raw.decode(), headers


def start_cluster(tmp_path: Path, store_factory: Callable[[], Store] = Store, **app_kw: Any):
    """Start a server thread; returns (cluster, stop)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def boot() -> None:
        store = store_factory()
        app = build_api_app(store, **app_kw)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder.update(store=store, app=app, runner=runner, port=runner.addresses[0][1])

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(boot())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(holder["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="sandbox-apiserver", daemon=True)
    thread.start()
    assert ready.wait(10), "the sandbox API server did not start"
    url = f"http://127.0.0.1:{holder['port']}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=url))
    cluster = Cluster(
        url, holder["store"], holder["app"], kubeconfig, tmp_path / "kube-cache", loop
    )

    def stop() -> None:
        for api in cluster.clients:
            api.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return cluster, stop


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running, stop = start_cluster(tmp_path)
    try:
        yield running
    finally:
        stop()


# --- tests of the harness and of the sandbox-only endpoints


def test_server_answers_version_and_health(cluster: Cluster) -> None:
    status, body, _ = cluster.http("GET", "/version")
    assert status == 200
    assert (body["major"], body["minor"]) == ("1", "32")
    assert cluster.http("GET", "/healthz")[1] == "ok"


def test_audit_log_records_requests_and_clears(cluster: Cluster) -> None:
    cluster.http("DELETE", "/sandbox/audit")
    ns = {"metadata": {"name": "audited"}}
    assert cluster.http("POST", "/api/v1/namespaces", ns)[0] == 201
    cm = {"metadata": {"name": "c1"}, "data": {"a": "1"}}
    assert cluster.http("POST", "/api/v1/namespaces/audited/configmaps", cm)[0] == 201
    patch = {"data": {"a": "2"}}
    merge = "application/merge-patch+json"
    cluster.http("PATCH", "/api/v1/namespaces/audited/configmaps/c1", patch, content_type=merge)
    cluster.http("GET", "/api/v1/namespaces/audited/configmaps/missing")
    _, audit, _ = cluster.http("GET", "/sandbox/audit?resource=configmaps")
    seen = [(e["verb"], e["namespace"], e["name"], e["code"]) for e in audit["items"]]
    assert seen == [
        ("create", "audited", "", 201),
        ("patch", "audited", "c1", 200),
        ("get", "audited", "missing", 404),
    ]
    assert all(e["user_agent"] for e in audit["items"])
    assert [e["object_name"] for e in audit["items"]] == ["c1", "c1", "missing"]
    cluster.http("DELETE", "/sandbox/audit")
    assert cluster.http("GET", "/sandbox/audit")[1]["items"] == []


def test_fault_rules_fail_a_number_of_matching_requests(cluster: Cluster) -> None:
    rule = {"verb": "get", "resource": "namespaces", "name": "default", "status": 500, "times": 2}
    status, created, _ = cluster.http("POST", "/sandbox/faults", rule)
    assert status == 201
    assert created["remaining"] == 2
    codes = [cluster.http("GET", "/api/v1/namespaces/default")[0] for _ in range(3)]
    assert codes == [500, 500, 200]
    assert cluster.http("GET", "/api/v1/namespaces/kube-system")[0] == 200
    conflict = {"verb": "update", "resource": "namespaces", "status": 409}
    cluster.http("POST", "/sandbox/faults", conflict)
    status, body, _ = cluster.http(
        "PUT", "/api/v1/namespaces/default", {"metadata": {"name": "default"}}
    )
    assert (status, body["reason"]) == (409, "Conflict")
    _, listed, _ = cluster.http("GET", "/sandbox/faults")
    assert [r["hits"] for r in listed["items"]] == [2, 1]
    cluster.http("DELETE", "/sandbox/faults")
    assert (
        cluster.http("PUT", "/api/v1/namespaces/default", {"metadata": {"name": "default"}})[0]
        == 200
    )


def test_fault_delay_slows_matching_requests(cluster: Cluster) -> None:
    import time

    rule = {"resource": "namespaces", "delay_seconds": 0.3, "times": 1}
    cluster.http("POST", "/sandbox/faults", rule)
    started = time.monotonic()
    assert cluster.http("GET", "/api/v1/namespaces")[0] == 200
    assert time.monotonic() - started >= 0.3
    cluster.http("GET", "/api/v1/namespaces")
    _, listed, _ = cluster.http("GET", "/sandbox/faults")
    assert [(r["hits"], r["remaining"]) for r in listed["items"]] == [(1, 0)], "only the first"
    _, audit, _ = cluster.http("GET", "/sandbox/audit?resource=namespaces&verb=list")
    assert [e["fault"] is not None for e in audit["items"]] == [True, False]


def test_bad_fault_rule_is_refused(cluster: Cluster) -> None:
    status, body, _ = cluster.http("POST", "/sandbox/faults", {"resource": "pods"})
    assert status == 400
    assert "status or a positive delay" in body["message"]
