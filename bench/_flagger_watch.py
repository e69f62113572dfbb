"""What both products are measured by: the objects they write, watched from the outside.

A `Recorder` watches one namespace's VirtualServices (the canary weight) and Canaries (the phase)
from two threads and keeps every change with its arrival time, so the same clock and the same
watch time Flagger and Coalmine. The workload helpers create the same targets and Canaries for
both.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from activities.kubernetes import build_api_client
from bench._cluster import retried
from bench._flagger_figures import Series, canary_weight_of
from bench._real import create_target, set_image
from bench._support import BUILTIN_METRICS

PARALLEL = 8

# --- watching --------------------------------------------------------------------------------


class Recorder:
    """Canary weights and phases of one namespace, as they change."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.namespace = namespace
        self.weights: dict[str, Series] = defaultdict(list)
        self.phases: dict[str, Series] = defaultdict(list)
        self._lock = threading.Lock()
        self._api = build_api_client(kubeconfig=kubeconfig, pool_size=4)
        self._watches = [watch.Watch(), watch.Watch()]
        self._threads = [
            threading.Thread(target=self._run, args=(w, plural), daemon=True)
            for w, plural in zip(self._watches, ("virtualservices", "canaries"), strict=True)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, w: watch.Watch, plural: str) -> None:
        group, version = (
            ("networking.istio.io", "v1beta1")
            if plural == "virtualservices"
            else ("flagger.app", "v1beta1")
        )
        custom = k8s.CustomObjectsApi(self._api)
        while True:
            try:
                for event in w.stream(
                    custom.list_namespaced_custom_object, group, version, self.namespace, plural
                ):
                    self._record(plural, event["object"], time.time())
                return  # stopped
            except Exception:  # a dropped watch is re-opened; stop() ends it
                if getattr(w, "_stop", False):
                    return
                time.sleep(0.5)

    def _record(self, plural: str, obj: dict[str, Any], when: float) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            if plural == "virtualservices":
                value: Any = canary_weight_of(obj, name)
                series = self.weights[name]
            else:
                value = (obj.get("status") or {}).get("phase") or ""
                series = self.phases[name]
            if not series or series[-1][1] != value:
                series.append((when, value))

    def weight_series(self, name: str) -> Series:
        with self._lock:
            return list(self.weights.get(name, []))

    def phase_series(self, name: str) -> Series:
        with self._lock:
            return list(self.phases.get(name, []))

    def phase(self, name: str) -> str:
        series = self.phase_series(name)
        return str(series[-1][1]) if series else ""

    def weight(self, name: str) -> int | None:
        series = self.weight_series(name)
        return series[-1][1] if series else None

    def stop(self) -> None:
        for w in self._watches:
            w.stop()
        self._api.close()


# --- the workload --------------------------------------------------------------------------------


def canary_body(
    namespace: str,
    name: str,
    *,
    interval: str,
    max_weight: int,
    step_weight: int,
    threshold: int,
    metrics: list[dict[str, Any]],
    webhooks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Flagger Canary as a user writes it; the same object is given to both products."""
    analysis: dict[str, Any] = {
        "interval": interval,
        "threshold": threshold,
        "maxWeight": max_weight,
        "stepWeight": step_weight,
        "metrics": metrics,
    }
    if webhooks:
        analysis["webhooks"] = webhooks
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            # Flagger retries a primary that is slow to become ready until its Deployment reports
            # no progress; 10 minutes keeps an overloaded two-core cluster from failing either.
            "progressDeadlineSeconds": 600,
            "service": {"port": 9898},
            "analysis": analysis,
        },
    }


def rollback_gate(loadtester: str) -> dict[str, Any]:
    """Flagger's manual rollback: the load tester's gate, open means roll back."""
    return {"name": "rollback gate", "type": "rollback", "url": f"{loadtester}rollback/check"}


LATENCY_METRICS = BUILTIN_METRICS


def constant_templates(namespace: str, prometheus_url: str) -> list[dict[str, Any]]:
    """Two MetricTemplates whose queries always pass: hundreds of canaries cannot all have
    traffic here, and a canary without traffic fails the builtin checks (no data). Each step still
    makes two real Prometheus queries, in both products."""
    return [
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "provider": {"type": "prometheus", "address": prometheus_url},
                "query": query,
            },
        }
        for name, query in (("success-rate", "vector(100)"), ("duration", "vector(10)"))
    ]


def template_metrics(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "success-rate",
            "interval": "1m",
            "templateRef": {"name": "success-rate", "namespace": namespace},
            "thresholdRange": {"min": 99},
        },
        {
            "name": "duration",
            "interval": "1m",
            "templateRef": {"name": "duration", "namespace": namespace},
            "thresholdRange": {"max": 500},
        },
    ]


def create_namespace(api: Any, namespace: str) -> None:
    try:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    except ApiException as err:
        if err.status != 409:
            raise


def create_custom(api: Any, body: dict[str, Any], plural: str) -> None:
    group, version = body["apiVersion"].split("/")
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, body["metadata"]["namespace"], plural, body
    )


def create_canaries(api: Any, bodies: list[dict[str, Any]]) -> None:
    """Targets (one replica each) and their Canaries, eight at a time."""

    def one(body: dict[str, Any]) -> None:
        meta = body["metadata"]
        retried(create_target, api, meta["namespace"], meta["name"])
        retried(create_custom, api, body, "canaries")

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, bodies))


def change_images(api: Any, namespace: str, names: list[str], tag: str) -> dict[str, float]:
    """Set a new image on every target; when each change was sent."""

    def one(name: str) -> tuple[str, float]:
        sent = time.time()
        retried(set_image, api, namespace, name, f"quay.io/stefanprodan/podinfo:{tag}")
        return name, sent

    with ThreadPoolExecutor(PARALLEL) as pool:
        return dict(pool.map(one, names))


def wait_phases(
    recorder: Recorder, names: list[str], phases: set[str], timeout: float, what: str
) -> float:
    """Wait until every Canary's phase is one of ``phases``; seconds waited."""
    started = time.monotonic()
    while True:
        missing = [n for n in names if recorder.phase(n) not in phases]
        if not missing:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            sample = ", ".join(f"{n}={recorder.phase(n) or '-'}" for n in missing[:5])
            raise TimeoutError(f"{what}: {len(missing)} Canaries not yet {phases}: {sample}")
        time.sleep(0.5)


def delete_namespace(api: Any, namespace: str) -> None:
    """Delete the Canaries first and wait until they are gone (a later Coalmine controller,
    which watches every namespace, must never see them), then the namespace in the background."""
    custom = k8s.CustomObjectsApi(api)
    custom.delete_collection_namespaced_custom_object(
        "flagger.app", "v1beta1", namespace, "canaries"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = custom.list_namespaced_custom_object(
            "flagger.app", "v1beta1", namespace, "canaries", limit=1
        )
        if not left["items"]:
            break
        time.sleep(0.5)
    k8s.CoreV1Api(api).delete_namespace(namespace)
