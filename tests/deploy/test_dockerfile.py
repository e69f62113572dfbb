"""The worker image recipe. No Docker engine exists here, so the image is not built; instead the
tests check that the Dockerfile agrees with the project (Python version, console script, user,
port) and that the build context left by .dockerignore holds what `pip install .` needs: a wheel
is built from exactly that context."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.deploy._support import CHART, DEPLOY, MANIFESTS, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def values(instruction: str) -> list[str]:
    return [args for name, args in instructions() if name == instruction]


def test_base_image_python_satisfies_requires_python():
    (default,) = [a.split("=", 1)[1] for a in values("ARG") if a.startswith("PYTHON_IMAGE=")]
    assert default == "python:3.11-slim"
    assert values("FROM") == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    version = Version(default.split(":")[1].split("-")[0])
    assert version in SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{version.major}{version.minor}"


def test_entrypoint_is_the_console_script_and_cmd_the_worker_command():
    (entrypoint,) = values("ENTRYPOINT")
    (cmd,) = values("CMD")
    assert json.loads(entrypoint) == ["coalmine"]
    assert json.loads(cmd) == ["worker"]
    assert "coalmine" in PYPROJECT["project"]["scripts"]


def test_cmd_names_a_command_of_the_cli():
    import typer.main

    from worker.cli import app

    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    assert "worker" in commands


def test_runs_as_the_non_root_user_the_manifests_and_chart_expect():
    (user,) = values("USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0
    deployment = yaml.safe_load((MANIFESTS / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]
    for context in (pod, chart):
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)


def test_exposes_the_metrics_port_the_manifests_use():
    assert values("EXPOSE") == ["9090"]
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["metrics"]["port"] == 9090
    (env,) = values("ENV")[1:]
    assert "COALMINE_METRICS_PORT=9090" in env.split()


def test_copied_sources_exist_and_are_the_packages_pyproject_installs():
    sources = {
        source.rstrip("/")
        for args in values("COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    }
    for source in sources:
        assert (REPO / source).exists(), source
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in include} <= sources
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= sources


# --- .dockerignore ---------------------------------------------------------------------------


def _ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule for one path: the last matching pattern wins, `!` re-includes, and a pattern
    that matches a folder excludes everything below it."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negate
    return result


def _regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match syntax plus Docker's `**` (any number of folders)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            close = pattern.index("]", i)
            out, i = out + pattern[i : close + 1].replace("[!", "[^"), close + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def test_dockerignore_matcher_follows_docker_rules():
    patterns = ["**/__pycache__", "**/*.py[cod]", ".venv", "tests", "!tests/keep.py"]
    assert ignored(".venv/bin/python", patterns)
    assert ignored("worker/__pycache__/cli.cpython-311.pyc", patterns)
    assert ignored("__pycache__/x.pyc", patterns)
    assert ignored("tests/unit/test_x.py", patterns)
    assert not ignored("tests/keep.py", patterns)
    assert not ignored("worker/cli.py", patterns)
    assert ignored("worker/cli.pyc", patterns)
    assert not ignored("venv/x", patterns)


def build_context(dest: Path) -> list[str]:
    """Copy the repository's files as `docker build .` would send them; return their paths."""
    patterns = _ignore_patterns()
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    kept = [path for path in tracked if not ignored(path, patterns)]
    for path in kept:
        source = REPO / path
        if source.is_file():
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return kept


def test_dockerignore_keeps_build_inputs_and_drops_the_rest(tmp_path):
    kept = build_context(tmp_path)
    assert "pyproject.toml" in kept
    assert "README.md" in kept
    assert "worker/cli.py" in kept
    assert not [p for p in kept if p.split("/")[0] in {".venv", ".git", ".tools", "tests", "local"}]
    assert not [p for p in kept if p.startswith("deploy/")]


@pytest.mark.slow  # builds in an isolated environment: the build backend comes from the index
def test_the_build_context_builds_a_wheel_with_the_console_script(tmp_path):
    context = tmp_path / "context"
    build_context(context)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("coalmine-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "coalmine = worker.cli:main" in text
    for package in ("workflows", "activities", "worker"):
        assert f"{package}/__init__.py" in names
    # The image is the product only: the local stack (control plane launcher, simulated mesh,
    # demo) is the separate coalmine-local distribution and no module of it may ship.
    assert not [n for n in names if n.startswith("sandbox/")]
    assert "coalmine.cli" not in text
