"""The flagger.app CRDs in deploy/crds/ (Canary, MetricTemplate, AlertProvider) and the Helm chart's
copies of them: they parse, they are what deploy/scripts/generate_crds.py writes, they carry
Flagger's names, versions and printer columns, their schemas are structural, and every Canary the
repository ships validates against them as a kube-apiserver would read it.

A CRD's openAPIV3Schema is checked here as JSON Schema (draft 4, which OpenAPI v3 schemas follow)
with two Kubernetes rules added: ``x-kubernetes-int-or-string`` is an integer or a string, and an
object with declared properties has no others (the server would prune them, and kubectl's
default strict field validation refuses them). No server is needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy._support import CHART, DEPLOY, REPO, Doc, kustomize

CRDS = DEPLOY / "crds"
HELM_CRDS = CHART / "crds"
GENERATOR = DEPLOY / "scripts" / "generate_crds.py"
BAD_CANARIES = REPO / "tests" / "data" / "bad-canaries"
SHARED_EXAMPLES = REPO.parent / "shared" / "examples"
FILES = {
    "Canary": "flagger.app_canaries.yaml",
    "MetricTemplate": "flagger.app_metrictemplates.yaml",
    "AlertProvider": "flagger.app_alertproviders.yaml",
}

# Flagger's `kubectl get canaries -o wide` (fluxcd/flagger artifacts/flagger/crd.yaml):
# name, type, JSON path, priority (1: shown only with -o wide).
FLAGGER_CANARY_COLUMNS = [
    ("Status", "string", ".status.phase", 0),
    ("Weight", "string", ".status.canaryWeight", 0),
    ("Suspended", "boolean", ".spec.suspend", 1),
    ("FailedChecks", "string", ".status.failedChecks", 1),
    ("Interval", "string", ".spec.analysis.interval", 1),
    ("Mirror", "boolean", ".spec.analysis.mirror", 1),
    ("StepWeight", "string", ".spec.analysis.stepWeight", 1),
    ("StepWeights", "string", ".spec.analysis.stepWeights", 1),
    ("MaxWeight", "string", ".spec.analysis.maxWeight", 1),
    ("LastTransitionTime", "string", ".status.lastTransitionTime", 0),
]
FLAGGER_COLUMNS = {
    "Canary": FLAGGER_CANARY_COLUMNS,
    "MetricTemplate": [("Provider", "string", ".spec.provider.type", 0)],
    "AlertProvider": [("Type", "string", ".spec.type", 0)],
}

# Canaries of tests/data/bad-canaries/ that Coalmine refuses for reasons of its own (not supported
# yet, or checks Flagger's CRD does not make): valid Flagger documents, which the CRD must accept.
FLAGGER_VALID = [
    "autoscaler-kind-scaledobject",
    "duplicate-metric-names",
    "max-weight-over-100",
    "metric-threshold-range-min-above-max",
    "mirror-weight",
    "provider-linkerd",
    "service-delegation",
    "step-weight-above-max-weight",
    "step-weights-not-increasing",
    "suspended",
    "target-kind-daemonset",
    "v1alpha3-step-weight-above-max-weight",
]
# ... and ones Flagger's CRD refuses too: a type, an enum, a pattern, a required field, a typo.
FLAGGER_INVALID = [
    "ab-testing-match",  # a header match giving two kinds of match at once
    "mirroring",  # mirror as a string
    "session-affinity",  # without its cookie name
    "ab-testing-iterations",  # iterations and stepWeight: Flagger's analysis takes one of them
    "alert-severity-unknown",
    "hosts-not-a-list",
    "interval-without-unit",
    "metric-without-name",
    "missing-analysis",
    "missing-target-ref",
    "service-port-name-instead-of-number",
    "step-weight-quoted-string",
    "target-kind-statefulset",
    "target-port-list",
    "unknown-field-typo",
    "webhook-metadata-nested",
    "webhook-type-unknown",
    "webhook-without-url",
]


def crd(kind: str) -> Doc:
    document: Doc = yaml.safe_load((CRDS / FILES[kind]).read_text())
    return document


def served_schema(kind: str, version: str) -> Doc:
    for entry in crd(kind)["spec"]["versions"]:
        if entry["name"] == version and entry["served"]:
            schema: Doc = entry["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"{kind} is not served as {version}")


# --- structural schema → JSON Schema -----------------------------------------------------------

_JUNCTORS = ("allOf", "anyOf", "oneOf")


def json_schema(node: Doc) -> Doc:
    """The JSON Schema a kube-apiserver's checks amount to, for a structural schema node."""
    out = {key: value for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if "properties" in node:
        out["properties"] = {name: json_schema(sub) for name, sub in node["properties"].items()}
        closed = node.get("type") == "object" and "additionalProperties" not in node
        if closed and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            out[key] = json_schema(node[key])
    for key in _JUNCTORS:
        if key in node:
            out[key] = [json_schema(sub) for sub in node[key]]
    if node.get("x-kubernetes-int-or-string"):
        either = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        out["allOf"] = [*out.get("allOf", []), either]
    return out


def problems(document: Doc) -> list[str]:
    """Why the served version of the document's kind would refuse it (empty: it is accepted)."""
    version = document["apiVersion"].removeprefix("flagger.app/")
    schema = json_schema(served_schema(document["kind"], version))
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


# --- the repository's Canaries -----------------------------------------------------------------


def flagger_objects(value: Any) -> list[Doc]:
    """Every flagger.app object inside a parsed document (a CI input nests its Canary)."""
    if isinstance(value, list):
        return [found for item in value for found in flagger_objects(item)]
    if not isinstance(value, dict):
        return []
    if str(value.get("apiVersion", "")).startswith("flagger.app/") and "kind" in value:
        return [value]
    return [found for item in value.values() for found in flagger_objects(item)]


def example_files() -> list[Path]:
    data = [p for p in (REPO / "tests" / "data").rglob("*.y*ml") if BAD_CANARIES not in p.parents]
    return sorted(
        [
            *(REPO / "examples").glob("*.yaml"),
            *SHARED_EXAMPLES.glob("*.yaml"),
            REPO / "local" / "sandbox" / "demo_assets" / "canary.yaml",
            *(DEPLOY / "ci").glob("*"),
            *data,
        ]
    )


def examples() -> list[tuple[str, Doc]]:
    found = []
    for path in example_files():
        label = path.relative_to(REPO if REPO in path.parents else REPO.parent)
        for document in yaml.safe_load_all(path.read_text()):
            for index, obj in enumerate(flagger_objects(document)):
                found.append((f"{label}#{index}", obj))
    return found


EXAMPLES = examples()


def bad_canary(name: str) -> Doc:
    document: Doc = yaml.safe_load((BAD_CANARIES / f"{name}.yaml").read_text())
    return document


# --- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FILES)
def test_each_file_is_one_v1_crd_named_for_its_kind(kind):
    (document,) = [d for d in yaml.safe_load_all((CRDS / FILES[kind]).read_text()) if d]
    assert document["apiVersion"] == "apiextensions.k8s.io/v1"
    assert document["kind"] == "CustomResourceDefinition"
    spec = document["spec"]
    assert document["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert FILES[kind] == f"{spec['group']}_{spec['names']['plural']}.yaml"
    assert spec["names"]["kind"] == kind


def test_the_directory_holds_the_three_crds_and_their_kustomization():
    assert sorted(p.name for p in CRDS.iterdir()) == sorted([*FILES.values(), "kustomization.yaml"])
    kustomization = yaml.safe_load((CRDS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(FILES.values())
    rendered = kustomize(CRDS)
    assert sorted(o["metadata"]["name"] for o in rendered) == sorted(
        crd(kind)["metadata"]["name"] for kind in FILES
    )


def test_the_files_are_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, (
        f"run `python {GENERATOR.relative_to(REPO)}`:\n{result.stdout}{result.stderr}"
    )


def test_the_helm_chart_ships_identical_copies():
    assert sorted(p.name for p in HELM_CRDS.iterdir()) == sorted(FILES.values())
    for name in FILES.values():
        assert (HELM_CRDS / name).read_bytes() == (CRDS / name).read_bytes(), name


# --- what Flagger's CRDs say -------------------------------------------------------------------


@pytest.mark.parametrize("kind", FILES)
def test_names_scope_and_group_are_flaggers(kind):
    spec = crd(kind)["spec"]
    plural = FILES[kind].removeprefix("flagger.app_").removesuffix(".yaml")
    assert spec["group"] == "flagger.app"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": ["all"],
    }


def test_canary_is_stored_as_v1beta1_and_also_served_as_v1alpha3():
    spec = crd("Canary")["spec"]
    versions = {v["name"]: v for v in spec["versions"]}
    assert list(versions) == ["v1beta1", "v1alpha3"]
    assert (versions["v1beta1"]["served"], versions["v1beta1"]["storage"]) == (True, True)
    assert (versions["v1alpha3"]["served"], versions["v1alpha3"]["storage"]) == (True, False)
    assert versions["v1alpha3"]["deprecated"]
    assert spec["conversion"] == {"strategy": "None"}
    # Without a conversion webhook an object keeps the fields it was written with, whichever
    # version reads it: one schema for both, so neither prunes what the other accepted.
    assert versions["v1alpha3"]["schema"] == versions["v1beta1"]["schema"]


@pytest.mark.parametrize("kind", ["MetricTemplate", "AlertProvider"])
def test_templates_and_providers_are_v1beta1_only(kind):
    (version,) = crd(kind)["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1beta1", True, True)


@pytest.mark.parametrize("kind", FILES)
def test_every_version_has_the_status_subresource_and_flaggers_columns(kind):
    for version in crd(kind)["spec"]["versions"]:
        assert version["subresources"] == {"status": {}}
        columns = [
            (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
            for c in version["additionalPrinterColumns"]
        ]
        assert columns == FLAGGER_COLUMNS[kind], version["name"]


# --- structural schemas ------------------------------------------------------------------------

_NOT_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")


def structural_problems(node: Doc, path: str, *, in_junctor: bool = False) -> list[str]:
    """Where a schema breaks Kubernetes' structural rules (those a hand-written schema breaks)."""
    found = []
    if "$ref" in node:
        found.append(f"{path}: $ref")
    if in_junctor:
        found += [f"{path}: {key} inside a junctor" for key in _NOT_IN_JUNCTORS if key in node]
        found += [f"{path}: {key} inside a junctor" for key in node if key.startswith("x-")]
    elif not (
        node.get("type")
        or node.get("x-kubernetes-int-or-string")
        or node.get("x-kubernetes-preserve-unknown-fields")
    ):
        found.append(f"{path}: no type")
    if node.get("type") == "array" and "items" not in node:
        found.append(f"{path}: an array without items")
    if "properties" in node and "additionalProperties" in node:
        found.append(f"{path}: both properties and additionalProperties")
    for name, sub in node.get("properties", {}).items():
        found += structural_problems(sub, f"{path}.{name}", in_junctor=in_junctor)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += structural_problems(node[key], f"{path}.{key}", in_junctor=in_junctor)
    junctors = [
        (f"{key}[{i}]", sub) for key in _JUNCTORS for i, sub in enumerate(node.get(key, []))
    ]
    if "not" in node:
        junctors.append(("not", node["not"]))
    for where, sub in junctors:
        found += structural_problems(sub, f"{path}.{where}", in_junctor=True)
        # a junctor may only constrain fields the schema itself declares
        found += [
            f"{path}.{where}: {name} is not a property of {path}"
            for name in sub.get("properties", {})
            if name not in node.get("properties", {})
        ]
    return found


@pytest.mark.parametrize("kind", FILES)
def test_schemas_are_structural(kind):
    for version in crd(kind)["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert structural_problems(schema, version["name"]) == []
        # metadata: only its type (the server validates ObjectMeta itself)
        assert schema["properties"]["metadata"] == {"type": "object"}
        jsonschema.Draft4Validator.check_schema(json_schema(schema))


# --- documents ---------------------------------------------------------------------------------


def test_the_repository_has_example_canaries():
    assert len([name for name, obj in EXAMPLES if obj["kind"] == "Canary"]) >= 4


@pytest.mark.parametrize(("name", "document"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_every_example_validates(name, document):
    assert problems(document) == []


@pytest.mark.parametrize("name", FLAGGER_VALID)
def test_canaries_flagger_accepts_are_accepted(name):
    assert problems(bad_canary(name)) == []


@pytest.mark.parametrize("name", FLAGGER_INVALID)
def test_canaries_flagger_refuses_are_refused(name):
    assert problems(bad_canary(name)) != []


def test_a_v1alpha3_canary_keeps_its_canary_analysis():
    document = yaml.safe_load((REPO / "examples" / "podinfo-canary-v1alpha3.yaml").read_text())
    assert "canaryAnalysis" in document["spec"]
    assert problems(document) == []
    assert problems({**document, "apiVersion": "flagger.app/v1beta1"}) == []
    spec = dict(document["spec"])
    del spec["canaryAnalysis"]
    assert problems({**document, "spec": spec}) != []  # one of analysis or canaryAnalysis


def test_a_canary_with_every_service_option_validates():
    canary = bad_canary("service-delegation")
    canary["spec"]["service"] |= {
        "name": "podinfo",
        "portName": "http",
        "targetPort": "http",
        "portDiscovery": True,
        "timeout": "30s",
        "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error"},
        "headers": {"request": {"add": {"x-canary": "1"}}, "response": {"remove": ["x-debug"]}},
        "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "maxAge": "24h"},
        "match": [{"uri": {"prefix": "/api"}, "headers": {"x-user": {"exact": "tester"}}}],
        "rewrite": {"uri": "/"},
        "trafficPolicy": {
            "tls": {"mode": "ISTIO_MUTUAL"},
            "loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"}}},
            "connectionPool": {"http": {"http1MaxPendingRequests": 1024}},
            "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s"},
        },
        "apex": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
        "gatewayRefs": [{"name": "public", "namespace": "istio-system"}],
    }
    assert problems(canary) == []
    canary["spec"]["service"]["match"][0]["uri"] = {"prefix": "/a", "exact": "/b"}
    assert problems(canary) != []  # Istio's StringMatch is one of exact, prefix or regex


METRIC_TEMPLATE: Doc = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "MetricTemplate",
    "metadata": {"name": "not-found-percentage", "namespace": "istio-system"},
    "spec": {
        "provider": {
            "type": "prometheus",
            "address": "http://prometheus.istio-system:9090",
            "secretRef": {"name": "prom-basic-auth"},
            "headers": {"X-Scope-OrgID": ["tenant-a"]},
            "insecureSkipVerify": True,
        },
        "query": 'sum(rate(istio_requests_total{destination_workload="{{ target }}"}[1m]))',
    },
}
ALERT_PROVIDER: Doc = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "AlertProvider",
    "metadata": {"name": "on-call", "namespace": "flagger"},
    "spec": {
        "type": "slack",
        "channel": "on-call-alerts",
        "username": "flagger",
        "secretRef": {"name": "on-call-url"},
    },
}


def test_metric_templates_and_alert_providers_validate():
    assert problems(METRIC_TEMPLATE) == []
    assert problems(ALERT_PROVIDER) == []
    by_address = {**ALERT_PROVIDER, "spec": {"type": "msteams", "address": "https://hook"}}
    assert problems(by_address) == []
    unknown = {**METRIC_TEMPLATE, "spec": {**METRIC_TEMPLATE["spec"], "provider": {"type": "x"}}}
    assert problems(unknown) != []
    assert problems({**ALERT_PROVIDER, "spec": {"type": "slack"}}) != []  # no address at all
