"""`ApiProxy`: a reverse proxy in front of kube-apiserver that adds the sandbox's test-only extras.

Every request outside ``/sandbox/`` is forwarded to the upstream API server as it came: method,
path and query (still percent-encoded), headers including ``Authorization`` (so a bearer token
authenticates its owner at the real server), and the body, streamed. The answer is streamed back
chunk by chunk, so a watch's events arrive as the server sends them. Hop-by-hop headers are dropped
both ways, and compressed answers pass through undecoded.

A client certificate cannot pass through a TLS-terminating proxy. When the serving context asks
for client certificates and the client presents a valid one, the proxy names that identity in the
front-proxy headers (``X-Remote-User`` = CN, one ``X-Remote-Group`` per O); the apiserver believes
them only from a client certificate it trusts as a front proxy (``--requestheader-*`` flags, and
the proxy's own certificate in its upstream context), and otherwise authenticates the proxy
itself. Those headers are always removed from what clients send.

Before forwarding, the fault rules (`sandbox.apiproxy.faults`) may delay the request or answer it
themselves. ``/sandbox/faults`` manages the rules and ``/sandbox/audit`` serves the audit log
(`sandbox.apiproxy.audit`). Not supported: protocol upgrades (``kubectl exec``, ``attach``,
``port-forward``), which need a tunnel rather than a proxy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sandbox.apiproxy.audit import AuditEntry, AuditLog
from sandbox.apiproxy.faults import FaultRuleError, Faults, Injected, status_body
from sandbox.apiproxy.requestinfo import RequestInfo, request_info

log = logging.getLogger(__name__)

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
_NOT_FORWARDED = {*_HOP_BY_HOP, "host", "x-remote-user", "x-remote-group"}
_EXTRA_PREFIX = "x-remote-extra-"
_AUDIT_ID = "Audit-ID"
# aiohttp's client would otherwise add these when the client did not send them.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
_NOT_FOUND = "the server could not find the requested resource"


class ApiProxy:
    """The proxy server. ``start()`` it, point clients at `url`, ``close()`` it.

    ``upstream`` is the API server's base URL; ``upstream_ssl_context`` the context used to reach
    it (it must trust the cluster CA; give it a client certificate to have the proxy authenticate
    requests that carry no credentials of their own). ``ssl_context`` is the serving context (a
    certificate for 127.0.0.1 signed by the cluster CA), or None for plain HTTP. ``audit_log`` is
    the file kube-apiserver writes with ``--audit-log-path`` (None: only the proxy's own entries).
    ``port`` 0 picks a free port.
    """

    def __init__(
        self,
        *,
        upstream: str,
        upstream_ssl_context: ssl.SSLContext | None = None,
        ssl_context: ssl.SSLContext | None = None,
        audit_log: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = Faults()
        self.audit = AuditLog(audit_log)
        self._upstream_ssl = upstream_ssl_context
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL (once started)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the API proxy is not started")
        port = self._runner.addresses[0][1]
        return f"{'https' if self._ssl else 'http'}://{self._host}:{port}"

    async def start(self) -> None:
        # Watches hold a connection each for as long as they last: no pool limit, no total timeout.
        connector = aiohttp.TCPConnector(
            limit=0, ssl=self._upstream_ssl if self._upstream_ssl is not None else True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # never share one client's cookies with another
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            skip_auto_headers=_NO_AUTO_HEADERS,
            trust_env=False,
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Cancel a handler when its client goes away, so the upstream watch it holds closes too.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._session.close()
            raise
        self._runner = runner

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ApiProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- requests -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/sandbox" or request.path.startswith("/sandbox/"):
            return await self._sandbox(request)
        received = time.time()
        info = request_info(request.method, request.path, request.rel_url.raw_query_string)
        user_agent = request.headers.get("User-Agent", "")
        outcome = self.faults.take(info, user_agent)
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        if outcome.injected is not None:
            self.audit.record(_fault_entry(request, info, received, outcome.injected))
            return _json(outcome.injected.body, outcome.injected.code, outcome.injected.headers)
        return await self._forward(request, fault=outcome.rule_id)

    async def _forward(self, request: web.Request, *, fault: int | None) -> web.StreamResponse:
        assert self._session is not None
        headers = _upstream_headers(request)
        # The apiserver takes a request's audit ID from this header: the proxy can find its event.
        audit_id = headers.get(_AUDIT_ID) or str(uuid.uuid4())
        headers[_AUDIT_ID] = audit_id
        if fault is not None:
            self.audit.delayed(audit_id, fault)
        url = URL(self.upstream + request.raw_path, encoded=True)
        body = request.content if request.body_exists else None
        response: web.StreamResponse | None = None
        answered = False  # the server answered, so its audit log has (or will have) the request
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                answered = True
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                _copy_response_headers(upstream.headers, response)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            if response is None:
                message = f"the upstream API server is unavailable: {exc}"
                return _json(status_body(503, message), 503)
            # The answer has started: end it and the connection (a watch client watches again, as
            # when the apiserver ends a watch).
            log.info("api proxy: %s %s cut short: %s", request.method, request.path_qs, exc)
            response.force_close()
            return response
        finally:
            if answered:
                self.audit.forwarded(audit_id)

    # --- /sandbox/ ----------------------------------------------------------------------------

    async def _sandbox(self, request: web.Request) -> web.StreamResponse:  # noqa: PLR0911
        path, method = request.path.rstrip("/"), request.method
        if path == "/sandbox/audit" and method == "GET":
            return _json({"items": await self.audit.query(dict(request.query))})
        if path == "/sandbox/audit" and method == "DELETE":
            await self.audit.clear()
            return _json({"cleared": True})
        if path == "/sandbox/faults" and method == "GET":
            return _json({"items": [rule.describe() for rule in self.faults.rules]})
        if path == "/sandbox/faults" and method == "POST":
            try:
                rule = self.faults.add(json.loads(await request.read() or b"null"))
            except (ValueError, FaultRuleError) as exc:
                return _json(status_body(400, str(exc)), 400)
            return _json(rule.describe(), 201)
        if path == "/sandbox/faults" and method == "DELETE":
            self.faults.clear()
            return _json({"cleared": True})
        if path.startswith("/sandbox/faults/") and method == "DELETE":
            rule_id = path.rsplit("/", 1)[1]
            if rule_id.isdigit() and self.faults.remove(int(rule_id)):
                return _json({"removed": int(rule_id)})
        return _json(status_body(404, _NOT_FOUND), 404)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return web.Response(
        body=body, status=status, headers={**(headers or {}), "Content-Type": "application/json"}
    )


def _upstream_headers(request: web.Request) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones, plus the front-proxy identity of its cert."""
    named = {
        token.strip().lower()
        for value in request.headers.getall("Connection", [])
        for token in value.split(",")
    }
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        lower = key.lower()
        if lower in _NOT_FORWARDED or lower in named or lower.startswith(_EXTRA_PREFIX):
            continue
        headers.add(key, value)
    user, groups = _peer_identity(request)
    if user:
        headers["X-Remote-User"] = user
        for group in groups:
            headers.add("X-Remote-Group", group)
    return headers


def _peer_identity(request: web.Request) -> tuple[str, list[str]]:
    """(CN, [O, …]) of a verified client certificate, as the apiserver's x509 authenticator."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return "", []
    user, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, groups


def _copy_response_headers(upstream: CIMultiDictProxy[str], response: web.StreamResponse) -> None:
    named = {t.strip().lower() for v in upstream.getall("Connection", []) for t in v.split(",")}
    for key, value in upstream.items():
        lower = key.lower()
        if lower in _HOP_BY_HOP or lower in named:
            continue
        response.headers.add(key, value)


def _fault_entry(
    request: web.Request, info: RequestInfo, received: float, injected: Injected
) -> AuditEntry:
    return AuditEntry(
        time=received,
        method=request.method,
        path=request.path,
        verb=info.verb,
        group=info.group,
        version=info.version,
        resource=info.resource,
        namespace=info.namespace,
        name=info.name,
        subresource=info.subresource,
        user_agent=request.headers.get("User-Agent", ""),
        code=injected.code,
        fault=injected.rule_id,
        # Unknown without forwarding: the name a create would have given, the user a token names.
        object_name=info.name,
    )
