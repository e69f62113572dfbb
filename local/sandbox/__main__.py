"""``python -m sandbox run --state-dir DIR``: the sandbox process (see sandbox/runner.py).

People use ``coalmine sandbox up`` instead, which starts this in the background and waits until it
is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from sandbox.runner import RunOptions, serve
from sandbox.settings import WorldSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the sandbox in the foreground")
    run.add_argument("--state-dir", type=Path, required=True)
    run.add_argument("--pod-ready-delay", type=float, default=WorldSettings.pod_ready_delay)
    run.add_argument("--nodes", type=int, default=WorldSettings.nodes)
    run.add_argument("--no-loadtester", action="store_true")
    run.add_argument("--scrape-target", action="append", default=[], metavar="HOST:PORT")
    run.add_argument("--scrape-interval", type=float, default=1.0, metavar="SECONDS")
    run.add_argument("--no-source-reporter", action="store_true")
    run.add_argument("--lean-metrics", action="store_true")
    run.add_argument("--watch-pid", type=int, default=None, help="stop when this process is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = RunOptions(
        state_dir=args.state_dir,
        settings=WorldSettings(pod_ready_delay=args.pod_ready_delay, nodes=args.nodes),
        loadtester=not args.no_loadtester,
        extra_scrape_targets=tuple(args.scrape_target),
        scrape_interval=args.scrape_interval,
        source_reporter=not args.no_source_reporter,
        lean_metrics=args.lean_metrics,
        watch_pid=args.watch_pid,
    )
    asyncio.run(serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
