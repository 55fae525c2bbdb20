"""Type-strict value codec between a sandbox child and the trusted checker.

The candidate's return values cross the process boundary as JSON built only from exact builtin types
(`type(x) is int`, not `isinstance`): an `int` subclass, an object whose `__eq__` always returns True, or any other
type becomes an `Opaque` marker that raises on every comparison, so a test comparing it fails. Expected values never
travel this way: only arguments go into the sandbox and only return values come out.
"""

from __future__ import annotations

import math

MAX_DEPTH = 64
MAX_ITEMS = 200_000


class Opaque:
    """A value the sandbox returned that is not plain data. Any comparison, truth test or hash raises TypeError,
    so `assert candidate(x) == y` (or `!=`, `<`, `bool(...)`) fails instead of being fooled."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name

    def _refuse(self, *a, **k):
        raise TypeError(f"the candidate returned a {self.type_name} (not plain data): not comparable")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __hash__ = __len__ = __iter__ = _refuse
    __contains__ = __add__ = __sub__ = __mul__ = __truediv__ = __abs__ = __float__ = __int__ = __index__ = _refuse

    def __repr__(self):
        return f"<opaque {self.type_name}>"


class _Budget:
    def __init__(self):
        self.items = 0

    def tick(self):
        self.items += 1
        if self.items > MAX_ITEMS:
            raise ValueError("value too large")


def encode(x, _depth: int = 0, _b: _Budget | None = None):
    """Plain data -> JSON-able tagged form. Never calls methods of user-defined objects (exact type checks only)."""
    b = _b or _Budget()
    b.tick()
    if _depth > MAX_DEPTH:
        return ["opaque", "deeply nested value"]
    t = type(x)
    if x is None:
        return ["none"]
    if t is bool:
        return ["bool", x]
    if t is int:
        return ["int", str(x)] if abs(x) > 2**53 else ["int", x]
    if t is float:
        return ["float", x if math.isfinite(x) else repr(x)]
    if t is str:
        return ["str", x]
    if t is bytes:
        return ["bytes", x.hex()]
    if t is complex:
        return ["complex", [x.real, x.imag]] if math.isfinite(x.real) and math.isfinite(x.imag) else \
            ["opaque", "complex"]
    if t in (list, tuple, set, frozenset):
        items = list(x) if t in (list, tuple) else list(x)
        return [t.__name__, [encode(v, _depth + 1, b) for v in items]]
    if t is dict:
        return ["dict", [[encode(k, _depth + 1, b), encode(v, _depth + 1, b)] for k, v in list(x.items())]]
    return ["opaque", t.__name__ if isinstance(t.__name__, str) else "object"]


def decode(v, _depth: int = 0, _b: _Budget | None = None):
    """Tagged form -> value. Raises ValueError on anything malformed (the checker treats that as tampering)."""
    b = _b or _Budget()
    b.tick()
    if _depth > MAX_DEPTH + 1 or not isinstance(v, list) or not v or not isinstance(v[0], str):
        raise ValueError("malformed value")
    tag = v[0]
    if tag == "none" and len(v) == 1:
        return None
    if len(v) != 2:
        raise ValueError("malformed value")
    p = v[1]
    if tag == "bool" and type(p) is bool:
        return p
    if tag == "int" and type(p) is int:
        return p
    if tag == "int" and type(p) is str:
        return int(p)
    if tag == "float" and type(p) in (int, float):
        return float(p)
    if tag == "float" and p in ("inf", "-inf", "nan"):
        return float(p)
    if tag == "str" and type(p) is str:
        return p
    if tag == "bytes" and type(p) is str:
        return bytes.fromhex(p)
    if tag == "complex" and type(p) is list and len(p) == 2:
        return complex(float(p[0]), float(p[1]))
    if tag in ("list", "tuple", "set", "frozenset") and type(p) is list:
        items = [decode(e, _depth + 1, b) for e in p]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict" and type(p) is list:
        out = {}
        for kv in p:
            if type(kv) is not list or len(kv) != 2:
                raise ValueError("malformed dict")
            out[decode(kv[0], _depth + 1, b)] = decode(kv[1], _depth + 1, b)
        return out
    if tag == "opaque" and type(p) is str:
        return Opaque(p[:80])
    raise ValueError(f"malformed value (tag {tag!r})")
