"""The data plane's watch-backed cache, seeding through the API, and the mesh reading the cache.

Against real servers only:

- the session's real control plane (the shared ``sandbox_cluster``: kube-apiserver over TLS with
  the admin's client certificate) for LIST, watch events, EndpointSlices written by the real
  endpoint slice controller, seeding, and a mesh of the test's own on the cache;
- a scripted aiohttp server in the test's loop for what a healthy cluster does not do on demand:
  LIST pages, an ERROR event, a 410 answer, a dropped connection, a restart, undecodable lines, a
  300 KB object, bookmarks, and TLS with a client certificate made by the machine's ``openssl``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import shlex
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web

from sandbox.kubecache import (
    CacheNotSynced,
    Change,
    KubeCache,
    KubeConfig,
    KubeConfigError,
    Resource,
    WatchSettings,
    data_plane_resources,
)
from sandbox.mesh import IstioMetrics, Mesh
from sandbox.mesh.endpoints import Endpoint, ready_endpoints, slice_services
from sandbox.seed import seed_cluster
from sandbox.workloads import LoadTester, Podinfo, WorkloadSet
from tests.ports import free_port

Obj = dict[str, Any]
PODS = Resource("", "v1", "pods")
SLICES = ("discovery.k8s.io", "endpointslices", "service")  # the mesh's index of slices
FAST = WatchSettings(backoff_initial=0.05, backoff_max=0.2)


@pytest.fixture
async def caches() -> AsyncIterator[list[KubeCache]]:
    """Caches a test started: closed at its end, whatever happened."""
    made: list[KubeCache] = []
    yield made
    for cache in made:
        await cache.close()


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll ``check`` on the loop until it returns something true (assertions retried)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            if result := check():
                return result
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within}s: {check}")
        await asyncio.sleep(0.05)


def names(objs: Any) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def ready_pods(cache: KubeCache, namespace: str, service: str) -> list[str]:
    slices = cache.by_index(*SLICES, f"{namespace}/{service}")
    return [e.pod for e in ready_endpoints(slices, port_name="http", fallback_port=None)]


# --- on the real control plane --------------------------------------------------------------

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {app}, version: {version}}}}}
  template:
    metadata: {{labels: {{app: {app}, version: {version}}}}}
    spec:
      containers:
      - name: app
        image: quay.io/stefanprodan/podinfo:{image}
        ports: [{{name: http, containerPort: 9898}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {app}, namespace: {ns}}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
"""


async def test_lists_and_follows_the_real_api_server(
    sandbox_cluster, kubectl, sandbox_namespace, caches, caplog
):
    ns = sandbox_namespace
    config = KubeConfig.load(sandbox_cluster.kubeconfig)  # TLS, the admin's client certificate
    assert config.server.startswith("https://")
    assert config.ssl_context is not None
    cache = KubeCache(config, data_plane_resources(), settings=WatchSettings(page_size=2))
    caches.append(cache)
    await cache.start()
    assert cache.peek("", "namespaces", None, ns) is not None
    cache.add_index(*SLICES, slice_services)
    assert len(ready_pods(cache, "test", "flagger-loadtester")) == 1  # seeded at start
    seen: list[Change] = []
    for resource in data_plane_resources():
        cache.listen(seen.append, group=resource.group, plural=resource.plural)

    def broken(change: Change) -> None:
        raise RuntimeError("listener bug")

    cache.listen(broken, group="", plural="pods")
    manifest = APP.format(name="web", ns=ns, app="web", version="v1", image="1.0.0", replicas=2)
    kubectl.apply(manifest)
    kubectl.apply(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: {ns}}}
spec: {{hosts: [web], http: [{{route: [{{destination: {{host: web}}}}]}}]}}
""")
    await eventually(lambda: len(ready_pods(cache, ns, "web")) == 2, within=30)
    assert names(cache.scan("networking.istio.io", "virtualservices", ns)) == ["web"]
    pods = cache.scan("", "pods", ns)
    assert sorted(ready_pods(cache, ns, "web")) == names(pods)
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    assert all("managedFields" not in p["metadata"] for p in pods)
    kubectl.run("-n", ns, "scale", "deployment/web", "--replicas=1")
    await eventually(lambda: len(cache.scan("", "pods", ns)) == 1, within=30)
    await eventually(lambda: len(ready_pods(cache, ns, "web")) == 1)
    kinds = collections.Counter((c.plural, c.type) for c in seen if c.namespace == ns)
    for expected in ("ADDED", "MODIFIED", "DELETED"):
        assert kinds[("pods", expected)] >= 1, kinds
    assert kinds[("virtualservices", "ADDED")] == 1
    assert kinds[("endpointslices", "MODIFIED")] >= 1
    assert "listener bug" in caplog.text  # logged; the watch and the other listeners went on
    assert {i.lists for i in cache.informers} == {1}  # followed by watches, never re-listed


async def test_seeding_again_is_harmless(sandbox_cluster):
    config = KubeConfig.load(sandbox_cluster.kubeconfig)
    async with config.session() as session:
        assert await seed_cluster(session, config) == []  # the sandbox seeded it at start


async def test_mesh_routes_on_endpointslices_from_the_cache(
    sandbox_cluster, kubectl, sandbox_namespace, caches, tmp_path
):
    """A mesh of the test's own on its own cache: subsets by DestinationRule, weights, pods
    leaving the slices (and their workload state) as the real controllers write them."""

    class RecordingPodinfo(Podinfo):
        forgotten: ClassVar[list[str]] = []

        def forget(self, pod_uid: str) -> None:
            self.forgotten.append(pod_uid)
            super().forget(pod_uid)

    ns = sandbox_namespace
    for version, image, replicas in (("v1", "1.0.0", 2), ("v2", "2.0.0", 1)):
        kubectl.apply(
            APP.format(
                name=f"web-{version}",
                ns=ns,
                app="web",
                version=version,
                image=image,
                replicas=replicas,
            )
        )
    kubectl.apply(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: {ns}}}
spec:
  hosts: [web]
  http:
  - route:
    - {{destination: {{host: web, subset: stable}}, weight: 80}}
    - {{destination: {{host: web, subset: next}}, weight: 20}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: {ns}}}
spec:
  host: web
  subsets: [{{name: stable, labels: {{version: v1}}}}, {{name: next, labels: {{version: v2}}}}]
""")
    config = KubeConfig.load(sandbox_cluster.kubeconfig)
    cache = KubeCache(config, data_plane_resources(), settings=FAST)
    caches.append(cache)
    await cache.start()
    podinfo = RecordingPodinfo()
    loadtester = LoadTester(mesh_port=0, hey_bin=None, work_dir=tmp_path)
    mesh = Mesh(cache, WorkloadSet(podinfo=podinfo, loadtester=loadtester), IstioMetrics())
    await eventually(lambda: len(ready_pods(cache, ns, "web")) == 3, within=30)
    runner = web.AppRunner(mesh.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    proxy = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:

            async def get(url: str) -> tuple[int, Any]:
                async with http.get(url, proxy=proxy) as response:
                    text = await response.text()
                    return response.status, json.loads(text) if response.ok else text

            infos = [(await get(f"http://web.{ns}:9898/"))[1] for _ in range(50)]
            assert collections.Counter(i["version"] for i in infos) == {"1.0.0": 40, "2.0.0": 10}
            assert len({i["hostname"] for i in infos}) == 3  # both stable pods take turns
            exposed = mesh.metrics.expose().decode()
            assert 'destination_workload="web-v1"' in exposed
            assert f'destination_service="web.{ns}.svc.cluster.local"' in exposed
            # The next subset's only pod goes: its endpoint leaves the slice, its state the mesh.
            kubectl.run("-n", ns, "scale", "deployment/web-v2", "--replicas=0")
            await eventually(lambda: len(ready_pods(cache, ns, "web")) == 2, within=30)
            codes = collections.Counter(
                [(await get(f"http://web.{ns}:9898/"))[0] for _ in range(10)]
            )
            assert codes == {200: 8, 503: 2}  # 503 UH: no healthy upstream in subset "next"
            await eventually(lambda: podinfo.forgotten)
    finally:
        await mesh.close()
        await runner.cleanup()


# --- against a scripted server: what a healthy cluster does not do on demand ----------------

DROP = b"<drop the connection>"


class Scripted:
    """An API server for pods whose LIST and WATCH answers each test writes; `stop` and `start`
    again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lists: list[Obj] = []  # LIST answers in turn (paged by ?limit); the last repeats
        self.watches: list[int | list[Obj | bytes]] = []  # each watch: a status, or its lines
        self.requests: list[Obj] = []
        self._runner: web.AppRunner | None = None
        self._paged: Obj = {}  # the LIST answer being paged through
        self._release = asyncio.Event()  # ends the watches held open (none scripted)
        self.url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/pods", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ssl_context)
        await site.start()
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner, self._release = None, asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        query = dict(request.query)
        self.requests.append(
            {"query": query, "auth": request.headers.get("Authorization"), "peer": peer}
        )
        if query.get("watch") != "true":
            return web.json_response(self._page(query))
        script = self.watches.pop(0) if self.watches else None
        if isinstance(script, int):
            status = {"kind": "Status", "code": script, "reason": "Expired"}
            return web.json_response(status, status=script)
        response = web.StreamResponse()
        await response.prepare(request)
        for line in script or []:
            if line is DROP:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            await response.write(b"\n")
        if script is None:
            await self._release.wait()
        return response

    def _page(self, query: dict[str, str]) -> Obj:
        start = int(query.get("continue") or 0)
        if not start:
            self._paged = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
        answer = self._paged
        end = start + int(query.get("limit") or 10**9)
        page = {**answer, "items": answer["items"][start:end]}
        if end < len(answer["items"]):
            page["metadata"] = {**answer["metadata"], "continue": str(end)}
        return page

    @property
    def verbs(self) -> list[str]:
        """``list`` / ``watch@<resourceVersion>`` for each request so far."""
        return [
            f"watch@{r['query']['resourceVersion']}" if "watch" in r["query"] else "list"
            for r in self.requests
        ]


def pod_list(version: str, *names: str) -> Obj:
    return {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
        "items": [stored_pod(name, version) for name in names],
    }


def stored_pod(name: str, version: str, **annotations: str) -> Obj:
    md = {"name": name, "namespace": "kc", "resourceVersion": version, "annotations": annotations}
    return {"kind": "Pod", "apiVersion": "v1", "metadata": md}


def added(name: str, version: str) -> Obj:
    return {"type": "ADDED", "object": stored_pod(name, version)}


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = Scripted()
    await server.start()
    yield server
    await server.stop()


async def started(server: Scripted, caches: list[KubeCache], **kw: Any) -> KubeCache:
    cache = KubeCache(KubeConfig(server=server.url), [PODS], settings=WatchSettings(**kw))
    caches.append(cache)
    await cache.start()
    return cache


async def test_pages_bad_lines_bookmarks_and_an_error_event(scripted, caches, caplog):
    caplog.set_level(logging.INFO, logger="coalmine.kubecache")
    scripted.lists = [pod_list("10", "a1", "a2", "a3"), pod_list("20", "b")]
    big = stored_pod("big", "12", blob="x" * 300_000)  # one line of 300 KB: over aiohttp's cap
    scripted.watches = [
        [
            b"this is not json",
            {"type": "ADDED", "object": {"metadata": {"resourceVersion": "11"}}},
            {"type": "SURPRISE", "object": stored_pod("odd", "11")},
            added("x", "11"),
            {"type": "ADDED", "object": big},
            {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "15"}}},
        ],  # then the server ends the watch: reopened from the bookmark's version
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
    ]
    seen: list[tuple[str, str]] = []
    settings = WatchSettings(page_size=2, backoff_initial=0.05)
    cache = KubeCache(KubeConfig(server=scripted.url), [PODS], settings=settings)
    caches.append(cache)
    cache.listen(
        lambda c: seen.append((c.type, c.obj["metadata"]["name"])), group="", plural="pods"
    )
    await cache.start()
    await eventually(lambda: names(cache.scan("", "pods")) == ["b"])
    assert scripted.verbs[:5] == ["list", "list", "watch@10", "watch@15", "list"]
    assert scripted.requests[2]["query"]["allowWatchBookmarks"] == "true"
    assert [r["query"].get("continue") for r in scripted.requests[:2]] == [None, "2"]
    assert seen[:5] == [("ADDED", n) for n in ("a1", "a2", "a3", "x", "big")]
    assert sorted(seen[5:]) == [("ADDED", "b")] + [
        ("DELETED", n) for n in ("a1", "a2", "a3", "big", "x")
    ]
    for message in (
        "undecodable",
        "without metadata.name",
        "unknown watch event type 'SURPRISE'",
        "watch error 410",
    ):
        assert message in caplog.text


async def test_relists_on_a_410_answer_and_a_dropped_connection(scripted, caches):
    scripted.lists = [pod_list("10", "a"), pod_list("20", "b"), pod_list("30", "c")]
    scripted.watches = [410, [added("x", "21"), DROP]]
    cache = await started(scripted, caches, page_size=2, backoff_initial=0.05)
    await eventually(lambda: names(cache.scan("", "pods")) == ["c"])
    assert scripted.verbs[:5] == ["list", "watch@10", "list", "watch@20", "list"]
    assert cache.informers[0].lists == 3


async def test_relists_after_the_server_restarts(scripted, caches):
    scripted.lists = [pod_list("500", "old")]
    cache = await started(scripted, caches, backoff_initial=0.05, backoff_max=0.2)
    seen: list[tuple[str, str]] = []
    cache.listen(
        lambda c: seen.append((c.type, c.obj["metadata"]["name"])), group="", plural="pods"
    )
    await scripted.stop()
    before = len(scripted.requests)
    # A server that lost its state: its versions start again, far below the last one seen.
    scripted.lists, scripted.watches = [pod_list("3", "new")], [[added("newer", "4")]]
    await asyncio.sleep(0.3)  # a few refused attempts
    await scripted.start()
    await eventually(lambda: names(cache.scan("", "pods")) == ["new", "newer"])
    assert scripted.verbs[before:][:2] == ["list", "watch@3"]  # never a watch from 500
    assert sorted(seen) == [("ADDED", "new"), ("ADDED", "newer"), ("DELETED", "old")]


async def test_start_names_the_types_it_could_not_list(scripted):
    slices = Resource("discovery.k8s.io", "v1", "endpointslices")  # not served there: 404
    cache = KubeCache(KubeConfig(server=scripted.url), [PODS, slices], settings=FAST)
    scripted.lists = [pod_list("1", "a")]
    with pytest.raises(CacheNotSynced, match=r"endpointslices\.discovery\.k8s\.io \(NotFound: 404"):
        await cache.start(within=1.0)
    assert not cache.synced
    nowhere = KubeConfig(server=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CacheNotSynced, match=r"pods \(ApiUnavailable"):
        await KubeCache(nowhere, [PODS], settings=FAST).start(within=0.5)


def openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *shlex.split(command)], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (CN mesh)."""
    root = tmp_path_factory.mktemp("pki")
    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl(f"req -x509 {key} -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca", root)
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, subject, extra in (
        ("server", "/CN=127.0.0.1", "-extfile san.ext"),
        ("client", "/O=system:masters/CN=mesh", ""),
    ):
        openssl(f"req {key} -keyout {name}.key -out {name}.csr -subj {subject}", root)
        openssl(
            f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt "
            f"-days 1 {extra}",
            root,
        )
    return root


def kubeconfig_text(server: str, user: Obj | None = None, cluster: Obj | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "x",
            "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "u", "user": user or {}}],
            "contexts": [
                {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "kc"}}
            ],
        }
    )


async def test_tls_with_a_client_certificate_and_a_token(scripted, caches, pki):
    await scripted.stop()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    server_tls.load_cert_chain(pki / "server.crt", pki / "server.key")
    server_tls.verify_mode = ssl.CERT_REQUIRED
    await scripted.start(server_tls)
    scripted.lists = [pod_list("1", "a")]

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    kubeconfig = pki / "tls.kubeconfig"  # a relative file path and inline data, as kubectl reads
    user = {
        "client-certificate": "client.crt",
        "client-key-data": b64("client.key"),
        "token": "sekret",
    }
    ca = {"certificate-authority-data": b64("ca.crt")}
    kubeconfig.write_text(kubeconfig_text(scripted.url, user=user, cluster=ca))
    config = KubeConfig.load(kubeconfig)
    assert config.namespace == "kc"
    cache = KubeCache(config, [PODS], settings=FAST)
    caches.append(cache)
    await cache.start()
    assert names(cache.scan("", "pods")) == ["a"]
    first = scripted.requests[0]
    assert first["auth"] == "Bearer sekret"
    assert (("commonName", "mesh"),) in first["peer"]["subject"]
    # Without the CA, the server's certificate is not trusted: nothing is listed.
    kubeconfig.write_text(kubeconfig_text(scripted.url, user={"token": "sekret"}))
    untrusting = KubeCache(KubeConfig.load(kubeconfig), [PODS], settings=FAST)
    with pytest.raises(CacheNotSynced, match="certificate verify failed"):
        await untrusting.start(within=0.5)


# --- pure ---------------------------------------------------------------------------------------


def test_kubeconfig_refuses_what_it_cannot_use(tmp_path):
    path = tmp_path / "config"
    path.write_text(kubeconfig_text("https://x:6443", user={"exec": {"command": "gcloud"}}))
    with pytest.raises(KubeConfigError, match="'exec'"):
        KubeConfig.load(path)
    with pytest.raises(KubeConfigError, match="no context named 'other'"):
        KubeConfig.load(path, context="other")
    path.write_text(kubeconfig_text("https://x:6443", user={"client-key-data": "eA=="}))
    with pytest.raises(KubeConfigError, match="without the other"):
        KubeConfig.load(path)
    with pytest.raises(KubeConfigError, match="cannot read"):
        KubeConfig.load(tmp_path / "missing")


def test_ready_endpoints_read_as_istio_reads_them():
    def endpoint(pod: str, **conditions: bool) -> Obj:
        return {
            "addresses": ["10.0.0.1"],
            "conditions": conditions,
            "targetRef": {"kind": "Pod", "name": pod},
        }

    named = {
        "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9000}],
        "endpoints": [
            endpoint("b", ready=True),
            endpoint("a"),
            endpoint("c", ready=False),
            {"addresses": ["10.0.0.9"], "conditions": {"ready": True}},
        ],
    }
    moving = {"ports": [{"name": "http", "port": 8081}], "endpoints": [endpoint("b")]}
    # Unset ready means ready; not ready and target-less endpoints are skipped; a pod in two
    # slices counts once (the first slice's port); ports by the Service port's name.
    assert ready_endpoints([named, moving], port_name="http", fallback_port=80) == [
        Endpoint("a", 8080),
        Endpoint("b", 8080),
    ]
    assert ready_endpoints([moving], port_name="grpc", fallback_port=80) == [Endpoint("b", 80)]
