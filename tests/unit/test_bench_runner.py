"""``make bench`` rewrites only its figures block of BENCHMARKS.md: the text around it stays."""

from __future__ import annotations

import importlib.util

from bench.__main__ import BENCHMARKS, FIGURES_END, FIGURES_START, ROOT, split_report


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


def test_every_benchmark_names_a_module_that_exists_and_a_row_of_its_own() -> None:
    names = [bench.name for bench in BENCHMARKS]
    assert len(names) == len(set(names))
    for bench in BENCHMARKS:
        module = bench.argv[2]
        assert module.startswith("bench.")
        assert importlib.util.find_spec(module) is not None, module
    slow = next(b for b in BENCHMARKS if b.name == "abort_during_slow_query")
    assert slow.argv[2:] == ["bench.abort_latency", "--runs", "10", "--aim", "checks",
                             "--slow-query", "5"]  # fmt: skip
