"""The real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes: pods are scheduled and become Running/Ready with no kubelet).

`ControlPlane.start()` runs each as a child process of the caller (they die with it: parent-death
signal), waits for each to be ready, then makes the cluster look like a user's: fake Nodes, the
CRDs a mesh user has (Istio's networking API, Gateway API's standard channel) and the ones
Coalmine ships (Flagger's Canary, MetricTemplate, AlertProvider from deploy/crds), the
``coalmine`` ServiceAccount bound to exactly the RBAC deploy/ ships, and a token for it.

Files under ``DIR`` (kept across restarts, so kubeconfigs and etcd's data survive ``down``/``up``):
``pki/`` (certificates), ``etcd/`` (data), ``*.kubeconfig``, ``audit.log`` (the API server's audit
log, JSON lines), ``logs/<component>.log``, ``kwok.yaml``.

- ``admin.kubeconfig``: ``system:masters`` by client certificate (kubectl, tests, the data plane);
- ``worker.kubeconfig``: the ``coalmine`` ServiceAccount's token, nothing more (the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.cluster import kwok
from sandbox.cluster import pki as pkimod
from sandbox.cluster.binaries import Build, locate
from sandbox.tools import REPO

log = logging.getLogger("sandbox.cluster")

SERVICE_RANGE = "10.96.0.0/16"
POD_RANGE = "10.244.0.0/16"
WORKER_NAMESPACE = "coalmine-system"
WORKER_ACCOUNT = "coalmine"
TOKEN_TTL = "720h"
READY_TIMEOUT = 90.0
DEPLOY_CRDS = REPO / "deploy" / "crds"
WORKER_RBAC = REPO / "deploy" / "manifests" / "cluster"
CONTROLLER_RBAC = REPO / "deploy" / "manifests" / "controller"
CONTROLLER_ACCOUNT = "coalmine-controller"

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # Fake-node heartbeats and leader leases: noise that would bury the writes tests count.
        {"level": "None", "users": ["kwok"]},
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "Metadata"},
    ],
}


class ControlPlaneError(RuntimeError):
    """A component did not start: the message names it and ends with its log."""


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    api: int


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the component gets SIGKILL when the process that started it is gone, so a
    # killed test run or local stack never leaves an API server behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def kubeconfig(
    server: str,
    ca: Path,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> str:
    creds: dict[str, Any] = {}
    if cert is not None and key is not None:
        creds = {"client-certificate": str(cert), "client-key": str(key)}
    if token is not None:
        creds = {"token": token}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "coalmine-local",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [
            {
                "name": "coalmine-local",
                "context": {"cluster": "coalmine-local", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "coalmine-local",
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class ControlPlane:
    """One local cluster. ``start()`` once, ``stop()`` once."""

    root: Path
    ports: Ports
    node_count: int = 3
    ready_delay: float = 0.0
    """Seconds until kwok reports a scheduled pod Ready (the pod's annotation overrides it)."""
    build: Build | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.pki = pkimod.Pki(self.root / "pki")

    # --- where things are ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports.api}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def worker_kubeconfig(self) -> Path:
        return self.root / "worker.kubeconfig"

    @property
    def controller_kubeconfig(self) -> Path:
        return self.root / "controller.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    def client_ssl(self, name: str = "admin") -> ssl.SSLContext:
        """A TLS context trusting the cluster CA, presenting ``name``'s client certificate."""
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(self.pki.client_cert(name), self.pki.client_key(name))
        return context

    # --- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        started = time.monotonic()
        self.build = self.build or locate()
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        pkimod.ensure(self.pki.root)
        self._write_configs()
        self._spawn("etcd", self._etcd_args())
        await self._wait_http("etcd", f"http://127.0.0.1:{self.ports.etcd}/health", None)
        self._spawn("kube-apiserver", self._apiserver_args())
        await self._wait_http("kube-apiserver", f"{self.url}/readyz", self.client_ssl())
        self._spawn("kube-controller-manager", self._controller_manager_args())
        self._spawn("kube-scheduler", self._scheduler_args())
        self._spawn("kwok", self._kwok_args())
        await self._kubectl("apply", "--server-side", "-f", "-", stdin=kwok.nodes(self.node_count))
        await self._install_crds()
        await self._worker_account()
        await self._controller_account()
        await self._wait_default_account()
        log.info("control plane ready in %.1f s at %s", time.monotonic() - started, self.url)

    def stop(self, grace: float = 10.0) -> None:
        """Stop in reverse order of start: SIGTERM, then SIGKILL after ``grace`` seconds."""
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.info("%s stopped", name)
        self.processes.clear()

    def check(self) -> None:
        """Raise when a component has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise ControlPlaneError(f"{name} exited ({process.returncode}){self._tail(name)}")

    # --- components ----------------------------------------------------------------------

    def _spawn(self, name: str, args: Sequence[str]) -> None:
        assert self.build is not None
        with (self.root / "logs" / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                [self.build.bin(name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
            )

    def _tail(self, name: str, lines: int = 15) -> str:
        path = self.root / "logs" / f"{name}.log"
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"; the end of {path}:\n" + "\n".join(text)

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports.etcd}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            "--name=local",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            # A test cluster: losing the last writes in a power cut is fine, fsync latency is not.
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--listen-metrics-urls=",
        ]

    def _apiserver_args(self) -> list[str]:
        p = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports.api}",
            f"--tls-cert-file={p.server_cert}",
            f"--tls-private-key-file={p.server_key}",
            f"--client-ca-file={p.ca_cert}",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-account-max-token-expiration=8760h",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=Node,RBAC",
            # 127.0.0.1 may not be an Endpoints address: no `kubernetes` endpoints reconciling.
            "--endpoint-reconciler-type=none",
            f"--audit-policy-file={self.root / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]

    def _component_kubeconfig(self, name: str) -> Path:
        return self.root / f"{name}.kubeconfig"

    def _controller_manager_args(self) -> list[str]:
        kc = self._component_kubeconfig("controller-manager")
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--secure-port=0",
            "--leader-elect=false",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            f"--service-account-private-key-file={self.pki.sa_key}",
            f"--root-ca-file={self.pki.ca_cert}",
            f"--cluster-signing-cert-file={self.pki.ca_cert}",
            f"--cluster-signing-key-file={self.pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--use-service-account-credentials=true",
            # Rollouts wait on these controllers: react at once, as on an idle cluster.
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--horizontal-pod-autoscaler-sync-period=5s",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        kc = self._component_kubeconfig("scheduler")
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--secure-port=0",
            "--leader-elect=false",
            "--v=1",
        ]

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self._component_kubeconfig('kwok')}",
            f"--config={self.root / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={POD_RANGE.replace('.0.0/16', '.0.1/16')}",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
        ]

    # --- configuration -------------------------------------------------------------------

    def _write_configs(self) -> None:
        p = self.pki
        self.admin_kubeconfig.write_text(
            kubeconfig(
                self.url,
                p.ca_cert,
                user="admin",
                cert=p.client_cert("admin"),
                key=p.client_key("admin"),
            )
        )
        for name in ("controller-manager", "scheduler", "kwok"):
            self._component_kubeconfig(name).write_text(
                kubeconfig(
                    self.url, p.ca_cert, user=name, cert=p.client_cert(name), key=p.client_key(name)
                )
            )
        (self.root / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
        assert self.build is not None
        (self.root / "kwok.yaml").write_text(kwok.config(self.build.kwok_stages, self.ready_delay))

    # --- the cluster as a user's ---------------------------------------------------------

    async def _install_crds(self) -> None:
        assert self.build is not None
        files = [self.build.crds / "istio.yaml", self.build.crds / "gateway-api.yaml"]
        files += sorted(DEPLOY_CRDS.glob("flagger.app_*.yaml"))
        args = ["apply", "--server-side", "--force-conflicts"]
        for path in files:
            args += ["-f", str(path)]
        await self._kubectl(*args)
        await self._kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

    async def _worker_account(self) -> None:
        await self._kubectl("apply", "--server-side", "-k", str(WORKER_RBAC))
        await self._kubectl(
            "create", "serviceaccount", WORKER_ACCOUNT, "-n", WORKER_NAMESPACE, check=False
        )
        token = await self._kubectl(
            "create", "token", WORKER_ACCOUNT, "-n", WORKER_NAMESPACE, f"--duration={TOKEN_TTL}"
        )
        self.write_worker_kubeconfig(self.url, token.strip())

    async def _controller_account(self) -> None:
        # The controller's account and RBAC exactly as deploy/ ships them (not its Deployment:
        # the local stack runs the controller as a process).
        args = ["apply", "--server-side", "-n", WORKER_NAMESPACE]
        for name in ("serviceaccount.yaml", "clusterrole.yaml", "clusterrolebinding.yaml"):
            args += ["-f", str(CONTROLLER_RBAC / name)]
        await self._kubectl(*args)
        token = await self._kubectl(
            "create",
            "token",
            CONTROLLER_ACCOUNT,
            "-n",
            WORKER_NAMESPACE,
            f"--duration={TOKEN_TTL}",
        )
        self._write_account_kubeconfig(
            self.controller_kubeconfig, self.url, CONTROLLER_ACCOUNT, token.strip()
        )

    def write_controller_kubeconfig(self, server: str) -> None:
        """The controller's kubeconfig, pointing at ``server`` (the API proxy)."""
        self._write_account_kubeconfig(self.controller_kubeconfig, server, CONTROLLER_ACCOUNT)

    def _write_account_kubeconfig(
        self, path: Path, server: str, account: str, token: str | None = None
    ) -> None:
        if token is None:
            current = yaml.safe_load(path.read_text())
            token = str(current["users"][0]["user"]["token"])
        path.write_text(kubeconfig(server, self.pki.ca_cert, user=account, token=token))
        path.chmod(0o600)

    def write_worker_kubeconfig(self, server: str, token: str | None = None) -> None:
        """The worker's kubeconfig, pointing at ``server`` (the API server, or a proxy in front)."""
        if token is None:
            current = yaml.safe_load(self.worker_kubeconfig.read_text())
            token = str(current["users"][0]["user"]["token"])
        self.worker_kubeconfig.write_text(
            kubeconfig(server, self.pki.ca_cert, user=WORKER_ACCOUNT, token=token)
        )
        self.worker_kubeconfig.chmod(0o600)

    async def _wait_default_account(self) -> None:
        # Pods are refused in a namespace until its `default` ServiceAccount exists.
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self.check()
            done = await self._kubectl(
                "get", "serviceaccount", "default", "-n", "default", check=False
            )
            if done:
                return
            await asyncio.sleep(0.2)
        raise ControlPlaneError(
            "the default ServiceAccount never appeared" + self._tail("kube-controller-manager")
        )

    async def _wait_http(self, name: str, url: str, context: ssl.SSLContext | None) -> None:
        import aiohttp

        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                self.check()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url, ssl=context or False) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise ControlPlaneError(
            f"{name} was not ready within {READY_TIMEOUT:.0f} s{self._tail(name)}"
        )

    async def _kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """kubectl as admin; with ``check=False`` a failure returns ""."""
        process = await asyncio.create_subprocess_exec(
            "kubectl",
            f"--kubeconfig={self.admin_kubeconfig}",
            f"--cache-dir={self.root / 'kube-cache'}",
            *args,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await process.communicate(stdin.encode() if stdin is not None else None)
        if process.returncode != 0:
            if check:
                raise ControlPlaneError(f"kubectl {' '.join(args)}: {err.decode().strip()}")
            return ""
        return out.decode()
