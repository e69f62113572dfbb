"""``make bench`` rewrites only its figures block of BENCHMARKS.md: the text around it stays."""

from __future__ import annotations

from bench.__main__ import FIGURES_END, FIGURES_START, ROOT, split_report


def test_the_text_before_and_after_the_figures_block_is_kept() -> None:
    text = f"# B\n\nintro\n{FIGURES_START}\nold table\n{FIGURES_END}\n## Controller\nkept\n"
    intro, outro = split_report(text)
    assert intro == "# B\n\nintro\n"
    assert outro == "\n## Controller\nkept\n"
    assert "old table" not in intro + outro


def test_a_report_without_the_block_is_all_intro() -> None:
    assert split_report("# B\n\nhand-written\n") == ("# B\n\nhand-written\n", "")
    assert split_report("") == ("# Benchmarks\n\n", "")


def test_the_checked_in_report_keeps_its_sections_after_the_block() -> None:

    _, outro = split_report((ROOT / "BENCHMARKS.md").read_text())
    assert "## Controller: detection latency" in outro
