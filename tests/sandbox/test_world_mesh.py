"""The mesh: cluster names through the proxy, VirtualService routes, faults from the pod spec."""

from __future__ import annotations

import collections
import json
import subprocess
import time

import httpx
import pytest


def app_manifest(
    name: str, ns: str, *, version: str = "1.4.0", env: str = "", replicas: int = 1
) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: quay.io/stefanprodan/podinfo:{version}
        ports: [{{name: http, containerPort: 9898}}]
        env: [{env}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
"""


def deploy(kubectl, ns: str, *names: str) -> None:
    for name in names:
        kubectl.run("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=30s")
    # Endpoints follow readiness one reconcile later than the Deployment status.
    time.sleep(0.3)


@pytest.fixture
def mesh(sandbox_cluster):
    with httpx.Client(proxy=sandbox_cluster.mesh_url, timeout=10, trust_env=False) as http:
        yield http


def test_cluster_names_resolve_through_the_proxy(kubectl, sandbox_namespace, sandbox_cluster, mesh):
    ns = sandbox_namespace
    kubectl.apply(app_manifest("web", ns, version="2.0.1"))
    deploy(kubectl, ns, "web")
    for host in (f"web.{ns}", f"web.{ns}.svc", f"web.{ns}.svc.cluster.local"):
        response = mesh.get(f"http://{host}:9898/version")
        assert response.status_code == 200, host
        assert response.json()["version"] == "2.0.1"
        assert response.headers["server"] == "istio-envoy"
    # Origin-form with a Host header works too (no proxy configured in the client).
    direct = httpx.get(f"{sandbox_cluster.mesh_url}/healthz", headers={"Host": f"web.{ns}:9898"})
    assert direct.json() == {"status": "OK"}
    # So does curl as a proxy client.
    out = subprocess.run(
        ["curl", "-s", "-x", sandbox_cluster.mesh_url, f"http://web.{ns}:9898/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert json.loads(out)["message"] == "greetings from podinfo v2.0.1"


def test_unknown_host_and_no_ready_pod_are_clear_errors(kubectl, sandbox_namespace, mesh):
    ns = sandbox_namespace
    unknown = mesh.get("http://no-such-service.example.org/")
    assert unknown.status_code == 502
    assert "unknown host" in unknown.text

    kubectl.apply(app_manifest("broken", ns).replace("podinfo:1.4.0", "podinfo:unpullable"))
    time.sleep(1.0)
    unready = mesh.get(f"http://broken.{ns}:9898/")
    assert unready.status_code == 503
    assert "no healthy upstream" in unready.text


def test_faults_follow_the_pod_spec(kubectl, sandbox_namespace, mesh):
    ns = sandbox_namespace
    kubectl.apply(app_manifest("web", ns))
    deploy(kubectl, ns, "web")
    assert mesh.get(f"http://web.{ns}:9898/status/418").status_code == 418
    started = time.perf_counter()
    assert mesh.get(f"http://web.{ns}:9898/delay/0.3").json() == {"delay": 0.3}
    assert time.perf_counter() - started >= 0.3

    # A bad release arrives as a Deployment change.
    kubectl.run(
        "-n", ns, "set", "env", "deployment/web", "FAULT_ERROR_RATE=0.5", "FAULT_LATENCY_MS=50"
    )
    deploy(kubectl, ns, "web")
    started = time.perf_counter()
    codes = collections.Counter(mesh.get(f"http://web.{ns}:9898/").status_code for _ in range(20))
    assert codes == {200: 10, 500: 10}
    assert time.perf_counter() - started >= 20 * 0.05


def test_virtualservice_weights_split_traffic(kubectl, sandbox_namespace, mesh):
    ns = sandbox_namespace
    kubectl.apply(app_manifest("web-primary", ns, version="1.0.0", replicas=2))
    kubectl.apply(app_manifest("web-canary", ns, version="2.0.0"))
    kubectl.apply(f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web, namespace: {ns}}}
spec:
  hosts: [web, web.example.com]
  gateways: [public-gateway.istio-system.svc.cluster.local, mesh]
  http:
  - match: [{{headers: {{x-canary: {{exact: insider}}}}}}]
    route: [{{destination: {{host: web-canary}}}}]
  - route:
    - {{destination: {{host: web-primary}}, weight: 80}}
    - {{destination: {{host: web-canary, port: {{number: 9898}}}}, weight: 20}}
""")
    deploy(kubectl, ns, "web-primary", "web-canary")
    versions = collections.Counter(
        mesh.get(f"http://web.{ns}/version").json()["version"] for _ in range(50)
    )
    assert versions == {"1.0.0": 40, "2.0.0": 10}
    insider = {
        mesh.get(f"http://web.{ns}/version", headers={"x-canary": "insider"}).json()["version"]
        for _ in range(5)
    }
    assert insider == {"2.0.0"}
    gateway = mesh.get("http://web.example.com/version", headers={"x-canary": "insider"})
    assert gateway.json()["version"] == "2.0.0"
    # Both primary pods take turns.
    hosts = {mesh.get(f"http://web-primary.{ns}:9898/").json()["hostname"] for _ in range(4)}
    assert len(hosts) == 2


def test_mirror_and_istio_metrics_labels(kubectl, sandbox_namespace, sandbox_cluster, mesh):
    ns = sandbox_namespace
    kubectl.apply(app_manifest("web", ns))
    kubectl.apply(app_manifest("shadow", ns, version="9.9.9"))
    kubectl.apply(f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web, namespace: {ns}}}
spec:
  hosts: [web]
  http:
  - route: [{{destination: {{host: web}}}}]
    mirror: {{host: shadow}}
    mirrorPercentage: {{value: 100.0}}
""")
    deploy(kubectl, ns, "web", "shadow")
    for _ in range(3):
        assert mesh.get(f"http://web.{ns}:9898/").json()["version"] == "1.4.0"
    # The caller named in the proxy credentials becomes source_workload.
    with httpx.Client(
        proxy=sandbox_cluster.mesh_url.replace("://", f"://tester:{ns}@"), trust_env=False
    ) as as_tester:
        assert as_tester.get(f"http://web.{ns}:9898/").status_code == 200
    time.sleep(0.2)
    text = httpx.get(f"{sandbox_cluster.metrics_url}/metrics").text
    series = [
        line
        for line in text.splitlines()
        if line.startswith("istio_requests_total{")
        and f'destination_workload_namespace="{ns}"' in line
    ]

    def count(**labels: str) -> float:
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(float(s.rsplit(" ", 1)[1]) for s in series if all(w in s for w in wanted))

    assert count(reporter="destination", destination_workload="web", source_workload="unknown") == 3
    assert count(reporter="destination", destination_workload="shadow") == 4
    assert (
        count(
            reporter="source",
            destination_workload="web",
            source_workload="tester",
            source_workload_namespace=ns,
        )
        == 1
    )
    assert (
        count(
            reporter="destination",
            destination_service=f"web.{ns}.svc.cluster.local",
            destination_service_name="web",
            destination_service_namespace=ns,
            destination_app="web",
            response_code="200",
            request_protocol="http",
            connection_security_policy="mutual_tls",
        )
        == 1
    )
    assert any(
        line.startswith("istio_request_duration_milliseconds_bucket{") and 'le="0.5"' in line
        for line in text.splitlines()
    )


def test_route_header_operations_and_rewrite(kubectl, sandbox_namespace, mesh):
    ns = sandbox_namespace
    kubectl.apply(app_manifest("web", ns))
    kubectl.apply(f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web, namespace: {ns}}}
spec:
  hosts: [web.example.com]
  http:
  - match: [{{uri: {{prefix: /api/}}}}]
    rewrite: {{uri: /}}
    headers:
      request: {{set: {{x-canary: "yes"}}, remove: [x-secret]}}
      response: {{add: {{x-route: api}}}}
    route: [{{destination: {{host: web.{ns}.svc.cluster.local, port: {{number: 9898}}}}}}]
""")
    deploy(kubectl, ns, "web")
    response = mesh.get("http://web.example.com/api/headers", headers={"x-secret": "s3"})
    assert response.status_code == 200
    assert response.headers["x-route"] == "api"
    echoed = {k.lower(): v for k, v in response.json().items()}
    assert echoed["x-canary"] == ["yes"]
    assert "x-secret" not in echoed
    # Outside the matched prefix there is no route: Envoy's 404.
    assert mesh.get("http://web.example.com/other").status_code == 404


# --- Gateway API, delegation, pods scraped by their annotations --------------------------------


def gateway_manifest(ns: str, *, allowed: str = "All") -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: {ns}}}
spec:
  gatewayClassName: istio
  listeners:
  - name: default
    hostname: "*.example.com"
    port: 80
    protocol: HTTP
    allowedRoutes: {{namespaces: {{from: {allowed}}}}}
"""


def test_httproute_weights_and_matches_through_the_gateway(
    kubectl, sandbox_namespace, sandbox_cluster, mesh
):
    ns = sandbox_namespace
    kubectl.apply(app_manifest("web-primary", ns, version="1.0.0"))
    kubectl.apply(app_manifest("web-canary", ns, version="2.0.0"))
    kubectl.apply(gateway_manifest(ns))
    kubectl.apply(f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: {ns}}}
spec:
  parentRefs: [{{name: gw, namespace: {ns}}}]
  hostnames: [{ns}.example.com]
  rules:
  - matches:
    - path: {{type: PathPrefix, value: /version}}
      headers: [{{name: x-canary, value: insider}}]
    - path: {{type: PathPrefix, value: /version}}
      queryParams: [{{name: canary, value: "yes"}}]
    backendRefs: [{{name: web-canary, port: 9898}}]
  - matches: [{{path: {{type: PathPrefix, value: /version}}}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: x-route, value: weighted}}]}}
    backendRefs:
    - {{name: web-primary, port: 9898, weight: 80}}
    - {{name: web-canary, port: 9898, weight: 20}}
""")
    deploy(kubectl, ns, "web-primary", "web-canary")
    address = f"http://gw-istio.{ns}"  # the Gateway's address, as Istio deploys gateway "gw"
    host = {"Host": f"{ns}.example.com"}
    versions = collections.Counter(
        mesh.get(f"{address}/version", headers=host).json()["version"] for _ in range(50)
    )
    assert versions == {"1.0.0": 40, "2.0.0": 10}
    assert mesh.get(f"{address}/version", headers=host).headers["x-route"] == "weighted"
    insider = mesh.get(f"{address}/version", headers={**host, "x-canary": "insider"})
    assert insider.json()["version"] == "2.0.0"
    assert mesh.get(f"{address}/version?canary=yes", headers=host).json()["version"] == "2.0.0"
    # The route's hostname reaches it without the Gateway's address too (one proxy is both).
    direct = mesh.get(f"http://{ns}.example.com/version", headers={"x-canary": "insider"})
    assert direct.json()["version"] == "2.0.0"
    # No rule matches / (only /version), another host, or a host the listener refuses.
    assert mesh.get(f"{address}/", headers=host).status_code == 404
    assert mesh.get(f"{address}/version", headers={"Host": "other.example.com"}).status_code == 404
    assert mesh.get(f"{address}/version", headers={"Host": "web.example.org"}).status_code == 404

    # Reported as Istio's gateway reports: the gateway's proxy is the source.
    time.sleep(0.2)
    text = httpx.get(f"{sandbox_cluster.metrics_url}/metrics").text
    gateway_lines = [
        line
        for line in text.splitlines()
        if line.startswith("istio_requests_total{")
        and 'reporter="source"' in line
        and 'source_workload="gw-istio"' in line
        and f'source_workload_namespace="{ns}"' in line
        and 'destination_workload="web-canary"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in gateway_lines) == 13


def test_a_route_outside_the_gateways_allowed_namespaces_is_not_attached(
    kubectl, sandbox_namespace, mesh
):
    ns = sandbox_namespace
    kubectl.apply(app_manifest("web", ns))
    kubectl.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}-gw}}\n")
    try:
        kubectl.apply(gateway_manifest(f"{ns}-gw", allowed="Same"))
        kubectl.apply(f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: {ns}}}
spec:
  parentRefs: [{{name: gw, namespace: {ns}-gw}}]
  hostnames: [same.example.com]
  rules: [{{backendRefs: [{{name: web, port: 9898}}]}}]
""")
        deploy(kubectl, ns, "web")
        refused = mesh.get(f"http://gw-istio.{ns}-gw/", headers={"Host": "same.example.com"})
        assert refused.status_code == 404
        kubectl.apply(gateway_manifest(f"{ns}-gw", allowed="All"))
        time.sleep(0.3)
        allowed = mesh.get(f"http://gw-istio.{ns}-gw/", headers={"Host": "same.example.com"})
        assert allowed.status_code == 200
    finally:
        kubectl.run("delete", "namespace", f"{ns}-gw", "--wait=false", check=False)


def test_a_root_virtualservice_hands_its_route_to_the_delegate(kubectl, sandbox_namespace, mesh):
    from activities.router.istio import render_virtual_service
    from tests import canaries

    ns = sandbox_namespace
    kubectl.apply(app_manifest("podinfo-primary", ns, version="1.0.0"))
    kubectl.apply(app_manifest("podinfo-canary", ns, version="2.0.0"))
    # The VirtualService the Istio router generates for service.delegation (no hosts, no
    # gateways: a delegate), at 50/50, and the user's root one delegating to it.
    delegation = canaries.canary(ns, service={"delegation": True})
    delegate = render_virtual_service(delegation, 50, 50)
    assert (delegate["spec"]["hosts"], delegate["spec"]["gateways"]) == ([], [])
    kubectl.apply(json.dumps(delegate))
    kubectl.apply(f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: root, namespace: {ns}}}
spec:
  hosts: [delegated.example.com]
  http:
  - match: [{{uri: {{prefix: /version}}}}]
    delegate: {{name: podinfo, namespace: {ns}}}
""")
    deploy(kubectl, ns, "podinfo-primary", "podinfo-canary")
    url = "http://delegated.example.com/version"
    versions = collections.Counter(mesh.get(url).json()["version"] for _ in range(10))
    assert versions == {"1.0.0": 5, "2.0.0": 5}
    # Outside the root route's match there is no route, delegate or not.
    assert mesh.get("http://delegated.example.com/other").status_code == 404


def test_prometheus_scrapes_pods_by_their_annotations(
    kubectl, sandbox_namespace, sandbox_cluster, mesh
):
    ns = sandbox_namespace
    # Flagger's podinfo: metrics on 9797, named by prometheus.io annotations.
    kubectl.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata:
      labels: {{app: podinfo}}
      annotations: {{prometheus.io/scrape: "true", prometheus.io/port: "9797"}}
    spec:
      containers:
      - name: podinfod
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        ports: [{{name: http, containerPort: 9898}}, {{name: http-metrics, containerPort: 9797}}]
---
apiVersion: v1
kind: Service
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
""")
    deploy(kubectl, ns, "podinfo")
    for _ in range(5):
        assert mesh.get(f"http://podinfo.{ns}:9898/").status_code == 200
    query = (
        f'sum(http_request_duration_seconds_count{{kubernetes_namespace="{ns}",'
        f'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",app="podinfo"}})'
    )
    deadline = time.monotonic() + 30  # file discovery, then Prometheus' 5 s target tick
    found: list = []
    while time.monotonic() < deadline and not found:
        answer = httpx.get(
            f"{sandbox_cluster.prometheus_url}/api/v1/query", params={"query": query}
        ).json()
        found = answer["data"]["result"]
        time.sleep(0.5)
    assert found, f"no scraped podinfo series for {query}"
    assert float(found[0]["value"][1]) >= 5
