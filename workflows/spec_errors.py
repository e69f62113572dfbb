"""Why a Canary document was refused, in words its author can act on.

Exception tree::

    ValueError
     └── SpecError            every problem of one document; ``problems`` holds them
          (each a SpecProblem: the field path in the document's own camelCase, and a message
           saying what was wrong and how to fix it)

pydantic's errors name Python internals (``Input should be a valid integer``, locations with
union tags, ``analysis`` where the author wrote ``canaryAnalysis``); ``problems_from`` turns them
into one line per problem, naming the path as the document spells it. Validators in the spec
modules that check several fields at once raise ``field_error`` so their message, too, lands on
the field it is about rather than on the enclosing object.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "SpecError",
    "SpecProblem",
    "field_error",
    "format_path",
    "problems_from",
    "yaml_type",
]

_FIELD_ERROR = "spec_field"

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a document."""

    path: str
    """Field path as the document spells it, e.g. ``spec.analysis.metrics[0].interval``;
    empty for problems of the whole text (YAML syntax, size)."""
    message: str
    """What was wrong and how to fix it."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A Canary document that cannot be used; ``str()`` lists every problem, one per line."""

    def __init__(self, problems: Iterable[SpecProblem]) -> None:
        self.problems: tuple[SpecProblem, ...] = tuple(problems)
        super().__init__(self._render())

    @classmethod
    def single(cls, message: str, *, path: str = "") -> SpecError:
        return cls([SpecProblem(path=path, message=message)])

    @property
    def paths(self) -> list[str]:
        """The field paths named, in order (empty strings for whole-document problems)."""
        return [p.path for p in self.problems]

    def _render(self) -> str:
        count = len(self.problems)
        head = "invalid Canary: 1 problem" if count == 1 else f"invalid Canary: {count} problems"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as cls(*args); ours takes problems, not the rendered message.
        return (SpecError, (self.problems,))


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error for a model validator to raise about one of its fields (``stepWeight``,
    ``metrics.2.name``), so the path names that field and not just the enclosing object."""
    return PydanticCustomError(_FIELD_ERROR, "{message}", {"field": field, "message": message})


# --- paths -----------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# pydantic puts a union member's tag into the location (``int``, ``function-after[...]``).
_UNION_TAG = re.compile(r"^(int|str|float|bool|none|list|dict|[a-z][\w-]*\[.*\]|constrained-\w+)$")


def format_path(loc: Sequence[int | str]) -> str:
    """``('spec', 'analysis', 'metrics', 0, 'name')`` → ``spec.analysis.metrics[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{part!r}]"
    return out


def _clean_loc(loc: Sequence[int | str], extra: str | None) -> Loc:
    # '[key]' marks an error in a mapping's key rather than its value: the path ends at the key.
    parts: list[int | str] = [
        p for p in loc if not (isinstance(p, str) and (p == "[key]" or _UNION_TAG.match(p)))
    ]
    if extra:
        parts.extend(int(p) if p.isdigit() else p for p in extra.split("."))
    return tuple(parts)


def _spell_as_written(loc: Loc, document: Any) -> Loc:
    # The v1alpha3 block is moved to ``analysis`` before validation; name it as written.
    spec = document.get("spec") if isinstance(document, Mapping) else None
    wrote_old = isinstance(spec, Mapping) and "canaryAnalysis" in spec and "analysis" not in spec
    if wrote_old and loc[:2] == ("spec", "analysis"):
        return ("spec", "canaryAnalysis", *loc[2:])
    return loc


# --- the model tree, to suggest field names ---------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    """Every spelling a model accepts, mapped to its field name."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
    return names


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _field_names(annotation).get(str(part))
            if field is None:
                return None
            annotation = annotation.model_fields[field].annotation
        elif origin is list and isinstance(part, int):
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _allowed_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _suggest(unknown: str, allowed: list[str]) -> str:
    folded = {a.lower().replace("_", "").replace("-", ""): a for a in allowed}
    key = unknown.lower().replace("_", "").replace("-", "")
    if key in folded:
        return f" did you mean {folded[key]!r}?"
    close = difflib.get_close_matches(unknown, allowed, n=1, cutoff=0.6)
    return f" did you mean {close[0]!r}?" if close else ""


# --- messages --------------------------------------------------------------------------------

_MISSING_HINTS = {
    "targetRef": "add targetRef: {apiVersion: apps/v1, kind: Deployment, name: <your deployment>}",
    "service": "add service: {port: <the port your app listens on, e.g. 9898>}",
    "port": "add port: <the port your app listens on, e.g. 9898>",
    "analysis": "add analysis: {interval: 1m, threshold: 5, maxWeight: 50, stepWeight: 10}",
    "metadata": "add metadata: {name: <canary name>, namespace: <namespace>}",
    "spec": "add spec: with targetRef, service and analysis",
    "url": "add url: http://<host>/<path>",
    "providerRef": "add providerRef: {name: <an AlertProvider>}",
}

_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value pairs)",
    "model_type": "a mapping (key: value pairs)",
    "model_attributes_type": "a mapping (key: value pairs)",
}


_YAML_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "empty (null)"),
    (bool, "a boolean"),  # before int: a bool is an int in Python
    (int, "a whole number"),
    (float, "a number"),
    (str, "a string"),
    (Mapping, "a mapping"),
    ((list, tuple), "a list"),
)


def yaml_type(value: Any) -> str:
    """How a YAML author would call the type of ``value`` ("a string", "a mapping")."""
    for types_, word in _YAML_TYPES:
        if isinstance(value, types_):
            return word
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, Mapping | list | tuple) else yaml_type(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_message(kind: str, value: Any) -> str:
    hint = ""
    if isinstance(value, str) and kind.startswith(("int", "float")):
        hint = ": write the number without quotes"
    elif isinstance(value, int | float) and kind == "string_type":
        hint = f": quote it, e.g. '{value}'"
    shown, word = _shown(value), yaml_type(value)
    got = shown if shown == word else f"{shown} ({word})"
    return f"expected {_TYPE_WORDS[kind]}, got {got}{hint}"


def _unknown_field_message(field: str, loc: Loc, root: type[BaseModel]) -> str:
    parent = _model_at(root, loc[:-1])
    allowed = _allowed_names(parent) if parent else []
    tip = _suggest(field, allowed)
    listed = f" (allowed here: {', '.join(allowed)})" if allowed and not tip else ""
    return f"unknown field {field!r}:{tip or ' remove it'}{listed}"


_FIXED_MESSAGES = {
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}


def _describe(error: ErrorDetails, loc: Loc, root: type[BaseModel]) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    field = str(loc[-1]) if loc else ""
    message = str(error["msg"])
    if kind == _FIELD_ERROR:
        message = str(ctx.get("message", message))
    elif kind == "missing":
        message = "required field is missing: " + _MISSING_HINTS.get(field, f"add {field}: …")
    elif kind == "extra_forbidden":
        message = _unknown_field_message(field, loc, root)
    elif kind in _TYPE_WORDS:
        message = _type_message(kind, value)
    elif kind in _FIXED_MESSAGES:
        message = _FIXED_MESSAGES[kind]
    elif kind == "literal_error":
        message = f"expected {ctx.get('expected', 'another value')}, got {_shown(value)}"
    elif kind == "string_pattern_mismatch":
        message = (
            f"{_shown(value)} is not a valid Kubernetes name: use lowercase letters, digits, '-'"
        )
    elif kind in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    else:
        message = message[:1].lower() + message[1:]
        message = f"{message.replace('input should', 'must')}, got {_shown(value)}"
    return message


def problems_from(
    exc: ValidationError, *, root: type[BaseModel], document: Any
) -> list[SpecProblem]:
    """One problem per field path, in document order, from a model's validation error."""
    by_path: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        extra = (error.get("ctx") or {}).get("field") if error["type"] == _FIELD_ERROR else None
        loc = _clean_loc(error["loc"], extra if isinstance(extra, str) else None)
        message = _describe(error, loc, root)
        path = format_path(_spell_as_written(loc, document))
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    return [SpecProblem(path=path, message="; or ".join(msgs)) for path, msgs in by_path.items()]
