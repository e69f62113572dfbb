"""The sandbox's Kubernetes API server: the real REST API over the in-process `sandbox.store.Store`.

Modules, one concern each: `request` (paths and query parameters), `discovery`, `openapi`,
`handlers` (the verbs), `subresources` (/status, /scale), `patch` (strategic merge), `jsonpatch`
(merge and JSON patch), `apply` (server-side apply), `watch`, `fields` (field selectors), `tables`
(kubectl's Table output), `audit` (the sandbox-only audit log and fault injection) and `app`
(routing and middleware).

Start it in an event loop that also runs the controllers sharing the store::

    store = Store()
    runner = web.AppRunner(build_api_app(store))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
"""

from __future__ import annotations

from aiohttp import web

from sandbox.apiserver.app import ApiServer, api_server, build_app
from sandbox.apiserver.watch import WatchSettings
from sandbox.store import Store

__all__ = ["ApiServer", "WatchSettings", "api_server", "build_api_app"]


def build_api_app(
    store: Store,
    *,
    bookmark_interval: float = 10.0,
    watch_timeout: float = 1800.0,
) -> web.Application:
    """An aiohttp application serving the Kubernetes API for ``store``.

    ``bookmark_interval`` is how long a watch stays idle before a BOOKMARK (if the client allows);
    ``watch_timeout`` closes watches that name no ``timeoutSeconds``.
    """
    settings = WatchSettings(bookmark_interval=bookmark_interval, default_timeout=watch_timeout)
    return build_app(store, watch=settings)
