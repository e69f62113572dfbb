"""Reading a history event's payloads and fields without the workflow's types.

Histories are kept for years and the payload shapes change (``analyse_step`` replaced one
activity per check), so the report reads payloads as plain JSON and picks the fields it knows,
camelCase or snake_case, ignoring the rest. A payload it cannot decode (another codec, binary)
reads as None instead of failing the report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import MarkerRecordedEventAttributes

_CAMEL = re.compile(r"_([a-z])")


def decode(payload: Payload) -> Any:
    encoding = payload.metadata.get("encoding", b"")
    if encoding == b"binary/null":
        return None
    if encoding != b"json/plain":
        return None
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


def first(payloads: Payloads) -> Any:
    """The first payload of a list (an activity's single argument or result)."""
    return decode(payloads.payloads[0]) if payloads.payloads else None


def summary(metadata_summary: Payload) -> str:
    """A user-metadata summary (an activity's or timer's one-liner)."""
    value = decode(metadata_summary) if metadata_summary.data else None
    return value if isinstance(value, str) else ""


LOCAL_ACTIVITY_MARKER = "core_local_activity"


def local_activity(marker: MarkerRecordedEventAttributes) -> tuple[str, Any] | None:
    """``(activity type, result)`` of a local activity's marker; None for any other marker.

    A local activity leaves only this marker in history: its type (in the marker's ``data``)
    and its result, not its input."""
    if marker.marker_name != LOCAL_ACTIVITY_MARKER:
        return None
    data = first(marker.details["data"]) if "data" in marker.details else None
    name = text(get(data, "activity_type"))
    if not name:
        return None
    result = first(marker.details["result"]) if "result" in marker.details else None
    return name, result


def when(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def get(data: Any, name: str, default: Any = None) -> Any:
    """``data[name]`` in camelCase or snake_case; ``default`` when absent or not a mapping."""
    if not isinstance(data, Mapping):
        return default
    if name in data:
        return data[name]
    camel = _CAMEL.sub(lambda m: m.group(1).upper(), name)
    return data.get(camel, default)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def integer(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def items(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []
