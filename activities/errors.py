"""The errors activities raise: our own Kubernetes API errors, analysis failures, and the typed
rollout failures. One tree for every activity package: routers, Kubernetes and analysis all
catch the same ``NotFound``.

Three families, for three audiences:

- **Kubernetes API errors** are translated from the client library's ``ApiException`` (and
  urllib3's connection errors) by `api_errors`, so nothing above ``activities/kubernetes`` and
  ``activities/router`` knows which client library is in use — the same seam kopf keeps in
  ``kopf/_cogs/clients/errors.py``. They are plain exceptions, which Temporal reports as a
  *retryable* ``ApplicationError`` whose type is the class name (``Conflict``, ``NotFound``…):
  a lost optimistic-concurrency race or an API server restart is exactly what a retry fixes,
  and every activity re-reads before it writes, so retrying is safe.
- **Analysis failures** are caught on the way to a verdict and never leave an activity as
  themselves: a metric query that gives no usable number becomes a failed check, an alert that
  cannot be posted is logged. Their messages never contain a secret value.
- **Rollout failures** are ``ApplicationError`` subclasses marked non-retryable, for what no retry
  can fix (the target Deployment is missing, the spec is invalid). Their ``type`` is stable: the
  workflow matches on it, and it is what the Web UI shows.

The tree::

    Exception
    ├── KubernetesError              an API call failed (retryable)
    │   ├── ApiUnavailable           no HTTP answer: connection refused/reset, timeout
    │   └── ApiStatusError           the server answered with an error status (.status, .reason)
    │       ├── BadRequest           400
    │       ├── Unauthorized         401
    │       ├── Forbidden            403 (RBAC: fixable by an operator while Temporal retries)
    │       ├── NotFound             404
    │       ├── Conflict             409 (stale resourceVersion: re-read and converge again)
    │       │   └── AlreadyExists    409 AlreadyExists (a concurrent create won the race)
    │       ├── Gone                 410
    │       ├── Invalid              422 (the server refused the object)
    │       ├── TooManyRequests      429
    │       └── ServerError          5xx
    ├── AnalysisError                caught by the analysis activities, never raised out
    │   ├── MetricError              a query gave no usable number (becomes a verdict)
    │   │   ├── NoData               empty result vector, or NaN
    │   │   └── ProviderError        backend unreachable, HTTP error, unparsable answer
    │   └── NotifierError            an alert could not be posted (logged)
    └── temporalio.exceptions.ApplicationError
        └── RolloutError             non-retryable, with a stable ``type``
            ├── TargetNotFound       type "TargetNotFound": the target Deployment does not exist
            ├── PrimaryNotFound      type "PrimaryNotFound": promote before initialize
            ├── InvalidSpec          type "InvalidSpec": the Canary, its target, a MetricTemplate,
            │                        Secret key or URL cannot work
            ├── RevisionMismatch     type "RevisionMismatch": the target changed under promotion
            ├── RoutesNotFound       type "RoutesNotFound": no route to set weights on
            └── ConfigurationError   type "ConfigurationError": e.g. an unknown router provider
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError
from urllib3.exceptions import HTTPError as Urllib3Error

# --- Kubernetes API errors -----------------------------------------------------------------


class KubernetesError(Exception):
    """A Kubernetes API call failed; retryable."""


class ApiUnavailable(KubernetesError):
    """The API server gave no HTTP answer (connection refused or reset, timeout)."""


class ApiStatusError(KubernetesError):
    """The API server answered with an error status."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class BadRequest(ApiStatusError):
    """400."""


class Unauthorized(ApiStatusError):
    """401."""


class Forbidden(ApiStatusError):
    """403: usually missing RBAC; an operator can fix it while Temporal retries."""


class NotFound(ApiStatusError):
    """404."""


class Conflict(ApiStatusError):
    """409: a write raced another; re-read and converge again."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: someone created the object first."""


class Gone(ApiStatusError):
    """410."""


class Invalid(ApiStatusError):
    """422: the server refused the object."""


class TooManyRequests(ApiStatusError):
    """429."""


class ServerError(ApiStatusError):
    """5xx."""


_BY_STATUS: dict[int, type[ApiStatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def translate(exc: ApiException) -> ApiStatusError:
    """Our error for the client library's ``ApiException`` (message and reason from its Status)."""
    status = int(exc.status or 0)
    message, reason = str(exc.reason or "error"), ""
    try:
        body: Any = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, dict):
        message = str(body.get("message") or message)
        reason = str(body.get("reason") or "")
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiStatusError)
    if cls is Conflict and reason == "AlreadyExists":
        cls = AlreadyExists
    return cls(f"{status} {message}", status=status, reason=reason)


@contextmanager
def api_errors() -> Iterator[None]:
    """Re-raise the client library's errors as ours (the original is kept as ``__cause__``)."""
    try:
        yield
    except ApiException as exc:
        if exc.status in (None, 0):
            raise ApiUnavailable(str(exc.reason)) from exc
        raise translate(exc) from exc
    except Urllib3Error as exc:
        raise ApiUnavailable(f"Kubernetes API unreachable: {exc}") from exc


# --- analysis failures ---------------------------------------------------------------------


class AnalysisError(Exception):
    """A metric or alert failure the analysis activities turn into a verdict or a log line."""


class MetricError(AnalysisError):
    """A metric query gave no usable number."""


class NoData(MetricError):
    """The query returned an empty vector or NaN: probably no traffic reaches the canary."""


class ProviderError(MetricError):
    """The metric backend could not answer: unreachable, HTTP error or unreadable response."""


class NotifierError(AnalysisError):
    """An alert provider did not accept a message; the message never contains its URL."""


# --- rollout failures ----------------------------------------------------------------------


class RolloutError(ApplicationError):
    """A failure no retry can fix; ``type`` is the class's stable `error_type`."""

    error_type: ClassVar[str] = "RolloutError"

    def __init__(self, message: str) -> None:
        super().__init__(message, type=self.error_type, non_retryable=True)


class TargetNotFound(RolloutError):
    """The Canary's target Deployment does not exist."""

    error_type = "TargetNotFound"


class PrimaryNotFound(RolloutError):
    """The ``-primary`` Deployment does not exist: initialize has not run."""

    error_type = "PrimaryNotFound"


class InvalidSpec(RolloutError):
    """The Canary, or the target it names, cannot work as written (e.g. no selector label)."""

    error_type = "InvalidSpec"


class RevisionMismatch(RolloutError):
    """The target no longer has the revision being promoted: promote would ship unanalysed code."""

    error_type = "RevisionMismatch"


class RoutesNotFound(RolloutError):
    """The VirtualService, or its route to ``-primary`` and ``-canary``, is missing."""

    error_type = "RoutesNotFound"


class ConfigurationError(RolloutError):
    """Coalmine itself is configured wrongly (e.g. an unknown traffic router provider)."""

    error_type = "ConfigurationError"


__all__ = [
    "AlreadyExists",
    "AnalysisError",
    "ApiStatusError",
    "ApiUnavailable",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "InvalidSpec",
    "KubernetesError",
    "MetricError",
    "NoData",
    "NotFound",
    "NotifierError",
    "PrimaryNotFound",
    "ProviderError",
    "RevisionMismatch",
    "RolloutError",
    "RoutesNotFound",
    "ServerError",
    "TargetNotFound",
    "TooManyRequests",
    "Unauthorized",
    "api_errors",
    "translate",
]
