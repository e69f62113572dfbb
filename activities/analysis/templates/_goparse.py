"""Lexing and parsing Go ``text/template`` source into a small tree (see `gotemplate`).

The grammar is Go's (``text/template/parse``) for everything a query template can use: text and
``{{ }}`` actions with ``{{-``/``-}}`` trimming and ``{{/* comments */}}``; pipelines of commands
joined by ``|``; operands that are functions, ``.Field`` chains, ``$variables`` (declared with
``:=``, assigned with ``=``), string, raw-string, character, number, boolean and ``nil``
constants, parenthesized pipelines, and field chains on any of them (``variables.cluster``);
``if``/``else if``/``with``/``range``/``else``/``end``, ``break`` and ``continue``. ``define``,
``template`` and ``block`` (named templates) are refused: Flagger renders one anonymous template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from activities.analysis.templates._gofmt import TemplateError, UndefinedError


class ParseError(TemplateError):
    """The template's source is not a valid Go template."""


# --- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: object


@dataclass(frozen=True)
class Ident:
    """A function name."""

    name: str


@dataclass(frozen=True)
class Dot:
    pass


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Chain:
    """``operand.a.b``: fields looked up on an operand's value (``.a.b`` is a chain on dot)."""

    operand: object
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Pipeline:
    decls: tuple[str, ...]
    assign: bool  # `=` rather than `:=`
    commands: tuple[tuple[object, ...], ...]


@dataclass(frozen=True)
class Action:
    pipe: Pipeline


@dataclass(frozen=True)
class Branch:
    """``if``, ``with`` or ``range``: the body runs for a true value, ``otherwise`` if not."""

    kind: str
    pipe: Pipeline
    body: list[object]
    otherwise: list[object] = field(default_factory=list)


@dataclass(frozen=True)
class Loop:
    """``break`` or ``continue`` inside a ``range``."""

    kind: str


# --- lexing -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<close>-?\}\})
      | (?P<declare>:=) | (?P<op>[|(),=])
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<char>'(?:[^'\\\n]|\\.[^']*)')
      | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?))
      | (?P<var>\$[A-Za-z0-9_]*)
      | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
      | (?P<dot>\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue"}
_NAMED = {"define", "template", "block"}
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    spaced: bool  # whitespace came right before it


def _unquote(text: str) -> str:
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "\\'\"":
            out.append(nxt)
            i += 2
        elif nxt in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[nxt]
            out.append(chr(int(body[i + 2 : i + 2 + size], 16)))
            i += 2 + size
        elif nxt in "01234567":
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise ParseError(f"unknown escape sequence \\{nxt} in {text}")
    return "".join(out)


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    try:
        return int(clean, 0)
    except ValueError:
        pass
    try:
        return float(clean)
    except ValueError:
        raise ParseError(f"bad number syntax: {text!r}") from None


def _lex_action(source: str, start: int) -> tuple[list[_Tok], int, bool]:
    """Tokens of the action starting at ``start`` (after ``{{``), the end offset (after
    ``}}``), and whether the action trims the text after it."""
    tokens: list[_Tok] = []
    pos, spaced = start, True
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ParseError(f"unexpected {source[pos]!r} in action")
        kind = match.lastgroup or ""
        text = match.group()
        pos = match.end()
        if kind == "space":
            spaced = True
            continue
        if kind == "close":
            if text.startswith("-") and not spaced:
                raise ParseError("unexpected '-' before '}}': write ' -}}' to trim")
            return tokens, pos, text.startswith("-")
        tokens.append(_Tok(kind, text, spaced))
        spaced = False
    raise ParseError("unclosed action")


def lex(source: str) -> list[str | list[_Tok]]:
    """The template as a list of text runs and actions (token lists), trimming applied."""
    items: list[str | list[_Tok]] = []
    pos, trim_next = 0, False
    while True:
        found = source.find("{{", pos)
        text = source[pos:] if found < 0 else source[pos:found]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if found < 0:
            items.append(text)
            return items
        start = found + 2
        if (
            source.startswith("- ", start)
            or source.startswith("-\t", start)
            or source.startswith("-\n", start)
        ):
            text = text.rstrip(" \t\r\n")
            start += 1
        items.append(text)
        comment = re.match(r"\s*/\*.*?\*/\s*(-?)\}\}", source[start:], re.DOTALL)
        if comment:
            pos, trim_next = start + comment.end(), bool(comment.group(1))
            continue
        tokens, pos, trim_next = _lex_action(source, start)
        items.append(tokens)


# --- parsing ------------------------------------------------------------------------------------


def _constant(token: _Tok) -> Const:
    if token.kind == "string":
        return Const(_unquote(token.text))
    if token.kind == "raw":
        return Const(token.text[1:-1])
    if token.kind == "char":
        return Const(ord(_unquote('"' + token.text[1:-1] + '"')))
    if token.kind == "number":
        return Const(_number(token.text))
    raise ParseError(f"unexpected {token.text!r} in operand")


class Parser:
    """Recursive descent over `lex`'s items, checking function names as Go does at parse time."""

    def __init__(self, source: str, functions: set[str]) -> None:
        self._items = lex(source)
        self._at = 0
        self._functions = functions
        self._loops = 0
        self._tokens: list[_Tok] = []  # what follows the `else` or `end` just read

    def parse(self) -> list[object]:
        nodes, stop = self._list()
        if stop is not None:
            raise ParseError(f"unexpected {{{{{stop}}}}}")
        return nodes

    def _list(self) -> tuple[list[object], str | None]:
        """Nodes up to the end of input, or to an ``else``/``end`` (returned, consumed)."""
        nodes: list[object] = []
        while self._at < len(self._items):
            item = self._items[self._at]
            self._at += 1
            if isinstance(item, str):
                if item:
                    nodes.append(item)
                continue
            if not item:
                raise ParseError("missing value for command")
            head = item[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                self._tokens = item[1:]
                return nodes, head.text
            nodes.append(self._action(item))
        return nodes, None

    def _action(self, tokens: list[_Tok]) -> object:
        head = tokens[0]
        if head.kind == "ident" and head.text in ("if", "with", "range"):
            return self._branch(head.text, tokens[1:])
        if head.kind == "ident" and head.text in ("break", "continue"):
            if len(tokens) > 1 or not self._loops:
                raise ParseError(f"{head.text} outside range")
            return Loop(head.text)
        if head.kind == "ident" and head.text in _NAMED:
            raise ParseError(f"{head.text} is not supported: a query is one template")
        return Action(self._pipeline(tokens, declare=True))

    def _branch(self, kind: str, tokens: list[_Tok]) -> Branch:
        pipe = self._pipeline(tokens, declare=True, range_decl=kind == "range")
        self._loops += kind == "range"
        body, stop = self._list()
        self._loops -= kind == "range"
        otherwise: list[object] = []
        if stop == "else":
            rest = self._tokens
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with"):
                otherwise = [self._branch(rest[0].text, rest[1:])]  # `else if`: shares the end
                return Branch(kind, pipe, body, otherwise)
            if rest:
                raise ParseError("unexpected tokens after else")
            otherwise, stop = self._list()
        if stop != "end" or self._tokens:
            raise ParseError(f"missing {{{{end}}}} for {kind}")
        return Branch(kind, pipe, body, otherwise)

    def _pipeline(self, tokens: list[_Tok], *, declare: bool, range_decl: bool = False) -> Pipeline:
        decls, assign, rest = (
            self._declarations(tokens, range_decl) if declare else ((), False, tokens)
        )
        commands: list[tuple[object, ...]] = []
        current: list[object] = []
        pos = 0
        while pos < len(rest):
            token = rest[pos]
            if token.kind == "op" and token.text == "|":
                if not current:
                    raise ParseError("missing command before '|'")
                commands.append(tuple(current))
                current = []
                pos += 1
                continue
            operand, pos = self._operand(rest, pos)
            current.append(operand)
        if not current:
            raise ParseError("missing value for command")
        commands.append(tuple(current))
        return Pipeline(decls, assign, tuple(commands))

    @staticmethod
    def _declarations(
        tokens: list[_Tok], range_decl: bool
    ) -> tuple[tuple[str, ...], bool, list[_Tok]]:
        names: list[str] = []
        pos = 0
        while pos < len(tokens) and tokens[pos].kind == "var":
            names.append(tokens[pos].text)
            nxt = tokens[pos + 1] if pos + 1 < len(tokens) else None
            if nxt is not None and nxt.kind == "op" and nxt.text == "," and range_decl:
                pos += 2
                continue
            if nxt is not None and (nxt.kind == "declare" or (nxt.kind, nxt.text) == ("op", "=")):
                if len(names) > (2 if range_decl else 1):
                    raise ParseError("too many declarations")
                return tuple(names), nxt.kind != "declare", tokens[pos + 2 :]
            break
        return (), False, tokens

    def _operand(self, tokens: list[_Tok], pos: int) -> tuple[object, int]:
        token = tokens[pos]
        pos += 1
        node: object
        if token.kind == "op" and token.text == "(":
            depth, end = 1, pos
            while end < len(tokens) and depth:
                depth += {"(": 1, ")": -1}.get(
                    tokens[end].text if tokens[end].kind == "op" else "", 0
                )
                end += 1
            if depth:
                raise ParseError("unclosed left paren")
            node, pos = self._pipeline(tokens[pos : end - 1], declare=False), end
        elif token.kind == "field":
            node = Chain(Dot(), (token.text[1:],))
        elif token.kind == "dot":
            node = Dot()
        elif token.kind == "var":
            node = Var(token.text)
        elif token.kind == "ident":
            node = self._ident(token.text)
        else:
            node = _constant(token)
        fields: list[str] = []
        while pos < len(tokens) and tokens[pos].kind == "field" and not tokens[pos].spaced:
            fields.append(tokens[pos].text[1:])
            pos += 1
        if fields:
            node = (
                Chain(node.operand, node.fields + tuple(fields))
                if isinstance(node, Chain)
                else Chain(node, tuple(fields))
            )
        return node, pos

    def _ident(self, name: str) -> object:
        if name in ("true", "false"):
            return Const(name == "true")
        if name == "nil":
            return Const(None)
        if name in _KEYWORDS or name in _NAMED:
            raise ParseError(f"unexpected {name!r} in operand")
        if name not in self._functions:
            raise UndefinedError(f'function "{name}" not defined')
        return Ident(name)
