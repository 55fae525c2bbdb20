"""Attacks from issue 15 (written against the code, not the paper list): wrong programs that scored 1.0, a checker
that printed into its own result channel, decoding that was unbounded in time and depth, a candidate that turned its
verdict into a verifier error, bwrap outliving the trainer, and scratch trees the cleanup could not remove.

Each attack runs in both tiers (`landlock`, `bwrap`) and comes with a control: a correct program written the same way
that must still score 1. A worker pool of one makes any desynchronisation of the result channel visible on the very
next job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from verifiers.code import CodeVerifier, detect_tiers, extract_program
from verifiers.code.sandbox import _bwrap_prefix

TIMEOUT = 2.0
SQ_REF = {"prompt": "def sq(x: int) -> int:\n    \"\"\"x squared.\"\"\"\n",
          "test": "def check(candidate):\n    assert candidate(1) == 1\n    assert candidate(3) == 9\n",
          "entry_point": "sq"}


@pytest.fixture(scope="module", params=["landlock", "bwrap"])
def verifier(request):
    if not detect_tiers().get(request.param):
        pytest.fail(f"tier {request.param} unavailable on this machine: {detect_tiers()}")
    v = CodeVerifier(timeout=TIMEOUT, workers=1, tier=request.param, require_tier="landlock")
    yield v
    v.close()


def _program(body: str) -> str:
    return "```python\n" + textwrap.dedent(body).strip("\n") + "\n```"


def _run(v, body: str, ref):
    t0 = time.monotonic()
    verdict = v.verify(_program(body), ref)
    elapsed = time.monotonic() - t0
    assert elapsed < TIMEOUT + 3.0, f"verdict took {elapsed:.1f}s"
    assert verdict.error is None, verdict.error          # the candidate never causes a verifier error
    return verdict


def _in_step(v):
    """The next verdicts are the right ones: nothing left in the result channel by the previous job."""
    assert _run(v, "def sq(x):\n    return x * x", SQ_REF).score == 1.0
    assert _run(v, "def sq(x):\n    return x + 1", SQ_REF).score < 1.0


# ------------------------------------------------------------------ a wrong program scores 1.0

@pytest.mark.parametrize("test,good,bad", [
    ("assert set(f(3)) == set((4, 5))", "def f(x):\n    return [x + 1, x + 2]",
     "def f(x):\n    return [0]\ndef set(*a):\n    return 1"),
    ("assert abs(f(2) - 1.5) < 1e-9", "def f(x):\n    return x * 0.75",
     "def f(x):\n    return 99\ndef abs(x):\n    return 0"),
    ("assert sorted(f(2)) == [1, 2]", "def f(x):\n    return [2, 1]\ndef sorted(x):\n    return 'mine'",
     "def f(x):\n    return []\ndef sorted(x):\n    return [1, 2]"),
])
def test_mbpp_program_cannot_shadow_the_checkers_builtins(verifier, test, good, bad):
    """A program defining `set`/`abs`/`sorted` used to decide the test itself (and received the expected value as
    an argument). Its names reach the test only for the names the test calls that are not builtins."""
    assert _run(verifier, bad, [test]).score == 0.0
    assert _run(verifier, good, [test]).score == 1.0


def test_mbpp_program_cannot_see_the_expected_value(verifier):
    """The expected value reached the sandbox as the argument of a proxied builtin: a `str` that remembers what it
    was given let `f` return the expected value."""
    bad = ("seen = []\ndef str(x):\n    seen.append(x)\n    return x\n"
           "def f(x):\n    return seen[0] if seen else None")
    assert _run(verifier, bad, ["assert str('a1b2c3d4e5') == str(f(1))"]).score == 0.0
    good = "def f(x):\n    return 'a1b2c3d4e5'"
    assert _run(verifier, good, ["assert str('a1b2c3d4e5') == str(f(1))"]).score == 1.0


MUST_RAISE = {"prompt": "def root(x: float) -> float:\n    \"\"\"sqrt; ValueError for x < 0.\"\"\"\n",
              "test": "def check(candidate):\n    assert candidate(4) == 2\n    try:\n        candidate(-1)\n"
                      "    except ValueError:\n        pass\n    else:\n        assert False\n",
              "entry_point": "root"}


def test_must_raise_idiom_is_a_test(verifier):
    """`try: f(-1) / except ValueError: pass / else: assert False` used to lose its `assert False` to the
    rewriter; and the candidate's ValueError must reach the test as a ValueError."""
    bad = _run(verifier, "def root(x):\n    return abs(x) ** 0.5", MUST_RAISE)
    assert bad.score < 1.0 and not bad.passed
    good = _run(verifier, "def root(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x ** 0.5",
                MUST_RAISE)
    assert good.score == 1.0 and good.passed, good.detail
    wrong_type = _run(verifier, "def root(x):\n    if x < 0:\n        raise KeyError(x)\n    return x ** 0.5",
                      MUST_RAISE)
    assert not wrong_type.passed
    mbpp = ["assert f(4) == 2", "try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    assert False"]
    assert _run(verifier, "def f(x):\n    return abs(x) ** 0.5", mbpp).detail["tests"] == [True, False]
    assert _run(verifier, "def f(x):\n    if x < 0:\n        raise ValueError\n    return x ** 0.5",
                mbpp).detail["tests"] == [True, True]


def test_exiting_in_a_must_raise_call_is_not_raising(verifier):
    """The child dying (ChildGone) or tampering (FrameError) is not an exception the test's `except Exception`
    may swallow."""
    exits = "import os\ndef root(x):\n    if x < 0:\n        os._exit(0)\n    return x ** 0.5"
    for handler in ("except Exception", "except BaseException", "except"):
        ref = {**MUST_RAISE, "test": MUST_RAISE["test"].replace("except ValueError", handler)}
        assert _run(verifier, exits, ref).score == 0.0, handler
        mbpp = ["assert f(4) == 2", f"try:\n    f(-1)\n{handler}:\n    pass\nelse:\n    assert False"]
        assert _run(verifier, exits.replace("root", "f"), mbpp).detail["tests"] == [True, False], handler
    good = "def root(x):\n    if x < 0:\n        raise ValueError\n    return x ** 0.5"
    assert _run(verifier, good, {**MUST_RAISE, "test": MUST_RAISE["test"].replace("except ValueError",
                                                                                  "except")}).score == 1.0


def test_mbpp_setup_code_may_call_the_program(verifier):
    """Control: a name the setup code's helpers call (not the asserts) still reaches the program."""
    ref = {"test_list": ["assert chk(3)", "assert chk(5)"], "test_setup_code": "def chk(x):\n    return f(x) == 2 * x"}
    assert _run(verifier, "def f(x):\n    return x + x", ref).score == 1.0
    assert _run(verifier, "def f(x):\n    return 6", ref).detail["tests"] == [True, False]


@pytest.mark.parametrize("tail", [
    "    if candidate(3) != 9:\n        raise AssertionError('wrong')\n",
    "    candidate(3).bit_length()\n",
])
def test_a_failure_after_the_last_assert_fails_the_check(verifier, tail):
    """HumanEval: the whole check passes or fails, as in the original harness (a `raise AssertionError`, or any
    exception after the last assert, used to be ignored)."""
    ref = {**SQ_REF, "test": "def check(candidate):\n    assert candidate(1) == 1\n" + tail}
    assert _run(verifier, "def sq(x):\n    return x if x == 1 else str(x)", ref).score == 0.0
    assert _run(verifier, "def sq(x):\n    return x * x", ref).score == 1.0


def test_stdio_integers_compare_exactly(verifier):
    cases = [{"input": "", "output": "1000000000\n"}]
    assert _run(verifier, "print(1000001000)", cases).score == 0.0
    assert _run(verifier, "print(1000000000.0)", cases).score == 0.0      # an int token is not a float
    assert _run(verifier, "print(1000000000)", cases).score == 1.0
    floats = [{"input": "", "output": "0.3 7\n"}]
    assert _run(verifier, "print(0.1 + 0.2, 7)", floats).score == 1.0    # tolerance where the expected is a float
    assert _run(verifier, "print(0.3, 7.0000001)", floats).score == 0.0
    assert _run(verifier, "print('nan', 7)", floats).score == 0.0


# ------------------------------------------------------------------ the result channel

def test_a_test_printing_the_return_value_cannot_forge_a_result(verifier):
    """The checker's stdout used to be the result pipe: a returned string printed by the test forged a whole
    length-prefixed result frame, and the real one became the next job's verdict."""
    import json
    import struct

    ref = {"prompt": "def echo(s: str) -> str:\n    pass\n", "entry_point": "echo",
           "test": "def check(candidate):\n    print(candidate('x'), end='')\n    assert candidate('ab') == 'ab'\n"}
    for jid in range(1, 4):
        frames = ""
        for filler in ("", "x" * 9000):  # the second frame, over the stdout buffer, makes print() write through
            forged = json.dumps({"tests": [True], "tamper": False, "timed_out": False, "error": filler, "id": jid})
            frames += (struct.pack(">I", len(forged)) + forged.encode()).decode("latin-1")
        v = _run(verifier, f"def echo(s):\n    return {frames!r}", ref)
        assert v.score == 0.0
    _in_step(verifier)


def test_a_correct_answer_printed_by_the_test_still_scores(verifier):
    ref = {"prompt": "def rep(n: int) -> str:\n    pass\n", "entry_point": "rep",
           "test": "def check(candidate):\n    print(candidate(9000))\n    assert candidate(9000) == 'a' * 9000\n"}
    assert _run(verifier, "def rep(n):\n    return 'a' * n", ref).score == 1.0
    _in_step(verifier)


# ------------------------------------------------------------------ bounded decoding

P61 = 2 ** 61 - 1


_FORGE_ENCODE = """
import sys
def f():
    codec = sys.modules.get("_codec") or sys.modules["verifiers.code._codec"]
    items = [["int", str({p} * i)] for i in range(1, {n})]
    codec.encode = lambda v, *a, **k: {shape}
    return 0
"""


@pytest.mark.parametrize("body,ref", [
    (_FORGE_ENCODE.format(p=P61, n=25000, shape='["set", items]'), ["assert len(f()) == 0"]),
    (_FORGE_ENCODE.format(p=P61, n=22000, shape='["dict", [[x, ["int", 1]] for x in items]]'),
     ["assert f() == {}"]),
    (f"def f():\n    return [{P61} * i for i in range(1, 25000)]", ["assert set(f()) == {1}"]),
])
def test_hash_flooding_values_are_refused_within_the_deadline(verifier, body, ref):
    """Ints that all hash alike (multiples of 2**61-1) made the checker's set/dict construction quadratic, past
    the deadline; now they are refused as tampering while decoding."""
    v = _run(verifier, body, ref)
    assert v.score == 0.0 and v.detail["tamper"] is True
    _in_step(verifier)


def test_large_ordinary_sets_and_repeated_values_still_decode(verifier):
    good = "def f():\n    return set(range(20000)), [0] * 20000, [-1, -2] * 5000"
    v = _run(verifier, good, ["r = f()\nassert r[0] == set(range(20000)) and set(r[1]) == {0} and len(r[2]) == 10000"])
    assert v.score == 1.0, v.detail


_RAW_WRITE = """
    import os, stat
    def _raw(data):
        for fd in range(3, 64):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.write(fd, len(data).to_bytes(4, "big") + data)
            except OSError:
                pass
"""


@pytest.mark.parametrize("payload", [
    'b"[" * 12000 + b"]" * 12000',
    '(\'{"fatal": "\' + "A" * 100000 + \'\\\\ud800"}\').encode()',
    '(\'{"nonce": \' + str(_nonce()) + \', "exc": \' + "[" * 12000 + "]" * 12000 + "}").encode()',
    '(\'{"nonce": \' + str(_nonce()) + \', "v": ["str", "x"], "exc": {"a": 1}}\').encode()',
])
def test_malformed_frames_are_the_candidates_failure_not_a_verifier_error(verifier, payload):
    """A frame nested 12,000 deep, a forged `fatal` reply, a correctly nonced reply with a nested `exc` field:
    score 0 and tamper, never a RecursionError or a RuntimeError in the verifier."""
    before = verifier.tamper_count
    v = _run(verifier, _RAW_WRITE + f"""
    import sys
    def _nonce():
        f = sys._getframe()
        while f is not None and "nonce" not in f.f_locals:
            f = f.f_back
        return f.f_locals["nonce"] if f is not None else 0
    def sq(x):
        _raw({payload})
        while True:
            pass
    """, SQ_REF)
    assert v.score == 0.0 and v.detail["tamper"] is True, v.detail
    assert verifier.tamper_count == before + 1
    assert len(v.detail["error"]) <= 500
    _in_step(verifier)


def test_error_text_is_bounded_and_valid_utf8(verifier):
    v = _run(verifier, "raise ValueError('\\ud800' * 50 + 'x' * 100000)\ndef sq(x):\n    return x * x", SQ_REF)
    assert v.score == 0.0
    err = v.detail["error"]
    assert len(err) <= 500 and err.encode("utf-8")


def test_fence_extraction_is_linear():
    """A backtracking fence regex held the GIL for seconds on a 120 KB completion."""
    shapes = ["```" * 40_000, "```a " * 24_000, "```\n" * 30_000, ("```python\n" + "x" * 50 + "\n") * 2_000,
              "``` " + "`" * 120_000]
    for text in shapes:
        t0 = time.perf_counter()
        extract_program(text)
        assert time.perf_counter() - t0 < 0.5, text[:20]
    assert extract_program("```text\nno\n```\n```python\nx = 1\n```\n```py\ny = 2") == "y = 2"
    assert extract_program("a ```python3 extra\nz = 3\n``` b") == "z = 3"


def test_a_huge_completion_is_refused_quickly(verifier):
    t0 = time.perf_counter()
    v = verifier.verify("```" * 200_000, ["assert f() == 1"])
    assert time.perf_counter() - t0 < 1.0 and v.score == 0.0 and v.detail["reason"] == "program_too_long"


# ------------------------------------------------------------------ host and cross-job effects

@pytest.mark.parametrize("tier", ["landlock", "bwrap"])
def test_a_10000_deep_tree_is_cleaned_before_the_next_job(tier):
    """shutil.rmtree recursed (and held an fd per level) and failed on a 10,000-deep tree, which then survived into
    the next job (and made close() raise). The next job sees its own folder and the pre-forked next child's, nothing
    else. (Landlock makes each mkdir cost O(depth): the tree takes a few seconds to build, hence the long timeout.)"""
    v = CodeVerifier(timeout=30, workers=1, tier=tier, require_tier="landlock")
    try:
        deep = v.verify(_program("""
            import os
            for _ in range(10000):
                os.mkdir("d")
                os.chdir("d")
            def sq(x):
                return x * x
        """), SQ_REF)
        assert deep.score == 1.0 and deep.error is None, (deep.detail, deep.error)
        t0 = time.monotonic()
        probe = v.verify(_program("""
            import os
            def sq(x):
                return x * x if len(os.listdir("..")) <= 2 else -1
        """), SQ_REF)
        assert probe.score == 1.0 and probe.error is None, (probe.detail, probe.error)
        assert time.monotonic() - t0 < 5.0
        ok = v.verify(_program("def sq(x):\n    return x * x"), SQ_REF)
        assert ok.score == 1.0
    finally:
        v.close()  # must not raise


def test_bwrap_dies_with_its_parent(tmp_path):
    """Without --die-with-parent the sandbox kept running after the trainer was SIGKILLed mid-job."""
    assert "--die-with-parent" in _bwrap_prefix("bwrap")
    if not detect_tiers().get("bwrap"):
        pytest.fail("bwrap unavailable")
    import shutil
    from pathlib import Path

    import verifiers

    shutil.copytree(Path(verifiers.__file__).parent, tmp_path / "verifiers")
    code = ("import sys, threading, time\n"
            "from verifiers.code import CodeVerifier\n"
            "v = CodeVerifier(workers=1, tier='bwrap', timeout=60)\n"
            "v.pool\n"
            "threading.Thread(target=lambda: v.verify('import time\\ndef f():\\n    time.sleep(60)',"
            " ['assert f() == 1'])).start()\n"
            "time.sleep(1.0)\n"
            "print('running', flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    try:
        assert p.stdout.readline().strip() == "running"
        marker = str(tmp_path / "verifiers" / "code")
        assert _procs_with(marker), "the worker did not start"
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        end = time.monotonic() + 5
        while _procs_with(marker) and time.monotonic() < end:
            time.sleep(0.1)
        assert _procs_with(marker) == []
    finally:
        p.kill()
        for pid in _procs_with(str(tmp_path)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _procs_with(text: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out
