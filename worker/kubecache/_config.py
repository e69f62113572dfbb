"""A kubeconfig, read into what an aiohttp client needs: the server URL, TLS and auth headers.

Read by hand (PyYAML) rather than through the ``kubernetes`` package's loader, which fills a
synchronous client's ``Configuration`` and leaves the ``*-data`` fields in temporary files for the
life of the process. Supported, as client-go reads them: the current context (or a named one) and
its namespace; ``server``; ``certificate-authority`` / ``-data``; ``insecure-skip-tls-verify``;
a client certificate and key (``client-certificate`` / ``-data``, ``client-key`` / ``-data``); a
bearer ``token`` / ``tokenFile``. Relative file paths are relative to the kubeconfig's own
directory. ``exec`` and ``auth-provider`` plugins and basic auth are refused with a clear error:
the local control plane uses certificates or a token, and a pod its ServiceAccount token
(`KubeConfig.in_cluster`).

Everything is read once, when `KubeConfig.load` runs (before the event loop serves anything), so
no request ever touches the disk.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

Obj = dict[str, Any]


class KubeConfigError(ValueError):
    """The kubeconfig cannot be used: missing context, unsupported auth, unreadable file."""


def _named(config: Obj, section: str, name: str) -> Obj:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(section[:-1])  # clusters → cluster, users → user, …
            return body if isinstance(body, dict) else {}
    raise KubeConfigError(f"kubeconfig has no {section[:-1]} named {name!r}")


def _file_or_data(entry: Obj, key: str, base: Path) -> bytes | None:
    """``<key>-data`` (base64) or the file ``<key>`` names, relative to the kubeconfig."""
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(key)
    if path:
        return (base / Path(os.path.expanduser(str(path)))).read_bytes()
    return None


def _client_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # load_cert_chain takes file names only: write both to a private directory and remove it at
    # once (the context keeps the loaded key in memory).
    with tempfile.TemporaryDirectory(prefix="kubecache-") as tmp:
        cert_path, key_path = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        for path, content in ((cert_path, cert), (key_path, key)):
            path.touch(mode=0o600)
            path.write_bytes(content)
        context.load_cert_chain(cert_path, key_path)


def _ssl_context(cluster: Obj, user: Obj, base: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca = _file_or_data(cluster, "certificate-authority", base)
    if ca is not None:
        context.load_verify_locations(cadata=ca.decode())
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = _file_or_data(user, "client-certificate", base)
    key = _file_or_data(user, "client-key", base)
    if (cert is None) != (key is None):
        raise KubeConfigError("kubeconfig user has a client certificate or key without the other")
    if cert is not None and key is not None:
        _client_chain(context, cert, key)
    return context


def _auth_headers(user: Obj, base: Path) -> dict[str, str]:
    for unsupported in ("exec", "auth-provider", "username", "password"):
        if user.get(unsupported):
            raise KubeConfigError(
                f"kubeconfig user uses {unsupported!r}, which this client does not "
                "support: use a client certificate or a token"
            )
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / str(user["tokenFile"])).read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def default_path() -> Path:
    """``$KUBECONFIG`` (its first entry when it lists several) or ``~/.kube/config``."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(listed[0]) if listed else Path.home() / ".kube" / "config"


@dataclass(frozen=True)
class KubeConfig:
    """How to reach one API server: what `load` read from a kubeconfig."""

    server: str
    """The API server's base URL, without a trailing slash (``https://127.0.0.1:6443``)."""
    namespace: str = "default"
    """The context's namespace."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers for every request: ``Authorization`` when the user has a token."""
    ssl_context: ssl.SSLContext | None = None
    """TLS trust and client certificate for an ``https`` server; ``None`` for ``http``."""

    @classmethod
    def load(cls, path: str | Path | None = None, *, context: str | None = None) -> KubeConfig:
        """Read ``path`` (default: `default_path`), for ``context`` (default: the current one)."""
        file = Path(path) if path is not None else default_path()
        try:
            raw = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise KubeConfigError(f"cannot read kubeconfig {file}: {err}") from err
        if not isinstance(raw, dict):
            raise KubeConfigError(f"kubeconfig {file} is not a mapping")
        name = context or raw.get("current-context")
        if not name:
            raise KubeConfigError(f"kubeconfig {file} has no current-context")
        ctx = _named(raw, "contexts", str(name))
        cluster = _named(raw, "clusters", str(ctx.get("cluster", "")))
        user = _named(raw, "users", str(ctx["user"])) if ctx.get("user") else {}
        server = str(cluster.get("server") or "").rstrip("/")
        if urlsplit(server).scheme not in ("http", "https"):
            raise KubeConfigError(f"kubeconfig cluster server {server!r} is not an http(s) URL")
        base = file.resolve().parent
        try:
            tls = _ssl_context(cluster, user, base) if server.startswith("https:") else None
            headers = _auth_headers(user, base)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise KubeConfigError(f"kubeconfig {file}: {err}") from err
        return cls(
            server=server,
            namespace=str(ctx.get("namespace") or "default"),
            headers=headers,
            ssl_context=tls,
        )

    @classmethod
    def in_cluster(
        cls, root: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    ) -> KubeConfig:
        """The pod's own ServiceAccount, as client-go's ``rest.InClusterConfig`` reads it."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeConfigError("not in a pod: KUBERNETES_SERVICE_HOST is not set")
        try:
            token = (root / "token").read_text().strip()
            context = ssl.create_default_context(cafile=str(root / "ca.crt"))
            namespace = (root / "namespace").read_text().strip()
        except (OSError, ssl.SSLError) as err:
            raise KubeConfigError(f"cannot read the pod's service account: {err}") from err
        server = f"https://{'[' + host + ']' if ':' in host else host}:{port}"
        return cls(
            server=server,
            namespace=namespace or "default",
            headers={"Authorization": f"Bearer {token}"},
            ssl_context=context,
        )

    def url(self, path: str) -> str:
        """The absolute URL of an API path (``/api/v1/pods``)."""
        return self.server + path

    def session(
        self, *, connections: int = 32, user_agent: str = "coalmine/kubecache"
    ) -> aiohttp.ClientSession:
        """A session for this server: auth headers, TLS, no overall timeout (watches are long;
        each request sets its own). Create it inside the running event loop; close it after use.
        """
        connector = aiohttp.TCPConnector(
            ssl=self.ssl_context if self.ssl_context is not None else True, limit=connections
        )
        headers = {"Accept": "application/json", "User-Agent": user_agent}
        return aiohttp.ClientSession(
            connector=connector,
            headers={**headers, **self.headers},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            raise_for_status=False,
        )
