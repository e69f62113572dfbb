"""The rollout's search attributes on a Temporal namespace: check them, register them.

The one place that talks to the operator service about them: ``coalmine temporal setup``
registers, the worker checks at start-up (a rollout that upserts an attribute the server lacks
fails its workflow task over and over and sits in Running, so a worker refuses to start instead),
and the test and benchmark servers register through it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from worker.errors import CliError
from workflows.search import SEARCH_ATTRIBUTES

SETUP_FIX = "run `coalmine temporal setup` against this namespace (it is idempotent)"

_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


def _value_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return _TYPES[key.indexed_value_type]


@dataclass(frozen=True)
class AttributeCheck:
    """How the namespace's custom attributes compare with the ones rollouts use."""

    present: list[str]
    missing: list[str]
    clashing: list[str]
    """Registered with another type: a rollout's upsert of them fails."""


async def check_search_attributes(client: Client) -> AttributeCheck:
    """Compare the namespace's custom search attributes with ``SEARCH_ATTRIBUTES``.

    Raises ``RPCError`` when the server refuses the list (the caller decides whether that is
    fatal: ``setup`` needs it, a worker on a server that hides its operator API does not).
    """
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    custom = existing.custom_attributes
    return AttributeCheck(
        present=sorted(k.name for k in SEARCH_ATTRIBUTES if k.name in custom),
        missing=[k.name for k in SEARCH_ATTRIBUTES if k.name not in custom],
        clashing=[
            k.name
            for k in SEARCH_ATTRIBUTES
            if k.name in custom and custom[k.name] != _value_type(k)
        ],
    )


async def register_search_attributes(client: Client) -> tuple[list[str], list[str]]:
    """Add the rollout's search attributes the namespace lacks; (added, already present)."""
    namespace = client.namespace
    try:
        check = await check_search_attributes(client)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise CliError(f"cannot list search attributes of {namespace}: {err.message}") from err
        # A server that can add but not list them (Temporal's time-skipping test server): add
        # every one, as a repeat of an earlier setup would.
        check = AttributeCheck(present=[], missing=[k.name for k in SEARCH_ATTRIBUTES], clashing=[])
    if check.clashing:
        raise CliError(
            f"search attributes {', '.join(check.clashing)} exist with another type in "
            f"{namespace}: remove them (`temporal operator search-attribute remove`) and run "
            "`coalmine temporal setup` again"
        )
    if check.missing:
        by_name = {k.name: k for k in SEARCH_ATTRIBUTES}
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={n: _value_type(by_name[n]) for n in check.missing},
                )
            )
        except RPCError as err:
            # Two setups racing: the other one added them first, which is what we wanted.
            if "already" not in err.message.lower():
                raise CliError(f"cannot add search attributes: {err.message}") from err
    return check.missing, check.present


class SearchAttributesMissingError(CliError):
    """The namespace lacks attributes rollouts upsert: the worker must not take rollouts."""


_UNCHECKABLE = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED)


async def ensure_search_attributes(client: Client) -> str:
    """Make sure the namespace has the rollout's attributes before a worker takes rollouts.

    Missing ones are registered, as ``coalmine temporal setup`` would (a worker upgraded to a
    release with a new attribute would otherwise fail every new rollout's workflow tasks). When
    they cannot be registered (Temporal Cloud registers them through its own API; an API key
    without the operator permission), the worker refuses to start with
    ``SearchAttributesMissingError``. Returns what it found or did, for the worker's log; a
    server that will not even list them gets a warning and the worker starts.
    """
    namespace = client.namespace
    try:
        check = await check_search_attributes(client)
    except RPCError as err:
        if err.status in _UNCHECKABLE:
            return (
                f"cannot check the search attributes of {namespace} ({err.message}); "
                f"if rollouts sit in Running with failing workflow tasks, {SETUP_FIX}"
            )
        raise
    if check.clashing:
        raise SearchAttributesMissingError(
            f"namespace {namespace} has search attributes {', '.join(check.clashing)} with "
            "another type than rollouts use, so every rollout would fail its workflow tasks: "
            "remove them (`temporal operator search-attribute remove`) and start the worker again"
        )
    if not check.missing:
        return f"search attributes of {namespace}: all {len(check.present)} present"
    try:
        added, _ = await register_search_attributes(client)
    except CliError as err:
        raise SearchAttributesMissingError(
            f"namespace {namespace} lacks search attributes rollouts use: "
            f"{', '.join(check.missing)}, and the worker could not add them ({err}); "
            f"{SETUP_FIX} with an operator's credentials (on Temporal Cloud, add them to the "
            "namespace), then start the worker again"
        ) from err
    return f"registered search attributes {', '.join(added)} on {namespace}"
