"""The plain manifests: every file parses, the base and each overlay render with kustomize, and the
rendered objects fit together (names, labels, ports, probes, security, Temporal settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy._support import (
    MANIFESTS,
    Doc,
    by_kind,
    container,
    env,
    kubectl,
    kustomize,
    normalized_rules,
    one,
    run,
)

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
METRICS_PORT = 9090


def test_every_manifest_file_parses():
    files = sorted(MANIFESTS.rglob("*.yaml"))
    assert len(files) >= 12
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), path
            assert {"apiVersion", "kind"} <= doc.keys(), path


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return kustomize(MANIFESTS)


@pytest.fixture(scope="module")
def namespaced() -> list[Doc]:
    return kustomize(MANIFESTS / "namespaced")


@pytest.fixture(scope="module")
def monitoring() -> list[Doc]:
    return kustomize(MANIFESTS / "monitoring")


def test_base_renders_the_cluster_wide_install(base):
    kinds = sorted(o["kind"] for o in base)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "NetworkPolicy",
        ]
    )
    for obj in base:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == "coalmine-system", obj["kind"]
    assert one(base, "Namespace")["metadata"]["name"] == "coalmine-system"


def test_cluster_role_binding_binds_the_worker_service_account(base):
    account = one(base, "ServiceAccount")["metadata"]
    binding = one(base, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one(base, "ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]


def test_cluster_role_is_narrow(base):
    rules = normalized_rules(one(base, "ClusterRole"))
    assert ("apps", "deployments", "update") in rules
    assert ("apps", "deployments/scale", "patch") in rules
    assert ("", "secrets", "get") in rules
    # The activities read one object at a time: no list, watch or delete, no wildcards, and
    # Flagger's resources are read only, but for the Canary's status, which the workflow keeps
    # current as Flagger's controller does.
    assert not {r for r in rules if r[2] in ("list", "watch", "delete", "deletecollection", "*")}
    assert not {r for r in rules if "*" in (r[0], r[1])}
    writes = {r for r in rules if r[0] == "flagger.app" and r[2] != "get"}
    assert writes == {("flagger.app", "canaries/status", "patch")}


def test_worker_deployment_runs_the_worker_command(base):
    worker = container(base)
    assert worker["image"] == "coalmine:0.1.0"
    assert worker["args"] == ["worker"]
    assert "command" not in worker  # the image's ENTRYPOINT (coalmine) stays


def test_worker_deployment_selector_matches_its_pods_and_the_service(base):
    deployment = one(base, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    service = one(base, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_metrics_port_probes_and_scrape_annotations_agree(base):
    worker = container(base)
    (port,) = worker["ports"]
    assert port == {"name": "http-metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
    assert env(base)["COALMINE_METRICS_PORT"]["value"] == str(METRICS_PORT)
    for probe in ("livenessProbe", "readinessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    service = one(base, "Service")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == "http-metrics"
    pod_annotations = one(base, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    for scrape in (service["metadata"]["annotations"], pod_annotations):
        assert scrape == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORT),
            "prometheus.io/path": "/metrics",
        }


def test_worker_runs_non_root_on_a_read_only_root_file_system(base):
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container(base)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The only writable place is an emptyDir at /tmp, where HOME points.
    mounts = {m["mountPath"]: m["name"] for m in container(base)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert env(base)["HOME"]["value"] == "/tmp"


def test_worker_has_resource_requests_and_limits(base):
    resources = container(base)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_temporal_connection_comes_from_the_environment(base):
    variables = env(base)
    assert variables["TEMPORAL_ADDRESS"]["value"].endswith(":7233")
    assert variables["TEMPORAL_NAMESPACE"]["value"] == "default"
    assert variables["TEMPORAL_TASK_QUEUE"]["value"] == "coalmine"
    assert variables["PROMETHEUS_URL"]["value"].startswith("http")
    # The API key is a file from an optional Secret (never an environment variable): without
    # the Secret there is no file, and the worker connects without a key.
    assert "TEMPORAL_API_KEY" not in variables
    assert not [e for e in variables.values() if "secretKeyRef" in e.get("valueFrom", {})]
    path = Path(variables["TEMPORAL_API_KEY_FILE"]["value"])
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    mount = next(m for m in container(base)["volumeMounts"] if m["name"] == "temporal-api-key")
    assert (str(path.parent), mount["readOnly"]) == (mount["mountPath"], True)
    volume = next(v for v in pod["volumes"] if v["name"] == "temporal-api-key")
    assert volume["secret"]["secretName"] == "coalmine-temporal-api-key"
    assert volume["secret"]["optional"] is True
    assert path.name == "api-key"
    # TLS files are added by the temporal-tls component only, never pointing at absent files.
    assert not {"TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CA"} & variables.keys()


def test_task_queue_default_is_the_workflows(base):
    from workflows.model import DEFAULT_TASK_QUEUE

    assert env(base)["TEMPORAL_TASK_QUEUE"]["value"] == DEFAULT_TASK_QUEUE


def test_namespaced_overlay_has_no_cluster_scoped_objects(namespaced):
    assert not [o for o in namespaced if o["kind"] in CLUSTER_SCOPED]
    namespaces = {o["metadata"]["namespace"] for o in namespaced}
    assert namespaces == {"apps"}


def test_namespaced_role_grants_what_the_cluster_role_grants(base, namespaced):
    assert normalized_rules(one(namespaced, "Role")) == normalized_rules(one(base, "ClusterRole"))
    binding = one(namespaced, "RoleBinding")
    account = one(namespaced, "ServiceAccount")["metadata"]
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["roleRef"]["name"] == one(namespaced, "Role")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


def test_monitoring_overlay_adds_a_service_monitor_for_the_metrics_service(base, monitoring):
    assert sorted(o["kind"] for o in monitoring) == sorted(
        [*(o["kind"] for o in base), "ServiceMonitor"]
    )
    monitor = one(monitoring, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "coalmine-system"
    service = one(monitoring, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def _with_tls(tmp_path: Path) -> list[Doc]:
    # A user's own kustomization: the install plus the TLS component (kustomize wants relative
    # paths, so the user's folder sits inside a copy of deploy/).
    user = tmp_path / "deploy" / "mine"
    user.mkdir(parents=True)
    run("cp", "-r", str(MANIFESTS), str(tmp_path / "deploy" / "manifests"))
    (user / "kustomization.yaml").write_text(
        "resources: [../manifests]\ncomponents: [../manifests/temporal-tls]\n"
    )
    return kustomize(user)


def test_temporal_tls_component_mounts_the_secret_and_points_at_its_files(tmp_path):
    objects = _with_tls(tmp_path)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["temporal-tls"]["secret"]["secretName"] == "coalmine-temporal-tls"
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "temporal-tls")
    assert mount["readOnly"] is True
    variables = env(objects)
    for name, key in (
        ("TEMPORAL_TLS_CERT", "tls.crt"),
        ("TEMPORAL_TLS_KEY", "tls.key"),
        ("TEMPORAL_TLS_CA", "ca.crt"),
    ):
        assert variables[name]["value"] == f"{mount['mountPath']}/{key}"


def test_kubectl_is_the_offline_binary():
    # The dispatcher at /usr/bin/kubectl would need a server; rendering must not.
    out = run(kubectl(), "version", "--client", "-o", "yaml").stdout
    assert "kustomizeVersion" in out


def test_rendered_objects_have_part_of_label(base, namespaced, monitoring):
    for objects in (base, namespaced, monitoring):
        for obj in objects:
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "coalmine"
    assert by_kind(base, "Deployment")


def test_network_policies_select_their_pods_and_open_only_the_metrics_port(base):
    controller = kustomize(MANIFESTS / "controller")
    for objects in (base, controller):
        (policy,) = by_kind(objects, "NetworkPolicy")
        (deployment,) = by_kind(objects, "Deployment")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        egress = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert {53, 443, 6443, 7233} <= egress  # DNS, the API server, Temporal
    (worker,) = by_kind(base, "NetworkPolicy")
    (ingress,) = worker["spec"]["ingress"]
    assert ingress == {"ports": [{"port": "http-metrics", "protocol": "TCP"}]}
    egress = {p["port"] for rule in worker["spec"]["egress"] for p in rule["ports"]}
    assert {9090, 80, 8080} <= egress  # Prometheus, webhooks
    (policy,) = by_kind(controller, "NetworkPolicy")
    assert policy["spec"]["ingress"] == []  # the controller serves no port


def test_no_object_lands_in_the_default_namespace():
    # Each file names its namespace, so applying one file alone never uses `default`.
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] in CLUSTER_SCOPED or doc["kind"] in {"Kustomization", "Component"}:
                continue
            assert doc["metadata"].get("namespace") not in (None, "default"), path
