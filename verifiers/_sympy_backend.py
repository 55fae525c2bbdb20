"""Symbolic answer comparison; runs inside a worker process (``python -m verifiers._sympy_backend``).

The structure of both answers (tuples, sets, intervals, equations, ...) is parsed by
:mod:`verifiers._math_parse`, exactly as in the main process; this module supplies the leaf comparisons
that need sympy: LaTeX through ``latex2sympy2_extended``, plain math (``2^(n-1)``, ``C(10, 5)``) through a
locked-down ``parse_expr``. Never imported by the main process, so sympy's cost and its hangs stay in the
worker, which the main process kills at the deadline.
"""

from __future__ import annotations

import functools
import json
import keyword
import math
import os
import re
import signal
import sys
from fractions import Fraction

import sympy
from latex2sympy2_extended import latex2sympy
from sympy.core.evalf import PrecisionExhausted
from sympy.parsing.sympy_parser import (
    auto_number,
    auto_symbol,
    convert_xor,
    factorial_notation,
    implicit_multiplication_application,
    parse_expr,
)

from verifiers._math_parse import (
    Node,
    Outcome,
    answer_class,
    as_number,
    compare_nodes,
    decimal_places,
    decimal_tolerance,
    fast_leaf,
    fast_leaf_class,
    parse_answer,
    percent_pairs,
    rounds_to_decimal,
    text_key,
)

EXACT_DIGITS = 40          # precision of numeric comparisons of exact constants
EXACT_REL_TOL = 1e-25      # two exact constants closer than this (relative) are equal
SYMBOLIC_REL_TOL = 1e-9    # tolerance of the random-point test of expressions with variables
DECIMAL_MIN_SIGNIFICANT = 6  # a decimal answer to an irrational reference needs this many significant digits
MEMORY_LIMIT_BYTES = 4 << 30
SMALL_MAGNITUDE_DIGITS = 30  # above this many digits in the literals, closeness is never taken for equality
MAX_CONFIRM_DIGITS = 25_000  # working precision cap when confirming that two close constants are equal
# Deterministic "random" points for the numeric identity test (irrational-ish, inside (0.5, 3)).
_POINTS = (1.2345678, 2.7182818, 0.8765432, 1.6180339, 2.2360679)

_PLAIN = re.compile(r"[0-9a-zA-Z\s.+\-*/^()!,]*")
_TRANSFORMS = (auto_symbol, auto_number, factorial_notation, convert_xor, implicit_multiplication_application)
_NAMES = {
    "Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational,
    "Symbol": sympy.Symbol, "Function": sympy.Function,
    "factorial": sympy.factorial, "factorial2": sympy.factorial2,
    "sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "log": sympy.log, "ln": sympy.log, "exp": sympy.exp, "abs": sympy.Abs,
    "floor": sympy.floor, "ceil": sympy.ceiling, "ceiling": sympy.ceiling,
    "binomial": sympy.binomial, "binom": sympy.binomial, "gcd": sympy.gcd, "lcm": sympy.lcm,
    "pi": sympy.pi, "e": sympy.E, "oo": sympy.oo, "inf": sympy.oo, "infinity": sympy.oo,
}
_BINOMIAL = re.compile(r"\b[Cc]\s*\(\s*([^(),]+?)\s*,\s*([^(),]+?)\s*\)")


@functools.lru_cache(maxsize=4096)
def to_sympy(text: str) -> sympy.Basic | None:
    """Parse one leaf: plain math (``sqrt(2)*x^2``, ``C(10, 5)``, ``n!``) with a locked-down
    ``parse_expr``, else LaTeX with ``latex2sympy``. Floats become exact rationals; ``None`` if neither
    parser succeeds."""
    expr = None
    plain = _BINOMIAL.sub(r"binomial(\1, \2)", text)
    words = re.findall(r"[a-zA-Z_]+", plain)
    if _PLAIN.fullmatch(plain) and "," not in _BINOMIAL.sub("", text) \
            and not any(keyword.iskeyword(w) for w in words):
        try:  # no builtins, a fixed namespace, no quotes/underscores/attributes reach eval
            lowered = re.sub(r"[A-Z]", lambda m: m.group(0).lower(), plain)
            expr = parse_expr(lowered, local_dict={}, global_dict={"__builtins__": {}, **_NAMES},
                              transformations=_TRANSFORMS)
        except Exception:
            expr = None
    if expr is None:
        try:
            expr = latex2sympy(text)
        except Exception:
            return None
    if not isinstance(expr, sympy.Basic):
        return None
    if isinstance(expr, sympy.MatrixBase):
        return expr
    if _has_matrix(expr):  # matrix arithmetic: A + B, 2A, AB, A^2 with explicit matrices
        return explicit_matrix(expr)
    try:
        return expr.xreplace({f: sympy.Rational(str(f)) for f in expr.atoms(sympy.Float)})
    except Exception:
        return expr


MAX_MATRIX_SIDE = 10
MAX_MATRIX_POWER = 20


def _has_matrix(expr) -> bool:
    if isinstance(expr, (sympy.MatrixBase, sympy.MatrixExpr)):
        return True
    try:
        return any(isinstance(node, sympy.MatrixBase) for node in sympy.preorder_traversal(expr))
    except Exception:
        return False


def explicit_matrix(expr) -> sympy.MatrixBase | None:
    """The explicit matrix that matrix arithmetic (sums, scalar multiples, products, small integer powers of
    explicit matrices, at most ``MAX_MATRIX_SIDE`` a side) evaluates to, or ``None``."""
    if isinstance(expr, sympy.MatrixBase):
        return expr if max(expr.shape) <= MAX_MATRIX_SIDE else None
    try:
        if isinstance(expr, (sympy.Pow, sympy.MatPow)):
            base = explicit_matrix(expr.base) if _has_matrix(expr.base) else None
            if base is None or not expr.exp.is_Integer or abs(int(expr.exp)) > MAX_MATRIX_POWER:
                return None
            return base ** int(expr.exp)
        if isinstance(expr, (sympy.MatAdd, sympy.Add)):
            parts = [explicit_matrix(a) for a in expr.args]
            return None if any(p is None for p in parts) else functools.reduce(lambda u, v: u + v, parts)
        if isinstance(expr, (sympy.MatMul, sympy.Mul)):
            value = None
            for arg in expr.args:
                factor = explicit_matrix(arg) if _has_matrix(arg) else arg
                if factor is None:
                    return None
                value = factor if value is None else value * factor
            return value if isinstance(value, sympy.MatrixBase) else None
    except Exception:  # shapes that do not fit, a singular inverse
        return None
    return None


def _is_zero(expr: sympy.Expr) -> bool:
    if expr == 0:
        return True
    if _clearly_nonzero(expr):  # a proof of zero is then impossible: skip simplify (the costly part)
        return False
    try:
        return sympy.simplify(expr) == 0
    except Exception:
        return False


_BINDING = (sympy.Sum, sympy.Product, sympy.Integral, sympy.Derivative, sympy.Lambda, sympy.Subs)


def _at(expr: sympy.Basic, subs: dict) -> sympy.Basic:
    """``expr`` with its free symbols set to numbers: ``xreplace`` (fast), or ``subs`` when the expression binds
    variables of its own (sums, integrals, derivatives), where a bound name must stay untouched."""
    if expr.has(*_BINDING):
        return expr.subs(subs)
    return expr.xreplace(subs)


def _point(k: int, count: int) -> list:
    """The ``k``-th deterministic point for ``count`` symbols (30-digit floats)."""
    return [_POINT_FLOATS[(k + i) % len(_POINTS)][i] if i < 8 else
            sympy.Float(_POINTS[(k + i) % len(_POINTS)] + 0.1 * i, 30) for i in range(count)]


_POINT_FLOATS = [[sympy.Float(p + 0.1 * i, 30) for i in range(8)] for p in _POINTS]


@functools.lru_cache(maxsize=2048)
def _clearly_nonzero(expr) -> bool:
    """An expression in variables with small literals that evaluates to a clearly non-zero value at one of two
    deterministic points: it is not identically zero, so ``simplify`` cannot prove it zero."""
    try:
        if not isinstance(expr, sympy.Expr) or not expr.free_symbols or expr.has(*_BINDING) \
                or magnitude_digits(expr) > SMALL_MAGNITUDE_DIGITS:
            return False  # sums and integrals: evaluating them at a point costs more than it saves
        symbols = sorted(expr.free_symbols, key=str)
        for k in range(2):
            value = _numeric(_at(expr, dict(zip(symbols, _point(k, len(symbols))))), 30)
            if value is not None and abs(value) > 1e-9:
                return True
        return False
    except Exception:
        return False


def _close(x: complex, y: complex, rel: float) -> bool:
    return abs(x - y) <= rel * max(abs(x), abs(y), 1e-300)


def _numeric(expr: sympy.Expr, digits: int = EXACT_DIGITS) -> complex | None:
    try:
        value = complex(sympy.N(expr, digits))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return None
    if value != value or abs(value) == float("inf"):
        return None
    return value


def _points_agree(a: sympy.Expr, b: sympy.Expr) -> bool | None:
    """Evaluate both at deterministic points: False on a clear difference, True if all agree, None if
    nothing could be evaluated."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    agreed = 0
    for k in range(len(_POINTS)):
        subs = dict(zip(symbols, _point(k, len(symbols))))
        x, y = _numeric(_at(a, subs), 30), _numeric(_at(b, subs), 30)
        if x is None or y is None:
            continue
        if not _close(x, y, SYMBOLIC_REL_TOL) and abs(x - y) > 1e-12:
            return False
        agreed += 1
    return True if agreed >= 3 else None


def is_undefined(expr) -> bool:
    """``zoo`` (division by zero, ``12:00`` read as a ratio), ``nan`` or anything containing them."""
    try:
        return isinstance(expr, sympy.Basic) and bool(expr.has(sympy.zoo, sympy.nan))
    except Exception:
        return False


def magnitude_digits(expr: sympy.Basic) -> float:
    """A bound on the decimal digits the literals of ``expr`` carry: integers and rationals, integer
    powers (``2^{3000}``) and factorials (``2006!``) count by the size of their value, summed over the tree
    (so products of large numbers are covered)."""
    total = 0.0
    try:
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Rational):
                total += (abs(node.p).bit_length() + node.q.bit_length()) * 0.30103
            elif isinstance(node, sympy.factorial) and node.args[0].is_Integer and node.args[0] > 1:
                total += math.lgamma(int(node.args[0]) + 1) / math.log(10)
            elif isinstance(node, sympy.Pow) and node.base.is_Rational and node.exp.is_Integer:
                base = abs(node.base.p) * node.base.q
                total += abs(int(node.exp)) * math.log10(base) if base > 1 else 0.0
            if total > MAX_CONFIRM_DIGITS:
                return math.inf
    except Exception:
        return math.inf
    return total


def _exact_rationals_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Two rational constants, compared exactly (``\\frac{1}{2006!}`` against ``\\frac{1}{2004!}``)."""
    try:
        da, db = a.doit(), b.doit()
    except Exception:
        return False
    if da.is_Rational and db.is_Rational:
        return bool(da == db)
    return _is_zero(da - db)


def _confirm_close(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Two constants agree to ``EXACT_REL_TOL`` at ``EXACT_DIGITS`` (or do not fit a float): decide at a
    working precision that covers the size of their literals, so ``\\sqrt{2006!}`` never equals
    ``\\sqrt{2006! + 1}`` by rounding. A difference sympy cannot tell from zero counts as equal only when
    the literals are small, otherwise only when ``simplify`` proves it."""
    digits = magnitude_digits(a) + magnitude_digits(b)
    if digits == math.inf:
        return _is_zero(a - b)
    diff = a - b
    if diff == 0:
        return True
    try:
        value = diff.evalf(15, maxn=int(min(60 + 2 * digits, MAX_CONFIRM_DIGITS)), strict=True)
    except PrecisionExhausted:
        return digits <= SMALL_MAGNITUDE_DIGITS or _is_zero(diff)
    except Exception:  # e.g. the message of PrecisionExhausted cannot print a 5000-digit integer
        return _is_zero(diff)
    if not value.is_Number:  # not evaluable (an unknown function): only a proof decides
        return _is_zero(diff)
    return bool(value == 0)  # strict evalf: a non-zero value is an accurate, real difference


def expressions_equal(a: sympy.Basic, b: sympy.Basic, a_text: str = "", b_text: str = "") -> bool:
    """Equivalence of two parsed leaves (``b`` is the reference).

    - Exact numbers: rationals compare exactly (``0.333`` is not ``1/3``), except the decimal-reference rule
      (``rounds_to_decimal``: a reference with 6+ significant digits accepts a rational without a finite decimal
      form within its tolerance); an irrational reference accepts a decimal answer with at least 6 significant
      digits that is within one unit of its last digit; a decimal reference accepts an irrational answer within
      ``decimal_tolerance`` of it (half a unit of its last digit; a unit for a 15+ digit float printout); two
      irrational constants must agree to ``EXACT_REL_TOL`` at 40 digits.
    - Expressions with variables: a clear numeric difference at deterministic points means unequal;
      otherwise ``simplify(a - b) == 0`` or agreement at 3+ points means equal.
    - Sets, intervals, matrices: sympy equality (matrices elementwise).
    - Undefined values (``zoo``, ``nan``, a division by zero) equal nothing, themselves included.
    - Large literals (factorials, powers, long integers) compare exactly or not at all: rational constants
      are evaluated exactly; close irrational constants are confirmed at a precision covering their size;
      expressions with variables and large literals need ``simplify`` to prove the identity.
    """
    if is_undefined(a) or is_undefined(b):
        return False
    if a == b:
        return True
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
            return False
        return all(expressions_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, sympy.Set) or isinstance(b, sympy.Set):
        return isinstance(a, sympy.Set) and isinstance(b, sympy.Set) and sets_equal(a, b)
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        try:
            return bool(sympy.simplify(a) == sympy.simplify(b))
        except Exception:
            return False
    if not a.free_symbols and not b.free_symbols:
        return _constants_equal(a, b, a_text, b_text)
    verdict = _points_agree(a, b)
    if verdict is False:
        return False
    if _is_zero(a - b):
        return True
    return verdict is True and magnitude_digits(a) + magnitude_digits(b) <= SMALL_MAGNITUDE_DIGITS


def _constants_equal(a: sympy.Expr, b: sympy.Expr, a_text: str, b_text: str) -> bool:
    a_rational, b_rational = a.is_rational, b.is_rational
    if a_rational and decimal_places(b_text) and isinstance(a, sympy.Rational):
        # "1/3" against "0.333333": the decimal-reference rule of the fast path
        if rounds_to_decimal(Fraction(int(a.p), int(a.q)), b_text):
            return True
    if a_rational and b_rational:
        return _exact_rationals_equal(a, b)
    x, y = _numeric(a), _numeric(b)
    if x is None or y is None:  # e.g. beyond the float range: \sqrt{2006!}
        return _confirm_close(a, b)
    places_b = decimal_places(b_text)
    reference = as_number(b_text) if places_b is not None and a_rational is False else None
    if reference is not None:  # "3.14" reference, "\pi" answer: within half a unit of its last digit
        if abs(x.imag) >= 1e-12:
            return False
        precise = sympy.re(a).evalf(places_b + 15)
        tolerance = decimal_tolerance(b_text)
        return bool(abs(precise - sympy.Rational(reference.numerator, reference.denominator))
                    <= sympy.Rational(tolerance.numerator, tolerance.denominator))
    if _close(x, y, EXACT_REL_TOL):
        return _confirm_close(a, b)
    places_a = decimal_places(a_text)
    if places_a is not None and b_rational is False:  # "1.414214" answer, "\sqrt{2}" reference
        significant = len(re.sub(r"^[+-]?0*\.?0*", "", a_text.strip()).replace(".", ""))
        return significant >= DECIMAL_MIN_SIGNIFICANT and abs(x - y) <= 10.0 ** (-places_a) * 1.0000001
    return False


def sets_equal(a: sympy.Set, b: sympy.Set) -> bool:
    """Equality of sympy sets (intervals, unions, finite sets)."""
    if a == b:
        return True
    try:
        return a.symmetric_difference(b) == sympy.EmptySet
    except Exception:
        return False


# --- node -> sympy (for the structures the main process could not decide) -----------------------

def _leaf_expr(node: Node) -> sympy.Basic | None:
    value = as_number(node.text)
    if value is not None:
        expr = sympy.Rational(value.numerator, value.denominator)
    else:
        expr = to_sympy(node.text)
    return expr


def node_to_set(node: Node) -> sympy.Set | None:
    """A set-like node as a sympy Set: intervals, ``(a, b)`` (open interval), unions, finite sets and
    one-variable inequalities (``1 < x \\le 2`` -> ``Interval.Lopen(1, 2)``)."""
    if node.kind in ("interval", "pair"):
        lo, hi = (_leaf_expr(i) if i.kind == "scalar" else None for i in node.items)
        if lo is None or hi is None:
            return None
        closed = node.closed if node.kind == "interval" else (False, False)
        try:
            return sympy.Interval(lo, hi, left_open=not closed[0], right_open=not closed[1])
        except Exception:
            return None
    if node.kind == "union":
        parts = [node_to_set(i) for i in node.items]
        return None if any(p is None for p in parts) else sympy.Union(*parts)
    if node.kind == "set":
        values = [_leaf_expr(i) if i.kind == "scalar" else None for i in node.items]
        return None if any(v is None for v in values) else sympy.FiniteSet(*values)
    if node.kind == "rel":
        expr = to_sympy(node.text)
        if expr is None or isinstance(expr, sympy.Set):
            return expr
        calls = expr.atoms(sympy.core.function.AppliedUndef) if isinstance(expr, sympy.Basic) else set()
        if len(calls) == 1:  # "0 < f(x) < 1" is the range of f: the set of values of f(x)
            value = sympy.Dummy("value")
            expr = expr.xreplace({calls.pop(): value})
            if expr.free_symbols != {value}:
                return None
        symbols = getattr(expr, "free_symbols", set())
        if len(symbols) != 1:
            return None
        simple = _bounds_as_interval(expr, next(iter(symbols)))
        if simple is not None:
            return simple
        try:
            return expr.as_set()
        except Exception:
            return None
    if node.kind == "scalar":
        expr = to_sympy(node.text)
        return expr if isinstance(expr, sympy.Set) else None
    return None


_ORDER = (sympy.StrictLessThan, sympy.LessThan, sympy.StrictGreaterThan, sympy.GreaterThan)


def _bounds_as_interval(expr, symbol) -> sympy.Set | None:
    """``2 < x \\le 3``, ``x > 5``: bounds of the variable itself by real constants, as the interval
    ``as_set`` would give (without its general inequality solver, the costly part); ``None`` otherwise."""
    parts = expr.args if isinstance(expr, sympy.And) else (expr,)
    result = sympy.Interval(-sympy.oo, sympy.oo)
    for rel in parts:
        if not isinstance(rel, _ORDER):
            return None
        if rel.lhs == symbol and not rel.rhs.free_symbols:
            bound, variable_left = rel.rhs, True
        elif rel.rhs == symbol and not rel.lhs.free_symbols:
            bound, variable_left = rel.lhs, False
        else:
            return None
        if bound.is_extended_real is not True:
            return None
        strict = isinstance(rel, (sympy.StrictLessThan, sympy.StrictGreaterThan))
        less = isinstance(rel, (sympy.StrictLessThan, sympy.LessThan))
        if variable_left == less:  # x < b, b > x: an upper bound
            part = sympy.Interval(-sympy.oo, bound, right_open=strict)
        else:
            part = sympy.Interval(bound, sympy.oo, left_open=strict)
        result = sympy.Intersection(result, part)
    return result


def _set_leaf(a: Node, r: Node) -> bool:
    sa, sr = node_to_set(a), node_to_set(r)
    if sa is None or sr is None:
        return False
    return sets_equal(sa, sr)


def _eq_leaf(a: Node, r: Node) -> bool:
    """Two equations: equal when ``lhs - rhs`` of one is a non-zero constant multiple of the other's.
    An identity (``x + 1 = 1 + x``) is never equal to anything."""
    sides = []
    for node in (a, r):
        lhs, rhs = (_leaf_expr(i) if i.kind == "scalar" else None for i in node.items)
        if not (isinstance(lhs, sympy.Expr) and isinstance(rhs, sympy.Expr)):
            return False
        sides.append(lhs - rhs)
    da, dr = sides
    if _is_zero(da) or _is_zero(dr):
        return False
    if _clearly_not_proportional(da, dr):  # simplify could not find a constant ratio either
        return False
    try:
        ratio = sympy.simplify(da / dr)
    except Exception:
        return False
    if not ratio.free_symbols and ratio != 0 and ratio.is_finite:
        return True
    symbols = sorted(da.free_symbols | dr.free_symbols, key=str)
    ratios = []
    for k in range(len(_POINTS)):
        subs = dict(zip(symbols, _point(k, len(symbols))))
        x, y = _numeric(_at(da, subs), 30), _numeric(_at(dr, subs), 30)
        if x is None or y is None or abs(y) < 1e-12:
            continue
        ratios.append(x / y)
    return len(ratios) >= 3 and abs(ratios[0]) > 1e-12 and all(_close(q, ratios[0], SYMBOLIC_REL_TOL) for q in ratios)


def _clearly_not_proportional(da: sympy.Expr, dr: sympy.Expr) -> bool:
    """``da / dr`` takes clearly different values at the deterministic points (small literals only), so it is
    not a constant."""
    try:
        if magnitude_digits(da) + magnitude_digits(dr) > SMALL_MAGNITUDE_DIGITS or da.has(*_BINDING) \
                or dr.has(*_BINDING):
            return False
        symbols = sorted(da.free_symbols | dr.free_symbols, key=str)
        if not symbols:
            return False
        ratios = []
        for k in range(3):
            subs = dict(zip(symbols, _point(k, len(symbols))))
            x, y = _numeric(_at(da, subs), 30), _numeric(_at(dr, subs), 30)
            if x is None or y is None or abs(y) < 1e-9:
                continue
            ratios.append(x / y)
        return any(abs(q - ratios[0]) > 1e-6 * max(abs(q), abs(ratios[0]), 1e-9) for q in ratios[1:])
    except Exception:
        return False


def _node_matrix(node: Node) -> tuple[tuple[int, int], list] | None:
    """(shape, entries) of a matrix node, a tuple (a column), or a leaf of matrix arithmetic (evaluated)."""
    if node.kind == "matrix":
        if not all(c.kind == "scalar" for row in node.rows for c in row):
            return None
        entries = [_leaf_expr(c) for row in node.rows for c in row]
        return (len(node.rows), len(node.rows[0])), entries
    if node.kind in ("pair", "tuple") and all(i.kind == "scalar" for i in node.items):
        return (len(node.items), 1), [_leaf_expr(i) for i in node.items]
    if node.kind == "scalar":
        matrix = to_sympy(node.text)
        if isinstance(matrix, sympy.MatrixBase):
            return matrix.shape, list(matrix)
    return None


def _matrix_leaf(a: Node, r: Node) -> bool:
    """Matrix arithmetic against a matrix (or a tuple): evaluated, then compared entry by entry (a row or
    column vector equals the tuple of its entries, as in the structural comparison)."""
    ma, mr = _node_matrix(a), _node_matrix(r)
    if ma is None or mr is None:
        return False
    (shape_a, items_a), (shape_r, items_r) = ma, mr
    if any(not isinstance(e, sympy.Expr) for e in items_a + items_r):
        return False
    if shape_a != shape_r and not (1 in shape_a and 1 in shape_r and len(items_a) == len(items_r)):
        return False
    return all(expressions_equal(x, y) for x, y in zip(items_a, items_r))


def _chain_leaf(node: Node) -> bool:
    """All sides of a constant equation chain (``1000 - 101 + 1 = 900``) are equal."""
    values = [_leaf_expr(i) if i.kind == "scalar" else None for i in node.items]
    if any(not isinstance(v, sympy.Expr) for v in values):
        return False
    return all(expressions_equal(v, values[-1]) for v in values[:-1])


def _is_identity(node: Node) -> bool:
    """An equation with variables whose sides are equal for every value (``x + 1 = 1 + x``)."""
    if node.kind != "eq" or not all(i.kind == "scalar" for i in node.items):
        return False
    if not any(re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", i.text)) for i in node.items):
        return False  # constant chains such as 1000 - 101 + 1 = 900 are computations
    values = [_leaf_expr(i) for i in node.items]
    if not all(isinstance(v, sympy.Expr) for v in values):
        return False
    others = set().union(*(v.free_symbols for v in values[1:]))
    if values[0].is_Symbol and values[0] not in others:  # "F_n = <expression without F_n>": no identity
        return False
    return all(_is_zero(values[0] - v) for v in values[1:])  # lhs - rhs, as _eq_leaf writes it


def sympy_leaf(a: Node, r: Node, percent_context: bool = False) -> bool:
    """Leaf comparison: :func:`fast_leaf`, then sympy under the percent rule, then text keys."""
    fast = fast_leaf(a, r, percent_context)
    if fast is not None:
        return fast
    ea, er = _leaf_expr(a), _leaf_expr(r)
    if ea is None or er is None:
        return text_key(a.text) == text_key(r.text) and bool(text_key(a.text))
    if isinstance(ea, sympy.Expr) and isinstance(er, sympy.Expr):
        for x, y in percent_pairs(ea, a.percent, er, r.percent, percent_context):
            scaled = x is not ea or y is not er
            if expressions_equal(x, y, "" if scaled else a.text, "" if scaled else r.text):
                return True
        return False
    return expressions_equal(ea, er, a.text, r.text)


def leaf_class(node: Node) -> str:
    """Canonical string of a leaf: ``"1/2"`` for numbers, sympy's ``cancel`` form for rational functions
    (polynomials are expanded), the evaluated expression otherwise."""
    fast = fast_leaf_class(node)
    if fast is not None:
        return fast
    expr = _leaf_expr(node)
    if expr is None:
        return re.sub(r"\s+", "", node.text)
    if isinstance(expr, sympy.MatrixBase):  # evaluated matrix arithmetic: the form of a matrix node's class
        return "[" + "; ".join(", ".join(str(cell) for cell in expr.row(i)) for i in range(expr.rows)) + "]"
    try:
        if isinstance(expr, sympy.Expr):
            expr = expr.doit()  # latex2sympy leaves e.g. sqrt(4) unevaluated
            if expr.is_polynomial():  # the form cancel gives a polynomial, at a tenth of the cost
                expr = sympy.expand(expr)
            elif expr.is_rational_function():
                expr = sympy.cancel(expr)
        text = str(expr)
    except Exception:  # e.g. an integer too long to print (sys.get_int_max_str_digits)
        text = re.sub(r"\s+", "", node.text)
    return text + ("%" if node.percent else "")


def compare(answer: str, reference: str, percent_context: bool = False) -> dict:
    """Compare an extracted answer with a reference answer (both raw strings).

    Returns ``{"equal": bool, "answer_class": str | None, "method": "sympy", "reason"?: str}``; equivalent
    answers get the reference's class.
    """
    a_node = parse_answer(answer)
    r_node = parse_answer(reference, reference=True)
    if _is_identity(a_node):
        return {"equal": False, "method": "sympy", "answer_class": None, "reason": "tautology"}
    outcome: Outcome = compare_nodes(
        a_node, r_node, lambda x, y: sympy_leaf(x, y, percent_context),
        eq_leaf=_eq_leaf, set_leaf=_set_leaf, chain_leaf=_chain_leaf, matrix_leaf=_matrix_leaf,
    )
    equal = bool(outcome.equal)
    reply = {"equal": equal, "method": "sympy"}
    if outcome.reason == "tautology":
        reply["answer_class"] = None
    else:
        reply["answer_class"] = answer_class(r_node if equal else a_node, leaf_class)
    if outcome.reason and not equal:
        reply["reason"] = outcome.reason
    return reply


def _limit_memory() -> None:
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > MEMORY_LIMIT_BYTES:
        limit = MEMORY_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main() -> None:
    """JSON-lines loop: ``{"answer": str, "reference": str, "percent_context": bool}`` in, :func:`compare`'s
    result out (or ``{"error": "ExcType: msg"}``). Stray prints go to stderr; SIGINT is left to the parent."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_memory()
    sys.setrecursionlimit(3000)
    compare(r"x+1", r"\frac{1}{2}")  # load the LaTeX parser before reporting ready
    compare(r"x < 1", r"(-\infty, 1)")  # and what sympy imports lazily: relations as sets, equations, matrices
    compare(r"2x + 2 = 0", r"x + 1 = 0")
    compare(r"\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix} + \begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}",
            r"\begin{pmatrix}2 & 0 \\ 0 & 2\end{pmatrix}")
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = compare(request["answer"], request["reference"], bool(request.get("percent_context")))
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
