"""Canary analysis: metric checks, webhooks, events and alerts (issue 4).

Public surface: `AnalysisActivities` (the three activities ``check_metric``, ``call_webhook``,
``record_event``) and `AnalysisSettings`. Layout, by responsibility:

- ``metrics/``: how to query — the `MetricProvider` Protocol, `PrometheusProvider`, credentials,
  the verdict and its Flagger wording, and `MetricChecker` which ties them together;
- ``templates/``: what to measure — per-router query templates (Istio) and their rendering;
- ``webhooks.py``: Flagger's webhook payload and call rules;
- ``notifiers/``: one module per alert provider type behind the `Notifier` Protocol;
- ``events.py``: Kubernetes Events on the target, ``event`` webhooks and alerts;
- ``kube.py``: the few Kubernetes reads and writes, behind our own errors (``errors.py``).
"""

from activities.analysis.activities import AnalysisActivities
from activities.analysis.settings import AnalysisSettings

__all__ = ["AnalysisActivities", "AnalysisSettings"]
