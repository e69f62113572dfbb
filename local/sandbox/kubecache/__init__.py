"""The data plane's view of the cluster: the product's informer (`worker.kubecache`), re-exported.

The mesh and the workloads read the cluster as Istio's control plane does, through a watch-backed
cache and nothing but a kubeconfig. The cache itself is the controller's (`worker.kubecache`):
one informer in the project. What is the sandbox's own is the list of types its data plane reads.
"""

from __future__ import annotations

from worker.kubecache import (
    CacheNotSynced,
    Change,
    ClusterView,
    IndexFunc,
    Informer,
    KubeCache,
    KubeConfig,
    KubeConfigError,
    Listener,
    Resource,
    WatchSettings,
    request_json,
)


def data_plane_resources(*, istio_version: str = "v1") -> tuple[Resource, ...]:
    """The types the sandbox's mesh and workloads read (Istio's in ``istio_version``)."""
    return (
        Resource("", "v1", "namespaces"),
        Resource("", "v1", "services"),
        Resource("", "v1", "pods"),
        Resource("discovery.k8s.io", "v1", "endpointslices"),
        Resource("networking.istio.io", istio_version, "virtualservices"),
        Resource("networking.istio.io", istio_version, "destinationrules"),
        Resource("gateway.networking.k8s.io", "v1", "httproutes"),
        Resource("gateway.networking.k8s.io", "v1", "gateways"),
    )


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
