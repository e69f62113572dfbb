"""The side-by-side figures of one run, and their table (Markdown, for BENCHMARKS.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench._flagger_figures import Cost, Spread, cpu_per_step_ms, fmt_ratio, fmt_seconds, ratio


@dataclass
class Latency:
    progressing: Spread = field(default_factory=Spread)
    """The change → the Canary's phase Progressing (the product noticed it)."""
    first_weight: Spread = field(default_factory=Spread)
    promotion: Spread = field(default_factory=Spread)
    abort: Spread = field(default_factory=Spread)
    notes: list[str] = field(default_factory=list)


@dataclass
class Scale:
    canaries: int
    initialized: int
    """Canaries Initialized before the windows (all of them unless the wait was cut short)."""
    initialized_seconds: float
    rest: Cost
    progressing: Cost
    steps: int
    temporal_rest: Cost | None = None
    temporal_progressing: Cost | None = None


def summary(lat: dict[str, Latency], scale: dict[str, dict[int, Scale]]) -> str:
    """One line: every figure as Flagger's over Coalmine's (above 1: Coalmine ahead)."""
    parts = []
    if len(lat) == 2:
        f, c = lat["flagger"], lat["coalmine"]
        for label, key in (
            ("first weight", "first_weight"),
            ("promotion", "promotion"),
            ("abort", "abort"),
        ):
            r = ratio(getattr(f, key).median, getattr(c, key).median)
            parts.append(f"{label} {fmt_ratio(r)}")
    for size in sorted(scale.get("flagger", {})):
        if size not in scale.get("coalmine", {}):
            continue
        f_s, c_s = scale["flagger"][size], scale["coalmine"][size]
        cpu = ratio(f_s.progressing.millicores_per_canary, c_s.progressing.millicores_per_canary)
        mem = ratio(f_s.progressing.kb_per_canary, c_s.progressing.kb_per_canary)
        parts.append(f"{size} canaries: CPU {fmt_ratio(cpu)}, memory {fmt_ratio(mem)}")
    return "; ".join(parts)


def _spread(s: Spread) -> str:
    return f"{fmt_seconds(s.median)} (max {fmt_seconds(s.worst)}, n={len(s.values)})"


def _with_temporal(c: Scale, key: str) -> tuple[float, float]:
    """Coalmine's worker + controller, and the same with the Temporal server added."""
    own: Cost = getattr(c, key)
    server: Cost | None = getattr(c, f"temporal_{key}")
    cpu, mem = own.millicores_per_canary, own.kb_per_canary
    if server is None:
        return cpu, mem
    return cpu + server.millicores_per_canary, mem + server.kb_per_canary


def table(lat: dict[str, Latency], scale: dict[str, dict[int, Scale]]) -> str:
    """Every figure of the run: Flagger, Coalmine, and Flagger ÷ Coalmine."""
    rows = [
        "| figure | Flagger | Coalmine | Flagger ÷ Coalmine |",
        "|---|---|---|---|",
    ]
    if len(lat) == 2:
        f, c = lat["flagger"], lat["coalmine"]
        for label, key in (
            ("target changed → Canary `Progressing` (noticed), median", "progressing"),
            ("target changed → first canary weight, median", "first_weight"),
            ("target changed → `Succeeded` (promoted), median", "promotion"),
            ("abort sent → canary weight 0, median", "abort"),
        ):
            fs, cs = getattr(f, key), getattr(c, key)
            r = fmt_ratio(ratio(fs.median, cs.median))
            rows.append(f"| {label} | {_spread(fs)} | {_spread(cs)} | {r} |")
    for size in sorted(scale.get("flagger", {})):
        if size not in scale.get("coalmine", {}):
            continue
        f_s, c_s = scale["flagger"][size], scale["coalmine"][size]
        rows.append(
            f"| {size} Canaries: created → all `Initialized` | "
            f"{f_s.initialized_seconds:.0f} s ({f_s.initialized}/{size}) | "
            f"{c_s.initialized_seconds:.0f} s ({c_s.initialized}/{size}) | "
            f"{fmt_ratio(ratio(f_s.initialized_seconds, c_s.initialized_seconds))} |"
        )
        for label, key in (
            ("at rest, 1 interval", "rest"),
            ("progressing, 2 intervals", "progressing"),
        ):
            fc, cc = getattr(f_s, key), getattr(c_s, key)
            cpu_all, mem_all = _with_temporal(c_s, key)
            rows.append(
                f"| {size} Canaries {label}: CPU per canary | "
                f"{fc.millicores_per_canary:.2f} millicores | "
                f"{cc.millicores_per_canary:.2f} millicores ({cpu_all:.2f} with Temporal) | "
                f"{fmt_ratio(ratio(fc.millicores_per_canary, cc.millicores_per_canary))} "
                f"({fmt_ratio(ratio(fc.millicores_per_canary, cpu_all))} with Temporal) |"
            )
            rows.append(
                f"| {size} Canaries {label}: memory per canary | {fc.kb_per_canary:.0f} KB | "
                f"{cc.kb_per_canary:.0f} KB ({mem_all:.0f} KB with Temporal) | "
                f"{fmt_ratio(ratio(fc.kb_per_canary, cc.kb_per_canary))} "
                f"({fmt_ratio(ratio(fc.kb_per_canary, mem_all))} with Temporal) |"
            )
        fp, cp = f_s.progressing, c_s.progressing
        rows.append(
            f"| {size} Canaries progressing: weight steps taken in the window, CPU per step | "
            f"{f_s.steps} steps, {cpu_per_step_ms(fp, f_s.steps):.0f} ms | "
            f"{c_s.steps} steps, {cpu_per_step_ms(cp, c_s.steps):.0f} ms | "
            f"{fmt_ratio(ratio(cpu_per_step_ms(fp, f_s.steps), cpu_per_step_ms(cp, c_s.steps)))} |"
        )
    return "\n".join(rows)


def from_record(record: dict[str, Any]) -> tuple[dict[str, Latency], dict[str, dict[int, Scale]]]:
    """The figures back from a run's result.json (to print its table again)."""

    def spread(d: dict[str, Any]) -> Spread:
        return Spread(list(d["values"]))

    def cost(d: dict[str, Any] | None) -> Cost | None:
        return Cost(**d) if d else None

    lat = {
        p: Latency(
            spread(v["progressing"]),
            spread(v["first_weight"]),
            spread(v["promotion"]),
            spread(v["abort"]),
            list(v["notes"]),
        )
        for p, v in record.get("latency", {}).items()
    }
    scale: dict[str, dict[int, Scale]] = {}
    for product, sizes in record.get("scale", {}).items():
        scale[product] = {}
        for size, v in sizes.items():
            scale[product][int(size)] = Scale(
                v["canaries"],
                v["initialized"],
                v["initialized_seconds"],
                Cost(**v["rest"]),
                Cost(**v["progressing"]),
                v["steps"],
                cost(v.get("temporal_rest")),
                cost(v.get("temporal_progressing")),
            )
    return lat, scale
