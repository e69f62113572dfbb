"""Shared helpers of the deploy tests: paths, the offline kubectl and helm binaries, rendering."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = DEPLOY / "manifests"
CHART = DEPLOY / "helm" / "coalmine"
TOOLS_BIN = REPO / ".tools" / "bin"

# /usr/bin/kubectl is a dispatcher that asks a server for its version before choosing a real
# kubectl; rendering needs no server, so the newest versioned binary is run directly.
_KUBECTL_DIRS = (Path("/usr/lib/google-cloud-sdk/bin"), Path("/usr/bin"))
_KUBECTL_VERSIONS = ("1.33", "1.32", "1.31", "1.30", "1.29", "1.28", "1.27")

Doc = dict[str, Any]


def kubectl() -> str:
    """Path of a versioned kubectl binary that runs offline (fails the test when none exists)."""
    for version in _KUBECTL_VERSIONS:
        for folder in _KUBECTL_DIRS:
            candidate = folder / f"kubectl.{version}"
            if candidate.exists():
                return str(candidate)
    found = shutil.which("kubectl")
    assert found, "kubectl is part of this machine's image; it is missing"
    return found


def helm() -> str:
    """The helm binary deploy/scripts/fetch-helm.sh puts in .tools/bin (fetched if absent)."""
    binary = TOOLS_BIN / "helm"
    if not binary.exists():
        result = subprocess.run(
            [str(DEPLOY / "scripts" / "fetch-helm.sh")],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"could not fetch helm (deploy/scripts/fetch-helm.sh):\n{result.stderr}")
    return str(binary)


def checkov() -> str:
    """The checkov deploy/scripts/fetch-checkov.sh installs in .tools/checkov (installed if absent
    or not the pinned version)."""
    result = subprocess.run(
        [str(DEPLOY / "scripts" / "fetch-checkov.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(
            f"could not install checkov (deploy/scripts/fetch-checkov.sh):\n{result.stderr}"
        )
    return str(TOOLS_BIN / "checkov")


def run(
    *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(args), capture_output=True, text=True, check=False, cwd=cwd, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def docs(text: str) -> list[Doc]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(path: Path) -> list[Doc]:
    """`kubectl kustomize PATH`, parsed."""
    return docs(run(kubectl(), "kustomize", str(path)).stdout)


def helm_template(*args: str, namespace: str = "coalmine-system") -> list[Doc]:
    """`helm template coalmine CHART -n NAMESPACE ARGS`, parsed."""
    out = run(helm(), "template", "coalmine", str(CHART), "--namespace", namespace, *args)
    return docs(out.stdout)


def by_kind(objects: list[Doc], kind: str) -> list[Doc]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Doc], kind: str) -> Doc:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def worker_deployment(objects: list[Doc]) -> Doc:
    """The worker's Deployment (the one running `coalmine worker`; the chart also has the
    controller's)."""
    found = [
        d
        for d in by_kind(objects, "Deployment")
        if d["spec"]["template"]["spec"]["containers"][0].get("args", [])[:1] == ["worker"]
    ]
    assert len(found) == 1, f"expected one worker Deployment, found {len(found)}"
    return found[0]


def container(objects: list[Doc]) -> Doc:
    """The worker container of the worker's Deployment."""
    (worker,) = worker_deployment(objects)["spec"]["template"]["spec"]["containers"]
    return worker


def env(objects: list[Doc]) -> dict[str, Doc]:
    """The worker's environment, by variable name."""
    return {e["name"]: e for e in container(objects)["env"]}


def normalized_rules(role: Doc) -> set[tuple[str, str, str]]:
    """A Role's or ClusterRole's rules as (group, resource, verb) triples."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
