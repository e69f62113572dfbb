"""The files a sandbox keeps in its state directory, and what each means.

- ``sandbox.json`` — ports (chosen free at first start, then kept), the runner's pid and ``ready``;
- ``sandbox.pid`` / ``prometheus.pid`` — the processes ``coalmine sandbox down`` stops (the
  control plane's processes die with the runner);
- ``cluster/`` — the control plane's own files (certificates, etcd's data, component logs, the API
  server's audit log: see sandbox/cluster/controlplane.py);
- ``kubeconfig`` — the cluster admin (``system:masters``, client certificate), straight to the API
  server over HTTPS: kubectl, the CLI, tests;
- ``worker.kubeconfig`` — the ``coalmine`` ServiceAccount's token, through the API proxy (faults,
  audit): the worker;
- ``env`` — a file a shell sources: ``KUBECONFIG``, ``KUBECACHEDIR`` (kubectl's cache, per sandbox),
  ``COALMINE_WORKER_KUBECONFIG``, ``COALMINE_MIN_ANALYSIS_INTERVAL`` (1s), ``PROMETHEUS_URL``,
  ``HTTP_PROXY``/``http_proxy`` (the mesh),
  ``NO_PROXY``/``no_proxy`` (loopback), ``COALMINE_LOADTESTER_URL``, ``COALMINE_SANDBOX_API`` (the
  proxy: ``/sandbox/faults``, ``/sandbox/audit``), ``COALMINE_SANDBOX_MESH``,
  ``COALMINE_SANDBOX_METRICS``;
- ``sandbox.log``, ``prometheus.log``, ``prometheus.yml``, ``prometheus-data/``.
"""

from __future__ import annotations

import json
import shlex
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOADTESTER_URL = "http://flagger-loadtester.test/"
NO_PROXY = "127.0.0.1,localhost,::1"


@dataclass(frozen=True)
class Ports:
    api: int
    """The kube-apiserver (HTTPS)."""
    proxy: int
    """The API proxy in front of it (HTTPS): fault rules and the audit log."""
    etcd: int
    etcd_peer: int
    mesh: int
    metrics: int
    prometheus: int

    @classmethod
    def free(cls) -> Ports:
        return cls(**{name: free_port() for name in PORT_NAMES})


PORT_NAMES = ("api", "proxy", "etcd", "etcd_peer", "mesh", "metrics", "prometheus")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def urls(ports: Ports) -> dict[str, str]:
    return {
        "api": f"https://127.0.0.1:{ports.api}",
        "proxy": f"https://127.0.0.1:{ports.proxy}",
        "mesh": f"http://127.0.0.1:{ports.mesh}",
        "metrics": f"http://127.0.0.1:{ports.metrics}",
        "prometheus": f"http://127.0.0.1:{ports.prometheus}",
        "loadtester": LOADTESTER_URL,
    }


def read_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "sandbox.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def write_state(state_dir: Path, **fields: Any) -> None:
    state = read_state(state_dir)
    state.update(fields)
    tmp = state_dir / "sandbox.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_dir / "sandbox.json")


def ports_for(state_dir: Path) -> Ports:
    """The ports kept in sandbox.json; fresh free ones when missing or taken."""
    saved = read_state(state_dir).get("ports")
    if isinstance(saved, dict) and all(k in saved for k in PORT_NAMES):
        ports = Ports(**{k: int(saved[k]) for k in PORT_NAMES})
        if all(port_is_free(p) for p in asdict(ports).values()):
            return ports
    ports = Ports.free()
    write_state(state_dir, ports=asdict(ports))
    return ports


def env_vars(state_dir: Path, ports: Ports) -> dict[str, str]:
    links = urls(ports)
    return {
        "KUBECONFIG": str((state_dir / "kubeconfig").resolve()),
        "COALMINE_WORKER_KUBECONFIG": str((state_dir / "worker.kubeconfig").resolve()),
        "COALMINE_CONTROLLER_KUBECONFIG": str((state_dir / "controller.kubeconfig").resolve()),
        # kubectl's discovery cache is keyed by host:port only; a later sandbox on the same port
        # with other resources would read a stale one. Each sandbox keeps its own.
        "KUBECACHEDIR": str((state_dir / "kube-cache").resolve()),
        "PROMETHEUS_URL": links["prometheus"],
        "HTTP_PROXY": links["mesh"],
        "http_proxy": links["mesh"],
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
        "COALMINE_LOADTESTER_URL": LOADTESTER_URL,
        # Flagger raises analysis intervals under 10 s to 10 s, and so does `rollout start`; the
        # local stack's demo and tests step every few seconds.
        "COALMINE_MIN_ANALYSIS_INTERVAL": "1s",
        "COALMINE_SANDBOX_API": links["proxy"],
        "COALMINE_SANDBOX_MESH": links["mesh"],
        "COALMINE_SANDBOX_METRICS": links["metrics"],
    }


def write_client_files(state_dir: Path, ports: Ports) -> None:
    """The env file (the kubeconfigs are the control plane's, copied next to it by the runner)."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env_vars(state_dir, ports).items()]
    (state_dir / "env").write_text("\n".join(lines) + "\n")
