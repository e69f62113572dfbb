"""Go ``text/template``, as Flagger renders a MetricTemplate's query.

Flagger (``pkg/metrics/observers/render.go``, ``RenderQuery``) parses a query with Go's
``text/template``, ``Option("missingkey=error")`` and the functions of
``MetricTemplateModel.TemplateFunctions`` (``name``, ``namespace``, ``target``, ``service``,
``ingress``, ``route``, ``interval``, ``variables``), and executes it with nil data. It adds no
function library (no sprig), so a query can use exactly Go's builtins: ``printf``, ``print``,
``println``, ``len``, ``index``, ``slice``, ``and``, ``or``, ``not``, ``eq``, ``ne``, ``lt``,
``le``, ``gt``, ``ge``, ``html``, ``js``, ``urlquery`` — and ``if``/``with``/``range``,
variables and pipelines. This module is that language, written for Python: `_goparse` reads the
source into a tree (refusing an unknown function at parse time, as Go does) and `execute` walks
it; `_gofmt` prints values as Go's ``fmt`` does. Nothing in a template can reach a Python
attribute: a field is only ever a key of a map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from activities.analysis.templates._gofmt import (
    BUILTINS,
    TemplateError,
    UndefinedError,
    go_str,
    go_type,
    truth,
)
from activities.analysis.templates._goparse import (
    Action,
    Branch,
    Chain,
    Const,
    Dot,
    Ident,
    Loop,
    ParseError,
    Parser,
    Pipeline,
    Var,
)

__all__ = ["ParseError", "TemplateError", "UndefinedError", "execute"]

MAX_OUTPUT = 1 << 20
"""Largest rendered query: a PromQL query is a few hundred bytes."""

_SHORT_CIRCUIT = ("and", "or")


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Run:
    """One execution: the functions, the variables in scope, the output so far."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = {**BUILTINS, **functions}
        self.scopes: list[dict[str, Any]] = [{"$": None}]
        self.out: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise TemplateError(f"the rendered query is over {MAX_OUTPUT // 1024} KiB")
        self.out.append(text)

    def walk(self, nodes: list[object], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.write(node)
            elif isinstance(node, Action):
                value = self.pipeline(node.pipe, dot)
                if not node.pipe.decls:
                    self.write("<no value>" if value is None else go_str(value))
            elif isinstance(node, Branch):
                self.branch(node, dot)
            elif isinstance(node, Loop):
                raise _Break() if node.kind == "break" else _Continue()

    def branch(self, node: Branch, dot: Any) -> None:
        self.scopes.append({})
        try:
            if node.kind == "range":
                self.range_(node, dot)
                return
            value = self.pipeline(node.pipe, dot)
            if truth(value):
                self.walk(node.body, value if node.kind == "with" else dot)
            else:
                self.walk(node.otherwise, dot)
        finally:
            self.scopes.pop()

    def range_(self, node: Branch, dot: Any) -> None:
        pipe = Pipeline((), False, node.pipe.commands)
        value = self.pipeline(pipe, dot)
        if isinstance(value, dict):
            items = [(key, value[key]) for key in sorted(value)]  # Go ranges maps in key order
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value is None:
            items = []
        else:
            raise TemplateError(f"range can't iterate over {go_str(value)} ({go_type(value)})")
        if not items:
            self.walk(node.otherwise, dot)
            return
        for key, element in items:
            names = node.pipe.decls
            if len(names) == 1:
                self.scopes[-1][names[0]] = element
            elif len(names) == 2:
                self.scopes[-1].update({names[0]: key, names[1]: element})
            try:
                self.walk(node.body, element)
            except _Break:
                break
            except _Continue:
                continue

    def pipeline(self, pipe: Pipeline, dot: Any) -> Any:
        value: Any = None
        for i, command in enumerate(pipe.commands):
            value = self.command(command, dot, final=(value,) if i else ())
        for name in pipe.decls:
            if pipe.assign:
                scope = next((s for s in reversed(self.scopes) if name in s), None)
                if scope is None:
                    raise UndefinedError(f"undefined variable: {name}")
                scope[name] = value
            else:
                self.scopes[-1][name] = value
        return value

    def command(self, command: tuple[object, ...], dot: Any, final: tuple[Any, ...]) -> Any:
        head, rest = command[0], command[1:]
        if isinstance(head, Ident):
            return self.call(head.name, rest, dot, final)
        if isinstance(head, Chain) and isinstance(head.operand, Ident) and (rest or final):
            raise TemplateError(f"{head.operand.name} has arguments but is not a function")
        if rest or final:
            raise TemplateError("can't give argument to non-function")
        return self.operand(head, dot)

    def call(self, name: str, args: tuple[object, ...], dot: Any, final: tuple[Any, ...]) -> Any:
        if name in _SHORT_CIRCUIT:
            if not args and not final:
                raise TemplateError(f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = None
            for arg in [*args, *(Const(v) for v in final)]:
                value = self.operand(arg, dot)
                if truth(value) == (name == "or"):
                    return value
            return value
        values = [self.operand(arg, dot) for arg in args] + list(final)
        try:
            return self.functions[name](*values)
        except TypeError:
            raise TemplateError(f"wrong number of args for {name}: got {len(values)}") from None

    def operand(self, node: object, dot: Any) -> Any:
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Var):
            scope = next((s for s in reversed(self.scopes) if node.name in s), None)
            if scope is None:
                raise UndefinedError(f"undefined variable: {node.name}")
            return scope[node.name]
        if isinstance(node, Ident):
            return self.call(node.name, (), dot, ())
        if isinstance(node, Pipeline):
            return self.pipeline(node, dot)
        if isinstance(node, Chain):
            value = self.operand(node.operand, dot)
            for name in node.fields:
                value = _field(value, name)
            return value
        raise TemplateError(f"cannot evaluate {node!r}")


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        if name not in value:  # Option("missingkey=error")
            raise UndefinedError(f'map has no entry for key "{name}"')
        return value[name]
    if value is None:
        raise UndefinedError(f'nil data; no entry for key "{name}"')
    raise TemplateError(f"can't evaluate field {name} in type {go_type(value)}")


def execute(source: str, functions: Mapping[str, Callable[..., Any]]) -> str:
    """``source`` rendered with nil data and ``functions`` besides Go's builtins; raises
    `ParseError`, `UndefinedError` or another `TemplateError` saying what is wrong."""
    tree = Parser(source, set(BUILTINS) | set(_SHORT_CIRCUIT) | set(functions)).parse()
    run = _Run(functions)
    try:
        run.walk(tree, None)
    except RecursionError:
        raise TemplateError("the template nests too deeply") from None
    return "".join(run.out)
