"""``coalmine temporal …``: prepare a Temporal namespace for rollouts.

``setup`` registers the custom search attributes the rollout upserts. It must run before the
first rollout on a server: a workflow that upserts an unknown attribute fails its workflow task
over and over and sits in Running. Registering is idempotent, so CI can run it every time.
"""

from __future__ import annotations

from typing import Any

import typer
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError

from worker import cli_common as common
from worker.errors import CliError
from worker.temporal import connect
from workflows.search import SEARCH_ATTRIBUTES

app = typer.Typer(help="Prepare a Temporal namespace for rollouts.", no_args_is_help=True)

_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


def _value_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return _TYPES[key.indexed_value_type]


async def register_search_attributes(client: Client) -> tuple[list[str], list[str]]:
    """Add the rollout's search attributes the namespace lacks; (added, already present)."""
    namespace = client.namespace
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as err:
        raise CliError(f"cannot list search attributes of {namespace}: {err.message}") from err
    present = set(existing.custom_attributes)
    missing = [key for key in SEARCH_ATTRIBUTES if key.name not in present]
    clashing = [
        key.name
        for key in SEARCH_ATTRIBUTES
        if key.name in present and existing.custom_attributes[key.name] != _value_type(key)
    ]
    if clashing:
        raise CliError(
            f"search attributes {', '.join(clashing)} exist with another type in {namespace}"
        )
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={key.name: _value_type(key) for key in missing},
                )
            )
        except RPCError as err:
            # Two setups racing: the other one added them first, which is what we wanted.
            if "already" not in err.message.lower():
                raise CliError(f"cannot add search attributes: {err.message}") from err
    return [k.name for k in missing], sorted(present & {k.name for k in SEARCH_ATTRIBUTES})


@app.command()
def setup(
    *,
    address: common.AddressOpt = None,
    temporal_namespace: common.TemporalNamespaceOpt = None,
    api_key: common.ApiKeyOpt = None,
    tls_cert: common.TlsCertOpt = None,
    tls_key: common.TlsKeyOpt = None,
    tls_ca: common.TlsCaOpt = None,
    tls_server_name: common.TlsServerNameOpt = None,
) -> None:
    """Register the rollout search attributes (CanaryTarget, CanaryPhase, …); idempotent."""
    settings = common.temporal_settings(
        address=address,
        namespace=temporal_namespace,
        api_key=api_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        tls_server_name=tls_server_name,
    )

    async def body() -> int:
        client = await connect(settings)
        added, present = await register_search_attributes(client)
        out = common.stdout()
        for name in added:
            out.print(f"added search attribute {name}", markup=False)
        for name in present:
            out.print(f"search attribute {name} already present", markup=False)
        out.print(f"namespace {settings.namespace} is ready for rollouts", markup=False)
        return 0

    common.run(body())
