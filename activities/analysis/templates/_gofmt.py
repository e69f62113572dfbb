"""Go's ``fmt`` printing and ``text/template``'s builtin functions, for query templates.

Values are Python's: ``str`` (Go's string), ``int``, ``float`` (float64), ``bool``, ``dict`` (a
map), ``list`` (a slice) and ``None`` (nil). Printing follows ``fmt``: ``%v`` of a float is the
shortest representation with an exponent from 1e+06 on (``fmt.Sprint(1e6)`` is ``1e+06``), a map
prints as ``map[k:v]`` with sorted keys, a bad verb as ``%!d(string=x)``. Widths and precisions
are capped, so a template read from the cluster cannot ask for a gigabyte of padding.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus


class TemplateError(Exception):
    """A query template that cannot be parsed or executed; the message says why."""


class UndefinedError(TemplateError):
    """A function or map key the template names does not exist."""


MAX_WIDTH = 4096

# --- printing -----------------------------------------------------------------------------------


_GO_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "bool"),  # before int: a bool is an int in Python
    (int, "int"),
    (float, "float64"),
    (str, "string"),
    (dict, "map[string]string"),
    (list, "[]interface {}"),
    (type(None), "<nil>"),
)


def go_type(value: Any) -> str:
    """The Go type a value stands for, as ``fmt`` names it in ``%!d(string=x)``."""
    return next((name for kind, name in _GO_TYPES if isinstance(value, kind)), "unknown")


def _float_g(value: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``: shortest digits, %e below 1e-4 or from 1e+06."""
    if math.isnan(value) or math.isinf(value):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits)) or "0"
    if value == 0:
        return "-0" if sign else "0"
    exp = len(text) + int(exponent) - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{prefix}0.{'0' * (-exp - 1)}{text}"
    whole = text[: exp + 1].ljust(exp + 1, "0")
    rest = text[exp + 1 :]
    return f"{prefix}{whole}{'.' + rest if rest else ''}"


def go_str(value: Any) -> str:
    """``fmt.Sprint`` of one value (``%v``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_g(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def go_quote(text: str) -> str:
    """``strconv.Quote``."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def sprint(*args: Any) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(arg)
    return out


def sprintln(*args: Any) -> str:
    return " ".join(go_str(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\[\d+\])?(\d+|\*)?(?:\.(\d+|\*)?)?(\[\d+\])?(.?)", re.DOTALL)


def _bad(verb: str, value: Any) -> str:
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(value)}={go_str(value)})"


def _pad(text: str, flags: str, width: int | None, numeric: bool) -> str:
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in "+- " else ""
        return sign + text[len(sign) :].rjust(width - len(sign), "0")
    return text.rjust(width)


@dataclass(frozen=True)
class _Spec:
    """One ``%`` directive: its verb, flags, width and precision."""

    verb: str
    flags: str
    width: int | None
    prec: int | None

    @property
    def sign(self) -> str:
        return "+" if "+" in self.flags else (" " if " " in self.flags else "")

    def pad(self, text: str, *, numeric: bool = False) -> str:
        return _pad(text, self.flags, self.width, numeric)


def _format_text(spec: _Spec, value: Any) -> str | None:
    if spec.verb == "v":
        return spec.pad(go_str(value), numeric=isinstance(value, int | float))
    if spec.verb == "s" and isinstance(value, str | list | dict):
        text = go_str(value)
        return spec.pad(text[: spec.prec] if spec.prec is not None else text)
    if spec.verb == "q" and isinstance(value, str):
        return spec.pad(go_quote(value))
    if spec.verb == "t" and isinstance(value, bool):
        return spec.pad(go_str(value))
    if spec.verb in "xX" and isinstance(value, str):
        text = value.encode().hex()
        return spec.pad(text.upper() if spec.verb == "X" else text)
    return None


def _format_int(spec: _Spec, value: int) -> str | None:
    verb = spec.verb
    if verb == "c":
        return spec.pad(chr(value))
    if verb == "q":
        return spec.pad("'" + go_quote(chr(value))[1:-1].replace("'", "\\'") + "'")
    if verb == "U":
        return spec.pad(f"U+{value:04X}")
    if verb not in "dboxX":
        return None
    digits = format(abs(value), ("#" if "#" in spec.flags else "") + verb)
    if spec.prec is not None:
        digits = digits.rjust(spec.prec, "0")
    return spec.pad(("-" if value < 0 else spec.sign) + digits, numeric=spec.prec is None)


def _format_float(spec: _Spec, value: float) -> str | None:
    verb = spec.verb
    if verb not in "eEfFgG":
        return None
    if verb in "gG" and spec.prec is None:
        text = _float_g(value)  # Go's %g is the shortest form, Python's has 6 digits
        text = text.upper() if verb == "G" else text
        text = spec.sign + text if value >= 0 else text
    else:
        alt = "#" if "#" in spec.flags else ""
        text = format(value, f"{spec.sign}{alt}.{6 if spec.prec is None else spec.prec}{verb}")
    return spec.pad(text, numeric=True)


def _format_one(spec: _Spec, value: Any) -> str:
    text = _format_text(spec, value)
    if text is None and isinstance(value, int) and not isinstance(value, bool):
        text = _format_int(spec, value)
    elif text is None and isinstance(value, float):
        text = _format_float(spec, value)
    return _bad(spec.verb, value) if text is None else text


def _arg_number(text: str | None, args: list[Any], at: int) -> tuple[int | None, int]:
    """A width or precision: digits, or ``*`` taking an int argument."""
    if text is None:
        return None, at
    if text != "*":
        number = int(text)
    elif at < len(args) and isinstance(args[at], int) and not isinstance(args[at], bool):
        number, at = args[at], at + 1
    else:
        raise TemplateError("printf: '*' needs an int argument")
    if number > MAX_WIDTH:
        raise TemplateError(f"printf: width or precision {number} is over {MAX_WIDTH}")
    return number, at


def sprintf(template: str, *values: Any) -> str:
    """``fmt.Sprintf`` for the verbs a query can use: v s q d b o x X c U e E f F g G t %."""
    if not isinstance(template, str):
        raise TemplateError(f"printf: the format is a {go_type(template)}, not a string")
    args, out, at, pos = list(values), [], 0, 0
    for match in _VERB.finditer(template):
        out.append(template[pos : match.start()])
        pos = match.end()
        flags, index, width_text, prec_text, index2, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        if index or index2:
            at = int((index or index2)[1:-1]) - 1
        width, at = _arg_number(width_text, args, at)
        prec, at = _arg_number(prec_text, args, at)
        if not verb:
            out.append("%!(NOVERB)")
        elif at >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_format_one(_Spec(verb, flags, width, prec), args[at]))
            at += 1
    out.append(template[pos:])
    if at < len(args) and not any(m.group(2) or m.group(5) for m in _VERB.finditer(template)):
        extra = ", ".join(f"{go_type(a)}={go_str(a)}" for a in args[at:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# --- text/template's builtins ---------------------------------------------------------------------


def truth(value: Any) -> bool:
    """Go templates' truth: false, 0, nil and empty strings, maps and slices are false."""
    if value is None:
        return False
    if isinstance(value, bool | int | float):
        return bool(value)
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def _comparable(a: Any, b: Any) -> None:
    kinds = (bool, int, float, str)
    kind_a = next((k for k in kinds if isinstance(a, k)), None)
    kind_b = next((k for k in kinds if isinstance(b, k)), None)
    if kind_a is None or kind_a is not kind_b:
        raise TemplateError(f"incompatible types for comparison: {go_type(a)} and {go_type(b)}")


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("missing argument for comparison")
    for other in others:
        if first is None or other is None:
            if first is other:
                return True
            continue
        _comparable(first, other)
        if first == other:
            return True
    return False


def _ordered(name: str, test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        _comparable(a, b)
        if isinstance(a, bool):
            raise TemplateError(f"invalid type for comparison: {name} on bool")
        return test(a, b)

    return compare


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, "")  # a missing key gives the zero value, as in Go
        elif isinstance(item, list | str) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(item):
                raise TemplateError(f"index out of range: {key}")
            item = item[key]
        else:
            raise TemplateError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *bounds: Any) -> Any:
    if not isinstance(item, str | list):
        raise TemplateError(f"can't slice item of type {go_type(item)}")
    if len(bounds) > 2 or not all(isinstance(b, int) for b in bounds):
        raise TemplateError("slice: give at most two int indexes")
    low, high = (list(bounds) + [0, len(item)][len(bounds) :])[:2]
    if not 0 <= low <= high <= len(item):
        raise TemplateError(f"slice: index out of range: [{low}:{high}]")
    return item[low:high]


def _len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, list | dict):
        return len(item)
    raise TemplateError(f"len of type {go_type(item)}")


def _js(*args: Any) -> str:
    out = []
    for ch in sprint(*args):
        if ch in "\\'\"<>&=":
            out.append(f"\\u{ord(ch):04X}" if ch in "<>&=" else "\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _html(*args: Any) -> str:
    text = html.escape(sprint(*args), quote=False)
    return text.replace('"', "&#34;").replace("'", "&#39;").replace("\x00", "\ufffd")


def _not_supported(*_: Any) -> Any:
    raise TemplateError("call is not supported: a query template has no function values")


BUILTINS: dict[str, Callable[..., Any]] = {
    "print": sprint,
    "printf": sprintf,
    "println": sprintln,
    "len": _len,
    "index": _index,
    "slice": _slice,
    "not": lambda value: not truth(value),
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered("lt", lambda a, b: a < b),
    "le": _ordered("le", lambda a, b: a <= b),
    "gt": _ordered("gt", lambda a, b: a > b),
    "ge": _ordered("ge", lambda a, b: a >= b),
    "html": _html,
    "js": _js,
    "urlquery": lambda *args: quote_plus(sprint(*args)),
    "call": _not_supported,
}
"""Go's text/template builtins but ``and`` and ``or`` (they short-circuit: see `gotemplate`)."""
