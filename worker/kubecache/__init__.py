"""A read-only, watch-backed cache of a few resource types from a Kubernetes API server.

The controller (``coalmine controller``) reads Canaries, Deployments, ConfigMaps and Secrets
through it, as client-go's informers would: one LIST, then a WATCH per type, so a change reaches
the controller within milliseconds and no reconcile polls the API server. It runs on the asyncio
event loop (aiohttp), never blocking it. The local stack's data plane reads the cluster through the
same cache (``sandbox.kubecache`` re-exports it): one informer in the project, not two.

```python
config = KubeConfig.load(kubeconfig_path)        # or KubeConfig.in_cluster()
async with config.session() as session:
    cache = KubeCache(config, [Resource("flagger.app", "v1beta1", "canaries")], session=session)
    await cache.start()          # every type listed once
    cache.peek("flagger.app", "canaries", "test", "podinfo")
    cache.scan("flagger.app", "canaries")
    cache.listen(on_change, group="flagger.app", plural="canaries")
    ...
    await cache.close()
```

Modules: ``_config`` (kubeconfig → URL, TLS, auth headers, aiohttp session), ``_http`` (JSON
requests; errors are `activities.errors`' tree), ``_informer`` (one type: LIST, WATCH, re-LIST,
indexes), ``_cache`` (the types together: reads, listeners, start and close).
"""

from __future__ import annotations

from worker.kubecache._cache import CacheNotSynced, ClusterView, KubeCache, Listener
from worker.kubecache._config import KubeConfig, KubeConfigError
from worker.kubecache._http import request_json
from worker.kubecache._informer import Change, IndexFunc, Informer, Resource, WatchSettings

__all__ = [
    "CacheNotSynced",
    "Change",
    "ClusterView",
    "IndexFunc",
    "Informer",
    "KubeCache",
    "KubeConfig",
    "KubeConfigError",
    "Listener",
    "Resource",
    "WatchSettings",
    "request_json",
]
