"""The few Kubernetes calls the analysis needs, behind our own error types.

Reads of Flagger's custom resources (``MetricTemplate``, ``AlertProvider``), of Secrets, and reads
and writes of core/v1 Events go through the official client's generated APIs; its exceptions are
translated into `activities.analysis.errors` here so the rest of the package does not depend on
the client library (kopf does the same). Secret values are decoded here and handed straight to the
code that uses them: they are never logged and never returned from an activity.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from activities.analysis.errors import AlreadyExists, InvalidSpec, KubernetesError, NotFound

FLAGGER_GROUP = "flagger.app"
FLAGGER_VERSION = "v1beta1"

T = TypeVar("T")


def _call(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ApiException as exc:
        if exc.status == 404:
            raise NotFound(f"{what} not found") from None
        if exc.status == 409:
            raise AlreadyExists(f"{what} already exists") from None
        # The body may echo the request; keep only the status and reason.
        raise KubernetesError(f"{what}: HTTP {exc.status} {exc.reason}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubernetesError(f"{what}: {type(exc).__name__}: {exc}") from None


class Cluster:
    """Typed access to one cluster through an injected `ApiClient`."""

    def __init__(self, api_client: k8s.ApiClient, *, timeout_seconds: float) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._timeout = timeout_seconds

    # --- Flagger custom resources ---------------------------------------------------------

    def flagger_object(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """A ``flagger.app/v1beta1`` object (``metrictemplates``, ``alertproviders``)."""
        obj: dict[str, Any] = _call(
            f"{plural} {namespace}/{name}",
            lambda: self._custom.get_namespaced_custom_object(
                FLAGGER_GROUP,
                FLAGGER_VERSION,
                namespace,
                plural,
                name,
                _request_timeout=self._timeout,
            ),
        )
        return obj

    # --- Secrets --------------------------------------------------------------------------

    def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """All keys of a Secret, decoded (``stringData`` is merged into ``data`` by the server)."""
        secret = _call(
            f"secret {namespace}/{name}",
            lambda: self._core.read_namespaced_secret(
                name, namespace, _request_timeout=self._timeout
            ),
        )
        raw: Mapping[str, str] = secret.data or {}
        return {key: base64.b64decode(value).decode() for key, value in raw.items()}

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret; a missing Secret or key is a configuration error."""
        try:
            data = self.secret_data(namespace, name)
        except NotFound:
            raise InvalidSpec(f"secret {namespace}/{name} not found") from None
        if key not in data:
            raise InvalidSpec(f"secret {namespace}/{name} has no key {key!r}")
        return data[key]

    # --- Deployments ----------------------------------------------------------------------

    def deployment_uid(self, namespace: str, name: str) -> str | None:
        """The uid of a Deployment (kubectl describe finds events by it), or None if absent."""
        try:
            deployment = _call(
                f"deployment {namespace}/{name}",
                lambda: self._apps.read_namespaced_deployment(
                    name, namespace, _request_timeout=self._timeout
                ),
            )
        except NotFound:
            return None
        uid: str | None = deployment.metadata.uid
        return uid

    def canary_uid(self, namespace: str, name: str) -> str | None:
        """The uid of the Canary in the cluster, or None when it is not there."""
        try:
            canary = self.flagger_object("canaries", namespace, name)
        except NotFound:
            return None
        uid = (canary.get("metadata") or {}).get("uid")
        return str(uid) if uid else None

    # --- Events ---------------------------------------------------------------------------

    def read_event(self, namespace: str, name: str) -> Any:
        return _call(
            f"event {namespace}/{name}",
            lambda: self._core.read_namespaced_event(
                name, namespace, _request_timeout=self._timeout
            ),
        )

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        _call(
            f"event {namespace}/{body['metadata']['name']}",
            lambda: self._core.create_namespaced_event(
                namespace, body, _request_timeout=self._timeout
            ),
        )

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        _call(
            f"event {namespace}/{name}",
            lambda: self._core.patch_namespaced_event(
                name, namespace, patch, _request_timeout=self._timeout
            ),
        )
