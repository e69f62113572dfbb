"""A read-only, watch-backed cache of a few resource types from a Kubernetes API server.

The sandbox's data plane (the mesh, the workloads) reads the cluster through this, as Istio's
control plane reads it through client-go informers: a plain API client of any kube-apiserver, with
nothing but a kubeconfig.

```python
config = KubeConfig.load(kubeconfig_path)
async with config.session() as session:
    cache = KubeCache(config, data_plane_resources(), session=session)
    await cache.start()          # every type listed once
    cache.peek("", "services", "test", "podinfo")
    cache.scan("networking.istio.io", "virtualservices")
    cache.listen(on_change, group="", plural="pods")
    ...
    await cache.close()
```

Modules: ``_config`` (kubeconfig → URL, TLS, auth headers, aiohttp session), ``_http`` (JSON
requests; errors are `activities.errors`' tree), ``_informer`` (one type: LIST, WATCH, re-LIST,
indexes), ``_cache`` (the types together: reads, listeners, start and close).
"""

from __future__ import annotations

from sandbox.kubecache._cache import (
    CacheNotSynced,
    ClusterView,
    KubeCache,
    Listener,
    data_plane_resources,
)
from sandbox.kubecache._config import KubeConfig, KubeConfigError
from sandbox.kubecache._http import request_json
from sandbox.kubecache._informer import Change, IndexFunc, Informer, Resource, WatchSettings

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
    "data_plane_resources",
    "request_json",
]
