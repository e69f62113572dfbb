"""The report's two outputs from a recorded history: a self-contained HTML page and a PNG.

What is drawn is checked by looking at it (see the README's screenshots); these tests hold what
can fail silently: nothing fetched from elsewhere, free text escaped, a running rollout and a
missing Prometheus drawn rather than refused, and the PNG small and wide enough to read.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowHistory

from worker.report.facts import Report
from worker.report.html import render_html
from worker.report.model import Action, Judgement, Outcome, RolloutTimeline
from worker.report.png import render_png
from worker.report.series import Comparison, Comparisons
from worker.report.timeline import timeline_of

HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"
URL = (
    "http://127.0.0.1:8233/namespaces/default/workflows/canary%2Fdefault%2Ftest%2Fpodinfo/r/history"
)


def _timeline(name: str) -> RolloutTimeline:
    text = (HISTORIES / f"{name}.json").read_text()
    return timeline_of(WorkflowHistory.from_json("canary/default/test/podinfo", text))


def _comparisons(t: RolloutTimeline) -> Comparisons:
    assert t.ended is not None
    times = [t.started + (t.ended - t.started) * i / 20 for i in range(21)]
    return Comparisons(
        items=[
            Comparison(
                "request-duration",
                [(x, 300.0) for x in times],
                [(x, 40.0) for x in times],
                None,
                500.0,
                "ms",
            ),
        ],
        start=t.started - timedelta(seconds=10),
        end=t.ended + timedelta(seconds=10),
    )


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_png_of_a_rollback_is_small_and_wide_enough_to_read() -> None:
    t = _timeline("rolled_back")
    data = render_png(Report(t, _comparisons(t), URL), t.ended or t.started)
    width, height = _png_size(data)
    assert width >= 1200
    assert 600 < height < 2000
    assert len(data) < 300_000


def test_the_html_is_self_contained_and_says_why() -> None:
    t = _timeline("rolled_back")
    page = render_html(Report(t, _comparisons(t), URL), t.ended or t.started)
    assert "ROLLED BACK" in page
    assert "Rolling back podinfo.test failed checks threshold reached 3" in page
    assert "decided by: request-success-rate: success rate 69.17% &lt; 99%" in page
    assert page.count("<svg") == 4  # traffic, two checks, one comparison
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"\bsrc=", page)
    external = set(re.findall(r"https?://[^\"'<> ]+", page)) - {URL}
    assert all("w3.org" in url for url in external), external  # SVG namespaces only
    assert "coalmine rollout report podinfo -n test" in page


def test_free_text_is_escaped() -> None:
    t = _timeline("operated")
    action = Action(t.started, "abort", "mallory", "<script>alert(1)</script>")
    page = render_html(Report(dataclasses.replace(t, actions=(action,))), t.started)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_running_rollout_without_prometheus_is_drawn() -> None:
    t = dataclasses.replace(_timeline("operated"), ended=None, outcome=Outcome.RUNNING, message="")
    now = t.started + timedelta(minutes=2)
    notes = Comparisons(notes=["no Prometheus address (set PROMETHEUS_URL or --prometheus-url)"])
    page = render_html(Report(t, notes, URL), now)
    assert "RUNNING" in page
    assert "still running" in page
    assert "no Prometheus address" in page
    width, _ = _png_size(render_png(Report(t, notes, URL), now))
    assert width >= 1200


def test_the_judges_numbers_are_shown_per_step() -> None:
    t = _timeline("rolled_back")
    judged = Judgement(
        "High",
        p_value=0.0004,
        shift=252.5,
        ci_low=230,
        ci_high=270,
        canary_n=40,
        primary_n=40,
        canary_median=295,
        primary_median=42,
    )
    checks = tuple(
        dataclasses.replace(c, judgement=judged) if c.name == "request-duration" else c
        for c in t.checks
    )
    page = render_html(Report(dataclasses.replace(t, checks=checks)), t.ended or t.started)
    assert "canary vs primary" in page
    assert "High · shift +252.5 [230, 270] · p=0.0004 · median 295 vs 42 · n=40/40" in page
