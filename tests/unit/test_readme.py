"""The README cannot rot: every command it shows must exist with the flags it uses, and every file
it links to must be in the repository.

`coalmine` lines are resolved against the real command tree, `make` lines against the Makefile,
`temporal` lines against the pinned CLI's own help. (The demo runs the rest for real.)
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
TEMPORAL = str(Path(sys.executable).parent / "temporal")


def _shell_blocks() -> list[str]:
    """The text of every ``sh``/``bash`` fenced block (other languages and plain output skipped)."""
    blocks: list[str] = []
    language: str | None = None
    lines: list[str] = []
    for line in README.splitlines():
        if line.startswith("```"):
            if language is None:
                language = line[3:].strip()
                lines = []
            else:
                if language in ("sh", "bash"):
                    blocks.append("\n".join(lines))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def _commands() -> list[list[str]]:
    """Every shell command in the README's shell blocks, as argument lists."""
    commands: list[list[str]] = []
    for block in _shell_blocks():
        for raw in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", raw).strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\s*(?:;|&&)\s*", line):
                if part:
                    commands.append(shlex.split(part))
    return commands


COMMANDS = _commands()


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _command_path(args: list[str]) -> list[str]:
    """The sub-command words of ``args`` (``rollout status`` of ``rollout status podinfo -n``)."""
    path: list[str] = []
    for token in args:
        if token.startswith("-") or not re.search(rf"^\W*{re.escape(token)}\s", _help(path), re.M):
            break
        path.append(token)
    return path


def test_the_readme_shows_commands() -> None:
    tools = {c[0] for c in COMMANDS}
    assert {"make", "coalmine", "temporal", "kubectl"} <= tools


@pytest.mark.parametrize(
    "args", [c for c in COMMANDS if c[0] == "coalmine"], ids=lambda c: " ".join(c)[:60]
)
def test_coalmine_commands_exist_with_their_flags(args: list[str]) -> None:
    path = _command_path(args[1:])
    text = _help(path)
    assert "Commands" not in text, f"{' '.join(args)}: {' '.join(path)} needs a sub-command"
    used = {a.split("=", 1)[0] for a in args if a.startswith("-")}
    unknown = {flag for flag in used if not re.search(rf"(^|[\s,]){re.escape(flag)}\b", text)}
    assert not unknown, f"{' '.join(args)}: unknown flags {unknown}"


def test_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    for args in (c for c in COMMANDS if c[0] == "make"):
        assert args[1] in targets, f"make {args[1]}: no such target"


@pytest.mark.parametrize(
    "args", [c for c in COMMANDS if c[0] == "temporal"], ids=lambda c: " ".join(c)[:60]
)
def test_temporal_commands_exist_with_their_flags(args: list[str]) -> None:
    words = [a for a in args[1:] if not a.startswith("-")][:2]
    result = subprocess.run(
        [TEMPORAL, *words, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    for flag in (a for a in args if a.startswith("--")):
        assert flag in result.stdout, f"temporal {' '.join(words)} has no {flag}"


def test_linked_files_exist() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to missing {target}"
