"""The sandbox API server's errors, each one a Kubernetes ``Status`` waiting to be sent.

Every error carries the HTTP code and the ``reason`` a real kube-apiserver gives, so the store (used
directly by the simulated controllers) and the HTTP layer (which turns them into ``Status`` JSON)
share one vocabulary::

    ApiError                       500 InternalError
    ├── BadRequest                 400 BadRequest
    ├── NotFound                   404 NotFound
    ├── MethodNotAllowed           405 MethodNotAllowed
    ├── NotAcceptable              406 NotAcceptable
    ├── Conflict                   409 Conflict       (stale resourceVersion, failed precondition)
    │   └── AlreadyExists          409 AlreadyExists  (create of an existing name)
    ├── Expired                    410 Expired        (watch from a compacted resourceVersion)
    ├── UnsupportedMediaType       415 UnsupportedMediaType
    ├── Invalid                    422 Invalid        (validation; carries field causes)
    └── TooManyRequests            429 TooManyRequests

Messages follow the apiserver's wording (``deployments.apps "podinfo" not found``) because clients
and humans match on them.
"""

from __future__ import annotations

from typing import Any, ClassVar


def qualified(group: str, plural: str) -> str:
    """``deployments.apps`` / ``pods``: how the apiserver names a resource in messages."""
    return f"{plural}.{group}" if group else plural


class ApiError(Exception):
    """An error with a Kubernetes ``Status`` representation."""

    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        group: str = "",
        plural: str = "",
        name: str = "",
        causes: list[dict[str, str]] | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.group = group
        self.plural = plural
        self.name = name
        self.causes = causes or []
        self.retry_after_seconds = retry_after_seconds

    def status(self) -> dict[str, Any]:
        """The ``meta.k8s.io/v1`` ``Status`` object for this error."""
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.plural:
            details["kind"] = self.plural
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after_seconds is not None:
            details["retryAfterSeconds"] = self.retry_after_seconds
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, group: str, plural: str, name: str) -> NotFound:
        message = f'{qualified(group, plural)} "{name}" not found'
        return cls(message, group=group, plural=plural, name=name)


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(ApiError):
    code = 406
    reason = "NotAcceptable"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"

    @classmethod
    def modified(cls, group: str, plural: str, name: str) -> Conflict:
        message = (
            f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": the object has '
            "been modified; please apply your changes to the latest version and try again"
        )
        return cls(message, group=group, plural=plural, name=name)


class AlreadyExists(Conflict):
    reason = "AlreadyExists"

    @classmethod
    def of(cls, group: str, plural: str, name: str) -> AlreadyExists:
        message = f'{qualified(group, plural)} "{name}" already exists'
        return cls(message, group=group, plural=plural, name=name)


class Expired(ApiError):
    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"

    @classmethod
    def field(  # noqa: PLR0917 - mirrors field.Invalid(path, value, detail)
        cls, kind: str, group: str, plural: str, name: str, path: str, detail: str
    ) -> Invalid:
        """One invalid field, worded as the apiserver words it: ``Kind.group "name" is invalid``."""
        what = f"{kind}.{group}" if group else kind
        message = f'{what} "{name}" is invalid: {path}: {detail}'
        causes = [{"reason": "FieldValueInvalid", "message": detail, "field": path}]
        return cls(message, group=group, plural=plural, name=name, causes=causes)


class TooManyRequests(ApiError):
    code = 429
    reason = "TooManyRequests"


REASONS: dict[int, type[ApiError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        Conflict,
        Expired,
        UnsupportedMediaType,
        Invalid,
        TooManyRequests,
    )
}


def for_code(code: int, message: str) -> ApiError:
    """An error of the class that matches an HTTP code (used by fault injection)."""
    cls = REASONS.get(code)
    if cls is None:
        # An unusual injected code still goes out with that code.
        cls = type("InjectedError", (ApiError,), {"code": code, "reason": "InternalError"})
    return cls(message)
