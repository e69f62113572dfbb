"""Reading YAML or JSON text into documents, refusing what would hurt before anything walks it.

Part of the Canary spec (``workflows.spec`` re-exports the public names). ``load_documents``
turns one text (a file, or standard input: several documents separated by ``---``) into its
documents, each checked for size and shape; choosing the Canary among them, and validating it,
is ``workflows.spec``'s business. Every refusal is a ``SpecError`` without a field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from workflows.spec_errors import SpecError

__all__ = ["MAX_DOCUMENT_BYTES", "check_shape", "load_documents"]

MAX_DOCUMENT_BYTES = 1 << 20
"""Largest document ``parse_canary`` reads (1 MiB, as the Kubernetes API server's limit for an
object is about that): a Canary is a few kilobytes, anything near this is not one."""
_MAX_VALUES = 50_000
_MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (which it would otherwise silently let the
    last one win: two ``stepWeight`` lines would mean the author's intent is lost)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: list[Any] = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice: keep one",
                key_node.start_mark,
            )
        seen.append(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str) -> list[Any]:
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        raise SpecError.single(_yaml_message(exc)) from None
    except RecursionError:
        raise SpecError.single(f"nested deeper than {_MAX_DEPTH} levels: not a Canary") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # ValueError too: PyYAML raises it for values such as the date 2019-13-45.
        raise SpecError.single(f"invalid YAML: {exc}") from None
    return [d for d in documents if d is not None]


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    """``invalid YAML at line 4, column 4: expected ',' or ']' (while parsing a flow sequence
    that starts at line 3, column 6)``: where it broke, and where the broken part began."""

    def where(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML at {where(mark)}" if mark else "invalid YAML"
    message += f": {exc.problem or exc.context or 'unreadable'}"
    if exc.problem and exc.context and exc.context_mark:
        message += f" ({exc.context} that starts at {where(exc.context_mark)})"
    return message


def check_shape(document: Any) -> None:
    """Refuse absurd structures before validation walks them (YAML aliases can make a small
    text expand to millions of values)."""
    seen = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > _MAX_VALUES:
            raise SpecError.single(f"more than {_MAX_VALUES} values: not a Canary")
        if depth > _MAX_DEPTH:
            raise SpecError.single(f"nested deeper than {_MAX_DEPTH} levels: not a Canary")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)


def load_documents(source: str | bytes) -> list[Any]:
    """The documents of one YAML (or JSON) text, empty ones left out, each of a sane shape."""
    if isinstance(source, bytes):
        if len(source) > MAX_DOCUMENT_BYTES:
            raise _too_big(len(source))
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError.single(f"the document is not UTF-8 text: {exc.reason}") from None
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise _too_big(size)
    documents = _parse_yaml(source)
    for document in documents:
        check_shape(document)
    return documents


def _too_big(size: int) -> SpecError:
    return SpecError.single(
        f"the document is {size} bytes, over the {MAX_DOCUMENT_BYTES // 1024} KiB limit: a "
        "Canary is a few kilobytes; pass only the Canary"
    )
