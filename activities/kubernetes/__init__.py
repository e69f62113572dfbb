"""Kubernetes activities: the target Deployment, its ``-primary`` copy, HPA, Services, config.

Public surface: `KubernetesActivities` (the activities, given an ``ApiClient``),
`CanaryStatusActivities` (the Canary's ``/status`` in Flagger's shape),
`build_api_client` (client-library retries off, timeouts on every call), and `compute_revision`
/ `read_revision` (the revision hash, shared with the command line). The rest of the package is
private to it: `resources` (dict access and converge), `objects` (pure builders), `readiness`.
"""

from activities.kubernetes.activities import KubernetesActivities
from activities.kubernetes.canary_status import CanaryStatusActivities
from activities.kubernetes.client import REQUEST_TIMEOUT, build_api_client
from activities.kubernetes.resources import Resources
from activities.kubernetes.revision import compute_revision, read_revision

__all__ = [
    "REQUEST_TIMEOUT",
    "CanaryStatusActivities",
    "KubernetesActivities",
    "Resources",
    "build_api_client",
    "compute_revision",
    "read_revision",
]
