"""Encoding and decoding: JSON, YAML or protobuf bodies in, JSON out, errors as ``Status``.

The apiserver answers JSON to any client that accepts it anywhere in its Accept header, so a client
that lists protobuf first (client-go's default for built-in types) still gets JSON, which it decodes
by the response Content-Type. Request bodies are JSON, YAML for the ``…+yaml`` media types
(server-side apply sends ``application/apply-patch+yaml``), or protobuf for the kinds kubectl's
create commands send (`sandbox.apiserver.protobuf`).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from sandbox.apiserver import protobuf
from sandbox.errors import ApiError, BadRequest, UnsupportedMediaType

Obj = dict[str, Any]

JSON = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def respond(value: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    # Set the header verbatim: aiohttp's content_type= would re-render media-type parameters.
    return web.Response(body=encode(value), status=status, headers={"Content-Type": content_type})


def respond_error(error: ApiError) -> web.Response:
    response = respond(error.status(), status=error.code)
    if error.retry_after_seconds is not None:
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


def success(group: str, plural: str, name: str, uid: str) -> Obj:
    """The ``Status`` a delete answers when the object is gone at once."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": plural, "uid": uid},
    }


def media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", JSON).split(";")[0].strip().lower()


async def read_body(request: web.Request) -> Any:
    """The decoded request body (JSON, or YAML for YAML media types)."""
    raw = await request.read()
    if not raw.strip():
        return None
    kind = media_type(request)
    if kind == PROTOBUF:
        return protobuf.decode(raw)
    if "protobuf" in kind or "cbor" in kind:
        raise UnsupportedMediaType(f'the body of the request was in an unknown format: "{kind}"')
    try:
        if kind.endswith("yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise BadRequest(f"the body of the request could not be decoded: {exc}") from exc


async def read_object(request: web.Request) -> Obj:
    body = await read_body(request)
    if not isinstance(body, dict):
        raise BadRequest("the body of the request must be an object")
    return body
