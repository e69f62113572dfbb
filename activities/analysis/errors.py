"""Errors of the analysis activities.

Breaches, missing data and unreachable backends are *verdicts*, not errors: `check_metric` turns
them into a `MetricResult` and the workflow counts a failed check. What is left to raise is either
a provider failure caught on the way to a verdict, or a configuration mistake that no retry can fix:

    AnalysisError
     ├── MetricError               a query gave no usable number (caught: becomes a verdict)
     │    ├── NoData               empty result vector, or NaN
     │    └── ProviderError        backend unreachable, HTTP error, unparsable answer
     ├── NotifierError             an alert could not be posted (logged, never raised out)
     ├── InvalidSpec               configuration error: unknown provider type, missing
     │                             MetricTemplate or Secret key, bad URL… (non-retryable)
     └── KubernetesError           the API server failed a read or write (retryable)
          ├── NotFound             the object does not exist (HTTP 404)
          └── AlreadyExists        a create raced another writer (HTTP 409)

`InvalidSpec` crosses the activity boundary as a non-retryable `ApplicationError` of the same type
name, so the workflow sees a clear message instead of a retry loop. Messages never contain secret
values: credentials are named by their Secret and key, never printed.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


class AnalysisError(Exception):
    """Base of every error raised by the analysis activities."""


class MetricError(AnalysisError):
    """A metric query gave no usable number."""


class NoData(MetricError):
    """The query returned an empty vector or NaN: probably no traffic reaches the canary."""


class ProviderError(MetricError):
    """The metric backend could not answer: unreachable, HTTP error or unreadable response."""


class NotifierError(AnalysisError):
    """An alert provider did not accept a message; the message never contains its URL."""


class InvalidSpec(AnalysisError):
    """A configuration error no retry can fix."""

    def to_application_error(self) -> ApplicationError:
        """The non-retryable failure the workflow receives (``type`` is ``InvalidSpec``)."""
        return ApplicationError(str(self), type="InvalidSpec", non_retryable=True)


class KubernetesError(AnalysisError):
    """The Kubernetes API server failed a request; Temporal retries the activity."""


class NotFound(KubernetesError):
    """The object asked for does not exist."""


class AlreadyExists(KubernetesError):
    """A create found the object already there (another writer, or a retried call)."""
