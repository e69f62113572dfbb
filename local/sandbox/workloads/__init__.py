"""Simulated workloads: what a pod answers, chosen by its image (see base.py for the dispatch
model). They read nothing from the cluster themselves: the mesh hands each request the pod object
from its cluster view (read only), and tells them when a pod is gone (`WorkloadSet.forget`).

- images containing ``flagger-loadtester`` serve the load tester API (loadtester.py);
- Prometheus images (``prom/prometheus``) are answered by the sandbox's real Prometheus
  (prometheus.py), so ``http://prometheus.istio-system:9090`` works through the mesh;
- every other image serves the podinfo-like API whose faults follow the pod spec (podinfo.py).
"""

from __future__ import annotations

from sandbox.workloads.base import Obj, Workload
from sandbox.workloads.loadtester import LoadTester, is_loadtester_image
from sandbox.workloads.podinfo import Podinfo
from sandbox.workloads.prometheus import PrometheusForwarder, is_prometheus_image

__all__ = ["LoadTester", "Podinfo", "PrometheusForwarder", "WorkloadSet"]


class WorkloadSet:
    """The workloads of one sandbox (without ``prometheus``, its pods answer as podinfo)."""

    def __init__(
        self,
        *,
        podinfo: Podinfo,
        loadtester: LoadTester,
        prometheus: PrometheusForwarder | None = None,
    ) -> None:
        self.podinfo = podinfo
        self.loadtester = loadtester
        self.prometheus = prometheus

    def for_container(self, container: Obj) -> Workload:
        image = str(container.get("image", ""))
        if is_loadtester_image(image):
            return self.loadtester
        if self.prometheus is not None and is_prometheus_image(image):
            return self.prometheus
        return self.podinfo

    def forget(self, pod: Obj) -> None:
        """A pod is gone: drop what the workloads kept for it (podinfo's error accumulator)."""
        self.podinfo.forget(str((pod.get("metadata") or {}).get("uid", "")))
