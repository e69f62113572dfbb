"""The Helm chart, rendered by a real helm (v4, from deploy/scripts/fetch-helm.sh): it lints, its
defaults give the same objects as the plain manifests, and each value does what values.yaml says."""

from __future__ import annotations

import pytest

from tests.deploy._support import (
    CHART,
    MANIFESTS,
    Doc,
    by_kind,
    container,
    env,
    helm,
    helm_template,
    kustomize,
    normalized_rules,
    one,
    run,
)


def _is_controller(obj: Doc) -> bool:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "controller"


API_KEY_VOLUME = "temporal-api-key"
"""The manifests mount the optional Secret `coalmine-temporal-api-key` by default; the chart
mounts `temporal.apiKey.existingSecret` when it is set, nothing otherwise."""


def without_api_key(entries: list[Doc]) -> list[Doc]:
    return [e for e in entries if e.get("name") not in (API_KEY_VOLUME, "TEMPORAL_API_KEY_FILE")]


def controller_container(objects: list[Doc]) -> Doc:
    (deployment,) = by_kind(objects, "Deployment")
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    assert found["args"] == ["controller"]
    return found


def controller_env(objects: list[Doc]) -> dict[str, Doc]:
    return {e["name"]: e for e in controller_container(objects)["env"]}


def worker_part(objects: list[Doc]) -> list[Doc]:
    """The chart's objects without the controller's (which deploy/manifests/controller holds)."""
    return [o for o in objects if not _is_controller(o)]


def worker_template(*args: str, namespace: str = "coalmine-system") -> list[Doc]:
    return worker_part(helm_template(*args, namespace=namespace))


@pytest.fixture(scope="module")
def rendered() -> list[Doc]:
    return helm_template()


@pytest.fixture(scope="module")
def chart(rendered: list[Doc]) -> list[Doc]:
    return worker_part(rendered)


@pytest.fixture(scope="module")
def manifests() -> list[Doc]:
    return kustomize(MANIFESTS)


@pytest.fixture(scope="module")
def controller_chart(rendered: list[Doc]) -> list[Doc]:
    return [o for o in rendered if _is_controller(o)]


@pytest.fixture(scope="module")
def controller_manifests() -> list[Doc]:
    return kustomize(MANIFESTS / "controller")


def test_chart_lints():
    out = run(helm(), "lint", "--strict", str(CHART), check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_defaults_render_the_manifests_objects(chart, manifests):
    def names(objects: list[Doc]) -> set[tuple[str, str, str | None]]:
        return {
            (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
            for o in objects
            if o["kind"] != "Namespace"  # `helm install --create-namespace` makes it
        }

    assert names(chart) == names(manifests)


def test_chart_rules_equal_the_manifests_rules(chart, manifests):
    assert normalized_rules(one(chart, "ClusterRole")) == normalized_rules(
        one(manifests, "ClusterRole")
    )


def test_worker_container_equals_the_manifests(chart, manifests):
    ours, theirs = container(chart), container(manifests)
    for key in (
        "image",
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ):
        assert ours[key] == theirs[key], key
    assert ours["volumeMounts"] == without_api_key(theirs["volumeMounts"])
    # The chart's defaults leave out the optional API key; otherwise the same environment.
    assert {k: v for k, v in env(manifests).items() if k != "TEMPORAL_API_KEY_FILE"} == env(chart)


def test_pod_settings_equal_the_manifests(chart, manifests):
    def pod(objects: list[Doc]) -> Doc:
        deployment = one(objects, "Deployment")
        return deployment["spec"]["template"]["spec"] | {
            "replicas": deployment["spec"]["replicas"],
            "annotations": deployment["spec"]["template"]["metadata"]["annotations"],
        }

    ours, theirs = pod(chart), pod(manifests)
    for key in (
        "securityContext",
        "terminationGracePeriodSeconds",
        "replicas",
        "annotations",
    ):
        assert ours[key] == theirs[key], key
    assert ours["volumes"] == without_api_key(theirs["volumes"])


def test_service_selects_the_worker_pods(chart):
    deployment = one(chart, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one(chart, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9090"


def test_cluster_role_binding_binds_the_service_account(chart):
    binding = one(chart, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "coalmine", "namespace": "coalmine-system"}
    ]


def test_namespaced_rbac_makes_a_role_per_namespace(chart):
    objects = worker_template(
        "--set", "rbac.namespaced=true", "--set", "rbac.namespaces={team-a,team-b}"
    )
    assert not by_kind(objects, "ClusterRole")
    assert not by_kind(objects, "ClusterRoleBinding")
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert normalized_rules(role) == normalized_rules(one(chart, "ClusterRole"))
    for binding in by_kind(objects, "RoleBinding"):
        assert binding["subjects"][0]["namespace"] == "coalmine-system"


def test_namespaced_rbac_defaults_to_the_release_namespace():
    objects = worker_template("--set", "rbac.namespaced=true", namespace="apps")
    assert [r["metadata"]["namespace"] for r in by_kind(objects, "Role")] == ["apps"]


def test_rbac_create_false_renders_no_rbac():
    objects = worker_template("--set", "rbac.create=false")
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & {
        o["kind"] for o in objects
    }


def test_service_monitor_is_optional():
    objects = worker_template(
        "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.additionalLabels.team=x"
    )
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["team"] == "x"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_service_monitor_without_the_service_is_refused():
    out = run(
        helm(),
        "template",
        "coalmine",
        str(CHART),
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
        check=False,
    )
    assert out.returncode != 0
    assert "metrics.service.enabled" in out.stderr


def test_temporal_api_key_and_tls_from_existing_secrets():
    objects = worker_template(
        "--set",
        "temporal.address=ns.acct.tmprl.cloud:7233",
        "--set",
        "temporal.apiKey.existingSecret=temporal-key",
        "--set",
        "temporal.tls.existingSecret=temporal-certs",
        "--set",
        "temporal.tls.serverName=ns.acct.tmprl.cloud",
    )
    variables = env(objects)
    assert variables["TEMPORAL_ADDRESS"]["value"] == "ns.acct.tmprl.cloud:7233"
    # The key is a file from the Secret, never an environment variable.
    assert "TEMPORAL_API_KEY" not in variables
    key_mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == API_KEY_VOLUME)
    assert variables["TEMPORAL_API_KEY_FILE"]["value"] == f"{key_mount['mountPath']}/api-key"
    assert key_mount["readOnly"] is True
    key_volume = next(
        v
        for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == API_KEY_VOLUME
    )
    assert key_volume["secret"]["secretName"] == "temporal-key"
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "temporal-tls")
    assert variables["TEMPORAL_TLS_CERT"]["value"] == f"{mount['mountPath']}/tls.crt"
    assert variables["TEMPORAL_TLS_KEY"]["value"] == f"{mount['mountPath']}/tls.key"
    assert variables["TEMPORAL_TLS_CA"]["value"] == f"{mount['mountPath']}/ca.crt"
    assert variables["TEMPORAL_TLS_SERVER_NAME"]["value"] == "ns.acct.tmprl.cloud"
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "temporal-tls")
    assert volume["secret"]["secretName"] == "temporal-certs"


def test_tls_without_a_ca_trusts_the_system_roots():
    objects = worker_template(
        "--set", "temporal.tls.existingSecret=temporal-certs", "--set", "temporal.tls.caKey="
    )
    assert "TEMPORAL_TLS_CA" not in env(objects)
    assert "TEMPORAL_TLS_CERT" in env(objects)


def test_image_replicas_port_task_queue_and_extra_env():
    objects = worker_template(
        "--set",
        "image.repository=registry.example.com/coalmine",
        "--set",
        "image.tag=0.2.0",
        "--set",
        "replicaCount=3",
        "--set",
        "metrics.port=9464",
        "--set",
        "temporal.taskQueue=canaries",
        "--set",
        "extraEnv[0].name=COALMINE_EXTRA",
        "--set",
        "extraEnv[0].value=yes",
    )
    worker = container(objects)
    assert worker["image"] == "registry.example.com/coalmine:0.2.0"
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    assert worker["ports"][0]["containerPort"] == 9464
    variables = env(objects)
    assert variables["COALMINE_METRICS_PORT"]["value"] == "9464"
    assert variables["TEMPORAL_TASK_QUEUE"]["value"] == "canaries"
    assert variables["COALMINE_EXTRA"]["value"] == "yes"
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 9464
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9464"


def test_mesh_provider_feeds_the_worker_and_the_controller():
    # As Flagger's chart: meshProvider is the cluster-wide default of Canaries naming none.
    objects = helm_template("--set", "meshProvider=gatewayapi:v1")
    worker = env(worker_part(objects))
    controller = controller_env([o for o in objects if _is_controller(o)])
    assert worker["COALMINE_MESH_PROVIDER"]["value"] == "gatewayapi:v1"
    assert controller["COALMINE_MESH_PROVIDER"]["value"] == "gatewayapi:v1"


def test_mesh_provider_unset_leaves_the_default_to_the_worker(rendered):
    # The defaults render no variable, so the plain manifests (which set none) stay equal.
    assert "COALMINE_MESH_PROVIDER" not in env(worker_part(rendered))
    assert "COALMINE_MESH_PROVIDER" not in controller_env(
        [o for o in rendered if _is_controller(o)]
    )


def test_release_name_without_coalmine_is_prefixed():
    out = run(helm(), "template", "canaries", str(CHART), "-n", "ops")
    assert "name: canaries-coalmine-worker" in out.stdout


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCount=two", "/replicaCount"),
        ("temporal.adress=x:7233", "adress"),  # a typo is refused, not ignored
        ("metrics.port=0", "/metrics/port"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("meshProvider=linkerd", "/meshProvider"),  # not one Coalmine has
    ],
)
def test_values_schema_refuses_bad_values(setting, complaint):
    out = run(helm(), "template", "coalmine", str(CHART), "--set", setting, check=False)
    assert out.returncode != 0
    assert complaint in out.stderr


def test_values_schema_describes_every_value():
    import json

    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == {*values, "global"}


# --- the controller ------------------------------------------------------------------------


def test_controller_objects_equal_the_controller_manifests(controller_chart, controller_manifests):
    def names(objects: list[Doc]) -> set[tuple[str, str, str | None]]:
        return {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects}

    assert names(controller_chart) == names(controller_manifests)
    assert normalized_rules(one(controller_chart, "ClusterRole")) == normalized_rules(
        one(controller_manifests, "ClusterRole")
    )
    assert (
        one(controller_chart, "ClusterRoleBinding")["subjects"]
        == one(controller_manifests, "ClusterRoleBinding")["subjects"]
    )


def test_controller_container_equals_the_manifests(controller_chart, controller_manifests):
    ours = controller_container(controller_chart)
    theirs = controller_container(controller_manifests)
    for key in ("args", "resources", "securityContext"):
        assert ours[key] == theirs[key], key
    assert ours["volumeMounts"] == without_api_key(theirs["volumeMounts"])
    theirs_env = controller_env(controller_manifests)
    assert theirs_env.pop("TEMPORAL_API_KEY_FILE")["value"].startswith("/etc/coalmine/")
    assert controller_env(controller_chart) == theirs_env
    pod = one(controller_chart, "Deployment")["spec"]["template"]["spec"]
    theirs_pod = one(controller_manifests, "Deployment")["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "securityContext", "terminationGracePeriodSeconds"):
        assert pod[key] == theirs_pod[key], key


def test_controller_selector_matches_its_pods_only(controller_chart, chart):
    deployment = one(controller_chart, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    worker_selector = one(chart, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not worker_selector.items() <= labels.items()


def test_controller_can_be_turned_off_and_shares_the_temporal_credentials():
    assert not [o for o in helm_template("--set", "controller.enabled=false") if _is_controller(o)]
    objects = [
        o
        for o in helm_template(
            "--set",
            "temporal.apiKey.existingSecret=temporal-key",
            "--set",
            "temporal.tls.existingSecret=temporal-tls",
            "--set",
            "controller.replicaCount=2",
        )
        if _is_controller(o)
    ]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    variables = controller_env(objects)
    assert variables["TEMPORAL_API_KEY_FILE"]["value"] == "/etc/coalmine/temporal-api-key/api-key"
    assert variables["TEMPORAL_TLS_CERT"]["value"].startswith("/etc/coalmine/temporal-tls/")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "temporal-tls", "secret": {"secretName": "temporal-tls",
            "defaultMode": 0o440}} in volumes  # fmt: skip


def test_controller_rbac_follows_rbac_create():
    objects = helm_template("--set", "rbac.create=false")
    assert sorted(o["kind"] for o in objects if _is_controller(o)) == [
        "Deployment",
        "NetworkPolicy",
        "ServiceAccount",
    ]


# --- the NetworkPolicies ------------------------------------------------------------------------


def test_network_policies_equal_the_manifests(rendered, manifests, controller_manifests):
    ours = {o["metadata"]["name"]: o["spec"] for o in by_kind(rendered, "NetworkPolicy")}
    theirs = {
        o["metadata"]["name"]: o["spec"]
        for o in by_kind(manifests, "NetworkPolicy")
        + by_kind(controller_manifests, "NetworkPolicy")
    }
    assert ours.keys() == theirs.keys() == {"coalmine-worker", "coalmine-controller"}
    for name, spec in theirs.items():
        # The chart's pod selectors carry the release (app.kubernetes.io/instance) as well.
        assert {k: v for k, v in ours[name].items() if k != "podSelector"} == {
            k: v for k, v in spec.items() if k != "podSelector"
        }, name
        assert spec["podSelector"]["matchLabels"].items() <= (
            ours[name]["podSelector"]["matchLabels"].items()
        )


def test_network_policy_ports_follow_temporal_and_prometheus_and_can_be_turned_off():
    objects = helm_template(
        "--set", "temporal.address=ns.acct.tmprl.cloud:7234",
        "--set", "prometheusUrl=https://prometheus.example",
        "--set", "networkPolicy.extraEgress[0].ports[0].port=9443",
    )  # fmt: skip
    policies = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in by_kind(
        objects, "NetworkPolicy")}  # fmt: skip
    worker = {p["port"] for r in policies["worker"]["spec"]["egress"] for p in r["ports"]}
    assert {7234, 443, 9443} <= worker
    assert 7233 not in worker
    assert 9090 not in worker
    controller = {p["port"] for r in policies["controller"]["spec"]["egress"] for p in r["ports"]}
    assert 7234 in controller
    assert 9443 not in controller  # extraEgress is the worker's
    assert not by_kind(helm_template("--set", "networkPolicy.enabled=false"), "NetworkPolicy")
