"""Run every benchmark and write BENCHMARKS.md: ``python -m bench`` (``make bench``).

Each benchmark is a module of this package run as its own process (``python -m bench.<name>``)
that prints its figure on its last line; the runner keeps each module's whole output in
``.state/bench/<name>.log`` and writes the last lines, with the machine's description, to
BENCHMARKS.md. ``python -m bench NAME …`` runs only the named ones.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES_START, FIGURES_END = "<!-- figures -->", "<!-- /figures -->"
"""The block of BENCHMARKS.md this runner rewrites; the hand-written text around it is kept."""


def split_report(text: str) -> tuple[str, str]:
    """(the text before the figures block, the text after it) of BENCHMARKS.md."""
    intro, start, rest = text.partition(FIGURES_START)
    if not start:
        return (text or "# Benchmarks\n\n"), ""
    _, end, outro = rest.partition(FIGURES_END)
    return intro, (outro if end else "")


@dataclass(frozen=True)
class Benchmark:
    name: str
    """Its row in BENCHMARKS.md and its log (``.state/bench/<name>.log``)."""
    target: str
    """What the figure is measured against."""
    args: tuple[str, ...] = ()
    module: str = ""
    """``bench.<module>`` (default: the name)."""

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", f"bench.{self.module or self.name}", *self.args]


BENCHMARKS: list[Benchmark] = [
    Benchmark(
        "ten_steps", "10-step canary on the time-skipping server: well under 1 s of wall time"
    ),
    Benchmark("history", "Temporal actions and history events per analysis step: ≤ 3 actions"),
    Benchmark("abort_latency", "abort accepted → canary weight 0 in the cluster: p99 < 0.5 s"),
    Benchmark(
        "abort_during_slow_query",
        "abort while a 5 s metric query runs → canary weight 0: p99 < 0.5 s",
        ("--runs", "10", "--aim", "checks", "--slow-query", "5"),
        module="abort_latency",
    ),
    Benchmark(
        "step_overhead",
        "worker CPU per analysis step ≤ 10 ms; timer fired → weights patched, beyond the checks: "
        "p99 < 50 ms",
    ),
    Benchmark("memory_probe", "worker memory per parked rollout < 150 KB"),
    Benchmark(
        "scale",
        "1,000 rollouts at 60 s: step lag p99 < 1 s quiet, < 2 s busy; 2,000: < 2 s quiet",
        # ~35 min; the whole sweep (100, 500, 1,000, 2,000 × 60 s, 30 s) is for a run by hand.
        ("--sizes", "1000,2000", "--intervals", "60", "--steps", "3"),
    ),
    Benchmark(
        "controller_scale",
        "controller following 1,000 Canaries + Deployments: CPU-s and RSS, initial sync and 30 s "
        "at rest",
    ),
    Benchmark(
        "flagger_side_by_side",
        "Coalmine against Flagger (built from the module proxy) on the same cluster: first weight, "
        "promotion, abort, CPU and memory per canary at 100 and 500 (ratios Flagger ÷ Coalmine)",
    ),
    Benchmark("sandbox_api", "the local kube-apiserver: several hundred requests/s"),
    Benchmark(
        "sandbox_world", "the local cluster's controllers and mesh: several hundred requests/s"
    ),
]


def machine() -> str:
    cpus = os.cpu_count() or 0
    try:
        meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        memory = f"{int(meminfo[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, IndexError, ValueError):
        memory = "unknown memory"
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {cpus} cores ({model}), {memory}, Python {platform.python_version()}"


def run_one(bench: Benchmark, logs: Path) -> tuple[str, float, int]:
    started = time.monotonic()
    proc = subprocess.run(
        bench.argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    (logs / f"{bench.name}.log").write_text(output)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    figure = lines[-1] if lines and proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    return figure, elapsed, proc.returncode


def main() -> int:
    wanted = set(sys.argv[1:])
    unknown = wanted - {bench.name for bench in BENCHMARKS}
    if unknown:
        # `--help` or a typo must not rewrite BENCHMARKS.md with an empty table.
        names = ", ".join(bench.name for bench in BENCHMARKS)
        print(f"usage: python -m bench [NAME …]; benchmarks: {names}", file=sys.stderr)
        return 0 if wanted <= {"-h", "--help"} else 2
    logs = ROOT / ".state" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    failures = 0
    for bench in BENCHMARKS:
        if wanted and bench.name not in wanted:
            continue
        print(f"== {bench.name}: {' '.join(bench.argv[1:])}", flush=True)
        figure, elapsed, code = run_one(bench, logs)
        failures += code != 0
        print(f"   {figure}  ({elapsed:.0f} s)", flush=True)
        rows.append(f"| `{bench.name}` | {bench.target} | {figure} |")
    report = ROOT / "BENCHMARKS.md"
    intro, outro = split_report(report.read_text() if report.exists() else "")
    body = [
        intro.rstrip() + "\n",
        FIGURES_START,
        f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        "Full output of each run: `.state/bench/<name>.log`.",
        "",
        "| benchmark | target | figure (last line of its output) |",
        "|---|---|---|",
        *rows,
        FIGURES_END,
        outro.lstrip("\n"),
    ]
    report.write_text("\n".join(body).rstrip("\n") + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
