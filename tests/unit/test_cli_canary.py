"""``coalmine canary validate`` and the namespace of a Canary that names none (issue 12, 15 and 18).

No cluster and no Temporal: validation reads files (or standard input) and a kubeconfig, never a
server. ``rollout start`` shares the reading, so its namespace rules are checked here too, on the
path that ends before Temporal is contacted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.canary_files import Placement
from worker.cli import app
from worker.settings import KubernetesSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

CANARY = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 30s
    maxWeight: 50
    stepWeight: 10
"""
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: podinfo}\n"

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: staging
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: staging
  context: {cluster: c, user: u, namespace: staging}
- name: qa
  context: {cluster: c, user: u, namespace: qa}
- name: bare
  context: {cluster: c, user: u}
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


@pytest.fixture
def no_kubeconfig(tmp_path: Path) -> Path:
    return tmp_path / "missing-kubeconfig"


def invoke(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin, env=env)
    return result.exit_code, result.output


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- 18. canary validate --------------------------------------------------------------------


def test_valid_files_exit_0(no_kubeconfig: Path) -> None:
    code, output = invoke(
        "canary",
        "validate",
        "--kubeconfig",
        str(no_kubeconfig),
        "-f",
        str(EXAMPLES / "podinfo-canary.yaml"),
        "-f",
        str(EXAMPLES / "podinfo-canary-v1alpha3.yaml"),
    )
    assert code == 0, output
    assert f"ok    {EXAMPLES / 'podinfo-canary.yaml'}: Canary test/podinfo" in output
    assert output.splitlines()[-1] == "2 valid, 0 invalid"


def test_every_error_names_file_document_field_and_fix(tmp_path: Path, no_kubeconfig: Path) -> None:
    bad = CANARY.replace("stepWeight: 10", "stepWeight: 60").replace("port: 9898", "port: 0")
    path = write(tmp_path, "two.yaml", f"{DEPLOYMENT}---\n{CANARY}---\n{bad}")
    good = write(tmp_path, "good.yaml", CANARY)
    code, output = invoke(
        "canary", "validate", "--kubeconfig", str(no_kubeconfig), "-f", str(good), "-f", str(path)
    )
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error")]
    assert errors == [
        f"error {path} (document 3): spec.service.port: must be greater than or equal to 1, got 0",
        f"error {path} (document 3): spec.analysis.stepWeight: stepWeight (60) is greater than "
        "maxWeight (50): lower stepWeight or raise maxWeight",
    ]
    assert f"ok    {path} (document 2): Canary default/podinfo" in output
    assert f"ok    {good}: Canary default/podinfo" in output
    assert output.splitlines()[-1] == "2 valid, 1 invalid (2 errors)"


def test_directories_and_stdin(tmp_path: Path, no_kubeconfig: Path) -> None:
    write(tmp_path, "deploy/canary.yaml", CANARY)
    write(tmp_path, "deploy/deployment.yaml", DEPLOYMENT)  # another kind: skipped
    write(
        tmp_path, "deploy/nested/other.yml", CANARY.replace("name: podinfo\n", "name: other\n", 1)
    )
    write(tmp_path, "deploy/README.md", "not yaml: [")
    flat = [
        "canary",
        "validate",
        "--kubeconfig",
        str(no_kubeconfig),
        "-f",
        str(tmp_path / "deploy"),
    ]
    code, output = invoke(*flat)
    assert code == 0, output
    assert "Canary default/podinfo" in output
    assert "other" not in output
    code, output = invoke(*flat, "--recursive")
    assert "Canary default/other" in output
    code, output = invoke(
        "canary",
        "validate",
        "--kubeconfig",
        str(no_kubeconfig),
        "-f",
        "-",
        stdin=CANARY.replace("interval: 30s", "interval: 30sec"),
    )
    assert code == 2, output
    assert "error <stdin>: spec.analysis.interval: invalid duration '30sec'" in output


def test_a_named_file_without_canary_and_unreadable_yaml_are_errors(
    tmp_path: Path, no_kubeconfig: Path
) -> None:
    deployment = write(tmp_path, "deployment.yaml", DEPLOYMENT)
    broken = write(tmp_path, "broken.yaml", "kind: Canary\nspec: [1, 2\n")
    code, output = invoke(
        "canary",
        "validate",
        "--kubeconfig",
        str(no_kubeconfig),
        "-f",
        str(deployment),
        "-f",
        str(broken),
    )
    assert code == 2, output
    assert f"error {deployment}: no Canary in it (kinds found: Deployment)" in output
    assert f"error {broken}: invalid YAML at line" in output
    code, output = invoke("canary", "validate", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2, output
    assert "nope.yaml: no such file or directory" in output


def test_json_output_for_machines(tmp_path: Path, no_kubeconfig: Path) -> None:
    path = write(tmp_path, "c.yaml", CANARY.replace("stepWeight: 10", "stepWeight: 60"))
    code, output = invoke(
        "canary", "validate", "--kubeconfig", str(no_kubeconfig), "-f", str(path), "-o", "json"
    )
    assert code == 2, output
    report = json.loads(output)
    assert report["valid"] is False
    (result,) = report["results"]
    assert (result["file"], result["document"], result["valid"]) == (str(path), 1, False)
    assert result["errors"][0]["path"] == "spec.analysis.stepWeight"


def test_notes_say_what_flagger_reads_differently(tmp_path: Path, no_kubeconfig: Path) -> None:
    fast = write(tmp_path, "fast.yaml", CANARY.replace("interval: 30s", "interval: 3s"))
    args = ["canary", "validate", "--kubeconfig", str(no_kubeconfig), "-f", str(fast)]
    code, output = invoke(*args)
    assert code == 0, output  # a note is not an error
    assert f"note  {fast}: spec.analysis.interval: 3s is under the 10s minimum" in output
    code, output = invoke(*args, env={"COALMINE_MIN_ANALYSIS_INTERVAL": "1s"})
    assert code == 0, output
    assert not [line for line in output.splitlines() if line.startswith("note")]
    code, output = invoke(*args, env={"COALMINE_MIN_ANALYSIS_INTERVAL": "fast"})
    assert code == 2, output
    assert "COALMINE_MIN_ANALYSIS_INTERVAL" in output


def test_the_installed_command_is_a_ci_lint_step(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", CANARY.replace("kind: Deployment", "kind: StatefulSet"))

    def lint(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "worker.cli", "canary", "validate", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert lint("-f", str(EXAMPLES)).returncode == 0
    failed = lint("-f", str(bad), "-f", str(EXAMPLES))
    assert failed.returncode == 2
    assert "spec.targetRef.kind: kind 'StatefulSet' cannot be a canary target" in failed.stdout
    # The examples name namespace test: -n ci is refused for them, as kubectl would refuse it.
    conflict = lint("-n", "ci", "-f", str(EXAMPLES))
    assert conflict.returncode == 2
    assert "does not match -n 'ci'" in conflict.stdout


# --- 15. the namespace of a Canary without one ----------------------------------------------


@pytest.mark.parametrize(
    ("flags", "namespace"),
    [
        ([], "staging"),  # the kubeconfig's current context
        (["--context", "qa"], "qa"),  # the chosen context
        (["--context", "bare"], "default"),  # a context without namespace
        (["-n", "prod"], "prod"),  # the flag wins
    ],
)
def test_a_canary_without_namespace_goes_where_kubectl_would_put_it(
    tmp_path: Path, kubeconfig: Path, flags: list[str], namespace: str
) -> None:
    path = write(tmp_path, "c.yaml", CANARY)
    code, output = invoke(
        "canary", "validate", "--kubeconfig", str(kubeconfig), "-f", str(path), *flags
    )
    assert code == 0, output
    assert f"Canary {namespace}/podinfo" in output


def test_without_kubeconfig_the_namespace_is_default(no_kubeconfig: Path) -> None:
    settings = KubernetesSettings(kubeconfig=no_kubeconfig)
    assert Placement.resolve(None, settings).fallback == "default"


def test_a_document_naming_its_namespace_keeps_it(tmp_path: Path, kubeconfig: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        CANARY.replace("name: podinfo\n", "name: podinfo\n  namespace: test\n", 1),
    )
    code, output = invoke("canary", "validate", "--kubeconfig", str(kubeconfig), "-f", str(path))
    assert (code, "Canary test/podinfo" in output) == (0, True), output


def test_rollout_start_takes_the_namespace_the_same_way(tmp_path: Path, kubeconfig: Path) -> None:
    placed = Placement.resolve(None, KubernetesSettings(kubeconfig=kubeconfig, context="qa"))
    assert placed.read(CANARY).canary.namespace == "qa"
    named = write(
        tmp_path,
        "named.yaml",
        CANARY.replace("name: podinfo\n", "name: podinfo\n  namespace: test\n", 1),
    )
    unreachable = ["rollout", "--address", "127.0.0.1:1", "start", "--kubeconfig", str(kubeconfig)]
    # A conflict is bad input, refused before Temporal is contacted (exit 2, not 3).
    code, output = invoke(*unreachable, "-f", str(named), "-n", "prod")
    assert code == 2, output
    assert "metadata.namespace" in output
    assert "does not match -n 'prod'" in output
    code, output = invoke(*unreachable, "-f", str(named), "-n", "test")
    assert code == 3, output  # valid: it got as far as connecting
