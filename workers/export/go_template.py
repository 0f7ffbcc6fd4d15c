"""A tiny interpreter for the part of Go's text/template that Tunelab's Ollama templates use.

Ollama renders a Modelfile's TEMPLATE with Go's text/template. To prove that a TEMPLATE we
write gives the same prompt as the model's Jinja chat template, the tests (and the Modelfile
builder's own check) need to run it; Go is not available, so this module runs the subset:

    text, {{ pipeline }}, trim markers {{- and -}}
    {{ if P }} ... {{ else if P }} ... {{ else }} ... {{ end }}
    {{ range P }}, {{ range $e := P }}, {{ range $i, $e := P }} ... {{ else }} ... {{ end }}
    {{ $x := P }}, {{ $x = P }}
    operands: .Field.Chain, ., $, $var, $var.Field, $.Field, "strings", `raw`, ints,
              true, false, nil, ( pipeline )
    functions: and, or, not, eq, ne, len, slice, index

Semantics follow Go's: `and`/`or` return an operand (and stop early), `if` tests Go
truthiness (empty string, 0, nil, empty list are false), variables are scoped to the block
they are declared in, a range body sees the element as dot. Anything else is a TemplateError
rather than a guess, so a template we cannot check is never reported as checked.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class TemplateError(ValueError):
    """The template uses syntax outside the supported subset, or fails while running."""


# --- lexing ---------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(- )?(.*?)( -)?\}\}", re.S)
_TRIM_SPACE = " \t\r\n"
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<declare>:=)
      | (?P<punct>[(),=])
      | (?P<variable>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<number>-?\d+)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X | re.S,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unescape(match: re.Match[str]) -> str:
    escape = match.group(1)
    if escape not in _ESCAPES:
        raise TemplateError(f"escape \\{escape} is not supported")
    return _ESCAPES[escape]


def _segments(source: str) -> Iterator[tuple[str, str]]:
    """("text", s) and ("action", body) pieces, with Go's trim markers applied to the text."""
    pieces: list[tuple[str, str]] = []
    position, trim_next = 0, False
    for match in _ACTION.finditer(source):
        text = source[position : match.start()]
        if trim_next:
            text = text.lstrip(_TRIM_SPACE)
        if match.group(1):
            text = text.rstrip(_TRIM_SPACE)
        pieces.append(("text", text))
        pieces.append(("action", match.group(2).strip()))
        position, trim_next = match.end(), bool(match.group(3))
    tail = source[position:]
    pieces.append(("text", tail.lstrip(_TRIM_SPACE) if trim_next else tail))
    for kind, value in pieces:
        if kind == "text" and "{{" in value:
            raise TemplateError(f"unclosed action in {value!r}")
        if kind == "action" or value:
            yield kind, value


def _tokens(action: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    action = action.rstrip()
    while position < len(action):
        match = _TOKEN.match(action, position)
        if match is None or match.end() == position:
            raise TemplateError(f"cannot read {action[position:]!r} in {{{{ {action} }}}}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


# --- syntax tree ----------------------------------------------------------------------------

Expr = tuple[Any, ...]


@dataclass
class _Text:
    text: str


@dataclass
class _Output:
    expr: Expr


@dataclass
class _Assign:
    name: str
    expr: Expr
    declare: bool


@dataclass
class _If:
    branches: list[tuple[Expr, list[Any]]]
    otherwise: list[Any] = field(default_factory=list)


@dataclass
class _Range:
    key: str | None
    value: str | None
    expr: Expr
    body: list[Any]
    otherwise: list[Any] = field(default_factory=list)


class _ExprParser:
    """Pipelines without `|`: a single operand, or a function name and its arguments."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.position = tokens, 0

    def done(self) -> bool:
        return self.position >= len(self.tokens)

    def peek(self) -> tuple[str, str] | None:
        return None if self.done() else self.tokens[self.position]

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise TemplateError("unexpected end of action")
        self.position += 1
        return token

    def command(self, closing: str | None = None) -> Expr:
        operands: list[Expr] = []
        while (token := self.peek()) is not None and token != ("punct", closing or ""):
            if token[0] == "punct" and token[1] != "(":
                break
            operands.append(self.operand())
        if not operands:
            raise TemplateError("empty pipeline")
        head = operands[0]
        if head[0] == "func":
            return ("call", head[1], operands[1:])
        if len(operands) > 1:
            raise TemplateError(f"cannot call a non-function {head!r}")
        return head

    def operand(self) -> Expr:
        kind, text = self.take()
        if kind == "string":
            return ("const", re.sub(r"\\(.)", _unescape, text[1:-1]))
        if kind == "raw":
            return ("const", text[1:-1])
        if kind == "number":
            return ("const", int(text))
        if kind == "field":
            return ("field", [part for part in text.split(".") if part])
        if kind == "variable":
            name, *chain = text.split(".")
            return ("var", name, chain)
        if kind == "punct" and text == "(":
            inner = self.command(closing=")")
            if self.take() != ("punct", ")"):
                raise TemplateError("missing )")
            return inner
        if kind == "ident":
            constants = {"true": True, "false": False, "nil": None}
            if text in constants:
                return ("const", constants[text])
            if text not in _FUNCTION_NAMES:
                raise TemplateError(f"function {text!r} is not supported")
            return ("func", text)
        raise TemplateError(f"unexpected {text!r}")


def _pipeline(tokens: list[tuple[str, str]]) -> Expr:
    parser = _ExprParser(tokens)
    expr = parser.command()
    if not parser.done():
        raise TemplateError(f"unexpected {parser.peek()!r}")
    return expr


def _parse(segments: Iterator[tuple[str, str]], stops: tuple[str, ...]) -> tuple[list[Any], str]:
    """Nodes up to one of `stops` ("end", "else"...); returns them and the stop action."""
    nodes: list[Any] = []
    for kind, value in segments:
        if kind == "text":
            nodes.append(_Text(value))
            continue
        tokens = _tokens(value)
        word = tokens[0][1] if tokens and tokens[0][0] == "ident" else ""
        if word in ("end", "else"):
            if not stops:
                raise TemplateError(f"unexpected {{{{ {value} }}}}")
            return nodes, value
        if word == "if":
            nodes.append(_parse_if(tokens[1:], segments))
        elif word == "range":
            nodes.append(_parse_range(tokens[1:], segments))
        elif word in ("with", "define", "template", "block", "break", "continue"):
            raise TemplateError(f"{{{{ {word} }}}} is not supported")
        elif len(tokens) > 1 and tokens[0][0] == "variable" and tokens[1][1] in (":=", "="):
            declare = tokens[1][0] == "declare"
            nodes.append(_Assign(tokens[0][1], _pipeline(tokens[2:]), declare))
        else:
            nodes.append(_Output(_pipeline(tokens)))
    if stops:
        raise TemplateError("missing {{ end }}")
    return nodes, ""


def _parse_if(tokens: list[tuple[str, str]], segments: Iterator[tuple[str, str]]) -> _If:
    node = _If(branches=[])
    condition = _pipeline(tokens)
    while True:
        body, stop = _parse(segments, ("end", "else"))
        node.branches.append((condition, body))
        stop_tokens = _tokens(stop)
        if stop_tokens[0][1] == "end":
            return node
        if len(stop_tokens) > 1 and stop_tokens[1] == ("ident", "if"):
            condition = _pipeline(stop_tokens[2:])
            continue
        node.otherwise, stop = _parse(segments, ("end",))
        if _tokens(stop)[0][1] != "end":
            raise TemplateError("{{ else }} after {{ else }}")
        return node


def _parse_range(tokens: list[tuple[str, str]], segments: Iterator[tuple[str, str]]) -> _Range:
    names: list[str] = []
    if any(kind == "declare" for kind, _ in tokens):
        split = next(i for i, (kind, _) in enumerate(tokens) if kind == "declare")
        names = [text for kind, text in tokens[:split] if kind == "variable"]
        tokens = tokens[split + 1 :]
    key, value = (names[0], names[1]) if len(names) == 2 else (None, names[0] if names else None)
    body, stop = _parse(segments, ("end", "else"))
    node = _Range(key, value, _pipeline(tokens), body)
    if _tokens(stop)[0][1] == "else":
        node.otherwise, _ = _parse(segments, ("end",))
    return node


# --- evaluation -----------------------------------------------------------------------------


def _truth(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (
        isinstance(value, list | tuple | dict) and len(value) == 0
    )


def _lookup(value: Any, names: list[str]) -> Any:
    for name in names:
        if isinstance(value, dict):
            if name not in value:
                raise TemplateError(f"no field {name!r}")
            value = value[name]
        else:
            raise TemplateError(f"cannot read .{name} of {value!r}")
    return value


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        value = value[key]
    return value


def _slice(value: Any, *bounds: int) -> Any:
    if len(bounds) > 2:
        raise TemplateError("slice takes at most two indexes here")
    return value[bounds[0] if bounds else 0 : bounds[1] if len(bounds) > 1 else None]


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "not": lambda value: not _truth(value),
    "eq": lambda first, *others: any(first == other for other in others),
    "ne": lambda first, second: first != second,
    "len": len,
    "slice": _slice,
    "index": _index,
}
# `and` and `or` take their operands unevaluated (see _Runner.call), so they are not in the table.
_FUNCTION_NAMES = frozenset({*_FUNCTIONS, "and", "or"})


class _Runner:
    def __init__(self, data: dict[str, Any]) -> None:
        self.root = data
        self.scopes: list[dict[str, Any]] = [{"$": data}]
        self.out: list[str] = []

    def variable(self, name: str) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise TemplateError(f"undefined variable {name}")

    def eval(self, expr: Expr, dot: Any) -> Any:
        kind = expr[0]
        if kind == "const":
            return expr[1]
        if kind == "field":
            return _lookup(dot, expr[1])
        if kind == "var":
            return _lookup(self.variable(expr[1]), expr[2])
        if kind == "func":  # a function named without arguments
            return self.call(expr[1], [], dot)
        return self.call(expr[1], expr[2], dot)

    def call(self, name: str, args: list[Expr], dot: Any) -> Any:
        if name in ("and", "or"):
            if not args:
                raise TemplateError(f"{name} needs arguments")
            value = None
            for arg in args:  # Go returns the deciding operand and skips the rest
                value = self.eval(arg, dot)
                if _truth(value) != (name == "and"):
                    return value
            return value
        try:
            return _FUNCTIONS[name](*(self.eval(arg, dot) for arg in args))
        except (TypeError, IndexError, KeyError) as error:
            raise TemplateError(f"{name}: {error}") from error

    def run(self, nodes: list[Any], dot: Any) -> None:
        self.scopes.append({})
        try:
            for node in nodes:
                self.node(node, dot)
        finally:
            self.scopes.pop()

    def node(self, node: Any, dot: Any) -> None:
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Output):
            self.out.append(_format(self.eval(node.expr, dot)))
        elif isinstance(node, _Assign):
            self.assign(node, dot)
        elif isinstance(node, _If):
            for condition, body in node.branches:
                if _truth(self.eval(condition, dot)):
                    self.run(body, dot)
                    return
            self.run(node.otherwise, dot)
        elif isinstance(node, _Range):
            self.range(node, dot)

    def assign(self, node: _Assign, dot: Any) -> None:
        value = self.eval(node.expr, dot)
        if node.declare:
            self.scopes[-1][node.name] = value
            return
        for scope in reversed(self.scopes):
            if node.name in scope:
                scope[node.name] = value
                return
        raise TemplateError(f"undefined variable {node.name}")

    def range(self, node: _Range, dot: Any) -> None:
        items = self.eval(node.expr, dot)
        if items is None:
            items = []
        if not isinstance(items, list | tuple):
            raise TemplateError(f"range over {type(items).__name__} is not supported")
        if not items:
            self.run(node.otherwise, dot)
            return
        for index, item in enumerate(items):
            self.scopes.append({})
            if node.key:
                self.scopes[-1][node.key] = index
            if node.value:
                self.scopes[-1][node.value] = item
            try:
                self.run(node.body, item)
            finally:
                self.scopes.pop()


def _format(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(source: str, data: dict[str, Any]) -> str:
    """Execute Go template `source` with `data` as dot (a dict; nested dicts are structs)."""
    nodes, _ = _parse(_segments(source), ())
    runner = _Runner(data)
    runner.run(nodes, data)
    return "".join(runner.out)
