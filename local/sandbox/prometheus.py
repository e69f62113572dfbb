"""The real Prometheus server, run as a child process with a generated configuration.

It scrapes the mesh's ``/metrics`` every second (plus any extra ``host:port`` targets, e.g. the
worker's metrics port), keeps its TSDB in the sandbox's state directory and listens on a chosen
port. Prometheus applies new scrape targets on a 5 s tick, so "ready" here means a real query
answers with the mesh's ``up`` sample, not ``/-/ready`` (which is true long before the first
scrape).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from sandbox.tools import prometheus_bin

log = logging.getLogger(__name__)


def render_config(mesh_target: str, extra_targets: list[str], *, interval: float = 1.0) -> str:
    """Prometheus YAML: scrapes every ``interval`` seconds (default 1) of the mesh (job
    ``istio-mesh``) and of each extra target (job ``extra``)."""
    every = f"{interval:g}s"
    jobs = [
        {
            "job_name": "istio-mesh",
            "scrape_interval": every,
            "scrape_timeout": every,
            "static_configs": [{"targets": [mesh_target]}],
        }
    ]
    if extra_targets:
        jobs.append(
            {
                "job_name": "extra",
                "scrape_interval": every,
                "scrape_timeout": every,
                "static_configs": [{"targets": list(extra_targets)}],
            }
        )
    config = {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _die_with_parent() -> None:
    """Child-side: get SIGTERM if the sandbox process dies, so no Prometheus is left behind."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def query(url: str, promql: str, *, timeout: float = 2.0) -> list[dict[str, object]]:
    """One instant query (blocking; call it from a thread): the result vector."""
    full = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(full, timeout=timeout) as response:
        body = json.load(response)
    result: list[dict[str, object]] = body.get("data", {}).get("result", [])
    return result


class PrometheusServer:
    """Start, wait for and stop one Prometheus child."""

    def __init__(
        self,
        *,
        state_dir: Path,
        port: int,
        mesh_target: str,
        extra_targets: list[str] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.interval = interval
        self.state_dir = state_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.mesh_target = mesh_target
        self.extra_targets = list(extra_targets or [])
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        config = self.state_dir / "prometheus.yml"
        config.write_text(
            render_config(self.mesh_target, self.extra_targets, interval=self.interval)
        )
        data = self.state_dir / "prometheus-data"
        data.mkdir(parents=True, exist_ok=True)
        logfile = (self.state_dir / "prometheus.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            prometheus_bin(),
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",
            "--log.level=warn",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=logfile,
            stderr=logfile,
            preexec_fn=_die_with_parent,
        )
        logfile.close()
        (self.state_dir / "prometheus.pid").write_text(f"{self.process.pid}\n")

    async def wait_ready(self, *, deadline: float = 45.0) -> float:
        """Wait until Prometheus has scraped the mesh (a real query answers); seconds waited."""
        started = time.monotonic()
        promql = 'up{job="istio-mesh"} == 1'
        while time.monotonic() - started < deadline:
            if self.process is not None and self.process.returncode is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode}: see prometheus.log"
                )
            with contextlib.suppress(OSError, ValueError):
                if await asyncio.to_thread(query, self.url, promql, timeout=1.0):
                    return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"prometheus did not scrape the mesh within {deadline} s")

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            process.kill()
            await process.wait()
