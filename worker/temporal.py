"""The one way this project connects to Temporal: pydantic payloads, TLS or an API key.

Every command and the worker go through ``connect`` so all of them read the same payloads
(the workflow's pydantic models) and report an unreachable server the same way (exit 3).
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from worker.errors import BadInputError, UnreachableError
from worker.settings import TemporalSettings


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """The TLS configuration the settings ask for; False for a plain connection."""
    if not settings.tls_enabled:
        return False
    return TLSConfig(
        server_root_ca_cert=_read(settings.tls_ca),
        client_cert=_read(settings.tls_cert),
        client_private_key=_read(settings.tls_key),
        domain=settings.tls_server_name,
    )


async def connect(settings: TemporalSettings, *, identity: str | None = None) -> Client:
    """A client for the settings' namespace; ``UnreachableError`` (exit 3) when unreachable."""
    tls = tls_config(settings)
    try:
        return await Client.connect(
            settings.address,
            namespace=settings.namespace,
            api_key=settings.api_key,
            tls=tls,
            data_converter=pydantic_data_converter,
            identity=identity,
        )
    except RuntimeError as err:
        # The core SDK reports a refused or timed-out connection as a RuntimeError.
        raise UnreachableError(
            f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): "
            f"{_first_line(err)}. Set TEMPORAL_ADDRESS or --address, and TLS/API key settings "
            "if the server needs them."
        ) from err


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {err.strerror}") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
