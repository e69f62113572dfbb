"""The one Canary builder of the tests: Flagger's v1beta1 document for podinfo, with the parts a
test cares about given, everything else the article's.

``canary_doc(...)`` is the document (a dict, as `kubectl apply` or ``rollout start -f`` takes it);
``canary(...)`` the parsed `Canary` the workflow and the activities take. Each suite states its
own defaults in one place by passing them (short intervals for rollouts on the local cluster, the
article's for rendering).
"""

from __future__ import annotations

from typing import Any

from workflows.spec import Canary

ARTICLE_ANALYSIS = {"interval": "30s", "threshold": 10, "maxWeight": 50, "stepWeight": 5}
ARTICLE_GATEWAYS = {
    "gateways": ["public-gateway.istio-system.svc.cluster.local"],
    "hosts": ["app.istio.example.com"],
}


def canary_doc(
    namespace: str = "test",
    *,
    name: str = "podinfo",
    target: str = "podinfo",
    service: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
    autoscaler: str | None = None,
    progress_deadline: int | None = 60,
    **spec: Any,
) -> dict[str, Any]:
    """A Canary document. ``service`` and ``analysis`` are merged over port 9898 and the
    article's analysis (30 s interval, threshold 10, steps of 5 up to 50; a None value removes
    one); ``autoscaler`` names an HPA (``autoscaling/v2``); other keyword arguments are further
    ``spec`` fields."""
    body: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "service": {"port": 9898, **(service or {})},
        # None removes a default (e.g. stepWeight=None beside stepWeights).
        "analysis": {
            k: v for k, v in {**ARTICLE_ANALYSIS, **(analysis or {})}.items() if v is not None
        },
        **spec,
    }
    if progress_deadline is not None:
        body["progressDeadlineSeconds"] = progress_deadline
    if autoscaler is not None:
        body["autoscalerRef"] = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "name": autoscaler,
        }
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def canary(namespace: str = "test", **options: Any) -> Canary:
    """`canary_doc` parsed, as the worker receives it."""
    return Canary.model_validate(canary_doc(namespace, **options))
