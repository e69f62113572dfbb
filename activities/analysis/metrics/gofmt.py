"""Go's ``%v`` renderings of floats and durations, so messages read exactly as Flagger's.

Flagger writes "success rate 69.17% < 99%" and "request duration 1.515s > 500ms" with Go's
``fmt``: a float bound prints in its shortest form (``99``, ``0.5``, ``1e+06``) and a duration
with ``time.Duration.String`` (``500ms``, ``1.515s``, ``1m30s``). Users grep their logs and
alert rules for these strings, so we reproduce them rather than approximate.
"""

from __future__ import annotations

import math
from decimal import Decimal

_NS_PER_US = 1_000
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


def go_float(value: float) -> str:
    """``fmt.Sprintf("%v", value)`` for a float64."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    # repr() is the shortest string that round-trips, as Go's shortest formatting is.
    dec = Decimal(repr(value)).normalize()
    exponent = dec.adjusted()
    # strconv's shortest 'g': exponent form below 1e-4 and from 1e6 on (fmt.Println(1e6) = 1e+06).
    if exponent < -4 or exponent >= 6:
        return _exponent_form(dec, exponent)
    text = f"{dec:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _exponent_form(dec: Decimal, exponent: int) -> str:
    sign, digits, _ = dec.as_tuple()
    mantissa = str(digits[0])
    if len(digits) > 1:
        mantissa += "." + "".join(str(d) for d in digits[1:])
    prefix = "-" if sign else ""
    esign = "-" if exponent < 0 else "+"
    return f"{prefix}{mantissa}e{esign}{abs(exponent):02d}"


def _frac(value: int, precision: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction digits of ``value`` (trailing zeros dropped) and the rest."""
    digits = ""
    printed = False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        value //= 10
    return ("." + digits if digits else ""), value


def go_duration(nanoseconds: int) -> str:
    """``time.Duration(nanoseconds).String()``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    u = abs(nanoseconds)
    if u < _NS_PER_S:
        if u < _NS_PER_US:
            return f"{sign}{u}ns"
        if u < _NS_PER_MS:
            frac, whole = _frac(u, 3)
            return f"{sign}{whole}{frac}µs"
        frac, whole = _frac(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, seconds = _frac(u, 9)
    text = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m" + text
        hours = minutes // 60
        if hours:
            text = f"{hours}h" + text
    return sign + text


def go_milliseconds(milliseconds: float) -> str:
    """A value in milliseconds as Flagger prints it: truncated to whole ms, then a Duration."""
    return go_duration(int(milliseconds) * _NS_PER_MS)
