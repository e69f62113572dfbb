"""Building the Kubernetes ``ApiClient`` the activities are given.

Temporal owns retries: an activity that fails is retried by its retry policy, with backoff,
visible in the workflow history. So the client library must not retry on its own (urllib3 retries
three times by default, hidden and unbounded in time): ``configuration.retries`` is a zero
``Retry``. Every call also carries `REQUEST_TIMEOUT` as ``_request_timeout`` (see
`activities.kubernetes.resources`), so a hung API server fails the attempt instead of the
activity's start-to-close timeout.

The worker builds one client at start-up and injects it into `KubernetesActivities` and
`RouterActivities`; nothing here is global. Each ``ApiClient`` has its own connection pool;
`build_api_client` sizes it for the worker's activity thread pool.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config
from urllib3.util.retry import Retry

REQUEST_TIMEOUT: tuple[float, float] = (5.0, 30.0)
"""(connect, read) seconds for every API call: a hung server fails the attempt, not the rollout."""


def _no_retries(configuration: client.Configuration, pool_size: int) -> None:
    # Retry(0, read=False): one attempt, and a read error is raised, not retried silently.
    configuration.retries = Retry(total=0, connect=0, read=False, redirect=0, status=0)
    configuration.connection_pool_maxsize = pool_size


def build_api_client(
    *,
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    in_cluster: bool = False,
    pool_size: int = 16,
) -> client.ApiClient:
    """An ``ApiClient`` from a kubeconfig file (or ``$KUBECONFIG``) or the in-cluster config.

    ``in_cluster``: use the pod's service account (the worker deployed in the cluster).
    ``pool_size``: HTTP connections kept to the API server; size it like the activity thread
    pool, so threads never queue for a connection.
    """
    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig is not None else None,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    _no_retries(configuration, pool_size)
    return client.ApiClient(configuration)
