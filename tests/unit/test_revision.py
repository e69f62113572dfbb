"""The revision hash: stable under key order, sensitive to what a rollout is about."""

from __future__ import annotations

import copy
import json

from activities.kubernetes.revision import compute_revision, config_refs, normalized_template


def deployment(**container_overrides) -> dict:
    container = {
        "name": "podinfod",
        "image": "quay.io/stefanprodan/podinfo:1.4.0",
        "ports": [{"containerPort": 9898, "name": "http"}],
        "env": [
            {"name": "PODINFO_UI_COLOR", "value": "blue"},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "l"}}},
        ],
        "envFrom": [{"secretRef": {"name": "tokens"}}],
        **container_overrides,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test", "resourceVersion": "7"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "podinfo-config"}},
                        {
                            "name": "all",
                            "projected": {"sources": [{"secret": {"name": "projected-secret"}}]},
                        },
                    ],
                },
            },
        },
    }


CONFIGS = {
    "configmap/settings": {"data": {"l": "info"}},
    "configmap/podinfo-config": {"data": {"config.yaml": "a: 1"}},
    "secret/tokens": {"data": {"token": "c2VjcmV0"}, "type": "Opaque"},
    "secret/projected-secret": {"data": {"x": "eA=="}},
}


def reordered(value):
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def test_the_revision_is_a_short_hex_digest() -> None:
    revision = compute_revision(deployment(), CONFIGS)
    assert len(revision) == 16
    int(revision, 16)


def test_stable_under_key_order_and_unrelated_fields() -> None:
    base = compute_revision(deployment(), CONFIGS)
    assert compute_revision(reordered(deployment()), reordered(CONFIGS)) == base
    moved = deployment()
    moved["metadata"]["resourceVersion"] = "99"
    moved["spec"]["replicas"] = 0  # scaling is not a new revision
    moved["status"] = {"availableReplicas": 2}
    assert compute_revision(moved, CONFIGS) == base
    assert compute_revision(deployment(), {**CONFIGS, "configmap/unused": {"data": {}}}) == base


def test_ignores_pod_template_hash_and_nulls() -> None:
    base = compute_revision(deployment(), CONFIGS)
    labelled = deployment()
    labelled["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "5d4f8"
    labelled["spec"]["template"]["metadata"]["creationTimestamp"] = None
    assert compute_revision(labelled, CONFIGS) == base


def test_changes_with_image_and_env() -> None:
    base = compute_revision(deployment(), CONFIGS)
    assert compute_revision(deployment(image="quay.io/stefanprodan/podinfo:1.4.1"), CONFIGS) != base
    env = [{"name": "PODINFO_UI_COLOR", "value": "green"}]
    assert compute_revision(deployment(env=env), CONFIGS) != base


def test_changes_with_referenced_config_data() -> None:
    base = compute_revision(deployment(), CONFIGS)
    for ref in CONFIGS:
        changed = copy.deepcopy(CONFIGS)
        changed[ref]["data"]["new-key"] = "bmV3"
        assert compute_revision(deployment(), changed) != base, ref
    missing = {k: v for k, v in CONFIGS.items() if k != "configmap/podinfo-config"}
    assert compute_revision(deployment(), missing) != base


def test_config_refs_finds_volumes_projected_env_and_env_from() -> None:
    template = deployment()["spec"]["template"]
    template["spec"]["initContainers"] = [
        {"name": "init", "envFrom": [{"configMapRef": {"name": "init-config"}}]}
    ]
    template["spec"]["volumes"].append({"name": "tls", "secret": {"secretName": "tls"}})
    assert config_refs(template) == [
        "configmap/init-config",
        "configmap/podinfo-config",
        "configmap/settings",
        "secret/projected-secret",
        "secret/tls",
        "secret/tokens",
    ]


def test_normalization_does_not_mutate_its_input() -> None:
    labelled = deployment()
    labelled["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "5d4f8"
    before = json.dumps(labelled, sort_keys=True)
    normalized_template(labelled)
    assert json.dumps(labelled, sort_keys=True) == before
