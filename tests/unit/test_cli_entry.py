from typer.testing import CliRunner

from worker.cli import app


def test_top_level_help_lists_command_groups() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for group in ("rollout", "sandbox", "temporal"):
        assert group in result.output
