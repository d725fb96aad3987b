"""A parser for arithmetic expressions only: text -> a small syntax tree, never Python.

The calculator must not hand model output to ``eval`` (SymPy's ``sympify``/``parse_expr`` do), so
this module reads the text itself and accepts nothing but:

- numbers in ASCII digits: ``12``, ``3.5``, ``.5``, ``2.5e-3``; thousands separators ``1,234,567``
  (groups of exactly three digits, written without spaces, and not directly inside a function's
  argument list, where a comma separates arguments); a ``$`` right before a number is ignored;
- ``+ - * / % ^ **`` (``^`` and ``**`` are both powers, right-associative, binding tighter than a
  unary minus: ``-2^2 = -4``, ``2^-1 = 0.5``), unary ``+``/``-``, postfix ``!`` (factorial),
  parentheses; ``×``, ``÷`` and ``−`` (U+2212) as aliases of ``*``, ``/`` and ``-``;
- the functions of :data:`FUNCTIONS` and the constants :data:`CONSTANTS`.

Anything else is a :class:`ArithmeticSyntaxError` naming the offending character or name and its
position. Input length and nesting depth are bounded, so parsing is O(len(text)) with a recursion
depth of at most :data:`MAX_DEPTH` frames per level.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_INPUT_CHARS = 1000
MAX_DEPTH = 60

# name -> (min arguments, max arguments); None = any number.
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "sqrt": (1, 1),
    "abs": (1, 1),
    "round": (1, 2),
    "min": (1, None),
    "max": (1, None),
    "floor": (1, 1),
    "ceil": (1, 1),
    "log": (1, 2),
    "ln": (1, 1),
    "exp": (1, 1),
}
CONSTANTS = ("pi", "e")

_ALIASES = {"×": "*", "÷": "/", "−": "-"}
_OPERATORS = ("**", "+", "-", "*", "/", "%", "^", "(", ")", ",", "!")
_ASCII_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | _ASCII_DIGITS


class ArithmeticSyntaxError(ValueError):
    """The text is not an arithmetic expression this calculator accepts."""


@dataclass(frozen=True)
class Number:
    """A literal as written (digits only, separators removed): ``"1234.5"``, ``"2.5e-3"``."""

    text: str


@dataclass(frozen=True)
class Constant:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "+"
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # "+", "-", "*", "/", "%", "^"
    left: Node
    right: Node


@dataclass(frozen=True)
class Factorial:
    operand: Node


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Number | Constant | Unary | Binary | Factorial | Call


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    start: int
    end: int


def _describe(char: str) -> str:
    return repr(char) if char.isprintable() else f"U+{ord(char):04X}"


def _scan_number(text: str, i: int) -> int:
    """End of the number literal starting at ``i`` (digits, optional fraction and exponent)."""
    n = len(text)
    j = i
    while j < n and text[j] in _ASCII_DIGITS:
        j += 1
    if j < n and text[j] == ".":
        j += 1
        while j < n and text[j] in _ASCII_DIGITS:
            j += 1
    if j == i + 1 and text[i] == ".":
        raise ArithmeticSyntaxError(f"unexpected '.' at position {i}")
    # An exponent only when digits follow: "2e" is 2 then the name e (an error later).
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k] in _ASCII_DIGITS:
            while k < n and text[k] in _ASCII_DIGITS:
                k += 1
            j = k
    return j


def tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens; raises on the first character outside the grammar."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = _ALIASES.get(text[i], text[i])
        if char.isspace():
            i += 1
        elif char in _ASCII_DIGITS or (char == "." and i + 1 < n and text[i + 1] in _ASCII_DIGITS):
            end = _scan_number(text, i)
            tokens.append(_Token("num", text[i:end], i, end))
            i = end
        elif char == "$" and i + 1 < n and (text[i + 1] in _ASCII_DIGITS or text[i + 1] == "."):
            i += 1  # currency sign before a number: models write "$5 * 3"
        elif char in _NAME_START:
            end = i + 1
            while end < n and text[end] in _NAME_CHARS:
                end += 1
            tokens.append(_Token("name", text[i:end], i, end))
            i = end
        elif text.startswith("**", i):
            tokens.append(_Token("op", "^", i, i + 2))
            i += 2
        elif char in _OPERATORS:
            tokens.append(_Token("op", "^" if char == "^" else char, i, i + 1))
            i += 1
        else:
            raise ArithmeticSyntaxError(
                f"unsupported character {_describe(text[i])} at position {i}"
            )
    tokens.append(_Token("end", "", n, n))
    return tokens


class _Parser:
    """Recursive descent over the token list; ``_contexts`` tracks whether a comma separates
    function arguments ("call") or may be a thousands separator (top level, "paren")."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self._contexts: list[str] = []

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def _advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _enter(self) -> None:
        # Every nesting (parentheses, call arguments, unary chains, exponents) passes here.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ArithmeticSyntaxError(f"expression nested too deeply (limit {MAX_DEPTH})")

    def _unexpected(self) -> ArithmeticSyntaxError:
        token = self.token
        if token.kind == "end":
            return ArithmeticSyntaxError("unexpected end of expression")
        return ArithmeticSyntaxError(f"unexpected {token.text!r} at position {token.start}")

    def _expect(self, text: str) -> None:
        if self.token.kind != "op" or self.token.text != text:
            raise self._unexpected()
        self._advance()

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise ArithmeticSyntaxError("empty expression")
        node = self._additive()
        if self.token.kind != "end":
            raise self._unexpected()
        return node

    def _additive(self) -> Node:
        node = self._multiplicative()
        while self.token.kind == "op" and self.token.text in "+-":
            op = self._advance().text
            node = Binary(op, node, self._multiplicative())
        return node

    def _multiplicative(self) -> Node:
        node = self._unary()
        while self.token.kind == "op" and self.token.text in ("*", "/", "%"):
            op = self._advance().text
            node = Binary(op, node, self._unary())
        return node

    def _unary(self) -> Node:
        self._enter()
        if self.token.kind == "op" and self.token.text in "+-":
            op = self._advance().text
            node: Node = Unary(op, self._unary())
        else:
            node = self._power()
        self.depth -= 1
        return node

    def _power(self) -> Node:
        base = self._postfix()
        if self.token.kind == "op" and self.token.text == "^":
            self._advance()
            return Binary("^", base, self._unary())  # right-associative, allows 2^-1
        return base

    def _postfix(self) -> Node:
        node = self._primary()
        while self.token.kind == "op" and self.token.text == "!":
            self._advance()
            node = Factorial(node)
        return node

    def _primary(self) -> Node:
        token = self.token
        if token.kind == "num":
            return Number(self._number())
        if token.kind == "name":
            return self._name()
        if token.kind == "op" and token.text == "(":
            self._advance()
            self._contexts.append("paren")
            node = self._additive()
            self._contexts.pop()
            self._expect(")")
            return node
        raise self._unexpected()

    def _number(self) -> str:
        """A literal, merging ``1,234,567`` where a comma cannot separate arguments."""
        first = self._advance()
        text, end = first.text, first.end
        in_call = bool(self._contexts) and self._contexts[-1] == "call"
        if in_call or not (1 <= len(text) <= 3 and text.isdigit()):
            return text
        while self.pos + 1 < len(self.tokens):
            comma, group = self.tokens[self.pos], self.tokens[self.pos + 1]
            if not (
                comma.kind == "op"
                and comma.text == ","
                and comma.start == end
                and group.kind == "num"
                and group.start == comma.end
                and group.text[:3].isdigit()
                and (len(group.text) == 3 or not group.text[3].isdigit())
            ):
                return text
            self.pos += 2
            text += group.text
            end = group.end
            if len(group.text) > 3:  # "1,234.5" or "1,234e3": the group ends the literal
                return text
        return text

    def _name(self) -> Node:
        token = self._advance()
        name = token.text
        if name in CONSTANTS:
            return Constant(name)
        if name not in FUNCTIONS:
            raise ArithmeticSyntaxError(f"unknown name {name!r} at position {token.start}")
        if not (self.token.kind == "op" and self.token.text == "("):
            raise ArithmeticSyntaxError(f"function {name!r} needs parentheses: {name}(...)")
        self._advance()
        self._contexts.append("call")
        args = [self._additive()]
        while self.token.kind == "op" and self.token.text == ",":
            self._advance()
            args.append(self._additive())
        self._contexts.pop()
        self._expect(")")
        low, high = FUNCTIONS[name]
        if len(args) < low or (high is not None and len(args) > high):
            expected = str(low) if low == high else f"{low} to {high or 'any'}"
            raise ArithmeticSyntaxError(f"{name}() takes {expected} arguments, got {len(args)}")
        return Call(name, tuple(args))


def parse(text: str) -> Node:
    """Parse an arithmetic expression; raises :class:`ArithmeticSyntaxError` on anything else."""
    if len(text) > MAX_INPUT_CHARS:
        raise ArithmeticSyntaxError(
            f"expression too long ({len(text)} characters, limit {MAX_INPUT_CHARS})"
        )
    return _Parser(tokenize(text)).parse()
