"""``sessionAffinity.primaryCookieName`` as Flagger's Istio router uses it: while the canary
takes a share, the primary's answers set a cookie of their own (Max-Age: the analysis interval)
and a second sticky route keeps its holders on the primary; back at 0 it is gone."""

from __future__ import annotations

from activities.router._istio_routes import STICKY_PRIMARY_ROUTE, session_routes
from activities.router.istio import find_route
from workflows._session_affinity import _primary_value

PRIMARY = {"destination": {"host": "podinfo-primary"}, "weight": 100}
CANARY_0 = {"destination": {"host": "podinfo-canary"}, "weight": 0}
WEIGHTED = {"route": [{**PRIMARY, "weight": 90}, {**CANARY_0, "weight": 10}]}
SERVICE_MATCH = [{"uri": {"prefix": "/api"}}]


def _routes(weight: int, **cookies: str | None) -> list[dict[str, object]]:
    return session_routes(
        WEIGHTED if weight else {"route": [PRIMARY, CANARY_0]},
        service_match=SERVICE_MATCH,
        canary_host="podinfo-canary",
        canary_weight=weight,
        max_age=21600,
        primary_max_age=60,
        cookie=cookies.get("cookie"),
        previous_cookie=cookies.get("previous_cookie"),
        primary_cookie=cookies.get("primary_cookie"),
    )


def test_the_primary_cookie_holders_stay_on_the_primary_while_the_canary_has_a_share() -> None:
    sticky, held, weighted = _routes(
        10, cookie="flagger-cookie=abc", primary_cookie="primary-flagger-cookie=xyz"
    )
    assert sticky["name"] == "sticky-route"
    assert held == {
        "match": [
            {
                "headers": {"Cookie": {"regex": ".*primary-flagger-cookie.*xyz.*"}},
                "uri": {"prefix": "/api"},
            }
        ],
        "name": STICKY_PRIMARY_ROUTE,
        "route": [{**PRIMARY, "weight": 100}, {**CANARY_0, "weight": 0}],
    }
    primary, canary = weighted["route"]  # type: ignore[index]
    assert primary["headers"] == {
        "response": {"add": {"Set-Cookie": "primary-flagger-cookie=xyz; Max-Age=60"}}
    }
    assert canary["headers"] == {
        "response": {"add": {"Set-Cookie": "flagger-cookie=abc; Max-Age=21600"}}
    }
    # The weights are the weighted route's, past both sticky routes.
    vs = {"spec": {"http": [sticky, held, weighted]}}
    found = find_route(vs, "podinfo")
    assert found is not None
    assert found[0] == 2
    assert (found[1].primary, found[1].canary) == (90, 10)


def test_back_at_zero_only_the_expiring_canary_cookie_route_is_left() -> None:
    routes = _routes(
        0, previous_cookie="flagger-cookie=abc", primary_cookie="primary-flagger-cookie=xyz"
    )
    assert len(routes) == 2
    assert all(route.get("name") != STICKY_PRIMARY_ROUTE for route in routes)
    # Without primaryCookieName nothing changes: [sticky route, weighted route].
    assert len(_routes(10, cookie="flagger-cookie=abc")) == 2


def test_the_primary_cookie_value_is_new_with_each_run_and_the_same_on_replay() -> None:
    first = _primary_value("flagger-cookie=abcdefghij")
    assert first == _primary_value("flagger-cookie=abcdefghij")
    assert first != _primary_value("flagger-cookie=klmnopqrst")
    assert len(first) == 10
    assert first.isalpha()
