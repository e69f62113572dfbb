"""Which deployment strategy a Canary runs, and the analysis fields that choose it.

Part of the Canary spec (``workflows.spec`` re-exports every name). Flagger picks the strategy
from the analysis fields on every tick of its scheduler (``pkg/controller/scheduler.go``,
``advanceCanary``), in this order, and so does `strategy_of`:

- ``match`` and ``iterations`` → **A/B testing**: requests that match go to the canary, the rest
  to the primary, for ``iterations`` analysis intervals; promotion then serves everyone the new
  version (from the primary).
- ``iterations`` alone → **Blue/Green**: the canary gets no production traffic (only what its
  own Service receives, e.g. a load test); after ``iterations`` successful intervals all traffic
  switches to it at once, then it is promoted. With ``mirror: true`` the primary's traffic is
  copied to the canary meanwhile (callers get the primary's answers).
- neither → **canary**: weights step up. With ``mirror: true`` the first step mirrors traffic
  (``mirrorWeight`` percent of it, all when unset) before any weight moves.

``sessionAffinity`` pins a user who reached the canary through a weight step to it with a cookie
(weighted canaries only, as in Flagger's Istio router).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from workflows._base import SpecModel

DEFAULT_COOKIE_MAX_AGE = 86_400
"""Flagger's ``SessionAffinity.GetMaxAge`` default: a day, in seconds."""


class Strategy(StrEnum):
    """A deployment strategy, named as Flagger's documents name them."""

    CANARY = "canary"
    CANARY_MIRRORING = "canary-mirroring"
    AB_TESTING = "ab-testing"
    BLUE_GREEN = "blue-green"
    BLUE_GREEN_MIRRORING = "blue-green-mirroring"

    @property
    def iterative(self) -> bool:
        """Counts ``iterations`` instead of stepping weights (A/B testing, Blue/Green)."""
        return self in (Strategy.AB_TESTING, Strategy.BLUE_GREEN, Strategy.BLUE_GREEN_MIRRORING)

    @property
    def mirrored(self) -> bool:
        return self in (Strategy.CANARY_MIRRORING, Strategy.BLUE_GREEN_MIRRORING)

    @property
    def display_name(self) -> str:
        """How the CLI and the Web UI print it."""
        return _TITLES[self]


_TITLES = {
    Strategy.CANARY: "Canary",
    Strategy.CANARY_MIRRORING: "Canary with traffic mirroring",
    Strategy.AB_TESTING: "A/B testing",
    Strategy.BLUE_GREEN: "Blue/Green",
    Strategy.BLUE_GREEN_MIRRORING: "Blue/Green with traffic mirroring",
}


def strategy_of(
    *, iterations: int | None, match: list[Any] | None, mirror: bool | None
) -> Strategy:
    """Flagger's choice: A/B (match + iterations), Blue/Green (iterations), else canary."""
    if iterations and match:
        return Strategy.AB_TESTING
    if iterations:
        return Strategy.BLUE_GREEN_MIRRORING if mirror else Strategy.BLUE_GREEN
    return Strategy.CANARY_MIRRORING if mirror else Strategy.CANARY


class StringMatch(SpecModel):
    """Istio's StringMatch: exactly one of exact, prefix, suffix, regex (RE2)."""

    exact: str | None = Field(None, description="The whole value.")
    prefix: str | None = Field(None, description="The start of the value.")
    suffix: str | None = Field(None, description="The end of the value (Envoy's suffix).")
    regex: str | None = Field(
        None, description="An RE2 regular expression the whole value matches."
    )

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "suffix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of exact, prefix, suffix or regex, e.g. {exact: insider}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class MatchCondition(SpecModel):
    """One of ``analysis.match``: Istio's HTTPMatchRequest, conditions ANDed.

    Cookies are matched through the ``cookie`` header, as Flagger documents it
    (``cookie: {regex: "^(.*?;)?(canary=always)(;.*)?$"}``).
    """

    name: str | None = Field(None, description="Name of the match, for Istio's logs.")
    headers: dict[str, StringMatch] | None = Field(
        None, description="Request headers (lower-case names) and how each must match."
    )
    source_labels: dict[str, str] | None = Field(
        None, description="Labels of the calling workload (mesh traffic only)."
    )
    uri: StringMatch | None = Field(None, description="Request path.")
    scheme: StringMatch | None = Field(None, description="URI scheme.")
    method: StringMatch | None = Field(None, description="HTTP method.")
    authority: StringMatch | None = Field(None, description="Host/authority.")
    query_params: dict[str, StringMatch] | None = Field(None, description="Query parameters.")
    without_headers: dict[str, StringMatch] | None = Field(
        None, description="Headers that must not match."
    )
    ignore_uri_case: bool | None = Field(None, description="Case-insensitive uri match.")
    port: int | None = Field(None, ge=1, le=65535, description="Destination port.")
    source_namespace: str | None = Field(None, description="Namespace of the caller.")


class SessionAffinity(SpecModel):
    """Keeps a user who reached the canary on it, by a cookie the canary's responses set."""

    cookie_name: str = Field(
        min_length=1,
        description="Name of the cookie the canary's responses set, e.g. flagger-cookie.",
    )
    max_age: int = Field(
        DEFAULT_COOKIE_MAX_AGE,
        ge=1,
        description="Max-Age of that cookie in seconds; 0 means a day (86400), as in Flagger.",
    )
    primary_cookie_name: str | None = Field(
        None,
        min_length=1,
        description="Name of the cookie the primary's responses set while the canary takes a "
        "share (Max-Age: the analysis interval): a user the weights sent to the primary stays "
        "there for the step; unset, no primary stickiness.",
    )

    @model_validator(mode="before")
    @classmethod
    def _zero_max_age(cls, data: Any) -> Any:
        # Flagger's GetMaxAge reads 0 (its "unset") as a day.
        if isinstance(data, dict):
            for key in ("maxAge", "max_age"):
                if data.get(key) == 0 and not isinstance(data.get(key), bool):
                    data = {k: v for k, v in data.items() if k != key}
        return data

    def cookie(self, value: str) -> str:
        """``name=value``, as Flagger keeps it in ``status.sessionAffinityCookie``."""
        return f"{self.cookie_name}={value}"

    def set_cookie(self, cookie: str) -> str:
        """The Set-Cookie value Flagger's ``BuildCookie`` writes: ``name=value; Max-Age=N``."""
        return f"{cookie}; Max-Age={self.max_age}"
