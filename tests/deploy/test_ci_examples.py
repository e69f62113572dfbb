"""The ready-to-copy CI pipelines: valid YAML of each system's shape, and every command they run
(the `coalmine` line, and the commented `temporal` alternative) parses against the real command's
options; the documented workflow input and ID are the workflow's own."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.deploy._support import DEPLOY, REPO
from workflows.model import DEFAULT_TASK_QUEUE, WORKFLOW_NAME, RolloutInput, workflow_id

CI = DEPLOY / "ci"
GITHUB = CI / "github-actions.yml"
GITLAB = CI / "gitlab-ci.yml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def shell_lines(script: str) -> list[str]:
    """Commands of a shell script, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines() if line.strip()]


def commented_block(path: Path, start: str) -> str:
    """The commented-out YAML after the line holding ``start``, uncommented."""
    lines = path.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if start in line)
    block = []
    for line in lines[begin + 1 :]:
        if not line.lstrip().startswith("#"):
            break
        block.append(line.lstrip()[1:])
    return textwrap.dedent("\n".join(block))


def github() -> dict[str, Any]:
    return yaml.safe_load(GITHUB.read_text())


def gitlab() -> dict[str, Any]:
    return yaml.safe_load(GITLAB.read_text())


def github_scripts() -> list[str]:
    (job,) = github()["jobs"].values()
    return [step["run"] for step in job["steps"] if "run" in step]


def gitlab_scripts() -> list[str]:
    job = gitlab()["canary"]
    return [*job["before_script"], *job["script"]]


def alternative_scripts() -> list[str]:
    """The scripts of the commented-out `temporal` alternative, in each pipeline."""
    marker = "from the environment too."
    (step,) = yaml.safe_load(commented_block(GITHUB, marker))
    job = yaml.safe_load(commented_block(GITLAB, marker))
    return [step["run"], "\n".join(job["script"])]


# --- shape -----------------------------------------------------------------------------------


def test_github_workflow_shape():
    workflow = github()
    assert workflow[True if True in workflow else "on"]  # YAML 1.1 reads `on` as true
    (job,) = workflow["jobs"].values()
    assert job["runs-on"]
    for step in job["steps"]:
        assert ("uses" in step) != ("run" in step), step
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    version = python["with"]["python-version"]
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(f"{version}.0")
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"):
        assert job["env"][name] == f"${{{{ secrets.{name} }}}}"


def test_gitlab_pipeline_shape():
    pipeline = gitlab()
    job = pipeline["canary"]
    assert job["stage"] in pipeline["stages"]
    assert job["image"] == "python:3.11-slim"
    assert job["variables"]["TEMPORAL_TASK_QUEUE"] == DEFAULT_TASK_QUEUE
    assert job["script"]


@pytest.mark.parametrize("scripts", [github_scripts, gitlab_scripts])
def test_pipelines_install_this_project(scripts):
    installs = [
        line for s in scripts() for line in shell_lines(s) if line.startswith("pip install")
    ]
    (install,) = installs
    (requirement,) = shlex.split(install)[2:]
    assert Requirement(requirement).name == PYPROJECT["project"]["name"]
    assert "coalmine" in PYPROJECT["project"]["scripts"]


# --- the coalmine command --------------------------------------------------------------------


def parse_coalmine(argv: list[str]) -> Any:
    """Resolve ``coalmine <group> <command> ...`` in the real CLI and parse its options (no run)."""
    from worker.cli import app

    command: Any = typer.main.get_command(app)
    words = list(argv[1:])
    while hasattr(command, "commands"):  # a group (typer may bring its own click)
        name = words.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"no command {name!r} in {command.name}"
        command = sub
    return command.make_context(command.name or "", words)


@pytest.fixture
def ci_environment(tmp_path, monkeypatch) -> dict[str, str]:
    """A working folder with canary.yaml and a kubeconfig, as the pipelines assume."""
    (tmp_path / "canary.yaml").write_text((CI / "rollout-input.example.json").read_text())
    kubeconfig = tmp_path / ".kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.chdir(tmp_path)
    return {"IMAGE": "registry.example.com/podinfo:1.4.1", "HOME": str(tmp_path),
            "KUBECONFIG": str(kubeconfig)}  # fmt: skip


@pytest.mark.parametrize("scripts", [github_scripts, gitlab_scripts])
def test_rollout_start_line_parses_against_the_real_command(scripts, ci_environment):
    lines = [line for s in scripts() for line in shell_lines(s) if line.startswith("coalmine ")]
    (line,) = lines
    expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: ci_environment[m.group(1)], line)
    argv = shlex.split(expanded)
    assert argv[:3] == ["coalmine", "rollout", "start"]
    ctx = parse_coalmine(argv)
    assert ctx.params["wait"] is True
    assert ctx.params["image"] == ["podinfod=registry.example.com/podinfo:1.4.1"]
    assert Path(ctx.params["file"]).name == "canary.yaml"


# --- the no-install alternative --------------------------------------------------------------


def temporal_help(*command: str) -> str:
    temporal = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "temporal"
    if not temporal.exists():
        temporal = REPO / ".venv" / "bin" / "temporal"
    out = subprocess.run(
        [str(temporal), *command, "--help"], capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout


def test_temporal_alternative_uses_the_workflows_names_and_real_flags():
    example = RolloutInput.model_validate_json((CI / "rollout-input.example.json").read_text())
    expected_id = workflow_id(
        cluster=example.cluster, namespace=example.canary.namespace, name=example.canary.name
    )
    help_text = temporal_help("workflow", "execute")
    for script in alternative_scripts():
        (line,) = [ln for ln in shell_lines(script) if ln.startswith("temporal ")]
        argv = shlex.split(line)
        assert argv[:3] == ["temporal", "workflow", "execute"]
        flags = dict(zip(argv[3::2], argv[4::2], strict=True))
        assert flags["--type"] == WORKFLOW_NAME
        assert flags["--task-queue"] == DEFAULT_TASK_QUEUE
        assert flags["--workflow-id"] == expected_id
        assert flags["--input-file"] == "input.json"
        for flag in flags:
            assert re.search(rf"\s{re.escape(flag)}\s", help_text), flag
        (set_image,) = [ln for ln in shell_lines(script) if ln.startswith("kubectl ")]
        assert f"-n {example.canary.namespace}" in set_image
        assert f"deployment/{example.canary.spec.target_ref.name}" in set_image


def test_example_input_is_the_workflow_input():
    raw = json.loads((CI / "rollout-input.example.json").read_text())
    assert set(raw) == {"canary", "cluster", "revision"}
    assert raw["revision"] is None
    RolloutInput.model_validate(raw)


def test_the_installed_console_script_documents_the_flags_used():
    coalmine = Path(sys.executable).parent / "coalmine"
    out = subprocess.run(
        [str(coalmine), "rollout", "start", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    ).stdout
    for scripts in (github_scripts, gitlab_scripts):
        (line,) = [ln for s in scripts() for ln in shell_lines(s) if ln.startswith("coalmine ")]
        for flag in re.findall(r"\s(--?[a-z][a-z-]*)", line):
            assert re.search(rf"{re.escape(flag)}\b", out), flag
