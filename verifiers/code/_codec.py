"""Type-strict value codec between a sandbox child and the trusted checker.

The candidate's return values cross the process boundary as JSON built only from exact builtin types
(`type(x) is int`, not `isinstance`): an `int` subclass, an object whose `__eq__` always returns True, or any other
type becomes an `Opaque` marker that raises on every comparison, so a test comparing it fails. Expected values never
travel this way: only arguments go into the sandbox and only return values come out.

Decoding is bounded, because what it reads was written by the candidate: nesting depth (`MAX_DEPTH`), item count
(`MAX_ITEMS`), the size of an int (`MAX_INT_HEX_DIGITS` hex digits, far above Python's own default of 4,300
decimal digits for str/int conversion; ints beyond 2**53 travel in hex, which no such limit applies to), an
optional wall-clock deadline checked every 1024 items, and hash flooding. Values whose hash the candidate can
choose (ints that are equal modulo 2**61-1, floats, tuples and frozensets of them, and lists, which a test may turn
into tuples) would make a `set`/`dict` built from them, by the decoder or by the test's own `set(candidate(x))`,
take quadratic time in the trusted checker. So the decoder counts the comparisons such a set would make: adding the
k-th distinct value to a group sharing one hash costs k-1, and a value whose total passes `MAX_COLLISION_WORK` is
refused. Ordinary values never come near it: `[2**i for i in range(600)]` (61 groups of ~10 ints with one hash)
costs 2,745; 19,000 tuples with one hash would cost 180 million. Strings and bytes are not counted: their hash is
keyed with the checker's own secret, which the sandbox never shares (the checker re-executes itself after forking
the zygote, see `_worker.main`). Every refusal is a ValueError (the checker scores the job 0 as tampered).
"""

from __future__ import annotations

import collections
import math
import time

# the standard library's dict and list variants a solution commonly returns (`Counter(...)`), by identity as taken
# here, before any candidate code runs: a candidate's own subclass, or a class it binds to `collections.Counter`,
# is opaque like any other type
_VARIANTS = {collections.Counter: "Counter", collections.OrderedDict: "OrderedDict",
             collections.defaultdict: "defaultdict", collections.deque: "deque"}

MAX_DEPTH = 64
MAX_ITEMS = 200_000
MAX_INT_HEX_DIGITS = 1 << 15      # 131,072 bits (39,457 decimal digits)
MAX_COLLISION_WORK = 200_000      # comparisons a set of the decoded values could make among equal hashes


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
    def __init__(self, deadline: float | None = None):
        self.items = 0
        self.deadline = deadline
        self.hashes: dict[int, list] = {}
        self.work = 0

    def tick(self):
        self.items += 1
        if self.items > MAX_ITEMS:
            raise ValueError("value too large")
        if self.deadline is not None and not self.items & 1023 and time.monotonic() > self.deadline:
            raise ValueError("value took too long to decode")

    def hashable(self, v):
        """Count `v` among the distinct values sharing its hash; refuse a hash-flooding value."""
        h = hash(v)
        seen = self.hashes.get(h)
        if seen is None:
            self.hashes[h] = [v]
            return v
        for o in seen:
            if type(o) is type(v) and o == v:
                return v
        self.work += len(seen)
        if self.work > MAX_COLLISION_WORK:
            raise ValueError("too many distinct values with one hash (hash flooding)")
        seen.append(v)
        return v


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
        return ["int", hex(x)] if abs(x) > 2**53 else ["int", x]
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
    name = _VARIANTS.get(t)
    if name == "deque":
        return [name, [encode(v, _depth + 1, b) for v in list(x)]]
    if name is not None:   # a defaultdict arrives without its default factory (as a dict it compares equal)
        return [name, [[encode(k, _depth + 1, b), encode(v, _depth + 1, b)] for k, v in list(dict.items(x))]]
    return ["opaque", t.__name__ if isinstance(t.__name__, str) else "object"]


def decode(v, *, deadline: float | None = None):
    """Tagged form -> value. Raises ValueError on anything malformed, too large, too deep, too slow to decode or
    hash-flooding (the checker treats that as tampering)."""
    try:
        return _decode(v, 0, _Budget(deadline))
    except ValueError:
        raise
    except (TypeError, RecursionError, OverflowError, MemoryError) as e:
        raise ValueError(f"malformed value ({type(e).__name__})") from None


def _decode(v, _depth: int, b: _Budget):
    b.tick()
    if _depth > MAX_DEPTH + 1 or type(v) is not list or not v or type(v[0]) is not str:
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
        return b.hashable(p)
    if tag == "int" and type(p) is str:
        d = p[1:] if p[:1] == "-" else p
        if len(d) > MAX_INT_HEX_DIGITS + 2 or d[:2] != "0x" or len(d) < 3 or d[2:].strip("0123456789abcdef"):
            raise ValueError("malformed int")
        return b.hashable(int(p, 16))
    if tag == "float" and type(p) in (int, float):
        return b.hashable(float(p))
    if tag == "float" and p in ("inf", "-inf", "nan"):
        return float(p)
    if tag == "str" and type(p) is str:
        return p
    if tag == "bytes" and type(p) is str:
        return b.hashable(bytes.fromhex(p))
    if tag == "complex" and type(p) is list and len(p) == 2 and all(type(x) in (int, float) for x in p):
        return b.hashable(complex(float(p[0]), float(p[1])))
    if tag in ("list", "tuple", "set", "frozenset") and type(p) is list:
        items = [_decode(e, _depth + 1, b) for e in p]
        if tag == "list":
            if items:
                try:            # a test may make tuples of the lists it gets (`set(map(tuple, candidate(x)))`)
                    b.hashable(tuple(items))
                except TypeError:
                    pass
            return items
        if tag == "tuple":
            t = tuple(items)
            try:
                return b.hashable(t)
            except TypeError:   # holds a list or a dict: unhashable, so it cannot flood a set
                return t
        for e in items:         # members of a set must be hashable, and were each counted above
            hash(e)
        out = set(items) if tag == "set" else frozenset(items)
        return out if tag == "set" else b.hashable(out)
    if tag == "deque" and type(p) is list:
        return collections.deque(_decode(e, _depth + 1, b) for e in p)
    if tag in ("dict", "Counter", "OrderedDict", "defaultdict") and type(p) is list:
        out = {"dict": dict, "Counter": collections.Counter, "OrderedDict": collections.OrderedDict,
               "defaultdict": collections.defaultdict}[tag]()
        for kv in p:
            if type(kv) is not list or len(kv) != 2:
                raise ValueError("malformed dict")
            k = _decode(kv[0], _depth + 1, b)
            hash(k)
            out[k] = _decode(kv[1], _depth + 1, b)
        return out
    if tag == "opaque" and type(p) is str:
        return Opaque(p[:80])
    raise ValueError(f"malformed value (tag {tag[:20]!r})")
