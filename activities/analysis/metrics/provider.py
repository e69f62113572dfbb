"""The metric provider seam: run one query, say whether the backend is online.

As Flagger's ``providers.Interface``: two methods, one module per backend, a factory by type
name; a third, the range query, samples a metric over time (the canary-versus-primary judge and
the rollout report). Unlike Flagger's factory there is no silent fallback: an unknown type is a
configuration error naming the supported ones, because querying the wrong backend would pass or
fail a canary on numbers that mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from activities.analysis.metrics.credentials import Credentials
from activities.analysis.metrics.prometheus import PrometheusProvider, RangeSeries
from activities.errors import InvalidSpec


class MetricProvider(Protocol):
    """A metric backend."""

    def run_query(self, query: str) -> float:
        """The query's value; raises `NoData` (empty or NaN) or `ProviderError`."""
        ...

    def run_range_query(
        self, query: str, *, start: datetime, end: datetime, step_seconds: float
    ) -> list[RangeSeries]:
        """Every series of the query from ``start`` to ``end``, a sample every ``step_seconds``
        (NaN dropped; an empty list is no data); raises `ProviderError`."""
        ...

    def is_online(self) -> bool:
        """True when the backend answers a trivial query correctly."""
        ...


ProviderFactory = Callable[..., MetricProvider]

PROVIDERS: dict[str, ProviderFactory] = {"prometheus": PrometheusProvider}
"""Provider type name (a MetricTemplate's ``spec.provider.type``) → implementation."""


def provider_for(
    type_name: str,
    *,
    address: str,
    credentials: Credentials,
    timeout_seconds: float,
    insecure_skip_verify: bool = False,
) -> MetricProvider:
    """The provider for ``type_name``; an unknown type raises `InvalidSpec`."""
    factory = PROVIDERS.get(type_name)
    if factory is None:
        supported = ", ".join(sorted(PROVIDERS))
        raise InvalidSpec(
            f"metric provider type {type_name!r} is not supported: use one of {supported}"
        )
    return factory(
        address=address,
        credentials=credentials,
        timeout_seconds=timeout_seconds,
        insecure_skip_verify=insecure_skip_verify,
    )
