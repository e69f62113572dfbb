"""How long a sandbox pod takes to answer, from its pod spec: a realistic distribution, not a
constant, so a canary's latency can be told apart from its primary's by a statistical test.

Real request latencies are skewed: most requests are near the median, a few take many times
longer. A log-normal distribution has that shape and is fixed by two numbers an operator knows,
the median and the 99th percentile. Read from the serving container's ``env`` on every request
(so ``kubectl set env`` is a release):

- ``LATENCY_P50_MS`` — the median in milliseconds; unset or 0: no drawn latency.
- ``LATENCY_P99_MS`` — the 99th percentile (default: the median, i.e. a constant); below the
  median it is read as the median.
- ``LATENCY_MAX_MS`` — an upper bound on the drawn latency (a client's timeout, say); unset: none.
- ``FAULT_LATENCY_MS`` — a fixed delay added to every request (the older, constant knob).

With ln X ~ N(mu, sigma²): mu = ln(p50), sigma = (ln(p99) − ln(p50)) / z₀.₉₉ (z₀.₉₉ ≈ 2.326).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

Z_99 = 2.3263478740408408
"""The standard normal's 99th percentile."""


def _number(env: Mapping[str, str], name: str) -> float:
    try:
        value = float(env.get(name, "0") or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def drawn_ms(env: Mapping[str, str], rng: random.Random) -> float:
    """One draw of the log-normal latency the env describes, in milliseconds (0 when unset)."""
    p50 = _number(env, "LATENCY_P50_MS")
    if not p50:
        return 0.0
    p99 = max(_number(env, "LATENCY_P99_MS") or p50, p50)
    sigma = (math.log(p99) - math.log(p50)) / Z_99
    value = rng.lognormvariate(math.log(p50), sigma) if sigma > 0 else p50
    ceiling = _number(env, "LATENCY_MAX_MS")
    return min(value, ceiling) if ceiling else value


def latency_seconds(env: Mapping[str, str], rng: random.Random | None = None) -> float:
    """How long this request waits before it is answered: the fixed fault delay plus a draw."""
    drawn = drawn_ms(env, rng or _RNG)
    return (_number(env, "FAULT_LATENCY_MS") + drawn) / 1000.0


_RNG = random.Random()  # simulated latency, not cryptography
