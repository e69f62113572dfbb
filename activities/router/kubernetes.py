"""The Kubernetes router (``provider: kubernetes``): Blue/Green with no mesh, by Service selector.

No routing object of its own: the apex, ``-primary`` and ``-canary`` Services are created by
``initialize`` for every provider (Flagger's KubernetesDefaultRouter). During the analysis the
apex Service selects the primary's pods and the canary is reached only through
``<svc>-canary`` (the load tester's target), as with Flagger's ``kubernetes`` provider. Where
Flagger's mesh router for this provider is a no-op, this one makes the two routes it is asked
for real: "everything to the canary" (0/100) points the apex Service's selector at the canary's
pods — the Blue/Green switch — and "everything to the primary" (100/0) points it back. Any
other split cannot be had from one Service and is `InvalidSpec` (the spec validator already
refuses ``stepWeight`` for this provider: Blue/Green only, with ``analysis.iterations``).

Its builtin checks read the application's own metrics, as Flagger's HTTP observer does
(`activities.router._http_metrics`): podinfo's ``http_request_duration_seconds`` histogram from
pods Prometheus scrapes by their ``prometheus.io/*`` annotations, matched by pod name.
"""

from __future__ import annotations

from kubernetes import client

from activities.errors import InvalidSpec, RoutesNotFound
from activities.kubernetes.resources import SERVICE, Obj, Resources
from activities.router._http_metrics import REQUEST_DURATION, REQUEST_SUCCESS_RATE
from activities.router.base import Provider, RbacRule
from workflows.activity_api import CanaryRef, Weights
from workflows.spec import Canary


def _selector(service: Obj | None) -> dict[str, str]:
    return dict(((service or {}).get("spec") or {}).get("selector") or {})


class KubernetesRouter:
    """`TrafficRouter` switching the apex Service between the primary's and the canary's pods."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._res = Resources(api_client)

    def reconcile(self, canary: Canary) -> None:
        # The Services are initialize's (every provider has them); nothing else to create.
        return None

    def set_routes(self, ref: CanaryRef, primary: int, canary: int) -> bool:
        if (primary, canary) not in ((100, 0), (0, 100)):
            raise InvalidSpec(
                f"the kubernetes provider does Blue/Green only (all traffic to one side): "
                f"cannot route {primary}/{canary}; use analysis.iterations, not stepWeight"
            )
        apex, selectors = self._read(ref)
        wanted = selectors["canary" if canary == 100 else "primary"]
        if _selector(apex) == wanted:
            return False
        # A merge patch replaces the selector map key by key; the selector has the one label
        # both sides share, so this swaps its value. The resourceVersion makes a concurrent
        # writer a retryable Conflict.
        patch = {
            "metadata": {"resourceVersion": apex["metadata"]["resourceVersion"]},
            "spec": {"selector": wanted},
        }
        self._res.patch(SERVICE, ref.namespace, ref.service, patch)
        return True

    def get_routes(self, ref: CanaryRef) -> Weights:
        apex, selectors = self._read(ref)
        if _selector(apex) == selectors["canary"]:
            return Weights(primary=0, canary=100)
        return Weights(primary=100, canary=0)

    def finalize(self, ref: CanaryRef) -> None:
        # Back to the primary; the Services themselves belong to initialize (and the Canary).
        self.set_routes(ref, 100, 0)

    def _read(self, ref: CanaryRef) -> tuple[Obj, dict[str, dict[str, str]]]:
        apex = self._res.get(SERVICE, ref.namespace, ref.service)
        primary = self._res.get(SERVICE, ref.namespace, ref.service + "-primary")
        canary = self._res.get(SERVICE, ref.namespace, ref.service + "-canary")
        if apex is None or primary is None or canary is None:
            raise RoutesNotFound(
                f"Services {ref.service}, {ref.service}-primary and {ref.service}-canary must "
                f"exist in {ref.namespace}: initialize the Canary first"
            )
        return apex, {"primary": _selector(primary), "canary": _selector(canary)}


PROVIDER = Provider(
    name="kubernetes",
    router=KubernetesRouter,
    queries={"request-success-rate": REQUEST_SUCCESS_RATE, "request-duration": REQUEST_DURATION},
    kinds=("services",),
    # The apex Service's selector is patched (get/create/update come with initialize's rule).
    rbac=(RbacRule("", ("services",), ("get", "patch")),),
)
