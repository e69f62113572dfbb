"""Plain JSON requests to the API server, failing with the product's own Kubernetes API errors.

The errors are `activities.errors`' tree (``ApiUnavailable``, ``ApiStatusError`` and its
``NotFound``, ``AlreadyExists``, ``Gone``…), built by its `translate`, so there is one mapping from
a ``Status`` to an error class in the project, whichever client made the call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes.client.exceptions import ApiException

from activities.errors import ApiStatusError, ApiUnavailable, translate

Obj = dict[str, Any]


def status_error(status: int, reason: str, body: bytes) -> ApiStatusError:
    """The error for an HTTP error answer (its ``Status`` body gives the message and reason)."""
    exc = ApiException(status=status, reason=reason)
    exc.body = body.decode(errors="replace")
    return translate(exc)


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Obj | None = None,
    seconds: float = 60.0,
    content_type: str = "application/json",
) -> Obj:
    """One request; the decoded JSON object of a 2xx answer, else an `ApiStatusError`.

    ``content_type``: of the body, e.g. ``application/merge-patch+json`` for a PATCH.
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if data is not None else None
    try:
        async with session.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            data = await response.read()
            if response.status >= 400:
                raise status_error(response.status, response.reason or "", data)
            decoded = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ApiUnavailable(f"{method} {url}: {type(err).__name__}: {err}") from err
    except ValueError as err:
        raise ApiStatusError(f"{method} {url}: not JSON: {err}", status=500) from err
    if not isinstance(decoded, dict):
        raise ApiStatusError(f"{method} {url}: answer is not a JSON object", status=500)
    return decoded
