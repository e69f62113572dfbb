"""Base classes shared by every typed payload of the project.

Every object that crosses a boundary (workflow input, update, query, activity) is a frozen pydantic
model whose JSON field names are camelCase: the Canary spec is Flagger's document, and the status
carries Flagger's names (``canaryWeight``, ``failedChecks``…), so a Flagger user reads both as
they always have. Python code uses the snake_case attribute names; both spellings are accepted
on input so ``temporal workflow start --input`` works with either.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A frozen, strict-about-unknown-fields model with camelCase JSON names."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class LenientModel(ApiModel):
    """For payloads that must stay readable by older or newer code (status, results)."""

    model_config = ConfigDict(extra="ignore")


class SpecModel(ApiModel):
    """A part of the Canary document: typed as strictly as Kubernetes types it.

    Strict, because the API server would refuse ``stepWeight: "10"`` or ``mirror: "yes"`` against
    Flagger's CRD, and silently coercing them here would accept documents Flagger refuses (and
    turn ``maxWeight: true`` into 1). JSON and YAML inputs still parse: strict mode accepts
    mappings for nested models and whole numbers for float fields.
    """

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        return drop_nulls(data)


def drop_nulls(data: Any) -> Any:
    """A mapping without its ``null`` values: ``webhooks:`` left bare by a Helm template means
    no webhooks, as Go's ``encoding/json`` reads it for Flagger (a nil slice, map or pointer,
    the zero value otherwise) and as the API server prunes nulls from a custom resource.

    Subclasses' own before-validators run ahead of this one (pydantic runs a subclass's first),
    so those that look at the raw mapping call it themselves.
    """
    if isinstance(data, dict) and any(value is None for value in data.values()):
        return {key: value for key, value in data.items() if value is not None}
    return data


_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
    "us": 0.000001,
    "µs": 0.000001,
    "ns": 0.000000001,
}


MAX_DURATION_SECONDS = 7 * 24 * 3600.0
"""Longest duration a Canary may name: anything longer is a typo (``30h`` for ``30s``) and would
park a rollout for weeks; it also keeps every duration a finite float."""


def duration_seconds(value: str) -> float:
    """Seconds in a Go duration string such as ``30s``, ``1m30s`` or ``500ms``."""
    # fullmatch, not match: '$' would also accept a trailing newline.
    if len(value) > 64 or not _GO_DURATION.fullmatch(value):
        raise ValueError(
            f"invalid duration {value[:64]!r}: use a number with a unit, e.g. '30s', '1m', "
            "'1m30s', '500ms'"
        )
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in _PART.findall(value))


def _positive_duration(value: str) -> str:
    seconds = duration_seconds(value)
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be greater than zero, e.g. '30s'")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {value!r} is longer than a week: did you mean seconds?")
    return value


Duration = Annotated[
    str,
    AfterValidator(_positive_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([0-9]+(\.[0-9]+)?(h|ms|m|s|us|µs|ns))+$",
            "examples": ["30s", "1m", "1m30s", "500ms"],
        }
    ),
]
"""A positive Go duration string (``30s``, ``1m``, ``1m30s``, ``500ms``), at most a week."""


def format_duration(seconds: float) -> str:
    """The shortest Go-style rendering of a number of seconds (for summaries and PromQL)."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"
