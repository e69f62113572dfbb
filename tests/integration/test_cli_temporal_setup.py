"""``coalmine temporal setup`` registers the rollout's search attributes, idempotently."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from worker.cli import app
from worker.search_attributes import (
    SearchAttributesMissingError,
    check_search_attributes,
    ensure_search_attributes,
)


@pytest.fixture
async def bare_server(temporal_servers) -> WorkflowEnvironment:
    """A dev server with no custom search attributes."""
    server = temporal_servers(search_attributes=False)
    return WorkflowEnvironment.from_client(await Client.connect(server.address))


async def _setup(address: str) -> tuple[int, str]:
    return await _coalmine("temporal", "setup", "--address", address)


async def _coalmine(*args: str) -> tuple[int, str]:
    def invoke() -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.output

    return await asyncio.to_thread(invoke)


async def test_setup_registers_then_finds_them_present(bare_server: WorkflowEnvironment) -> None:
    client = bare_server.client
    address = client.service_client.config.target_host
    code, output = await _coalmine("rollout", "--address", address, "list", "--phase", "Failed")
    assert code == 2, output  # the server does not know CanaryPhase yet
    assert "coalmine temporal setup" in output

    code, output = await _setup(address)
    assert code == 0, output
    assert "added search attribute CanaryPhase" in output

    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    attrs = listed.custom_attributes
    assert attrs["CanaryPhase"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert attrs["CanaryWeight"] == IndexedValueType.INDEXED_VALUE_TYPE_INT

    code, output = await _setup(address)
    assert code == 0, output
    assert "added" not in output
    assert "search attribute CanaryWeight already present" in output


async def test_setup_exits_3_when_unreachable() -> None:
    code, output = await _setup("127.0.0.1:1")
    assert code == 3, output


async def test_worker_start_registers_what_an_older_setup_lacks(
    bare_server: WorkflowEnvironment,
) -> None:
    """An upgrade that adds an attribute (CanaryStrategy) must not leave new rollouts failing
    their workflow tasks: the worker's start-up check registers the missing ones."""
    client = bare_server.client
    # A namespace set up by an older release: every attribute but the strategy.
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                "CanaryPhase": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                "CanaryWeight": IndexedValueType.INDEXED_VALUE_TYPE_INT,
            },
        )
    )
    before = await check_search_attributes(client)
    assert "CanaryStrategy" in before.missing
    assert before.present == ["CanaryPhase", "CanaryWeight"]

    said = await ensure_search_attributes(client)
    assert said.startswith("registered search attributes ")
    assert "CanaryStrategy" in said
    assert "CanaryPhase" not in said

    after = await check_search_attributes(client)
    assert after.missing == []
    assert after.clashing == []
    assert await ensure_search_attributes(client) == (
        f"search attributes of {client.namespace}: all {len(after.present)} present"
    )


async def test_worker_start_refuses_an_attribute_of_another_type(
    bare_server: WorkflowEnvironment,
) -> None:
    client = bare_server.client
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={"CanaryStrategy": IndexedValueType.INDEXED_VALUE_TYPE_INT},
        )
    )
    with pytest.raises(SearchAttributesMissingError) as refused:
        await ensure_search_attributes(client)
    message = str(refused.value)
    assert "CanaryStrategy" in message
    assert "temporal operator search-attribute remove" in message
    # Nothing else was registered behind the refusal.
    assert "CanaryPhase" in (await check_search_attributes(client)).missing
