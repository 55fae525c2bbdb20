"""Symbolic answer comparison; runs inside a worker process (``python -m verifiers._sympy_backend``).

Inputs are already normalised by :mod:`verifiers.math_verifier` (no ``$``, ``\\left``, units).
Never imported by the main process, so sympy's cost and its hangs stay in the worker.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import signal
import sys

import sympy
from latex2sympy2_extended import latex2sympy
from sympy.parsing.sympy_parser import (
    auto_number,
    auto_symbol,
    convert_xor,
    factorial_notation,
    implicit_multiplication_application,
    parse_expr,
)

REL_TOL = 1e-9
MEMORY_LIMIT_BYTES = 4 << 30

_PLAIN = re.compile(r"[0-9a-z\s.+\-*/^()!]*")
_TRANSFORMS = (auto_symbol, auto_number, factorial_notation, convert_xor, implicit_multiplication_application)
_NAMES = {
    "Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational,
    "Symbol": sympy.Symbol, "Function": sympy.Function,
    "factorial": sympy.factorial, "factorial2": sympy.factorial2,
    "sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "log": sympy.log, "ln": sympy.log, "exp": sympy.exp, "abs": sympy.Abs,
    "pi": sympy.pi, "e": sympy.E, "oo": sympy.oo, "inf": sympy.oo, "infinity": sympy.oo,
}


def parse(text: str) -> sympy.Basic | None:
    """Parse plain math (``sqrt(2)*x**2``) with a locked-down ``parse_expr`` or LaTeX with
    ``latex2sympy``; returns ``None`` if neither parses. Floats become exact rationals."""
    plain = text.lower()
    expr = None
    if _PLAIN.fullmatch(plain) and not any(keyword.iskeyword(w) for w in re.findall(r"[a-z]+", plain)):
        try:  # no builtins, a fixed namespace, no quotes/underscores/attributes reach eval
            expr = parse_expr(plain, local_dict={}, global_dict={"__builtins__": {}, **_NAMES},
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
    return expr.xreplace({f: sympy.Rational(str(f)) for f in expr.atoms(sympy.Float)})


def _is_zero(expr: sympy.Expr) -> bool:
    return expr == 0 or sympy.simplify(expr) == 0


def _numeric_close(a: sympy.Expr, b: sympy.Expr) -> bool:
    x, y = complex(sympy.N(a, 30)), complex(sympy.N(b, 30))
    return abs(x - y) <= REL_TOL * max(abs(x), abs(y))


def equivalent(a: sympy.Basic, b: sympy.Basic) -> bool:
    """Symbolic equivalence: structural, then numeric (1e-9 relative), then ``simplify(a-b)==0``."""
    if a == b:
        return True
    if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
        da, db = a.lhs - a.rhs, b.lhs - b.rhs
        return _is_zero(da - db) or _is_zero(da + db)
    if isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr):
        if not a.free_symbols and not b.free_symbols and a.is_number and b.is_number:
            try:
                if _numeric_close(a, b):
                    return True
            except (TypeError, ValueError, OverflowError):
                pass
        return _is_zero(a - b)
    if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase):
        return a.shape == b.shape and all(_is_zero(x - y) for x, y in zip(a, b))
    try:
        return bool(sympy.simplify(a) == sympy.simplify(b))
    except Exception:
        return False


def canonical(expr: sympy.Basic) -> str:
    """Canonical string: ``cancel`` form for rational functions (polynomials expand), ``simplify``
    otherwise. Rationals print as ``"-4"``, ``"1/2"``, matching the fast path's ``Fraction``."""
    if isinstance(expr, sympy.Expr):
        expr = expr.doit()  # latex2sympy leaves e.g. sqrt(4) unevaluated
        expr = sympy.cancel(expr) if expr.is_rational_function() else sympy.simplify(expr)
    return str(expr)


def _unwrap_assignment(expr: sympy.Basic) -> tuple[sympy.Basic | None, str | None]:
    """``x = 3`` -> ``3``; tautologies (``2 = 2``, ``x = x``) -> ``(None, "tautology")``."""
    if expr in (sympy.true, sympy.false):
        return None, "tautology" if expr == sympy.true else "contradiction"
    if isinstance(expr, sympy.Equality):
        lhs, rhs = expr.lhs, expr.rhs
        if isinstance(lhs, sympy.Expr) and isinstance(rhs, sympy.Expr) and _is_zero(lhs - rhs):
            return None, "tautology"
        if isinstance(lhs, sympy.Symbol) and lhs not in rhs.free_symbols:
            return rhs, None
    return expr, None


def _text_key(text: str) -> str:
    return re.sub(r"\s+", "", text.lower())


def compare(answer: str, reference: str) -> dict:
    """Compare two normalised answer strings. Returns ``{"equal", "answer_class", "method"}`` and
    ``"reason"`` when the answer was rejected."""
    a, r = parse(answer), parse(reference)
    if a is None or r is None:
        return {"equal": _text_key(answer) == _text_key(reference),
                "answer_class": " ".join(answer.lower().split()), "method": "text"}
    a, reason = _unwrap_assignment(a)
    if a is None:
        return {"equal": False, "answer_class": None, "method": "sympy", "reason": reason}
    unwrapped = _unwrap_assignment(r)[0]
    equal = equivalent(a, r if unwrapped is None else unwrapped)
    try:
        answer_class = canonical(a)
    except ValueError:  # e.g. an integer too long to print (sys.get_int_max_str_digits)
        answer_class = _text_key(answer)
    return {"equal": equal, "answer_class": answer_class, "method": "sympy"}


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
    """JSON-lines loop: ``{"answer": str, "reference": str}`` in, :func:`compare` result out
    (or ``{"error": "ExcType: msg"}``). Stray prints go to stderr; SIGINT is left to the parent."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_memory()
    compare("x+1", "\\frac{1}{2}")  # load the LaTeX parser before reporting ready
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = compare(request["answer"], request["reference"])
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
