"""Credentials of a metric backend, resolved inside the activity that queries it.

Two sources, as Flagger and the issue ask:

- a Kubernetes Secret named by a MetricTemplate's ``spec.provider.secretRef``: key ``token``
  (sent as ``Authorization: Bearer``), or keys ``username`` and ``password`` (basic auth); an
  optional key ``headers`` holds a JSON object of extra request headers;
- the worker's environment for the default Prometheus: ``PROMETHEUS_URL``, ``PROMETHEUS_TOKEN``,
  ``PROMETHEUS_USERNAME``/``PROMETHEUS_PASSWORD`` and ``PROMETHEUS_HEADERS`` (a JSON object).

Neither ever reaches workflow history: the workflow only names the template; the values are read
here, used for one query, and dropped. `Credentials` hides its values from ``repr`` so a stray log
line or traceback cannot print them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from activities.errors import InvalidSpec

ENV_URL = "PROMETHEUS_URL"
ENV_TOKEN = "PROMETHEUS_TOKEN"
ENV_USERNAME = "PROMETHEUS_USERNAME"
ENV_PASSWORD = "PROMETHEUS_PASSWORD"
ENV_HEADERS = "PROMETHEUS_HEADERS"


@dataclass(frozen=True)
class Credentials:
    """Authentication for one backend; every value is hidden from ``repr``."""

    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def request_headers(self) -> dict[str, str]:
        """Headers to send: the custom ones, then the bearer token (which wins)."""
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def basic_auth(self) -> tuple[str, str] | None:
        if self.token or not (self.username and self.password):
            return None
        return (self.username, self.password)


def _headers(raw: str | None, source: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        # Do not echo the value: it may hold a token.
        raise InvalidSpec(f"{source} must be a JSON object of header names to string values")
    return {str(k): v for k, v in parsed.items()}


def from_secret(data: Mapping[str, str], *, secret: str) -> Credentials:
    """Flagger's rule: ``token`` if present, else both ``username`` and ``password``."""
    headers = _headers(data.get("headers"), f"secret {secret} key 'headers'")
    if data.get("token"):
        return Credentials(token=data["token"], headers=headers)
    if "username" in data or "password" in data:
        if not data.get("username"):
            raise InvalidSpec(f"secret {secret} has a password but no 'username' key")
        if not data.get("password"):
            raise InvalidSpec(f"secret {secret} has a username but no 'password' key")
        return Credentials(username=data["username"], password=data["password"], headers=headers)
    if headers:
        return Credentials(headers=headers)
    raise InvalidSpec(f"secret {secret} holds neither 'token' nor 'username'/'password'")


def from_environment(environ: Mapping[str, str] | None = None) -> Credentials:
    """The default Prometheus's credentials from the worker's environment (may be empty)."""
    env = os.environ if environ is None else environ
    return Credentials(
        token=env.get(ENV_TOKEN) or None,
        username=env.get(ENV_USERNAME) or None,
        password=env.get(ENV_PASSWORD) or None,
        headers=_headers(env.get(ENV_HEADERS), ENV_HEADERS),
    )
