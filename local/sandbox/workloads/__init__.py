"""Simulated workloads: what a pod answers, chosen by its image (see base.py for the dispatch
model). They read nothing from the cluster themselves: the mesh hands each request the pod object
from its cluster view (read only), and tells them when a pod is gone (`WorkloadSet.forget`).

- images containing ``flagger-loadtester`` serve the load tester API (loadtester.py);
- every other image serves the podinfo-like API whose faults follow the pod spec (podinfo.py).
"""

from __future__ import annotations

from sandbox.workloads.base import Obj, Workload
from sandbox.workloads.loadtester import LoadTester, is_loadtester_image
from sandbox.workloads.podinfo import Podinfo

__all__ = ["LoadTester", "Podinfo", "WorkloadSet"]


class WorkloadSet:
    """The workloads of one sandbox."""

    def __init__(self, *, podinfo: Podinfo, loadtester: LoadTester) -> None:
        self.podinfo = podinfo
        self.loadtester = loadtester

    def for_container(self, container: Obj) -> Workload:
        if is_loadtester_image(str(container.get("image", ""))):
            return self.loadtester
        return self.podinfo

    def forget(self, pod: Obj) -> None:
        """A pod is gone: drop what the workloads kept for it (podinfo's error accumulator)."""
        self.podinfo.forget(str((pod.get("metadata") or {}).get("uid", "")))
