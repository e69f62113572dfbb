"""The real Prometheus server, run as a child process with a generated configuration.

It scrapes the mesh's ``/metrics`` every second (job ``istio-mesh``; plus any extra ``host:port``
targets, e.g. the worker's metrics port), keeps its TSDB in the sandbox's state directory and
listens on a chosen port.

It also scrapes pods by their annotations, as the Prometheus of Flagger's Kubernetes setup does
(job ``kubernetes-pods``, with that setup's relabelling): a pod is kept when
``prometheus.io/scrape`` is ``"true"``, scraped at ``prometheus.io/path`` (default ``/metrics``)
on ``prometheus.io/port``, with the pod's labels as labels and ``kubernetes_namespace`` /
``kubernetes_pod_name`` added — the labels Flagger's builtin checks for the ``kubernetes`` and
``gatewayapi`` providers select podinfo's ``http_request_duration_seconds`` by. Debian's
Prometheus is built without Kubernetes service discovery, so `PodTargets` does its part: it
follows the pods in the sandbox's cluster view and writes them to a file (``file_sd_configs``)
as Kubernetes discovery (role ``pod``) would present them — one target per container port,
``<pod IP>:<port>`` (the pod IP alone for a container without ports), with its
``__meta_kubernetes_*`` labels — and the relabelling runs in Prometheus itself. Pods listen
nowhere here (kwok runs no containers), so the scrapes go through the mesh proxy
(``proxy_url``), which hands a request for a pod's IP to that pod's workload.

Prometheus applies new scrape targets on a 5 s tick, so "ready" here means a real query
answers with the mesh's ``up`` sample, not ``/-/ready`` (which is true long before the first
scrape).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import re
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from sandbox.tools import prometheus_bin
from worker.kubecache import Change, ClusterView

log = logging.getLogger(__name__)


META = "__meta_kubernetes_"
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def _label_name(name: str) -> str:
    return _INVALID_LABEL.sub("_", name)


def pod_target_groups(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """File-SD target groups for pods, as Prometheus' Kubernetes discovery (role pod) gives them."""
    groups = []
    for pod in pods:
        md, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        ip = status.get("podIP")
        if not ip:
            continue  # Kubernetes discovery skips a pod without an IP
        common = {
            META + "namespace": str(md.get("namespace", "")),
            META + "pod_name": str(md.get("name", "")),
            META + "pod_ip": str(ip),
            META + "pod_phase": str(status.get("phase", "")),
            META + "pod_node_name": str(spec.get("nodeName", "")),
            META + "pod_uid": str(md.get("uid", "")),
        }
        for kind, values in (("label", md.get("labels")), ("annotation", md.get("annotations"))):
            for key, value in (values or {}).items():
                common[f"{META}pod_{kind}_{_label_name(key)}"] = str(value)
                common[f"{META}pod_{kind}present_{_label_name(key)}"] = "true"
        for container in spec.get("containers") or []:
            ports = container.get("ports") or [{}]
            for port in ports:
                labels = dict(common, **{META + "pod_container_name": str(container.get("name"))})
                address = str(ip)
                if port.get("containerPort"):
                    address += f":{port['containerPort']}"
                    labels[META + "pod_container_port_number"] = str(port["containerPort"])
                    labels[META + "pod_container_port_name"] = str(port.get("name", ""))
                groups.append({"targets": [address], "labels": labels})
    return groups


def _scraped(pod: dict[str, Any]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return annotations.get("prometheus.io/scrape") == "true"


class PodTargets:
    """Writes the pods of a cluster view to a file-SD file, at most every ``delay`` seconds."""

    def __init__(self, view: ClusterView, path: Path, *, delay: float = 0.2) -> None:
        self._view, self.path, self._delay = view, path, delay
        self._pending: asyncio.TimerHandle | None = None
        self.write()
        view.listen(self._changed, group="", plural="pods")

    def _changed(self, change: Change) -> None:
        del change
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self._delay, self.write)

    def write(self) -> None:
        self._pending = None
        # Only the pods the job's first rule keeps: the same targets, and a file (rewritten at
        # every pod change) that stays small in a sandbox of thousands of pods.
        groups = pod_target_groups(p for p in self._view.scan("", "pods") if _scraped(p))
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(groups))
        temporary.replace(self.path)  # atomic: Prometheus never reads half a file

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()


def pods_job(targets: Path, mesh_proxy: str, every: str) -> dict[str, object]:
    """The ``kubernetes-pods`` job: pods by their ``prometheus.io/*`` annotations."""
    meta = META + "pod_"
    return {
        "job_name": "kubernetes-pods",
        "scrape_interval": every,
        "scrape_timeout": every,
        "proxy_url": mesh_proxy,
        "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "5s"}],
        "relabel_configs": [
            {
                "action": "keep",
                "source_labels": [meta + "annotation_prometheus_io_scrape"],
                "regex": "true",
            },
            {
                "action": "replace",
                "source_labels": [meta + "annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "action": "replace",
                "source_labels": ["__address__", meta + "annotation_prometheus_io_port"],
                "regex": r"([^:]+)(?::\d+)?;(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {"action": "labelmap", "regex": meta + "label_(.+)"},
            {
                "action": "replace",
                "source_labels": [META + "namespace"],
                "target_label": "kubernetes_namespace",
            },
            {
                "action": "replace",
                "source_labels": [meta + "name"],
                "target_label": "kubernetes_pod_name",
            },
        ],
    }


def render_config(
    mesh_target: str,
    extra_targets: list[str],
    *,
    interval: float = 1.0,
    pod_targets: Path | None = None,
    mesh_proxy: str | None = None,
) -> str:
    """Prometheus YAML: scrapes every ``interval`` seconds (default 1) of the mesh (job
    ``istio-mesh``), of each extra target (job ``extra``) and, given the `PodTargets` file and
    the ``mesh_proxy`` URL, of the annotated pods (job ``kubernetes-pods``)."""
    every = f"{interval:g}s"
    jobs: list[dict[str, object]] = [
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
    if pod_targets is not None and mesh_proxy is not None:
        jobs.append(pods_job(pod_targets, mesh_proxy, every))
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
        pod_targets: Path | None = None,
        mesh_proxy: str | None = None,
    ) -> None:
        self.interval = interval
        self.pod_targets = pod_targets
        self.mesh_proxy = mesh_proxy
        self.state_dir = state_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.mesh_target = mesh_target
        self.extra_targets = list(extra_targets or [])
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        config = self.state_dir / "prometheus.yml"
        config.write_text(
            render_config(
                self.mesh_target,
                self.extra_targets,
                interval=self.interval,
                pod_targets=self.pod_targets,
                mesh_proxy=self.mesh_proxy,
            )
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
            # Tests that share a namespace drop its series between scenarios (delete_series), so
            # one scenario's failures never fall in the next one's rate window.
            "--web.enable-admin-api",
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
