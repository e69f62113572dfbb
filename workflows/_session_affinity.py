"""Session affinity (``analysis.sessionAffinity``), as Flagger's Istio router keeps it.

While the canary takes a share of the traffic, its answers set a cookie (``name=value``, a value
new to this run, ``Max-Age`` from the spec) and the router's sticky route sends every request
carrying it to the canary: a user who reached the canary stays on it. Back at weight 0 (promoted,
rolled back or restarted), the cookie becomes the previous one, routed to the primary and expired.
With ``primaryCookieName`` the primary's answers set a cookie of their own meanwhile (``Max-Age``
the analysis interval) and a second sticky route keeps its holders on the primary, as Flagger's.
The cookie lives in the status (Flagger's ``status.sessionAffinityCookie``), so a continued-as-new
run keeps it; its value comes from ``workflow.random()``, the same on every replay.
"""

from __future__ import annotations

import hashlib
import math
import string

from temporalio import workflow

from workflows._core import RolloutCore
from workflows.activity_api import StickySession

_LETTERS = string.ascii_letters


class SessionAffinitySteps(RolloutCore):
    """The cookies every weight change carries when the Canary asks for session affinity."""

    def _sticky_session(self, canary_weight: int) -> StickySession | None:
        """What the router needs with weights ``canary_weight`` (None: no session affinity)."""
        analysis = self._input.canary.spec.analysis
        affinity = analysis.session_affinity
        if affinity is None or analysis.match:
            return None  # A/B testing's routes already pin the matched users, as in Flagger
        status = self._state.status
        service_match = list(self._input.canary.spec.service.match or [])
        if canary_weight > 0:
            cookie = status.session_affinity_cookie or affinity.cookie(self._cookie_value())
            self._state.set(session_affinity_cookie=cookie)
            primary = affinity.primary_cookie_name
            return StickySession(
                cookie=cookie,
                max_age=affinity.max_age,
                service_match=service_match,
                primary_cookie=f"{primary}={_primary_value(cookie)}" if primary else None,
                primary_max_age=math.ceil(analysis.interval_seconds) if primary else None,
            )
        previous = status.session_affinity_cookie or status.previous_session_affinity_cookie
        self._state.set(session_affinity_cookie=None, previous_session_affinity_cookie=previous)
        return StickySession(
            previous_cookie=previous, max_age=affinity.max_age, service_match=service_match
        )

    @staticmethod
    def _cookie_value() -> str:
        # Flagger's randSeq: ten letters. Deterministic: the workflow's seeded random.
        rng = workflow.random()
        return "".join(rng.choice(_LETTERS) for _ in range(10))


def _primary_value(cookie: str) -> str:
    """The primary's cookie value in this run: ten letters derived from the canary's cookie
    (itself new each run), so it needs no state of its own and is the same on every replay
    (Flagger keeps a random one in ``status.primarySessionAffinityCookie``)."""
    digest = hashlib.sha256(f"primary:{cookie}".encode()).digest()
    return "".join(_LETTERS[byte % len(_LETTERS)] for byte in digest[:10])
