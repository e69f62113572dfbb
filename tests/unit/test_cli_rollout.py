"""``coalmine rollout`` argument handling: bad input exits 2 naming the field, before any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "podinfo-canary-v1alpha3.yaml"
CANARY = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1s
    threshold: 2
    maxWeight: 50
    stepWeight: 25
"""
UNREACHABLE = ["rollout", "--address", "127.0.0.1:1"]


@pytest.fixture
def canary_file(tmp_path: Path) -> Path:
    path = tmp_path / "canary.yaml"
    path.write_text(CANARY)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_bad_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CANARY.replace("stepWeight: 25", "stepWeight: 80"))
    code, output = invoke(*UNREACHABLE, "start", "-f", str(bad))
    # Exit 2, not 3: the spec is refused before Temporal is even contacted.
    assert code == 2, output
    assert "stepWeight" in output


def test_unknown_field_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CANARY.replace("threshold: 2", "treshold: 2"))
    code, output = invoke(*UNREACHABLE, "start", "-f", str(bad))
    assert code == 2, output
    assert "treshold" in output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, output = invoke(*UNREACHABLE, "start", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2, output
    assert "nope.yaml" in output


def test_bad_image_flag_exits_2(canary_file: Path) -> None:
    code, output = invoke(*UNREACHABLE, "start", "-f", str(canary_file), "--image", "podinfo")
    assert code == 2, output
    assert "CONTAINER=IMAGE" in output


def test_unreachable_temporal_exits_3(canary_file: Path) -> None:
    code, output = invoke(*UNREACHABLE, "start", "-f", str(canary_file))
    assert code == 3, output
    assert "cannot reach Temporal at 127.0.0.1:1" in output


def test_the_article_canary_passes_validation() -> None:
    code, output = invoke(*UNREACHABLE, "start", "-f", str(EXAMPLE))
    assert code == 3, output  # valid: it got as far as connecting


@pytest.mark.parametrize(
    "command",
    [
        ["status", "podinfo", "-n", "test"],
        ["watch", "podinfo", "-n", "test"],
        ["list"],
        ["promote", "podinfo", "-n", "test"],
        ["abort", "podinfo", "-n", "test", "--reason", "bad"],
        ["pause", "podinfo", "-n", "test"],
        ["resume", "podinfo", "-n", "test"],
        ["retry", "podinfo", "-n", "test"],
    ],
)
def test_every_command_exits_3_when_temporal_is_unreachable(command: list[str]) -> None:
    code, output = invoke(*UNREACHABLE, *command)
    assert code == 3, output


def test_abort_requires_a_reason() -> None:
    code, output = invoke(*UNREACHABLE, "abort", "podinfo", "-n", "test")
    assert code == 2, output
    assert "--reason" in output


def test_bad_phase_filter_is_refused() -> None:
    code, output = invoke(*UNREACHABLE, "list", "--phase", "Exploded")
    assert code == 2, output


def test_certificate_without_key_exits_2(tmp_path: Path) -> None:
    code, output = invoke("rollout", "--tls-cert", str(tmp_path / "c.pem"), "list")
    assert code == 2, output
    assert "TEMPORAL_TLS_KEY" in output


def test_help_lists_the_commands() -> None:
    code, output = invoke("rollout", "--help")
    assert code == 0, output
    for command in ("start", "status", "watch", "list", "promote", "abort", "pause", "resume"):
        assert command in output
