"""The calculator tool (``<math_exp>``): SymPy arithmetic behind our own parser, with bounded work.

:mod:`swirl.tools.arithmetic` turns the text into a syntax tree (never Python); this module walks
the tree and computes with SymPy numbers: exact ``Rational`` wherever the operation allows it
(``+ - * / %``, integer powers, factorial, ``floor``/``ceil``/``round``/``abs``/``min``/``max``, square
roots of perfect squares), and 30-digit ``Float`` otherwise (``sqrt(2)``, ``log``, ``exp``, ``pi``,
non-integer powers, and exact results that would grow past :data:`MAX_EXACT_DIGITS`).

Bounds, checked *before* each operation so that no input can make a call slow (the parser bounds
length and nesting; see :mod:`swirl.tools.arithmetic`):

- every value's magnitude stays within ``10**±MAX_MAGNITUDE``; a result outside is an error;
- exact numerators and denominators keep at most :data:`MAX_EXACT_DIGITS` digits; a larger exact
  result is computed as a Float instead (``1.0001^100000`` is ``22015.4...``);
- factorial of integers from 0 up to the size bound only; ``round(x, n)`` with ``|n| <= 50``.

Result formatting (deterministic, :func:`format_number`):

- an exact integer with at most :data:`MAX_INTEGER_DIGITS` digits prints exactly: ``72``, ``-5``,
  ``18446744073709551616``;
- any other value is rounded half away from zero to :data:`SIGNIFICANT_DIGITS` significant digits,
  trailing zeros dropped: ``0.3333333333``, ``2.5``, ``2`` (for ``sqrt(2)^2``); positional when the
  decimal exponent is in ``[-6, 15)``, else scientific ``1.234567891e+20``, ``1e-07``.

Errors come back as ``"error: <reason>"``, the tool result the model sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import ClassVar

import sympy
from mpmath.libmp import to_str

from swirl.schema import ActionKind
from swirl.tools.arithmetic import (
    ArithmeticSyntaxError,
    Binary,
    Call,
    Constant,
    Factorial,
    Node,
    Number,
    Unary,
    parse,
)

PRECISION_DIGITS = 30  # working precision of inexact values
MAX_MAGNITUDE = 1000  # |value| < 10**MAX_MAGNITUDE, and nonzero |value| > 10**-MAX_MAGNITUDE
MAX_EXACT_DIGITS = 1000  # digits of an exact numerator or denominator
MAX_INTEGER_DIGITS = 30  # exact integers up to this many digits print in full
SIGNIFICANT_DIGITS = 10  # everything else prints rounded to this many significant digits
MAX_ROUND_PLACES = 50

_LOG10_2 = math.log10(2)
_LOG10_E = math.log10(math.e)

Value = sympy.Rational | sympy.Float


class CalculatorError(ValueError):
    """The expression is valid arithmetic but cannot be evaluated (division by zero, too large)."""


def _log10_abs(value: Value) -> float:
    """log10 of ``|value|`` without overflow (exact to float precision for rationals, within 0.3
    for floats); -inf for zero."""
    if value == 0:
        return -math.inf
    if isinstance(value, sympy.Rational):
        return math.log10(abs(value.p)) - math.log10(value.q)  # math.log10 takes big ints
    _sign, _mantissa, exponent, bits = value._mpf_
    return (exponent + bits) * _LOG10_2


def _digits(n: int) -> int:
    """Decimal digits of ``n`` from its float logarithm (no string conversion), for size bounds:
    exact except just below a power of ten, where rounding may count one digit more."""
    return math.floor(math.log10(abs(n))) + 1 if n else 1


def _scaled(log_magnitude: float, factor: Value) -> float:
    """``log_magnitude * factor`` (the log10 size of ``x**factor`` when ``log_magnitude`` is
    ``log10|x|``) computed in log space, ±inf past 1e300 instead of overflowing."""
    if log_magnitude == 0 or factor == 0:
        return 0.0
    sign = math.copysign(1.0, log_magnitude) * (1.0 if factor > 0 else -1.0)
    size = math.log10(abs(log_magnitude)) + _log10_abs(factor)
    return sign * math.inf if size > 300 else sign * 10.0**size


def _to_float(value: Value) -> sympy.Float:
    return sympy.Float(value, PRECISION_DIGITS)


def _checked(value: Value) -> Value:
    """Enforce the magnitude bound; demote oversized exact values to Floats."""
    if not isinstance(value, (sympy.Rational, sympy.Float)):
        raise CalculatorError("not a real number")
    if value == 0:
        return sympy.Integer(0)
    magnitude = _log10_abs(value)
    if magnitude > MAX_MAGNITUDE:
        raise CalculatorError("result too large")
    if magnitude < -MAX_MAGNITUDE:
        raise CalculatorError("result too small")
    if (
        isinstance(value, sympy.Rational)
        and max(_digits(value.p), _digits(value.q)) > MAX_EXACT_DIGITS
    ):
        return _to_float(value)
    return value


def _is_integer(value: Value) -> bool:
    return isinstance(value, sympy.Integer)


def _as_int(value: Value, what: str) -> int:
    if isinstance(value, sympy.Integer):
        return int(value)
    if isinstance(value, sympy.Float) and value == int(value):
        return int(value)
    raise CalculatorError(f"{what} must be an integer")


def _number(text: str) -> Value:
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_MAGNITUDE:
        raise CalculatorError("number out of range")
    return _checked(sympy.Rational(mantissa) * sympy.Rational(10) ** int(exponent or 0))


def _power(base: Value, exponent: Value) -> Value:
    if base == 0:
        if exponent < 0:
            raise CalculatorError("division by zero")
        return sympy.Integer(1) if exponent == 0 else sympy.Integer(0)
    if _is_integer(exponent):
        n = int(exponent)
        if base in (1, -1):  # exact for any n, however large
            return sympy.Integer(1) if base == 1 or n % 2 == 0 else sympy.Integer(-1)
        estimate = _scaled(_log10_abs(base), exponent)
        if abs(estimate) > MAX_MAGNITUDE + 1:
            raise CalculatorError("result too large" if estimate > 0 else "result too small")
        if isinstance(base, sympy.Rational) and abs(n) < MAX_EXACT_DIGITS:
            # digits of the exact numerator and denominator of base**n
            size = abs(n) * max(math.log10(abs(base.p)), math.log10(base.q))
            if size < MAX_EXACT_DIGITS:
                return _checked(base**n)
        return _checked(_to_float(base) ** n)
    if base < 0:
        raise CalculatorError("not a real number (negative base, fractional power)")
    estimate = _scaled(_log10_abs(base), exponent)
    if estimate > MAX_MAGNITUDE + 1:
        raise CalculatorError("result too large")
    if estimate < -MAX_MAGNITUDE - 1:
        raise CalculatorError("result too small")
    return _checked(_to_float(base) ** _to_float(exponent))


def _factorial(value: Value) -> Value:
    n = _as_int(value, "factorial argument")
    if n < 0:
        raise CalculatorError("factorial of a negative number")
    # log10(n!) via lgamma; n is bounded first so lgamma stays cheap and finite.
    if n > 10 * MAX_MAGNITUDE or math.lgamma(n + 1) / math.log(10) > MAX_MAGNITUDE:
        raise CalculatorError("result too large")
    return _checked(sympy.factorial(sympy.Integer(n)))


def _sqrt(value: Value) -> Value:
    if value < 0:
        raise CalculatorError("square root of a negative number")
    if isinstance(value, sympy.Rational):
        p, q = math.isqrt(value.p), math.isqrt(value.q)
        if p * p == value.p and q * q == value.q:
            return sympy.Rational(p, q)
    return _checked(sympy.sqrt(_to_float(value)))


def _log(value: Value, base: Value | None = None) -> Value:
    if value <= 0:
        raise CalculatorError("logarithm of a non-positive number")
    result = sympy.log(_to_float(value))
    if base is not None:
        if base <= 0 or base == 1:
            raise CalculatorError("logarithm base must be positive and not 1")
        result = result / sympy.log(_to_float(base))
    return _checked(result)


def _exp(value: Value) -> Value:
    estimate = _scaled(_LOG10_E, value)  # log10 of e**value
    if estimate > MAX_MAGNITUDE:
        raise CalculatorError("result too large")
    if estimate < -MAX_MAGNITUDE:
        raise CalculatorError("result too small")
    return _checked(sympy.exp(_to_float(value)))


def _round_half_away(value: Value, places: int = 0) -> Value:
    """Round to ``places`` decimals, halves away from zero (as people round money)."""
    if abs(places) > MAX_ROUND_PLACES:
        raise CalculatorError(f"round() places must be within ±{MAX_ROUND_PLACES}")
    exact = sympy.Rational(value) if isinstance(value, sympy.Float) else value
    scale = sympy.Rational(10) ** places
    magnitude = sympy.floor(abs(exact) * scale + sympy.Rational(1, 2))
    return _checked(sympy.sign(exact) * magnitude / scale)


def _call(name: str, args: list[Value]) -> Value:
    if name == "sqrt":
        return _sqrt(args[0])
    if name == "abs":
        return abs(args[0])
    if name == "floor":
        return _checked(sympy.floor(args[0]))
    if name == "ceil":
        return _checked(sympy.ceiling(args[0]))
    if name == "round":
        return _round_half_away(args[0], _as_int(args[1], "round() places") if len(args) > 1 else 0)
    if name == "min":
        return min(args)
    if name == "max":
        return max(args)
    if name in ("log", "ln"):
        return _log(args[0], args[1] if len(args) > 1 else None)
    if name == "exp":
        return _exp(args[0])
    raise CalculatorError(f"unknown function {name!r}")  # unreachable: the parser whitelists


def _binary(op: str, left: Value, right: Value) -> Value:
    if op == "+":
        return _checked(left + right)
    if op == "-":
        return _checked(left - right)
    if op == "*":
        if left != 0 and right != 0 and _log10_abs(left) + _log10_abs(right) > MAX_MAGNITUDE + 1:
            raise CalculatorError("result too large")
        return _checked(left * right)
    if op == "/":
        if right == 0:
            raise CalculatorError("division by zero")
        if left != 0 and _log10_abs(left) - _log10_abs(right) > MAX_MAGNITUDE + 1:
            raise CalculatorError("result too large")
        return _checked(left / right)
    if op == "%":
        if right == 0:
            raise CalculatorError("modulo by zero")
        return _checked(sympy.Mod(left, right))
    return _power(left, right)


def _evaluate(node: Node) -> Value:
    if isinstance(node, Number):
        return _number(node.text)
    if isinstance(node, Constant):
        return _to_float(sympy.pi if node.name == "pi" else sympy.E)
    if isinstance(node, Unary):
        operand = _evaluate(node.operand)
        return -operand if node.op == "-" else operand
    if isinstance(node, Binary):
        return _binary(node.op, _evaluate(node.left), _evaluate(node.right))
    if isinstance(node, Factorial):
        return _factorial(_evaluate(node.operand))
    if isinstance(node, Call):
        return _call(node.name, [_evaluate(arg) for arg in node.args])
    raise TypeError(f"not an arithmetic node: {node!r}")


def evaluate(expression: str) -> Value:
    """Evaluate an arithmetic expression to a SymPy ``Rational`` (exact) or ``Float``.

    Raises :class:`~swirl.tools.arithmetic.ArithmeticSyntaxError` for text outside the grammar and
    :class:`CalculatorError` for valid arithmetic without a bounded real result.
    """
    return _evaluate(parse(expression))


def format_number(value: Value) -> str:
    """The text shown for a result (rules in the module docstring)."""
    # 4 bits per digit over-covers MAX_INTEGER_DIGITS; the bound keeps str() cheap.
    if _is_integer(value) and value.p.bit_length() <= 4 * MAX_INTEGER_DIGITS:
        text = str(int(value))
        if len(text.lstrip("-")) <= MAX_INTEGER_DIGITS:
            return text
    if isinstance(value, sympy.Rational):
        decimal = Context(prec=SIGNIFICANT_DIGITS + 10).divide(Decimal(value.p), Decimal(value.q))
    else:
        decimal = Decimal(to_str(value._mpf_, PRECISION_DIGITS))
    if decimal.is_zero():
        return "0"
    rounded = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_UP).plus(decimal)
    exponent = rounded.adjusted()
    if -6 <= exponent < 15:
        text = format(rounded, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    mantissa = f"{rounded.scaleb(-exponent):f}"
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent:+03d}"


@dataclass
class Calculator:
    """The ``<math_exp>`` tool: ``Calculator()("48/2 + 48")`` -> ``"72"``.

    Never raises on model input: syntax errors, division by zero and out-of-bounds results come
    back as ``"error: ..."`` strings.
    """

    kind: ClassVar[ActionKind] = "math"

    def __call__(self, payload: str) -> str:
        try:
            return format_number(evaluate(payload))
        except (ArithmeticSyntaxError, CalculatorError) as error:
            return f"error: {error}"
        except Exception:
            # A SymPy corner we did not anticipate must still not crash the rollout.
            return "error: could not evaluate the expression"
