"""podinfo's ``POST /token`` and ``GET /token/validate`` (``pkg/api/http/token.go``).

``POST /token`` with the user's name as the body (``anonymous`` when empty) answers
``{"token": <JWT>, "expires_at": <RFC 3339>}``: a JWT signed HS256 with podinfo's JWT secret, claims
``name``, ``iss: podinfo`` and ``exp`` one minute ahead. ``GET /token/validate`` with
``Authorization: Bearer <JWT>`` answers ``{"token_name", "expires_at"}``, or 401 with a reason.
Flagger's tutorials use the first as a smoke test of the canary (``curl -sd 'test' …/token``).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import time

# podinfo's default --jwt-secret (a sample value it ships, not a credential).
DEFAULT_SECRET = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
VALIDITY_SECONDS = 60
_HEADER = {"alg": "HS256", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str, secret: str) -> str:
    return _b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())


def _rfc3339(epoch: float) -> str:
    return (
        datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat().replace("+00:00", "Z")
    )


def issue_token(
    user: str, *, secret: str | None = None, now: float | None = None
) -> dict[str, str]:
    expires = int((time.time() if now is None else now) + VALIDITY_SECONDS)
    claims = {"name": user or "anonymous", "iss": "podinfo", "exp": expires}
    header = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    token = f"{signing_input}.{_sign(signing_input, secret or DEFAULT_SECRET)}"
    return {"token": token, "expires_at": _rfc3339(expires)}


def validate_token(
    headers: dict[str, str], *, secret: str | None = None, now: float | None = None
) -> tuple[int, dict[str, object]]:
    """(status, body) for ``GET /token/validate``."""
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        return 401, {"code": 401, "message": "authorization bearer header required"}
    try:
        header, payload, signature = token.split(".")
        claims = json.loads(_unb64(payload))
        alg = json.loads(_unb64(header)).get("alg")
    except (ValueError, binascii.Error, AttributeError):
        return 401, {"code": 401, "message": "token is malformed"}
    if alg != "HS256" or not hmac.compare_digest(
        signature, _sign(f"{header}.{payload}", secret or DEFAULT_SECRET)
    ):
        return 401, {"code": 401, "message": "signature is invalid"}
    if not isinstance(claims, dict) or float(claims.get("exp", 0)) < (now or time.time()):
        return 401, {"code": 401, "message": "token is expired"}
    if claims.get("iss") != "podinfo":
        return 401, {"code": 401, "message": "invalid issuer"}
    return 200, {"token_name": claims.get("name"), "expires_at": _rfc3339(float(claims["exp"]))}
