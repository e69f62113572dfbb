"""The API proxy against a real local upstream: a small aiohttp API server on a free port.

The upstream answers like kube-apiserver (JSON objects, a chunked watch stream, ``Audit-Id``) and
writes an audit log in the real format: one ``audit.k8s.io/v1`` ``Event`` per line and stage,
``ResponseComplete`` written a little after the answer has gone out (as the apiserver does), and
``ResponseStarted`` for watches. Nothing is patched: clients talk HTTP(S) to the proxy.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.apiproxy import ApiProxy, AuditLog, RequestInfo, entry_from_event, request_info
from tests.ports import free_port

NS = "test"
CM = f"/api/v1/namespaces/{NS}/configmaps"
WORKER = "system:serviceaccount:x:worker"
TOKENS = {"Bearer alice-token": "alice", "Bearer worker-token": WORKER}

# The shape of a Metadata-level event, as in the Kubernetes auditing documentation.
DOCS_EVENT: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "4fa9c3d2-5a0e-4d8c-9a49-0c7cd2d5a1b7",
    "stage": "ResponseComplete",
    "requestURI": "/apis/apps/v1/namespaces/test/deployments?fieldManager=kubectl-create",
    "verb": "create",
    "user": {
        "username": "system:serviceaccount:coalmine:worker",
        "uid": "0b6a7c41-9f0e-4b7e-8d3f-3a0f1c2d4e5f",
        "groups": ["system:serviceaccounts", "system:authenticated"],
    },
    "sourceIPs": ["127.0.0.1"],
    "userAgent": "kubectl/v1.36.0 (linux/amd64) kubernetes/abcdef0",
    "objectRef": {
        "resource": "deployments",
        "namespace": "test",
        "name": "podinfo",
        "apiGroup": "apps",
        "apiVersion": "v1",
    },
    "responseStatus": {"metadata": {}, "code": 201},
    "requestReceivedTimestamp": "2026-05-04T10:20:30.123456Z",
    "stageTimestamp": "2026-05-04T10:20:30.140000Z",
    "annotations": {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": 'RBAC: allowed by RoleBinding "worker/test"',
    },
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, list[str]]
    body: bytes


@dataclass
class Upstream:
    """A fake kube-apiserver: answers, records what it was sent, writes an audit log."""

    audit_path: Path
    seen: list[Seen] = field(default_factory=list)
    release_watch: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers: dict[str, list[str]] = {}
        for key, value in request.headers.items():
            headers.setdefault(key.lower(), []).append(value)
        self.seen.append(Seen(request.method, request.path_qs, headers, body))
        audit_id = request.headers.get("Audit-ID") or str(uuid.uuid4())
        received = _now()
        if request.query.get("watch") not in (None, "0", "false"):
            return await self._watch(request, audit_id, received)
        status, answer = 200, {"kind": "ConfigMap", "metadata": {"name": request.path[-2:]}}
        if request.method == "POST":
            status, answer = 201, json.loads(body)
        response = web.json_response(
            answer, status=status, headers={"Audit-Id": audit_id, "X-Upstream": "yes"}
        )
        name = answer["metadata"]["name"]
        # As the apiserver: ResponseComplete is logged after the answer is on its way.
        asyncio.get_running_loop().call_later(
            0.1, self._log, "ResponseComplete", request, audit_id, received, status, name
        )
        return response

    async def _watch(
        self, request: web.Request, audit_id: str, received: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        self._log("ResponseStarted", request, audit_id, received, 200, "")
        await response.prepare(request)
        await response.write(b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n')
        await self.release_watch.wait()
        await response.write(b'{"type":"ADDED","object":{"metadata":{"name":"b"}}}\n')
        await response.write_eof()
        self._log("ResponseComplete", request, audit_id, received, 200, "")
        return response

    def _log(
        self, stage: str, request: web.Request, audit_id: str, received: str, code: int, name: str
    ) -> None:
        parts = request.path.strip("/").split("/")  # /api/v1/namespaces/<ns>/<resource>[/<name>]
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        verb = verbs.get(request.method, "get" if len(parts) > 5 else "list")
        if request.query.get("watch") not in (None, "0", "false"):
            verb = "watch"
        ref = {"resource": parts[4], "namespace": parts[3], "apiVersion": "v1"}
        if name and verb != "list":
            ref["name"] = name
        event = {
            **DOCS_EVENT,
            "auditID": audit_id,
            "stage": stage,
            "requestURI": request.raw_path,
            "verb": verb,
            "user": {"username": TOKENS.get(request.headers.get("Authorization", ""), "anon")},
            "userAgent": request.headers.get("User-Agent", ""),
            "objectRef": ref,
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": received,
            "stageTimestamp": _now(),
        }
        with self.audit_path.open("a") as log:
            log.write(json.dumps(event) + "\n")


async def _serve(app_handler: Any, port: int, context: ssl.SSLContext | None) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", app_handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return runner


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    server = Upstream(tmp_path / "audit.log")
    port = free_port()
    runner = await _serve(server.handle, port, None)
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release_watch.set()
        await runner.cleanup()


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[ApiProxy]:
    async with ApiProxy(
        upstream=upstream.url, audit_log=upstream.audit_path, port=free_port()
    ) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def _add_fault(http: aiohttp.ClientSession, proxy: ApiProxy, **rule: Any) -> int:
    async with http.post(f"{proxy.url}/sandbox/faults", json=rule) as response:
        assert response.status == 201, await response.text()
        rule_id: int = (await response.json())["id"]
        return rule_id


async def _audit(http: aiohttp.ClientSession, proxy: ApiProxy, **filters: str) -> list[Any]:
    async with http.get(f"{proxy.url}/sandbox/audit", params=filters) as response:
        assert response.status == 200
        items: list[Any] = (await response.json())["items"]
        return items


# --- request info ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("PUT", "/api/v1/namespaces/x/pods/p/status",
         RequestInfo(True, "update", "", "v1", "x", "pods", "p", "status")),
        ("GET", "/apis/apps/v1/namespaces/x/deployments/d/scale",
         RequestInfo(True, "get", "apps", "v1", "x", "deployments", "d", "scale")),
        ("GET", "/api/v1/namespaces", RequestInfo(True, "list", "", "v1", "", "namespaces")),
        ("GET", "/api/v1/namespaces/x/pods?watch=1",
         RequestInfo(True, "watch", "", "v1", "x", "pods")),
        ("GET", "/api/v1/namespaces/x/pods?watch=false",
         RequestInfo(True, "list", "", "v1", "x", "pods")),
        ("GET", "/api/v1/watch/namespaces/x/pods/p",
         RequestInfo(True, "watch", "", "v1", "x", "pods", "p")),
        ("POST", "/apis/networking.istio.io/v1/namespaces/x/virtualservices",
         RequestInfo(True, "create", "networking.istio.io", "v1", "x", "virtualservices")),
        ("DELETE", "/api/v1/nodes/n", RequestInfo(True, "delete", "", "v1", "", "nodes", "n")),
        ("GET", "/api/v1/namespaces/x",
         RequestInfo(True, "get", "", "v1", "x", "namespaces", "x")),
        ("PUT", "/api/v1/namespaces/x/finalize",
         RequestInfo(True, "update", "", "v1", "x", "namespaces", "x", "finalize")),
        ("DELETE", "/api/v1/namespaces/x/configmaps",
         RequestInfo(True, "deletecollection", "", "v1", "x", "configmaps")),
        ("GET", "/api/v1/namespaces/x/configmaps?fieldSelector=metadata.name%3Dcm",
         RequestInfo(True, "list", "", "v1", "x", "configmaps", "cm")),
        ("GET", "/api/v1/proxy/namespaces/x/pods/p/a/b",
         RequestInfo(True, "proxy", "", "v1", "x", "pods", "p")),
        ("GET", "/apis/apps/v1", RequestInfo(False, "get")),
        ("GET", "/version", RequestInfo(False, "get")),
    ],
)  # fmt: skip
def test_request_info_parses_as_the_apiserver(method: str, url: str, expected: RequestInfo):
    path, _, query = url.partition("?")
    assert request_info(method, path, query) == expected


# --- passthrough ----------------------------------------------------------------------------


async def test_requests_pass_through_with_body_headers_and_credentials(
    proxy: ApiProxy, upstream: Upstream, http: aiohttp.ClientSession
):
    body = {"metadata": {"name": "cm"}, "data": {"k": "v"}}
    headers = {
        "Authorization": "Bearer alice-token",
        "Content-Type": "application/json",
        "User-Agent": "coalmine-test/1",
        "X-Custom": "kept",
        "Proxy-Authorization": "Basic dropped",
        "X-Remote-User": "mallory",  # a front-proxy identity only the proxy may assert
    }
    url = f"{proxy.url}{CM}?fieldManager=test&dryRun=All"
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == 201
        assert await response.json() == body
        assert response.headers["X-Upstream"] == "yes"
        audit_id = response.headers["Audit-Id"]

    seen = upstream.seen[-1]
    assert (seen.method, seen.path_qs) == ("POST", f"{CM}?fieldManager=test&dryRun=All")
    assert json.loads(seen.body) == body
    assert seen.headers["authorization"] == ["Bearer alice-token"]
    assert seen.headers["user-agent"] == ["coalmine-test/1"]
    assert seen.headers["x-custom"] == ["kept"]
    assert seen.headers["audit-id"] == [audit_id]
    assert "proxy-authorization" not in seen.headers
    assert "x-remote-user" not in seen.headers


async def test_a_watch_streams_event_by_event(
    proxy: ApiProxy, upstream: Upstream, http: aiohttp.ClientSession
):
    async with http.get(f"{proxy.url}{CM}?watch=1") as response:
        first = await asyncio.wait_for(response.content.readline(), 5)
        # The upstream is still holding the stream open: the first event was not buffered.
        assert not upstream.release_watch.is_set()
        assert json.loads(first)["object"]["metadata"]["name"] == "a"
        upstream.release_watch.set()
        rest = await asyncio.wait_for(response.content.read(), 5)
    assert [json.loads(line)["object"]["metadata"]["name"] for line in rest.splitlines()] == ["b"]


async def test_an_unreachable_upstream_is_a_503_status(http: aiohttp.ClientSession):
    async with (
        ApiProxy(upstream=f"http://127.0.0.1:{free_port()}", port=free_port()) as proxy,
        http.get(f"{proxy.url}{CM}/cm") as response,
    ):
        assert response.status == 503
        assert (await response.json())["reason"] == "ServiceUnavailable"


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [(409, "Conflict"), (500, "InternalError"), (503, "ServiceUnavailable"), (404, "NotFound")],
)
async def test_a_status_fault_answers_a_status_instead_of_forwarding(
    proxy: ApiProxy, upstream: Upstream, http: aiohttp.ClientSession, status: int, reason: str
):
    await _add_fault(http, proxy, verb="update", resource="configmaps", status=status)
    async with http.put(f"{proxy.url}{CM}/cm", json={"metadata": {"name": "cm"}}) as response:
        assert response.status == status
        body = await response.json()
    assert body["kind"] == "Status"
    assert (body["code"], body["reason"], body["status"]) == (status, reason, "Failure")
    assert body["details"] == {"name": "cm", "kind": "configmaps"}
    assert upstream.seen == []


async def test_a_429_fault_carries_retry_after(proxy: ApiProxy, http: aiohttp.ClientSession):
    await _add_fault(http, proxy, status=429, retry_after_seconds=3, message="slow down")
    async with http.get(f"{proxy.url}{CM}/cm") as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "3"
        body = await response.json()
    assert (body["reason"], body["message"]) == ("TooManyRequests", "slow down")
    assert body["details"]["retryAfterSeconds"] == 3


async def test_a_delay_fault_slows_the_request_then_forwards_it(
    proxy: ApiProxy, upstream: Upstream, http: aiohttp.ClientSession
):
    await _add_fault(http, proxy, resource="configmaps", name="cm", delay_seconds=0.3)
    started = time.monotonic()
    async with http.get(f"{proxy.url}{CM}/cm") as response:
        assert response.status == 200
    assert time.monotonic() - started >= 0.3
    async with http.get(f"{proxy.url}{CM}/other") as response:
        assert response.status == 200
    assert len(upstream.seen) == 2


async def test_times_limits_a_rule_and_the_listing_counts_hits(
    proxy: ApiProxy, http: aiohttp.ClientSession
):
    rule_id = await _add_fault(http, proxy, verb="get", name="cm", status=500, times=2)
    codes = []
    for _ in range(3):
        async with http.get(f"{proxy.url}{CM}/cm") as response:
            codes.append(response.status)
    assert codes == [500, 500, 200]
    async with http.get(f"{proxy.url}/sandbox/faults") as response:
        (rule,) = (await response.json())["items"]
    assert (rule["id"], rule["hits"], rule["remaining"], rule["times"]) == (rule_id, 2, 0, 2)


async def test_rules_match_on_every_key(proxy: ApiProxy, http: aiohttp.ClientSession):
    await _add_fault(
        http, proxy, verb="patch", group="apps", resource="deployments", namespace="x",
        name="d", subresource="scale", user_agent="worker", status=409,
    )  # fmt: skip
    scale = f"{proxy.url}/apis/apps/v1/namespaces/x/deployments/d/scale"
    merge = "application/merge-patch+json"
    for agent, status in (("kubectl", 200), ("coalmine-worker/1", 409)):
        headers = {"User-Agent": agent, "Content-Type": merge}
        async with http.patch(scale, data=b"{}", headers=headers) as response:
            assert response.status == status, agent
    async with http.get(scale, headers={"User-Agent": "coalmine-worker/1"}) as response:
        assert response.status == 200  # another verb


async def test_the_faults_endpoint_validates_removes_and_clears(
    proxy: ApiProxy, http: aiohttp.ClientSession
):
    for bad in ({"verb": "get"}, {"status": 200}, {"status": 500, "colour": "red"}):
        async with http.post(f"{proxy.url}/sandbox/faults", json=bad) as response:
            assert response.status == 400
            assert (await response.json())["reason"] == "BadRequest"
    first = await _add_fault(http, proxy, status=500, name="a")
    await _add_fault(http, proxy, status=500, name="b")
    async with http.delete(f"{proxy.url}/sandbox/faults/{first}") as response:
        assert await response.json() == {"removed": first}
    assert [r.match["name"] for r in proxy.faults.rules] == ["b"]
    async with http.delete(f"{proxy.url}/sandbox/faults") as response:
        assert response.status == 200
    assert proxy.faults.rules == []
    # In-process, the same rules.
    rule = proxy.faults.add({"resource": "configmaps", "status": 503})
    async with http.get(f"{proxy.url}{CM}/cm") as response:
        assert response.status == 503
    assert rule.hits == 1


# --- audit ----------------------------------------------------------------------------------


def test_an_audit_event_maps_to_the_stand_in_entry():
    entry = entry_from_event(DOCS_EVENT)
    assert entry.time == datetime(2026, 5, 4, 10, 20, 30, 123456, tzinfo=UTC).timestamp()
    assert (entry.method, entry.path, entry.verb) == (
        "POST",
        "/apis/apps/v1/namespaces/test/deployments",
        "create",
    )
    assert (entry.group, entry.version, entry.resource, entry.subresource) == (
        "apps",
        "v1",
        "deployments",
        "",
    )
    # ``name`` is the URL's (none for a create); ``object_name`` is the created object's.
    assert (entry.namespace, entry.name, entry.object_name) == ("test", "", "podinfo")
    assert entry.user == "system:serviceaccount:coalmine:worker"
    assert entry.user_agent.startswith("kubectl/v1.36.0")
    assert (entry.code, entry.fault) == (201, None)


async def test_the_audit_log_is_read_incrementally_and_waits_for_torn_lines(tmp_path: Path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    assert await log.query({}) == []  # no file yet
    other = {**DOCS_EVENT, "auditID": "2", "stage": "RequestReceived"}
    line = json.dumps({**DOCS_EVENT, "auditID": "3", "verb": "patch"})
    path.write_text(json.dumps(DOCS_EVENT) + "\n" + json.dumps(other) + "\n" + line[:40])
    assert [e["verb"] for e in await log.query({})] == ["create"]
    with path.open("a") as handle:
        handle.write(line[40:] + "\n")
    assert [e["verb"] for e in await log.query({})] == ["create", "patch"]
    assert [e["verb"] for e in await log.query({"verb": "patch", "code": "201"})] == ["patch"]
    # A failed authentication is logged at ResponseStarted only.
    unauthenticated = {**DOCS_EVENT, "auditID": "4", "stage": "ResponseStarted", "user": {}}
    unauthenticated["responseStatus"] = {"metadata": {}, "code": 401}
    with path.open("a") as handle:
        handle.write(json.dumps(unauthenticated) + "\n")
    assert [(e["code"], e["user"]) for e in await log.query({"code": "401"})] == [(401, "")]
    await log.clear()
    assert await log.query({}) == []


async def test_the_audit_log_merges_the_servers_events_and_the_proxys_faults(
    proxy: ApiProxy, upstream: Upstream, http: aiohttp.ClientSession
):
    worker = {"Authorization": "Bearer worker-token", "User-Agent": "coalmine-worker/1"}
    refused = await _add_fault(http, proxy, verb="update", status=409, times=1)
    delayed = await _add_fault(http, proxy, verb="get", delay_seconds=0.05, times=1)
    async with http.get(f"{proxy.url}{CM}/cm", headers=worker) as response:
        assert response.status == 200
    async with http.put(f"{proxy.url}{CM}/cm", json={}, headers=worker) as response:
        assert response.status == 409
    create = {"metadata": {"name": "new"}}
    async with http.post(f"{proxy.url}{CM}", json=create, headers=worker) as response:
        assert response.status == 201

    # The upstream logs each answer 0.1 s after sending it: the query waits for them.
    entries = await _audit(http, proxy, namespace=NS)
    summary = [(e["verb"], e["name"], e["object_name"], e["code"], e["fault"]) for e in entries]
    assert summary == [
        ("get", "cm", "cm", 200, delayed),
        ("update", "cm", "cm", 409, refused),
        ("create", "", "new", 201, None),
    ]
    # The proxy cannot tell who a refused request came from: the server never authenticated it.
    assert [e["user"] for e in entries] == [WORKER, "", WORKER]
    assert {e["user_agent"] for e in entries} == {"coalmine-worker/1"}
    assert entries[2]["path"] == CM
    assert entries[2]["method"] == "POST"
    assert [e["verb"] for e in await _audit(http, proxy, verb="create")] == ["create"]
    async with http.delete(f"{proxy.url}/sandbox/audit") as response:
        assert response.status == 200
    assert await _audit(http, proxy) == []


async def test_an_open_watch_shows_in_the_audit_log_once(
    proxy: ApiProxy, upstream: Upstream, http: aiohttp.ClientSession
):
    async with http.get(f"{proxy.url}{CM}?watch=true") as response:
        await asyncio.wait_for(response.content.readline(), 5)
        (open_watch,) = await _audit(http, proxy, verb="watch")
        assert (open_watch["resource"], open_watch["namespace"]) == ("configmaps", NS)
        assert (open_watch["method"], open_watch["code"]) == ("GET", 200)
        upstream.release_watch.set()
        await response.read()
    assert len(await _audit(http, proxy, verb="watch")) == 1


# --- TLS ------------------------------------------------------------------------------------


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a serving certificate for 127.0.0.1 and a client certificate (alice, group devs)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    files = {n: directory / n for n in ("ca.crt", "ca.key", "s.crt", "s.key", "c.crt", "c.key")}

    def make(cert: str, key: str, subject: str, *extra: str) -> None:
        command = ["openssl", "req", "-x509", *ec, "-keyout", str(files[key])]
        command += ["-out", str(files[cert]), "-subj", subject, *extra]
        subprocess.run(command, check=True, capture_output=True)

    make("ca.crt", "ca.key", "/CN=test-ca")
    signed = ["-CA", str(files["ca.crt"]), "-CAkey", str(files["ca.key"])]
    leaf = ["-addext", "basicConstraints=critical,CA:FALSE"]
    server_ip = ["-addext", "subjectAltName=IP:127.0.0.1"]
    make("s.crt", "s.key", "/CN=127.0.0.1", *signed, *leaf, *server_ip)
    make("c.crt", "c.key", "/O=devs/CN=alice", *signed, *leaf)
    return files


async def test_https_both_ways_with_a_client_certificate_named_to_the_upstream(tmp_path: Path):
    files = _certificates(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(files["s.crt"], files["s.key"])
    serving.load_verify_locations(files["ca.crt"])
    serving.verify_mode = ssl.CERT_OPTIONAL  # as the apiserver: a certificate, or a token
    trusting = ssl.create_default_context(cafile=str(files["ca.crt"]))
    with_cert = ssl.create_default_context(cafile=str(files["ca.crt"]))
    with_cert.load_cert_chain(files["c.crt"], files["c.key"])

    upstream = Upstream(tmp_path / "audit.log")
    port = free_port()
    runner = await _serve(upstream.handle, port, serving)
    try:
        async with (
            ApiProxy(
                upstream=f"https://127.0.0.1:{port}",
                upstream_ssl_context=trusting,
                ssl_context=serving,
                port=free_port(),
            ) as proxy,
            aiohttp.ClientSession() as http,
        ):
            assert proxy.url.startswith("https://127.0.0.1:")
            async with http.get(f"{proxy.url}{CM}/cm", ssl=with_cert) as response:
                assert response.status == 200
            async with http.get(f"{proxy.url}{CM}/cm", ssl=trusting) as response:
                assert response.status == 200
    finally:
        await runner.cleanup()
    with_identity, without = upstream.seen
    assert with_identity.headers["x-remote-user"] == ["alice"]
    assert with_identity.headers["x-remote-group"] == ["devs"]
    assert "x-remote-user" not in without.headers
