"""The mesh entry: an HTTP proxy through which every in-cluster request flows.

Clients use it as an HTTP proxy (absolute-form request targets: ``curl -x``, ``HTTP_PROXY``,
``hey -x``) or send origin-form requests with a ``Host`` header. For each request the mesh:

1. names the caller from the proxy credentials (``http://<workload>:<namespace>@host:port``;
   ``unknown`` otherwise, as Istio labels traffic from outside the mesh);
2. resolves the host (hosts.py; a Service's ClusterIP works too) and applies the VirtualService for
   it (routes.py, delegation included), or the HTTPRoutes of the Gateway it addresses or whose
   routes name it (gateway.py), or plain Service selection when there is none; a pod's IP
   reaches that pod directly, unrouted and unmeasured (Prometheus scraping a pod: a scrape is
   not traffic, and Istio's metrics merging keeps it out of the request metrics too);
3. picks a ready endpoint of the destination Service from its EndpointSlices (endpoints.py;
   round-robin, filtered by a DestinationRule subset), and hands the request to the workload that
   pod's image selects, in-process;
4. records Istio's metrics for it (metrics.py).

Everything it knows about the cluster it reads from a `ClusterView`: a `sandbox.kubecache.KubeCache`
watching namespaces, Services, pods, EndpointSlices, VirtualServices, DestinationRules, HTTPRoutes
and Gateways on the API server, as Istio's control plane watches them. It only reads: the objects
are the cache's own.

Errors speak Envoy's language: 404 ``NR`` (no route), 503 ``UH`` (no healthy upstream), 504 ``UT``
(route timeout); an unknown host is a 502 whose body says what the mesh can resolve.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import time
from dataclasses import replace

from aiohttp import web
from yarl import URL

from sandbox.mesh import endpoints, hosts
from sandbox.mesh.gateway import GatewayIndex
from sandbox.mesh.metrics import IstioMetrics, Peer
from sandbox.mesh.routes import (
    Destination,
    RequestFacts,
    RoutePlan,
    VirtualServiceIndex,
    WeightedPicker,
    apply_header_ops,
    delegate_of,
    match_route,
    plan_route,
)
from sandbox.workloads import WorkloadSet
from sandbox.workloads.base import (
    Obj,
    WorkloadRequest,
    WorkloadResponse,
    serving_container,
    workload_of,
)
from worker.kubecache import Change, ClusterView

POD_IP = "ip"
"""The cache index of pods by ``status.podIP``."""


def _pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = {str(item.get("ip")) for item in status.get("podIPs") or [] if item.get("ip")}
    if status.get("podIP"):
        ips.add(str(status["podIP"]))
    return sorted(ips)


class MeshError(Exception):
    def __init__(self, status: int, flags: str, message: str) -> None:
        super().__init__(message)
        self.status, self.flags, self.message = status, flags, message


def source_peer(request: web.Request) -> Peer:
    """The caller named in ``Proxy-Authorization`` (basic ``workload:namespace``), else unknown."""
    raw = request.headers.get("Proxy-Authorization", "")
    scheme, _, token = raw.partition(" ")
    if scheme.lower() != "basic" or not token:
        return Peer()
    try:
        user, _, password = base64.b64decode(token).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return Peer()
    return Peer(workload=user or "unknown", namespace=password or "unknown")


def destination_peer(pod: Obj) -> Peer:
    md = pod.get("metadata") or {}
    labels = md.get("labels") or {}
    return Peer(
        workload=workload_of(pod),
        namespace=str(md.get("namespace", "default")),
        app=labels.get("app") or labels.get("app.kubernetes.io/name") or "unknown",
        version=labels.get("version") or labels.get("app.kubernetes.io/version") or "unknown",
    )


class Mesh:
    """Routes requests to pods and measures them."""

    def __init__(self, view: ClusterView, workloads: WorkloadSet, metrics: IstioMetrics) -> None:
        self._view = view
        self._workloads = workloads
        self.metrics = metrics
        self._view.add_index(
            endpoints.GROUP, endpoints.PLURAL, endpoints.BY_SERVICE, endpoints.slice_services
        )
        self._vs = VirtualServiceIndex(self._view, self._qualify)
        self._gateways = GatewayIndex(self._view)
        self._view.add_index("", "pods", POD_IP, _pod_ips)
        # A deleted pod's per-pod workload state (podinfo's error accumulator) goes with it.
        self._view.listen(self._pod_changed, group="", plural="pods")
        self._picker = WeightedPicker()
        self._rr: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _pod_changed(self, change: Change) -> None:
        if change.type == "DELETED":
            self._workloads.forget(change.obj)

    def _namespace_exists(self, name: str) -> bool:
        return self._view.peek("", "namespaces", None, name) is not None

    def _qualify(self, host: str, namespace: str) -> str:
        return hosts.qualify(host, namespace=namespace, namespace_exists=self._namespace_exists)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.method == "CONNECT":
            return web.Response(status=405, text="sandbox mesh: CONNECT (HTTPS) is not supported\n")
        if request.raw_path.startswith(("http://", "https://")):
            target = URL(request.raw_path)
            host, port = (target.host or "").lower(), target.explicit_port
        else:
            host, port = hosts.split_host_port(request.headers.get("Host", ""))
        source = source_peer(request)
        facts = RequestFacts(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            authority=host if port is None else f"{host}:{port}",
            port=port or 80,
            source_namespace=source.namespace,
        )
        work = WorkloadRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={
                k: v for k, v in request.headers.items() if k.lower() != "proxy-authorization"
            },
            body=await request.read(),
            host=host,
        )
        try:
            pod = self._pod_at(host)
            if pod is not None:
                response = await self._serve_pod(pod, port, work)
            else:
                plan = self._plan(host, port, facts, source)
                response = await self._serve(plan, facts, work, source, explicit_port=port)
        except MeshError as err:
            return web.Response(
                status=err.status,
                text=err.message + "\n",
                headers={"server": "istio-envoy", "x-sandbox-response-flags": err.flags},
            )
        headers = {
            "Content-Type": response.content_type,
            "server": "istio-envoy",
            **response.headers,
        }
        return web.Response(status=response.status, body=response.body, headers=headers)

    def _plan(self, host: str, port: int | None, facts: RequestFacts, source: Peer) -> RoutePlan:
        home = source.namespace if source.namespace != "unknown" else "default"
        canonical = self._by_cluster_ip(host) or self._qualify(host, home)
        gateway = self._gateways.gateway_at(canonical)
        if gateway is not None:
            # Addressed to the Gateway: its routes are chosen by the Host header's name.
            routed = hosts.split_host_port(facts.headers.get("host") or host)[0]
            return self._gateway_plan(gateway, routed, port, facts)
        vs = self._vs.find(canonical)
        if vs is None and hosts.service_of_fqdn(canonical):
            canonical = self._fallback_namespace(host, canonical)
            vs = self._vs.find(canonical)
        if vs is not None:
            return self._virtual_service_plan(vs, host, facts)
        if hosts.service_of_fqdn(canonical) is None:
            gateway = self._gateways.gateway_for_host(canonical)
            if gateway is not None:
                return self._gateway_plan(gateway, canonical, port, facts)
            raise MeshError(
                502,
                "NR",
                f"sandbox mesh: unknown host {host!r}: no Service or VirtualService resolves it "
                "(use <svc>, <svc>.<ns>, <svc>.<ns>.svc[.cluster.local], or a VirtualService host)",
            )
        del port
        return RoutePlan(key=canonical, destinations=[Destination(canonical, None, None, 100)])

    def _virtual_service_plan(self, vs: Obj, host: str, facts: RequestFacts) -> RoutePlan:
        matched = match_route(vs, facts)
        if matched is None:
            raise MeshError(404, "NR", f"sandbox mesh: no route for {host} in VirtualService")
        vs_ns = str((vs.get("metadata") or {}).get("namespace", "default"))
        delegate = delegate_of(matched[1], vs_ns)
        if delegate is not None:
            found = self._view.peek("networking.istio.io", "virtualservices", *delegate)
            matched = match_route(found, facts) if found is not None else None
            if found is None or matched is None:
                raise MeshError(
                    404, "NR", f"sandbox mesh: no route for {host} in delegate {'/'.join(delegate)}"
                )
            vs, vs_ns = found, delegate[0]
        return plan_route(vs, *matched, lambda h: self._qualify(h, vs_ns))

    def _gateway_plan(
        self, gateway: Obj, host: str, port: int | None, facts: RequestFacts
    ) -> RoutePlan:
        plan = self._gateways.plan(gateway, host, port or 80, facts)
        if plan is None:
            md = gateway.get("metadata") or {}
            raise MeshError(
                404,
                "NR",
                f"sandbox mesh: no HTTPRoute of Gateway {md.get('namespace')}/{md.get('name')} "
                f"matches {host} {facts.path}",
            )
        return plan

    def _pod_at(self, host: str) -> Obj | None:
        if not host.replace(".", "").isdigit():
            return None
        return next(iter(self._view.by_index("", "pods", POD_IP, host)), None)

    async def _serve_pod(
        self, pod: Obj, port: int | None, work: WorkloadRequest
    ) -> WorkloadResponse:
        container = serving_container(pod, port)
        handler = self._workloads.for_container(container)
        return await handler(pod, container, replace(work, port=port))

    def _by_cluster_ip(self, host: str) -> str | None:
        """A Service's ClusterIP (``kubectl get svc`` shows it) names that Service."""
        if not host.replace(".", "").isdigit():
            return None
        for service in self._view.scan("", "services"):
            if (service.get("spec") or {}).get("clusterIP") == host:
                md = service["metadata"]
                return hosts.ServiceRef(md["namespace"], md["name"]).fqdn
        return None

    def _fallback_namespace(self, host: str, canonical: str) -> str:
        """A bare ``<svc>`` not found in the caller's namespace: the one namespace that has it."""
        ref = hosts.service_of_fqdn(canonical)
        if ref is None or "." in host or self._view.peek("", "services", ref.namespace, ref.name):
            return canonical
        owners = [
            s["metadata"]["namespace"]
            for s in self._view.scan("", "services")
            if s["metadata"]["name"] == ref.name
        ]
        return hosts.ServiceRef(owners[0], ref.name).fqdn if len(owners) == 1 else canonical

    async def _serve(
        self,
        plan: RoutePlan,
        facts: RequestFacts,
        work: WorkloadRequest,
        source: Peer,
        *,
        explicit_port: int | None,
    ) -> WorkloadResponse:
        destination = self._picker.pick(plan.key, plan.destinations)
        if destination is None:
            raise MeshError(503, "UH", "no healthy upstream")
        # Through a gateway, the gateway's proxy is the caller the destination sees and reports.
        source = plan.via or source
        if plan.rewrite is not None:
            prefix, replacement = plan.rewrite
            work = replace(work, path=replacement + work.path[len(prefix) :] or "/")
        if plan.request_headers:
            work = replace(work, headers=apply_header_ops(work.headers, plan.request_headers))
        if plan.mirror is not None and random.uniform(0, 100) < plan.mirror_percent:
            task = asyncio.create_task(
                self._mirror(plan.mirror, facts, work, source, explicit_port)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if plan.abort is not None and random.uniform(0, 100) < plan.abort[1]:
            return WorkloadResponse(plan.abort[0], b"fault filter abort", "text/plain")
        if plan.delay is not None and random.uniform(0, 100) < plan.delay[1]:
            await asyncio.sleep(plan.delay[0])
        response = await self._dispatch(
            destination, facts, work, source, explicit_port=explicit_port, limit=plan.timeout
        )
        if plan.response_headers:
            response.headers = apply_header_ops(response.headers, plan.response_headers)
        if destination.response_headers:
            response.headers = apply_header_ops(response.headers, destination.response_headers)
        return response

    async def _mirror(
        self,
        destination: Destination,
        facts: RequestFacts,
        work: WorkloadRequest,
        source: Peer,
        explicit_port: int | None,
    ) -> None:
        # A mirror's failures are never seen by the caller.
        with contextlib.suppress(MeshError):
            await self._dispatch(
                destination, facts, work, source, explicit_port=explicit_port, limit=None
            )

    async def _dispatch(
        self,
        destination: Destination,
        facts: RequestFacts,
        work: WorkloadRequest,
        source: Peer,
        *,
        explicit_port: int | None,
        limit: float | None,
    ) -> WorkloadResponse:
        ref = hosts.service_of_fqdn(destination.host)
        if ref is None:
            raise MeshError(
                502, "NR", f"sandbox mesh: route destination {destination.host!r} is not a Service"
            )
        service = self._view.peek("", "services", ref.namespace, ref.name)
        if service is None:
            raise MeshError(
                503, "NR", f"sandbox mesh: no Service {ref.name!r} in namespace {ref.namespace!r}"
            )
        service_port = self._service_port(service, destination.port or explicit_port)
        pod, target_port = self._pick_endpoint(ref, destination.subset, service_port)
        peer = destination_peer(pod)
        container = serving_container(pod, target_port)
        handler = self._workloads.for_container(container)
        started = time.perf_counter()
        flags = "-"
        work = replace(work, port=target_port)
        try:
            response = await asyncio.wait_for(handler(pod, container, work), limit)
        except TimeoutError:
            response = WorkloadResponse(504, b"upstream request timeout", "text/plain")
            flags = "UT"
        elapsed = (time.perf_counter() - started) * 1000.0
        response.headers.setdefault("x-envoy-upstream-service-time", str(int(elapsed)))
        self.metrics.record(
            source=source,
            destination=peer,
            service_fqdn=ref.fqdn,
            code=response.status,
            duration_ms=elapsed,
            flags=flags,
        )
        del facts
        return response

    @staticmethod
    def _service_port(service: Obj, port: int | None) -> Obj:
        ports = (service.get("spec") or {}).get("ports") or []
        chosen: Obj | None = next((p for p in ports if p.get("port") == port), None)
        if chosen is None and port in (None, 80) and len(ports) == 1:
            chosen = ports[0]  # a port-less URL reaches a one-port Service (lenient, documented)
        if chosen is None:
            known = ", ".join(str(p.get("port")) for p in ports)
            raise MeshError(503, "NR", f"sandbox mesh: Service has no port {port} (ports: {known})")
        return chosen

    def _pick_endpoint(
        self, ref: hosts.ServiceRef, subset: str | None, service_port: Obj
    ) -> tuple[Obj, int | None]:
        """A ready pod of the Service (round-robin) and the container port it is reached on."""
        target = service_port.get("targetPort", service_port.get("port"))
        numeric = int(str(target)) if isinstance(target, int) or str(target).isdigit() else None
        slices = self._view.by_index(
            endpoints.GROUP,
            endpoints.PLURAL,
            endpoints.BY_SERVICE,
            endpoints.service_key(ref.namespace, ref.name),
        )
        ready = endpoints.ready_endpoints(
            slices, port_name=service_port.get("name"), fallback_port=numeric
        )
        live = [
            (pod, endpoint.port)
            for endpoint in ready
            if (pod := self._view.peek("", "pods", ref.namespace, endpoint.pod)) is not None
        ]
        if subset:
            labels = self._subset_labels(ref, subset)
            live = [
                (pod, port)
                for pod, port in live
                if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
            ]
        if not live:
            raise MeshError(503, "UH", "no healthy upstream")
        counter = self._rr.get(ref.fqdn + "/" + (subset or ""), 0)
        self._rr[ref.fqdn + "/" + (subset or "")] = counter + 1
        return live[counter % len(live)]

    def _subset_labels(self, ref: hosts.ServiceRef, subset: str) -> dict[str, str]:
        for rule in self._view.scan("networking.istio.io", "destinationrules"):
            namespace = str(rule["metadata"].get("namespace", "default"))
            if self._qualify(str((rule.get("spec") or {}).get("host", "")), namespace) != ref.fqdn:
                continue
            for item in (rule.get("spec") or {}).get("subsets") or []:
                if item.get("name") == subset:
                    return dict(item.get("labels") or {})
        raise MeshError(
            503, "NR", f"sandbox mesh: no DestinationRule subset {subset!r} for {ref.fqdn}"
        )

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
