"""checkov over what a user applies: each kustomization rendered and the chart rendered with
its defaults, with Temporal credentials, and namespaced. A failing check must be one that
deploy/README.md justifies (its "Security scan" table, read here: the one list), for the
workloads it names; a justification no scan needs any more fails too, so the table stays true.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy._support import CHART, DEPLOY, MANIFESTS, checkov, helm, kubectl, run

README = DEPLOY / "README.md"
MARKER = "<!-- checkov-justified"

Finding = tuple[str, str]
"""(check id, workload: ``worker`` or ``controller``; ``-`` for an object of neither)."""


def justified() -> dict[str, set[str]]:
    """Check id → the workloads the README's table leaves it failing for."""
    text = README.read_text()
    assert MARKER in text, "deploy/README.md lost its checkov table"
    table = text.split(MARKER, 1)[1].split("\n\n", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        found = re.match(r"`(CKV2?_K8S_\d+)`", cells[0]) if cells else None
        if found:
            assert len(cells) == 3, f"a row is check | workloads | why: {line}"
            assert cells[2], f"a justification needs its reason: {line}"
            rows[found.group(1)] = {w.strip() for w in cells[1].split(",")}
    assert rows, "the checkov table has no rows"
    return rows


def _render(tmp: Path) -> Path:
    out = tmp / "rendered"
    out.mkdir()
    for name in ("", "controller", "namespaced", "monitoring"):
        text = run(kubectl(), "kustomize", str(MANIFESTS / name)).stdout
        (out / f"manifests-{name or 'root'}.yaml").write_text(text)
    # The temporal-tls component, as a user's overlay adds it (kustomize wants relative paths).
    run("cp", "-r", str(MANIFESTS), str(tmp / "manifests"))
    (tmp / "mine").mkdir()
    (tmp / "mine" / "kustomization.yaml").write_text(
        "resources: [../manifests]\ncomponents: [../manifests/temporal-tls]\n"
    )
    tls = run(kubectl(), "kustomize", str(tmp / "mine")).stdout
    (out / "manifests-temporal-tls.yaml").write_text(tls)
    for name, values in (
        ("defaults", []),
        (
            "credentials",
            [
                "--set", "temporal.apiKey.existingSecret=temporal-key",
                "--set", "temporal.tls.existingSecret=temporal-certs",
            ],
        ),
        ("namespaced", ["--set", "rbac.namespaced=true"]),
    ):  # fmt: skip
        text = run(helm(), "template", "coalmine", str(CHART), "-n", "coalmine-system", *values)
        (out / f"chart-{name}.yaml").write_text(text.stdout)
    return out


def _workload(resource: str) -> str:
    # "Deployment.coalmine-system.coalmine-worker", "Pod.<ns>.<name>.<labels…>"
    parts = resource.split(".")
    name = parts[2] if len(parts) > 2 else resource
    for workload in ("controller", "worker"):
        if name.endswith(f"-{workload}") or name == workload:
            return workload
    return "-"


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    binary = checkov()
    rendered = _render(tmp_path_factory.mktemp("checkov"))
    result = subprocess.run(
        [binary, "-d", str(rendered), "--framework", "kubernetes", "--skip-download",
         "--compact", "--output", "json"],
        capture_output=True, text=True, check=False, timeout=110,
    )  # fmt: skip
    # Exit code 1 means "checks failed", which the tests judge; anything else is a crash.
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict), report
    return report


def findings(report: dict[str, Any]) -> dict[Finding, set[str]]:
    """(check, workload) → the rendered files it fails in."""
    found: dict[Finding, set[str]] = {}
    for check in report["results"]["failed_checks"]:
        key = (check["check_id"], _workload(check["resource"]))
        found.setdefault(key, set()).add(Path(check["file_path"]).name)
    return found


def test_every_rendering_was_scanned_and_parsed(scan):
    summary = scan["summary"]
    assert summary["parsing_errors"] == 0
    files = {Path(c["file_path"]).name for c in scan["results"]["passed_checks"]}
    assert len(files) == 8, files
    assert summary["resource_count"] >= 50


def test_only_justified_checks_fail(scan):
    allowed = justified()
    unjustified = {
        f"{check} ({workload}) in {sorted(files)}"
        for (check, workload), files in findings(scan).items()
        if workload not in allowed.get(check, set())
    }
    assert not unjustified, (
        "checkov finds failures deploy/README.md does not justify (fix them, or add a row to "
        f"its Security scan table saying why they stay): {sorted(unjustified)}"
    )


def test_every_justification_is_still_needed(scan):
    failing = set(findings(scan))
    stale = {
        f"{check} ({workload})"
        for check, workloads in justified().items()
        for workload in workloads
        if (check, workload) not in failing
    }
    assert not stale, f"deploy/README.md justifies checks that pass now; drop them: {stale}"


def test_the_fixed_findings_stay_fixed(scan):
    # What the scan found before this table existed: a NetworkPolicy for each pod, no
    # credentials in the environment, nothing in the default namespace.
    fixed = {"CKV2_K8S_6", "CKV_K8S_35", "CKV_K8S_21", "CKV_K8S_14", "CKV_K8S_11"}
    assert not {check for check, _ in findings(scan)} & fixed
    passed = {c["check_id"] for c in scan["results"]["passed_checks"]}
    assert {"CKV2_K8S_6", "CKV_K8S_35", "CKV_K8S_21"} <= passed
