"""The data plane's watch-backed cache, seeding through the API, and the mesh reading the cache.

Against real local servers only:

- the stand-in API server (`build_api_app(Store())`, its own thread and loop on a fixed free port,
  so it can be restarted with an empty store) for LIST paging, watch events, 410 answers, a server
  restart, seeding and the mesh (EndpointSlices are served there by registering them as a CRD);
- a scripted aiohttp server in the test's loop for what the stand-in cannot be made to send (an
  ERROR event mid-watch, undecodable lines, a 200 KiB object, bookmarks) and for TLS with a client
  certificate (from the machine's ``openssl``).

The ``standin`` fixture belongs in the shared fixtures once the real control plane replaces it;
the tests using it only need a kubeconfig and a way to write objects.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shlex
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
import yaml
from aiohttp import web

from sandbox.apiserver import build_api_app
from sandbox.kubecache import (
    CacheNotSynced,
    Change,
    KubeCache,
    KubeConfig,
    KubeConfigError,
    Resource,
    WatchSettings,
)
from sandbox.seed import collection_path, seed_cluster
from sandbox.store import Store
from tests.ports import free_port

Obj = dict[str, Any]
NS = Resource("", "v1", "namespaces")
PODS = Resource("", "v1", "pods")
SERVICES = Resource("", "v1", "services")
VS = Resource("networking.istio.io", "v1", "virtualservices")
DR = Resource("networking.istio.io", "v1", "destinationrules")
FAST = WatchSettings(backoff_initial=0.05, backoff_max=0.2)


def kubeconfig_text(server: str, user: Obj | None = None, cluster: Obj | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "u", "user": user or {}}],
            "contexts": [
                {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "kc"}}
            ],
            "current-context": "x",
        }
    )


class StandIn:
    """The stand-in API server on a fixed port, in its own thread; `start` after `stop` gives an
    empty one on the same port."""

    def __init__(self, port: int, kubeconfig: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.kubeconfig = kubeconfig
        kubeconfig.write_text(kubeconfig_text(self.url))
        self._stop: Callable[[], None] | None = None

    def start(self) -> None:
        loop, ready = asyncio.new_event_loop(), threading.Event()
        runner = web.AppRunner(build_api_app(Store()), access_log=None, shutdown_timeout=0.2)

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        thread = threading.Thread(target=serve, name="standin-api", daemon=True)
        thread.start()
        assert ready.wait(10), "the stand-in API server did not start"

        def stop() -> None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

        self._stop = stop

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def call(self, method: str, path: str, body: Any = None, *, patch: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        kind = "application/merge-patch+json" if patch else "application/json"
        request.add_header("Content-Type", kind)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None

    def create(self, path: str, obj: Obj) -> Obj:
        result: Obj = self.call("POST", path, obj)
        return result


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    server = StandIn(free_port(), tmp_path / "kubeconfig")
    server.start()
    server.create("/api/v1/namespaces", {"metadata": {"name": "kc"}})
    try:
        yield server
    finally:
        server.stop()


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
        await asyncio.sleep(0.02)


def pod(name: str, **labels: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "podinfo:1.0.0"}]},
    }


def names(objs: Any) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def audit(server: StandIn, verb: str, resource: str) -> list[Obj]:
    items: list[Obj] = server.call("GET", f"/sandbox/audit?verb={verb}&resource={resource}")[
        "items"
    ]
    return items


# --- against the stand-in API server ----------------------------------------------------------


async def test_start_returns_after_every_first_list_paged(standin, caches):
    for i in range(5):
        standin.create("/api/v1/namespaces/kc/pods", pod(f"p{i}"))
    standin.create(
        "/api/v1/namespaces/kc/services",
        {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "selector": {}}},
    )
    vs = {"metadata": {"name": "web"}, "spec": {"hosts": ["web"], "http": []}}
    standin.create("/apis/networking.istio.io/v1/namespaces/kc/virtualservices", vs)
    # A slow LIST of one type holds start() back: the mesh never routes on a partial view.
    standin.call(
        "POST",
        "/sandbox/faults",
        {"verb": "list", "resource": "virtualservices", "delay_seconds": 0.3, "times": 1},
    )
    config = KubeConfig.load(standin.kubeconfig)
    assert (config.server, config.namespace, config.ssl_context) == (standin.url, "kc", None)
    cache = KubeCache(config, [NS, PODS, SERVICES, VS, DR], settings=WatchSettings(page_size=2))
    caches.append(cache)
    await cache.start()
    assert cache.synced
    assert names(cache.scan("networking.istio.io", "virtualservices")) == ["web"]
    assert names(cache.scan("", "pods", "kc")) == ["p0", "p1", "p2", "p3", "p4"]
    assert list(cache.scan("", "pods", "elsewhere")) == []
    assert list(cache.scan("networking.istio.io", "destinationrules")) == []
    assert cache.peek("", "namespaces", None, "kc") is not None
    service = cache.peek("", "services", "kc", "web")
    assert service is not None
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")  # set on LIST items
    assert "managedFields" not in service["metadata"]
    assert len(audit(standin, "list", "pods")) == 3  # 5 pods in pages of 2
    with pytest.raises(KeyError, match=r"endpointslices\.discovery\.k8s\.io is not one of"):
        cache.peek("discovery.k8s.io", "endpointslices", "kc", "web")


async def test_watch_events_reach_the_view_and_listeners(standin, caches, caplog):
    cache = KubeCache(KubeConfig.load(standin.kubeconfig), [PODS], settings=FAST)
    caches.append(cache)
    await cache.start()
    seen: list[Change] = []
    cache.listen(seen.append, group="", plural="pods")

    def broken(change: Change) -> None:
        raise RuntimeError("listener bug")

    cache.listen(broken, group="", plural="pods")
    cache.add_index("", "pods", "app", lambda p: [p["metadata"].get("labels", {}).get("app", "")])
    standin.create("/api/v1/namespaces/kc/pods", pod("a", app="web"))
    await eventually(lambda: cache.peek("", "pods", "kc", "a"))
    path = "/api/v1/namespaces/kc/pods/a"
    standin.call("PATCH", path, {"metadata": {"labels": {"app": "api"}}}, patch=True)
    await eventually(lambda: len(seen) == 2)
    assert [c.type for c in seen] == ["ADDED", "MODIFIED"]
    assert seen[1].previous is not None
    assert seen[1].previous["metadata"]["labels"] == {"app": "web"}
    assert seen[1].obj is cache.peek("", "pods", "kc", "a")
    assert names(cache.by_index("", "pods", "app", "api")) == ["a"]
    assert cache.by_index("", "pods", "app", "web") == []
    standin.call("DELETE", path)
    await eventually(lambda: len(seen) == 3)
    assert (seen[2].type, seen[2].namespace, seen[2].obj["metadata"]["name"]) == (
        "DELETED",
        "kc",
        "a",
    )
    assert cache.peek("", "pods", "kc", "a") is None
    assert cache.by_index("", "pods", "app", "api") == []
    assert "listener bug" in caplog.text  # logged; the watch and the other listener went on
    assert [i.lists for i in cache.informers] == [1]


async def test_relists_after_the_server_restarts(standin, caches):
    standin.create("/api/v1/namespaces/kc/pods", pod("old"))
    cache = KubeCache(KubeConfig.load(standin.kubeconfig), [PODS], settings=FAST)
    caches.append(cache)
    await cache.start()
    seen: list[tuple[str, str]] = []
    cache.listen(
        lambda c: seen.append((c.type, c.obj["metadata"]["name"])), group="", plural="pods"
    )
    standin.stop()
    standin.start()  # an empty store: its resourceVersions start again from scratch
    standin.create("/api/v1/namespaces", {"metadata": {"name": "kc"}})
    standin.create("/api/v1/namespaces/kc/pods", pod("new"))
    await eventually(lambda: names(cache.scan("", "pods")) == ["new"])
    assert sorted(seen) == [("ADDED", "new"), ("DELETED", "old")]
    assert cache.informers[0].lists >= 2
    # And it follows the new server's watch from there.
    standin.create("/api/v1/namespaces/kc/pods", pod("newer"))
    await eventually(lambda: cache.peek("", "pods", "kc", "newer"))


async def test_relists_when_the_watch_is_answered_410(standin, caches):
    settings = WatchSettings(watch_timeout=1.0, backoff_initial=0.05)  # re-watch every 1–2 s
    cache = KubeCache(KubeConfig.load(standin.kubeconfig), [PODS], settings=settings)
    caches.append(cache)
    await cache.start()
    rule = {"verb": "watch", "resource": "pods", "status": 410, "times": 1}
    standin.call("POST", "/sandbox/faults", rule)
    standin.create("/api/v1/namespaces/kc/pods", pod("during"))
    await eventually(lambda: cache.informers[0].lists == 2, within=15)
    assert cache.peek("", "pods", "kc", "during") is not None
    assert [r["hits"] for r in standin.call("GET", "/sandbox/faults")["items"]] == [1]


async def test_start_names_the_types_it_could_not_list(standin, caches):
    slices = Resource("discovery.k8s.io", "v1", "endpointslices")  # not served by the stand-in
    cache = KubeCache(KubeConfig.load(standin.kubeconfig), [PODS, slices], settings=FAST)
    with pytest.raises(CacheNotSynced, match=r"endpointslices.discovery.k8s.io \(NotFound: 404"):
        await cache.start(within=1.0)
    assert not cache.synced
    nowhere = KubeConfig(server=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CacheNotSynced, match=r"pods \(ApiUnavailable"):
        await KubeCache(nowhere, [PODS], settings=FAST).start(within=0.5)


async def test_seed_creates_the_load_tester_once(standin):
    config = KubeConfig.load(standin.kubeconfig)
    async with config.session() as session:
        first = await seed_cluster(session, config)
        again = await seed_cluster(session, config)
    assert first == [
        "namespaces/test",
        "deployments/flagger-loadtester",
        "services/flagger-loadtester",
    ]
    assert again == []
    service = standin.call("GET", "/api/v1/namespaces/test/services/flagger-loadtester")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


# --- against a scripted server: what the stand-in cannot be made to send ----------------------


class Scripted:
    """An API server for one type whose LIST and WATCH answers each test writes."""

    def __init__(self) -> None:
        self.lists: list[Obj] = []  # LIST answers in turn; the last one repeats
        self.watches: list[list[Obj | bytes]] = []  # each watch's lines, then its end
        self.requests: list[Obj] = []
        self.release = asyncio.Event()  # ends watches held open (none scripted)
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        self.requests.append(
            {
                "query": dict(request.query),
                "auth": request.headers.get("Authorization"),
                "peer": peer,
            }
        )
        if request.query.get("watch") != "true":
            return web.json_response(self.lists.pop(0) if len(self.lists) > 1 else self.lists[0])
        response = web.StreamResponse()
        await response.prepare(request)
        if not self.watches:
            await self.release.wait()
            return response
        for line in self.watches.pop(0):
            await response.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            await response.write(b"\n")
        return response

    @property
    def watch_versions(self) -> list[str]:
        return [r["query"]["resourceVersion"] for r in self.requests if "watch" in r["query"]]


def pod_list(version: str, *pods: Obj) -> Obj:
    return {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
        "items": list(pods),
    }


def stored_pod(name: str, version: str, **annotations: str) -> Obj:
    md = {"name": name, "namespace": "kc", "resourceVersion": version, "annotations": annotations}
    return {"kind": "Pod", "apiVersion": "v1", "metadata": md}


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., Any]]:
    """``await serve(ssl_context=None)`` → a running `Scripted` (stopped at the end)."""
    runners: list[tuple[web.AppRunner, Scripted]] = []

    async def serve(ssl_context: Any = None) -> Scripted:
        server = Scripted()
        app = web.Application()
        app.router.add_get("/api/v1/pods", server.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        scheme = "https" if ssl_context is not None else "http"
        server.url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
        runners.append((runner, server))
        return server

    yield serve
    for runner, server in runners:
        server.release.set()
        await runner.cleanup()


async def test_bad_lines_skipped_bookmarks_followed_error_event_relists(scripted, caches, caplog):
    caplog.set_level(logging.INFO, logger="sandbox.kubecache")
    server = await scripted()
    server.lists = [pod_list("10", stored_pod("a", "10")), pod_list("20", stored_pod("b", "20"))]
    big = stored_pod("big", "12", blob="x" * 300_000)  # one line of 300 KB: over aiohttp's cap
    server.watches = [
        [
            b"this is not json",
            {"type": "ADDED", "object": {"metadata": {"resourceVersion": "11"}}},
            {"type": "SURPRISE", "object": stored_pod("odd", "11")},
            {"type": "ADDED", "object": stored_pod("x", "11")},
            {"type": "ADDED", "object": big},
            {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "15"}}},
        ],  # then the server ends the watch: reopened from the bookmark's version
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
    ]
    config = KubeConfig(server=server.url)
    cache = KubeCache(config, [PODS], settings=FAST)
    caches.append(cache)
    seen: list[tuple[str, str]] = []
    cache.listen(
        lambda c: seen.append((c.type, c.obj["metadata"]["name"])), group="", plural="pods"
    )
    await cache.start()
    await eventually(lambda: names(cache.scan("", "pods")) == ["b"])
    assert server.watch_versions[:3] == ["10", "15", "20"]
    assert server.requests[1]["query"]["allowWatchBookmarks"] == "true"
    assert seen[:3] == [("ADDED", "a"), ("ADDED", "x"), ("ADDED", "big")]
    assert sorted(seen[3:]) == [
        ("ADDED", "b"),
        ("DELETED", "a"),
        ("DELETED", "big"),
        ("DELETED", "x"),
    ]
    for message in (
        "undecodable",
        "without metadata.name",
        "unknown watch event type 'SURPRISE'",
        "watch error 410",
    ):
        assert message in caplog.text


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


async def test_tls_with_a_client_certificate_and_a_token(scripted, caches, pki):
    import ssl

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    server_tls.load_cert_chain(pki / "server.crt", pki / "server.key")
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server = await scripted(server_tls)
    server.lists = [pod_list("1", stored_pod("a", "1"))]

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    kubeconfig = pki / "tls.kubeconfig"
    kubeconfig.write_text(
        kubeconfig_text(
            server.url,
            user={
                "client-certificate": "client.crt",
                "client-key-data": b64("client.key"),
                "token": "sekret",
            },
            cluster={"certificate-authority-data": b64("ca.crt")},
        )
    )
    cache = KubeCache(KubeConfig.load(kubeconfig), [PODS], settings=FAST)
    caches.append(cache)
    await cache.start()
    assert names(cache.scan("", "pods")) == ["a"]
    first = server.requests[0]
    assert first["auth"] == "Bearer sekret"
    assert (("commonName", "mesh"),) in first["peer"]["subject"]
    # Without the CA, the server's certificate is not trusted: nothing is listed.
    kubeconfig.write_text(kubeconfig_text(server.url, user={"token": "sekret"}))
    untrusting = KubeCache(KubeConfig.load(kubeconfig), [PODS], settings=FAST)
    with pytest.raises(CacheNotSynced, match="certificate verify failed"):
        await untrusting.start(within=0.5)


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


# --- the mesh on the cache ----------------------------------------------------------------------

PLURALS = {
    "CustomResourceDefinition": "customresourcedefinitions",
    "Service": "services",
    "Pod": "pods",
    "EndpointSlice": "endpointslices",
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
}

# The stand-in has no EndpointSlice type: registered as a CRD here (kube-apiserver serves it).
SLICE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: endpointslices.discovery.k8s.io}
spec:
  group: discovery.k8s.io
  scope: Namespaced
  names: {plural: endpointslices, singular: endpointslice, kind: EndpointSlice}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""

APP = """
apiVersion: v1
kind: Service
metadata: {{name: {app}, namespace: kc}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {app}-x1, namespace: kc, labels: {{kubernetes.io/service-name: {app}}}}}
addressType: IPv4
ports: [{{name: http, port: 9898, protocol: TCP}}]
endpoints:
- addresses: [10.244.0.1]
  targetRef: {{kind: Pod, name: {app}-7d9-1}}
  conditions: {{ready: true}}
- addresses: [10.244.0.2]
  targetRef: {{kind: Pod, name: {app}-7d9-2}}
  conditions: {second}
"""

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {app}-7d9-{slot}
  namespace: kc
  labels: {{app: {app}, pod-template-hash: 7d9, slot: "{slot}"}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: ReplicaSet, name: {app}-7d9, uid: u-{app}, controller: true}}
spec:
  containers:
  - {{name: app, image: "podinfo:{version}", ports: [{{name: http, containerPort: 9898}}]}}
"""

ROUTES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: kc}
spec:
  hosts: [web, pinned.example.com]
  http:
  - match: [{authority: {prefix: pinned.example.com}}]
    route: [{destination: {host: web-primary, subset: first}}]
  - route:
    - {destination: {host: web-primary}, weight: 80}
    - {destination: {host: web-canary}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web-primary, namespace: kc}
spec:
  host: web-primary
  subsets: [{name: first, labels: {slot: "1"}}]
"""


def create_all(server: StandIn, manifests: str) -> None:
    for obj in yaml.safe_load_all(manifests):
        server.create(collection_path(PLURALS[obj["kind"]], obj), obj)


def mesh_cluster(server: StandIn) -> None:
    """Primary pods ready (true, and unset); the canary's second pod not ready."""
    create_all(server, SLICE_CRD)
    for app, version, second in (
        ("web-primary", "1.0.0", "{}"),
        ("web-canary", "2.0.0", "{ready: false}"),
    ):
        create_all(server, APP.format(app=app, second=second))
        for slot in (1, 2):
            create_all(server, POD.format(app=app, version=version, slot=slot))
    create_all(server, ROUTES)


async def test_mesh_routes_on_endpointslices_from_the_cache(standin, caches, tmp_path):
    from collections import Counter

    from sandbox.kubecache import data_plane_resources
    from sandbox.mesh import IstioMetrics, Mesh
    from sandbox.workloads import LoadTester, Podinfo, WorkloadSet

    class RecordingPodinfo(Podinfo):
        forgotten: ClassVar[list[str]] = []

        def forget(self, pod_uid: str) -> None:
            self.forgotten.append(pod_uid)
            super().forget(pod_uid)

    mesh_cluster(standin)
    cache = KubeCache(KubeConfig.load(standin.kubeconfig), data_plane_resources(), settings=FAST)
    caches.append(cache)
    await cache.start()
    podinfo = RecordingPodinfo()
    loadtester = LoadTester(mesh_port=0, hey_bin=None, work_dir=tmp_path)
    mesh = Mesh(cache, WorkloadSet(podinfo=podinfo, loadtester=loadtester), IstioMetrics())
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

            infos = [(await get("http://web.kc/"))[1] for _ in range(50)]
            assert Counter(i["version"] for i in infos) == {"1.0.0": 40, "2.0.0": 10}
            # Both primaries (ready: true, and unset) take turns; the unready canary gets nothing.
            assert {i["hostname"] for i in infos} == {
                "web-primary-7d9-1",
                "web-primary-7d9-2",
                "web-canary-7d9-1",
            }
            pinned = {(await get("http://pinned.example.com/"))[1]["hostname"] for _ in range(4)}
            assert pinned == {"web-primary-7d9-1"}  # the DestinationRule subset's pod
            exposed = mesh.metrics.expose().decode()
            assert 'destination_workload="web-primary"' in exposed
            assert 'destination_service="web-canary.kc.svc.cluster.local"' in exposed
            # The canary's last ready endpoint turns unready: no healthy upstream.
            path = "/apis/discovery.k8s.io/v1/namespaces/kc/endpointslices/web-canary-x1"
            canary = standin.call("GET", path)
            canary["endpoints"][0]["conditions"]["ready"] = False
            standin.call("PUT", path, canary)
            slices = ("discovery.k8s.io", "endpointslices", "service", "kc/web-canary")
            await eventually(
                lambda: cache.by_index(*slices)[0]["endpoints"][0]["conditions"] == {"ready": False}
            )
            assert await get("http://web-canary.kc:9898/") == (503, "no healthy upstream\n")
            standin.call("DELETE", "/api/v1/namespaces/kc/pods/web-primary-7d9-2")
            await eventually(lambda: podinfo.forgotten)
    finally:
        await mesh.close()
        await runner.cleanup()
