"""The report as one self-contained HTML page: inline SVG charts, inline CSS, nothing fetched.

It can be mailed, attached to a CI run or opened from disk years later. Every value from the
cluster or the history is escaped (Jinja2's autoescape): event messages and operator reasons are
free text.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from activities.analysis.alerts import report_command
from worker.report import charts
from worker.report.facts import Report, decisive_line, facts, stamp
from worker.report.model import CheckPoint, Outcome
from worker.report.series import window

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ t.display }} {{ t.outcome.value }} · rollout report</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#202124;margin:24px auto;
max-width:1100px;padding:0 16px}
h1{font-size:26px;margin:0;color:{{ colour }}} h2{font-size:17px;margin:28px 0 8px}
.banner{border-left:6px solid {{ colour }};padding:6px 14px;margin-bottom:12px}
.why{font-size:16px}.decided{font-size:16px;font-weight:600;color:{{ colour }}}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e8eaed;vertical-align:top}
th{background:#f8f9fa}.facts th{width:160px;background:none}
.bad{color:#d93025;font-weight:600}.ok{color:#1e8e3e}.muted{color:#5f6368}
.Warning td:nth-child(2){color:#d93025}
svg{width:100%;height:auto}
code{background:#f1f3f4;padding:1px 4px;border-radius:3px}
</style></head><body>
<div class="banner">
<h1>{{ t.display }} {{ t.outcome.value|upper }}</h1>
<div class="why">{{ why }}</div>
{% if decided %}<div class="decided">decided by: {{ decided }}</div>{% endif %}
</div>
<table class="facts">
{% for label, value in facts %}<tr><th>{{ label }}</th><td>{{ value }}</td></tr>{% endfor %}
{% if url %}<tr><th>Temporal Web UI</th><td><a href="{{ url }}">{{ url }}</a></td></tr>{% endif %}
<tr><th>this report</th><td><code>{{ command }}</code> (generated {{ generated }})</td></tr>
</table>
<h2>Traffic{% if t.iterative %} and iterations{% endif %}</h2>
{{ weights_svg }}
<h2>Metric checks, step by step</h2>
{% for svg in check_svgs %}{{ svg }}{% endfor %}
{% if not check_svgs %}<p class="muted">No metric was checked.</p>{% endif %}
<h2>Canary beside primary</h2>
{% for svg in comparison_svgs %}{{ svg }}{% endfor %}
{% for note in notes %}<p class="muted">{{ note }}</p>{% endfor %}
{% if checks %}<h2>Every check</h2>
<table><tr><th>step</th><th>time</th><th>weight</th><th>metric</th><th>value</th><th>range</th>
<th>result</th>{% if judged %}<th>canary vs primary</th>{% endif %}</tr>
{% for c in checks %}<tr><td>{{ c.step }}</td><td>{{ c.time.strftime("%H:%M:%S") }}</td>
<td>{{ c.weight }}%</td><td>{{ c.name }}</td><td>{{ num(c.value) }}</td>
<td>{{ bounds(c) }}</td>
<td class="{{ 'ok' if c.passed else 'bad' }}">{{ c.message or c.outcome }}</td>
{% if judged %}<td>{{ judgement(c) }}</td>{% endif %}</tr>{% endfor %}
</table>{% endif %}
{% if t.webhooks %}<h2>Webhooks</h2>
<table><tr><th>time</th><th>webhook</th><th>type</th><th>answer</th></tr>
{% for w in t.webhooks %}<tr><td>{{ w.time.strftime("%H:%M:%S") }}</td><td>{{ w.name }}</td>
<td>{{ w.type }}</td><td class="{{ 'ok' if w.ok else 'bad' }}">{{ 'ok' if w.ok else 'failed' }}
{{ w.message or w.status_code or '' }}</td></tr>{% endfor %}</table>{% endif %}
{% if t.actions %}<h2>Operator actions</h2>
<table><tr><th>time</th><th>action</th><th>who</th><th>why</th><th>via</th></tr>
{% for a in t.actions %}<tr><td>{{ stamp(a.time) }}</td><td>{{ a.action }}</td>
<td>{{ a.identity }}</td><td>{{ a.reason or '' }}</td><td>{{ a.via }}</td></tr>{% endfor %}
</table>{% endif %}
<h2>Events</h2>
<table><tr><th>time</th><th>type</th><th>reason</th><th>message</th></tr>
{% for e in t.events %}<tr class="{{ e.type }}"><td>{{ stamp(e.time) }}</td><td>{{ e.type }}</td>
<td>{{ e.reason }}</td><td>{{ e.message }}</td></tr>{% endfor %}</table>
</body></html>
"""

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _num(value: float | None) -> str:
    return "no data" if value is None else f"{value:g}"


def _bounds(check: CheckPoint) -> str:
    parts = [
        f"≥ {check.min:g}" if check.min is not None else "",
        f"≤ {check.max:g}" if check.max is not None else "",
    ]
    return " and ".join(p for p in parts if p) or "-"


def _judgement(check: CheckPoint) -> str:
    judged = check.judgement
    if judged is None:
        return ""
    words = [judged.verdict]
    if judged.shift is not None:
        interval = ""
        if judged.ci_low is not None and judged.ci_high is not None:
            interval = f" [{judged.ci_low:g}, {judged.ci_high:g}]"
        words.append(f"shift {judged.shift:+g}{interval}")
    if judged.p_value is not None:
        words.append(f"p={judged.p_value:.3g}")
    if judged.canary_median is not None and judged.primary_median is not None:
        words.append(f"median {judged.canary_median:g} vs {judged.primary_median:g}")
    if judged.canary_n is not None and judged.primary_n is not None:
        words.append(f"n={judged.canary_n}/{judged.primary_n}")
    if judged.reason:
        words.append(judged.reason)
    return " · ".join(words)


def render_html(report: Report, now: datetime) -> str:
    """The page, as a string."""
    t = report.timeline
    start, end = report.comparisons.start, report.comparisons.end
    if start is None or end is None:
        start, end = window(t, now)

    def timed(draw: Any) -> Any:
        def wrapped(ax: Any) -> None:
            draw(ax)
            ax.set_xlim(charts.x(start), charts.x(end))

        return wrapped

    weights = charts.svg_of(timed(partial(charts.draw_weights, timeline=t, now=now)), height=3.4)
    check_svgs = [
        Markup(charts.svg_of(timed(partial(charts.draw_checks, timeline=t, metric=m)), height=2.6))
        for m in t.metric_names()
    ]
    comparison_svgs = [
        Markup(
            charts.svg_of(
                timed(partial(charts.draw_comparison, comparison=c, timeline=t, now=now)),
                height=2.6,
            )
        )
        for c in report.comparisons.items
    ]
    return _ENV.from_string(_PAGE).render(
        t=t,
        colour=charts.OUTCOME_COLOURS.get(t.outcome, charts.NO_DATA),
        why=t.message if t.outcome != Outcome.RUNNING else "analysis in progress",
        decided=decisive_line(t),
        facts=facts(report),
        url=report.url,
        command=report_command(t.name, t.namespace, t.cluster),
        generated=stamp(report.generated or now),
        weights_svg=Markup(weights),
        check_svgs=check_svgs,
        comparison_svgs=comparison_svgs,
        notes=report.comparisons.notes,
        checks=t.checks,
        judged=any(c.judgement is not None for c in t.checks),
        num=_num,
        bounds=_bounds,
        judgement=_judgement,
        stamp=stamp,
    )
