"""Bad input through ``coalmine rollout start -f``: every document of tests/data/bad-canaries/
against a running sandbox and Temporal, in-process (typer's CliRunner) for speed.

Each must exit 2 with a message naming the field path of the file's ``# expect:`` header (or
the text of its ``# expect-message:``), and nothing in the cluster may change: the audit log
shows no write request from the CLI (the cluster admin) or the worker during the whole run,
although every command asks to set an image on an existing target (``--image``), which a wrongly
accepted document would do first. (The cluster's own components, all ``system:`` users, keep
writing meanwhile: leases, status, events.)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from typer.testing import CliRunner

from tests.conftest import WORKER_USER, WRITE_VERBS
from tests.faults.conftest import (
    COALMINE,
    IMAGE,
    FaultStack,
    canary_doc,
    canary_yaml,
    make_app,
)
from worker.cli import app as cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad-canaries"
FILES = sorted(CORPUS.glob("*.yaml"))
_HEADER = re.compile(r"^# (expect|expect-message): (.+)$", re.MULTILINE)


def _write_count(stack: FaultStack) -> int:
    """Write requests by the CLI (the admin), the worker, or answered by a fault rule ("")."""
    return sum(
        1
        for e in stack.api_proxy.audit()
        if e["verb"] in WRITE_VERBS
        and (e["user"] == WORKER_USER or not e["user"].startswith("system:"))
    )


@pytest.fixture
def target_in_namespace_test(admin_client: Any) -> Iterator[None]:
    """The corpus names podinfo in namespace test: make it exist, so an accepted document
    would reach the image patch and the rollout (and remove it afterwards if made here: the
    cluster is the session's)."""
    container = {"name": "podinfod", "image": f"{IMAGE}:6.5.0"}
    body = {
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [container]},
            },
        },
    }
    apps = k8s.AppsV1Api(admin_client)
    made = not apps.list_namespaced_deployment("test", field_selector="metadata.name=podinfo").items
    if made:
        apps.create_namespaced_deployment("test", body)
    yield
    if made:
        apps.delete_namespaced_deployment("podinfo", "test")


def _start(stack: FaultStack, path: Path) -> Any:
    return CliRunner().invoke(
        cli,
        ["rollout", "start", "-f", str(path), "--image", f"podinfod={IMAGE}:9.9.9"],
        env=stack.env,
    )


@pytest.mark.usefixtures("target_in_namespace_test")
def test_every_bad_canary_exits_2_naming_the_field_and_writes_nothing(
    stack: FaultStack, admin_client: Any
) -> None:
    assert len(FILES) >= 50
    writes_before = _write_count(stack)
    wrong: list[str] = []
    for path in FILES:
        found = _HEADER.search(path.read_text())
        assert found, f"{path.name} has no expectation header"
        expected = found.group(2).strip()
        result = _start(stack, path)
        output = result.output
        if result.exit_code != 2 or expected not in output:
            wrong.append(f"{path.name}: exit {result.exit_code}, expected {expected!r}:\n{output}")
    assert not wrong, "\n".join(wrong)
    assert _write_count(stack) == writes_before  # nothing changed in the cluster
    assert (
        k8s.AppsV1Api(admin_client)
        .read_namespaced_deployment("podinfo", "test")
        .spec.template.spec.containers[0]
        .image
        == f"{IMAGE}:6.5.0"
    )


@pytest.mark.parametrize(
    "name",
    ["invalid-yaml-unclosed-quote.yaml", "max-weight-over-100.yaml"],
)
def test_a_sample_as_processes_exits_2_on_stderr(stack: FaultStack, name: str) -> None:
    """The same through the installed ``coalmine`` command, as CI runs it."""
    path = CORPUS / name
    found = _HEADER.search(path.read_text())
    assert found
    writes_before = _write_count(stack)
    proc = subprocess.run(
        [COALMINE, "rollout", "start", "-f", str(path), "--image", f"podinfod={IMAGE}:9.9.9"],
        env=stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert found.group(2).strip() in proc.stderr
    assert _write_count(stack) == writes_before


def test_a_missing_target_exits_2_naming_it_and_writes_nothing(
    stack: FaultStack, admin_client: Any, tmp_path: Path
) -> None:
    app = make_app(admin_client, prefix="missing")
    doc = canary_doc(app.namespace)
    doc["spec"]["targetRef"]["name"] = "nothere"
    path = tmp_path / "canary.yaml"
    path.write_text(canary_yaml(doc))
    writes_before = _write_count(stack)
    result = _start(stack, path)
    assert result.exit_code == 2, result.output
    assert f"{app.namespace}/nothere not found" in result.output
    assert "spec.targetRef.name" in result.output
    assert _write_count(stack) == writes_before
