"""One sandbox worker: a trusted checker process, its zygote, and one locked-down child per candidate execution.

Started by `verifiers.code.sandbox.SandboxPool` as `python -I -S <bootstrap> <config-json>` (optionally inside
bubblewrap), with a scrubbed environment. Three processes, three roles:

* **checker** (this process, trusted): receives jobs from the pool on stdin and answers on stdout (4-byte length +
  JSON frames). It holds the tests and the expected values and runs the dataset's test code itself; `candidate`
  inside that code is a proxy that forwards each call's *arguments* to the sandbox child and gets back only the
  *return value*, type-strictly encoded (`_codec`). Pass/fail is computed here, never reported by the child.
* **zygote** (forked from the checker at start-up, before any job exists, so its memory holds no test, answer or
  previous job): locks itself down with everything the children share (`_lockdown_zygote`), then forks a fresh
  child on request and hands the checker that child's socket (SCM_RIGHTS) and pid. One child is kept forked (and
  locked down) in advance, so the fork overlaps the previous job; its folder is made by the checker when its job
  starts, after the previous job's child is dead and its folder gone.
* **child** (untrusted): `setsid`, all fds but its socket closed, stdio on /dev/null, a fresh scratch folder,
  rlimits, no capabilities, no_new_privs, Landlock, seccomp (`_lockdown`; the shared part inherited from the
  zygote, the rest added by the child), then it loads the candidate's program
  and serves calls (or, in stdio mode, runs it as `__main__` on the given input and returns the captured output).
  It is SIGKILLed (its whole process group) when the job ends or its deadline passes.

Integrity rules enforced by the checker: every reply must carry the nonce of the request it answers (a fresh random
64-bit number per request); a reply with a wrong nonce, a malformed frame (over 1 MiB, nested beyond
JSON_DEPTH_LIMIT, a field of the wrong type), an undecodable value (`_codec`'s limits), or any byte left in the
socket after the job marks the job as tampered (the verifier scores it 0), and so does an out-of-band byte. A
missing reply is a failed test, and so is a reply read after the deadline. The checker's end of each child's socket
is non-blocking: every read and write waits in `poll` for the time the job has left; the dataset's test code is
interrupted once the deadline has passed (`CheckerDeadline`). The child's first frame, written before the
candidate's code runs, reports its lockdown; a `fatal` is believed only there. The checker's fds 0 and 1 are
/dev/null while test code runs; the pool's pipes are private fds. The checker re-executes itself after forking the
zygote (`main`), so no child knows its string-hash secret.
"""

from __future__ import annotations

import errno
import gc
import io
import json
import marshal
import math
import os
import re
import select
import struct
import sys
import time

import _signal
import _socket   # not `socket` nor `signal`: their Python modules (and `selectors`) would sit in the
                 # zygote's memory, which every fork copies

try:
    from . import _codec, _lockdown
except ImportError:  # run as a top-level module by the bootstrap (python -I -S: the package is not imported)
    import _codec  # type: ignore[no-redef]
    import _lockdown  # type: ignore[no-redef]

MAX_FRAME = 1 << 20           # 1 MiB: cap of any frame from the child (return values, captured stdout)
# Imported in the zygote, so a candidate gets them without reading files. Kept to what solutions commonly import:
# every page the zygote holds is copied into each child's page tables at fork and torn down at its exit, and every
# page a child writes is a copy-on-write fault (measured here: 1.1 ms per fork+exit with 35 modules against 0.77 ms
# with 14). Dropped for that reason: `fractions` (with `decimal`) and `hashlib` (with OpenSSL's libcrypto), 0.8 MB of
# the zygote's private pages for 1 of HumanEval's 164 solutions; and `random`, whose after-fork reseed cost every
# child ~85 page faults (of ~400) although no HumanEval prompt or solution imports it (its tests do, in the checker).
# Other standard-library modules still import, from disk (Landlock allows reading the standard library): `random`
# in ~2.5 ms, `hashlib` ~3.5 ms, `fractions` ~5 ms (measured per job on the 2-core VM).
PRELOAD = ("math", "re", "string", "itertools", "functools", "collections", "heapq", "bisect", "operator", "typing",
           "copy")


class FrameError(BaseException):
    """The peer sent something that is not a well-formed frame (tampering when the peer is the sandbox).

    A BaseException, like ChildGone, so that the dataset's own `try: candidate(-1) / except Exception: pass` cannot
    swallow it and count a tampering or dead child as "raised as required"."""


class ChildGone(BaseException):
    """The child exited, was killed, or missed its deadline."""


class CheckerDeadline(BaseException):
    """The job's deadline (plus `CHECKER_GRACE`) passed while the dataset's test code was running in the checker on
    the candidate's values (`for _ in range(candidate(x))` with a huge int, a sort of a huge list): raised into
    that test code by a timer signal, so the checker's own work on untrusted values ends with the job. Never raised
    inside the checker's own code (this module and `_codec`, which bound themselves by the deadline): the signal
    handler looks at the frame it interrupted, and repeats every 50 ms until the job ends."""


CHECKER_GRACE = 0.25
_ALARM = {"on": False, "fired": False, "own": frozenset()}


def _on_alarm(signum, frame) -> None:
    if not _ALARM["on"] or (frame is not None and frame.f_code.co_filename in _ALARM["own"]):
        return
    _ALARM["fired"] = True
    raise CheckerDeadline


def _arm(deadline: float) -> None:
    _ALARM["on"], _ALARM["fired"] = True, False
    _signal.setitimer(_signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.0) + CHECKER_GRACE, 0.05)


def _disarm() -> None:
    _ALARM["on"] = False
    _signal.setitimer(_signal.ITIMER_REAL, 0.0, 0.0)


class SandboxFailure(Exception):
    """The sandbox itself failed (lockdown refused by the kernel): a verifier fault, not the candidate's. Raised only
    from the child's first frame, which it writes before any candidate code runs."""


MAX_ERROR_CHARS = 500


def _clean(text, n: int = MAX_ERROR_CHARS) -> str:
    """Error text for a verdict: at most `n` characters of valid UTF-8 (lone surrogates replaced)."""
    s = text if type(text) is str else repr(type(text))
    return s[:n].encode("utf-8", "replace").decode("utf-8")


def _field(reply: dict, key: str) -> str | None:
    """An optional text field of a child's reply: a str (bounded) or absent; anything else is tampering."""
    v = reply.get(key)
    if v is None:
        return None
    if type(v) is not str:
        raise FrameError(f"reply field {key!r} is not text")
    return _clean(v)


# ---------------------------------------------------------------------------------------------- framing

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode   # one encoder for every frame (json.dumps with
                                                            # separators builds a new one per call)


def _frame(obj) -> bytes:
    """A JSON frame: what the pool and the checker exchange, and what a child sends (the checker parses it bounded)."""
    data = _ENCODE(obj).encode()
    return struct.pack(">I", len(data)) + data


def _mframe(obj) -> bytes:
    """A frame from the checker to a child: marshal, which the child decodes in one C call. Only the trusted checker
    writes these and only a child reads them; nothing a child sends is ever unmarshalled. Raises ValueError for a
    value marshal cannot carry (the caller's argument is then not transferable)."""
    data = marshal.dumps(obj)
    return struct.pack(">I", len(data)) + data


def _write_all(fd: int, buf: bytes) -> None:
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


def _send(fd: int, obj) -> None:
    _write_all(fd, _frame(obj))


_NONCES = bytearray()


def _nonce() -> int:
    """A fresh random 63-bit number from the OS's CSPRNG (read 4 KiB at a time: one syscall per 512 nonces)."""
    if not _NONCES:
        _NONCES.extend(os.urandom(4096))
    n = int.from_bytes(_NONCES[-8:], "big") >> 1
    del _NONCES[-8:]
    return n


_RBUF: dict[int, bytearray] = {}  # bytes read ahead per fd (a frame usually arrives in one read)


_POLL_IN = select.POLLIN | select.POLLPRI


def _wait(fd: int, events: int, deadline: float) -> None:
    """Wait until `fd` is ready for `events` or the deadline passes (TimeoutError). An out-of-band byte still
    pending (MSG_OOB on the job's unix socket: POLLPRI) is tampering. (The checker's end has SO_OOBINLINE, so such a
    byte normally arrives in the stream; before, `select` reported it as data, and the plain read that followed
    skipped it and blocked past the deadline.)"""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    p = select.poll()
    p.register(fd, events | select.POLLPRI)
    ready = p.poll(max(1, math.ceil(left * 1000)))
    if not ready:
        raise TimeoutError
    if ready[0][1] & select.POLLPRI:
        raise FrameError("out-of-band data on the job's socket")


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    """`n` bytes from `fd`. With a deadline, `fd` is non-blocking (a child's socket, see `_Child`): every read
    either returns at once or waits in `poll` for the time left, rechecked after every partial read."""
    buf = _RBUF.setdefault(fd, bytearray())
    while len(buf) < n:
        if deadline is not None:
            if time.monotonic() >= deadline:
                raise TimeoutError
            try:
                b = os.read(fd, max(n - len(buf), 65536))
            except BlockingIOError:
                _wait(fd, select.POLLIN, deadline)
                continue
        else:
            b = os.read(fd, max(n - len(buf), 65536))
        if not b:
            raise EOFError
        buf += b
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _write_until(fd: int, buf: bytes, deadline: float) -> None:
    """Write all of `buf` to a non-blocking `fd` before the deadline (TimeoutError): a child that stops reading
    cannot hold the checker in a blocking write of a large argument."""
    view = memoryview(buf)
    while view:
        if time.monotonic() >= deadline:
            raise TimeoutError
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            _wait(fd, select.POLLOUT, deadline)
            continue
        view = view[n:]


JSON_DEPTH_LIMIT = 1000  # recursion limit while parsing a frame: a legitimate value nests ~2 * _codec.MAX_DEPTH


def _recv(fd: int, deadline: float | None = None, max_len: int = MAX_FRAME):
    """One frame: a 4-byte big-endian length (at most `max_len`) and that many bytes of JSON. Parsing is bounded in
    nesting (a frame nested 12,000 deep raises FrameError, not RecursionError in the caller)."""
    (n,) = struct.unpack(">I", _read_exact(fd, 4, deadline))
    if n > max_len:
        raise FrameError(f"frame of {n} bytes (cap {max_len})")
    data = _read_exact(fd, n, deadline)
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(min(old, JSON_DEPTH_LIMIT))
    except RecursionError:
        pass
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as e:
        raise FrameError(f"malformed frame: {type(e).__name__}") from None
    finally:
        sys.setrecursionlimit(old)


# ---------------------------------------------------------------------------------------------- the child

def _child_main(sock: _socket.socket, cfg: dict) -> None:
    """Lock down, wait for the checker's start (the job's fresh scratch folder), confine writes to that folder,
    then serve one job. Never returns. The child is forked and locked down while the previous job runs; its folder
    is made only after that job's is gone, and only the folder's Landlock layer and chdir wait for it.

    Every page a child touches is a copy-on-write fault, so its own code is kept short: its syscalls go through
    structures the zygote prepared (`_lockdown.PreparedFilter`, `_lockdown.FolderLayer`), signals through `_signal`,
    frames from the checker are marshal (`_crecv`), its `locked` frame is prebuilt."""
    fd = sock.fileno()
    try:
        os.setsid()
        _lockdown_child(fd, cfg)
        start = _crecv(fd)
        if type(start) is not dict or start.get("op") != "start" or type(start.get("scratch")) is not str:
            raise ValueError("no start message")
        _enter_folder(start["scratch"], cfg)
    except BaseException as e:  # noqa: BLE001 - report and die: a child that is not locked down must not run code
        try:
            _send(fd, {"fatal": _clean(f"lockdown failed: {type(e).__name__}: {e}")})
        finally:
            os._exit(70)
    # The first frame on the socket, written before any candidate code runs: the only place a "fatal" is believed.
    _write_all(fd, _LOCKED)
    _serve(fd)
    _EXIT[0](0)   # the real os._exit: a stdio program's os._exit sends its output first (`_exit_after_reply`)


_LOCKED = _frame({"locked": True})


def _crecv(fd: int):
    """A frame from the checker, in a child (blocking; the checker is trusted, so no size or time bound here)."""
    buf = _CBUF
    while len(buf) < 4:
        b = os.read(fd, 65536)
        if not b:
            raise EOFError
        buf += b
    n = 4 + int.from_bytes(buf[:4], "big")
    while len(buf) < n:
        b = os.read(fd, max(n - len(buf), 65536))
        if not b:
            raise EOFError
        buf += b
    data = bytes(buf[4:n])
    del buf[:n]
    return marshal.loads(data)


_CBUF = bytearray()   # a child's read-ahead of the checker's frames


def _lockdown_child(keep_fd: int, cfg: dict) -> None:
    """Everything that does not depend on the job's folder: done before the job exists. The zygote already holds
    (and the child inherits through fork) no capabilities, no_new_privs, Landlock layer 1, the rlimits on address
    space, file size, open files and core dumps, and the zygote's seccomp filter (`_lockdown_zygote`); the child
    adds its CPU-time and process limits and the child-only filter (fork, socketpair, setrlimit)."""
    if _Z.get("fatal"):
        raise OSError(_Z["fatal"])
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    _lockdown._libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: die with the zygote
    null = _Z["null"]   # opened by the zygote before its Landlock layer (which grants /dev/null no write)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _close_all_but({0, 1, 2, keep_fd})  # fork ignores O_CLOEXEC
    # before the child's seccomp filter, which forbids setrlimit
    _lockdown.set_own_rlimits(cpu_seconds=max(1, math.ceil(cfg["cpu_seconds"])), processes=_Z["nproc"])
    if _Z.get("seccomp_child") is not None:
        _Z["seccomp_child"].load()


def _lockdown_zygote(cfg: dict) -> None:
    """The part of every child's lockdown that is the same for all of them, done once in the zygote and inherited
    through fork: the rlimits on address space, file size, open files and core dumps; no_new_privs and no
    capabilities; Landlock layer 1 (read the stdlib, everything beneath the scratch root, no TCP, signals and
    abstract sockets scoped); and the seccomp filter minus what the zygote needs to fork a child and hand over its
    socket (`_lockdown._CHILD_ONLY`, which each child adds with its own filter). A failure is recorded, and every
    child then reports it as its `fatal` first frame (the sandbox's failure, not the candidate's)."""
    tier = cfg["tier"]
    try:
        _Z["null"] = os.open("/dev/null", os.O_RDWR)
        if tier in ("bwrap", "landlock"):
            _Z["folder_layer"] = _lockdown.FolderLayer(_Z["landlock_abi"])
        if tier in ("bwrap", "landlock", "seccomp"):
            _Z["seccomp_child"] = _lockdown.PreparedFilter(_Z["bpf_child"])
        _lockdown.set_shared_rlimits(address_space=_Z["vsz"] + cfg["memory_mb"] * (1 << 20),
                                     file_size=cfg["file_size"], open_files=64)
        if tier in ("bwrap", "landlock", "seccomp"):
            _lockdown.drop_privileges()
        if tier in ("bwrap", "landlock"):
            _lockdown.restrict(_Z["ruleset"])   # layer 1
        if tier in ("bwrap", "landlock", "seccomp"):
            _lockdown.load_seccomp(_Z["bpf_zygote"])
            if _Z["bpf_ioctl"]:
                _lockdown.load_seccomp(_Z["bpf_ioctl"])   # the ioctl allow list, stacked
    except BaseException as e:  # noqa: BLE001
        _Z["fatal"] = f"zygote lockdown failed: {type(e).__name__}: {e}"
    finally:
        if _Z.get("ruleset") is not None:
            os.close(_Z.pop("ruleset"))


def _enter_folder(scratch: str, cfg: dict) -> None:
    os.chdir(scratch)
    if cfg["tier"] in ("bwrap", "landlock"):
        _Z["folder_layer"].apply(scratch)   # layer 2: write only beneath this job's folder


def _close_all_but(keep: set[int]) -> None:
    lo = 0
    for fd in sorted(keep) + [1 << 20]:
        if fd > lo:
            os.closerange(lo, min(fd, 1 << 16))
        lo = fd + 1


def _libc_prctl(option: int, arg: int) -> None:
    _lockdown._libc.prctl(option, arg, 0, 0, 0)


class _CappedBytes(io.BytesIO):
    def write(self, b):
        if self.tell() + len(b) > MAX_FRAME // 2:
            raise OSError("output limit reached (512 KiB)")
        return super().write(b)


def _serve(fd: int) -> None:
    """The candidate's side. Messages: load (program, mode, stdin), call (fn, args, kwargs, nonce)."""
    ns: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    while True:
        try:
            msg = _crecv(fd)
        except BaseException:  # noqa: BLE001
            return
        op, nonce = msg.get("op"), msg.get("nonce")
        if op == "load":
            reply = {"nonce": nonce, "ok": True}
            if msg.get("mode") == "stdio":
                out = _CappedBytes()
                _stdin_on_fd0(msg.get("stdin", "").encode())
                sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
                sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
                os._exit = _exit_after_reply(fd, nonce, out)
                try:
                    exec(compile(msg["program"], "<candidate>", "exec"), ns)
                except SystemExit as e:
                    reply["exit"] = str(e.code)
                except BaseException as e:  # noqa: BLE001
                    reply = {"nonce": nonce, "ok": False, "error": _exc(e)}
                try:
                    sys.stdout.flush()
                except BaseException:  # noqa: BLE001
                    pass
                reply["stdout"] = out.getvalue().decode("utf-8", "replace")
            else:
                ns["__name__"] = "__candidate__"
                try:
                    exec(compile(msg["program"], "<candidate>", "exec"), ns)
                except BaseException as e:  # noqa: BLE001 - SystemExit at import time included
                    reply = {"nonce": nonce, "ok": False, "error": _exc(e)}
            _send(fd, reply)
        elif op == "call":
            args, kwargs = msg["args"], msg["kwargs"]
            before = _snapshot(args, kwargs) if msg.get("m") else None
            try:
                fn = ns[msg["fn"]]
                value = fn(*args, **kwargs)   # plain values, as the checker's test passed them
                reply = {"nonce": nonce, "v": _codec.encode(value)}
            except BaseException as e:  # noqa: BLE001 - SystemExit / KeyboardInterrupt inside the function too
                reply = {"nonce": nonce, "exc": _exc(e), "etype": _builtin_base(e)}
            if before:     # the list, dict and set arguments the call changed go back (`_copy_back`)
                try:
                    changed = _changed(before, args, kwargs)
                    if changed:
                        reply["a"] = _codec.encode(changed)
                except BaseException:  # noqa: BLE001 - too many items to encode: the change stays invisible
                    reply.pop("a", None)
            try:
                data = _frame(reply)
                if len(data) > MAX_FRAME and "a" in reply:   # too big to come back: the change stays invisible
                    del reply["a"]
                    data = _frame(reply)
                _write_all(fd, data)
            except BaseException:  # noqa: BLE001
                return
        else:
            return


def _snapshot(args, kwargs) -> dict:
    """marshal bytes of the list, dict and set arguments before a call (C speed; compared after it)."""
    out = {}
    for key, a in [*enumerate(args), *kwargs.items()]:
        if type(a) in (list, dict, set):
            try:
                out[key] = marshal.dumps(a)
            except ValueError:
                out[key] = None
    return out


def _changed(before: dict, args, kwargs) -> dict:
    """{"p": {index: value}, "k": {name: value}} of the arguments whose marshal bytes changed in the call."""
    out: dict = {"p": {}, "k": {}}
    for key, old in before.items():
        a = args[key] if type(key) is int else kwargs[key]
        try:
            same = old is not None and marshal.dumps(a) == old
        except ValueError:     # now holds something marshal cannot carry
            same = False
        if not same:
            out["p" if type(key) is int else "k"][key] = a
    return out if out["p"] or out["k"] else {}


def _stdin_on_fd0(data: bytes) -> None:
    """The case's input on fd 0, where `open(0).read()` and `os.read(0, n)` look for it, as well as `sys.stdin`: a
    pipe holding it all (up to 64 KiB), else an unlinked file in the job's folder."""
    if len(data) <= 65536:
        r, w = os.pipe()
        try:
            os.write(w, data)
        finally:
            os.close(w)
    else:
        name = ".rlvr-stdin"
        w = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(w, data)
        finally:
            os.close(w)
        r = os.open(name, os.O_RDONLY)
        os.unlink(name)
    os.dup2(r, 0)
    os.close(r)


def _exit_after_reply(fd: int, nonce, out) -> object:
    """`os._exit` for a stdio program: the output written so far is the reply, sent before the process ends (a
    program that prints, flushes and calls `os._exit(0)` is a normal exit under the original harnesses)."""
    real = _EXIT[0]

    def _exit(status=0):
        try:
            try:
                sys.stdout.flush()
            except BaseException:  # noqa: BLE001
                pass
            _send(fd, {"nonce": nonce, "ok": True, "exit": str(status),
                       "stdout": out.getvalue().decode("utf-8", "replace")})
        finally:
            real(0)
    return _exit


_EXIT = [os._exit]


def _builtin_base(e: BaseException) -> str:
    """The name of the first builtin exception class `e` is an instance of (the checker re-raises that type, so a
    test's `except ValueError:` sees a candidate's ValueError as the original harness would)."""
    try:
        for k in type(e).__mro__:
            if k.__module__ == "builtins":
                return k.__name__
    except BaseException:  # noqa: BLE001
        pass
    return "Exception"


def _exc(e: BaseException) -> str:
    try:
        return f"{type(e).__name__}: {str(e)[:200]}"
    except BaseException:  # noqa: BLE001
        return "exception"


# ---------------------------------------------------------------------------------------------- the zygote

_Z: dict = {}


def _zygote_main(ctrl: _socket.socket, cfg: dict) -> None:
    """Fork a locked-down child per request byte; send (pid, scratch) + the child's socket to the checker."""
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)  # children are reaped by the kernel
    _libc_prctl(1, _signal.SIGKILL)
    _lockdown_zygote(cfg)
    _warm_up()
    # Everything allocated so far moves to the GC's permanent generation: a child's collections then never walk
    # (and so never copy-on-write) the zygote's pages, which makes each fork's child cheaper to run.
    gc.freeze()
    while True:
        try:
            req = ctrl.recv(1)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)
        if not req:
            os._exit(0)
        parent_end, child_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        pid = _fork_retrying()
        if pid == 0:
            ctrl.close()
            parent_end.close()
            _child_main(child_end, cfg)
        child_end.close()
        ctrl.sendmsg([struct.pack(">q", pid)],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", parent_end.fileno()))])
        parent_end.close()


def _warm_up() -> None:
    """State every child would otherwise build for itself, built once in the zygote: the first `compile` of a process
    creates the ~120 AST node types and the compiler's interned names (~0.5 ms and ~100 page faults in each child
    that compiled its candidate program first)."""
    exec(compile("def f(a, b=1, *c, **d):\n    return [a + b for _ in c if d]\n", "<zygote>", "exec"), {})


def _fork_retrying(limit_s: float = 60.0) -> int:
    """fork, waiting while the worker's pids cgroup is full (a job's threads hold it until the job is killed)."""
    end = time.monotonic() + limit_s
    while True:
        try:
            return os.fork()
        except BlockingIOError:
            if time.monotonic() > end:
                raise
            time.sleep(0.005)


def _start_zygote(cfg: dict) -> _socket.socket:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    abi = _lockdown.landlock_abi()
    _Z["landlock_abi"] = abi
    threads = _Z["threads"] = _threads_mode(cfg)
    _Z["bpf_zygote"] = bytes.fromhex(cfg.get("bpf_zygote") or "")
    try:   # x86_64 and aarch64; elsewhere ioctl keeps no filter of its own (the lockdown is Linux x86_64/aarch64)
        _Z["bpf_ioctl"] = _lockdown.ioctl_program() if cfg["tier"] in ("bwrap", "landlock", "seccomp") else b""
    except OSError:
        _Z["bpf_ioctl"] = b""
    _Z["bpf_child"] = bytes.fromhex(cfg.get("bpf_child_nothreads" if threads == "denied" else "bpf_child") or "")
    # RLIMIT_NPROC counts this uid's tasks in this user namespace: the checker, the zygote, two children, a
    # dying one, bwrap's init, and the job's threads
    _Z["nproc"] = cfg["threads"] + 8 if threads == "rlimit" else None
    if abi and cfg["tier"] in ("bwrap", "landlock"):
        fds = _lockdown.open_paths(cfg["read_paths"])
        _Z["ruleset"] = _lockdown.base_ruleset(abi, fds, cfg["scratch_root"])
        for fd, _ in fds:
            os.close(fd)
    with open("/proc/self/statm") as f:
        _Z["vsz"] = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    if _NONCES:   # the zygote (and so every child) must never hold the checker's future nonces
        raise RuntimeError("nonces drawn before the zygote was forked")
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        a.close()
        for fd in (0, 1):  # the zygote never talks to the pool
            os.dup2(os.open("/dev/null", os.O_RDWR), fd)
        _zygote_main(b, cfg)
        os._exit(0)
    b.close()
    if _Z.get("ruleset") is not None:
        os.close(_Z.pop("ruleset"))
    _Z["pid"] = pid
    return a


# ---------------------------------------------------------------------------------------------- the checker

def _threads_mode(cfg: dict) -> str:
    """How the job's threads are capped: "cgroup" (the pool put this worker in a pids cgroup), "rlimit"
    (RLIMIT_NPROC, counted in a user namespace of the sandbox's own: bwrap's or the worker's), "denied" (neither
    holds: seccomp refuses every clone), or "none" (tiers without seccomp)."""
    if cfg["tier"] not in ("bwrap", "landlock", "seccomp"):
        return "none"
    want = cfg.get("threads_cap", "denied")
    if want == "rlimit" and not (cfg["tier"] == "bwrap" or _Z.get("isolation", {}).get("own_userns")):
        return "denied"     # an ordinary user's RLIMIT_NPROC would count every process of theirs on the host
    return want


class _Child:
    """The checker's handle on one sandbox child."""

    def __init__(self, zygote: _socket.socket):
        msg, anc, _, _ = zygote.recvmsg(8, _socket.CMSG_LEN(4))
        fds = [struct.unpack("i", data[:4])[0] for level, kind, data in anc
               if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4]
        if not fds or len(msg) != 8:
            raise RuntimeError("zygote sent no socket")
        (pid,) = struct.unpack(">q", msg)
        self.pid, self.fd, self.scratch = pid, fds[0], None
        os.set_blocking(self.fd, False)   # every read and write on it is bounded by the job's deadline
        _oob_inline(self.fd)
        self.gone = False
        self.locked = False
        self._pending = b""

    def start(self, scratch: str) -> None:
        """Hand the child its scratch folder (created just now, after the previous job's was removed). The start
        frame goes out with the job's first request, in one write (`request`)."""
        self.scratch = scratch
        self._pending = _mframe({"op": "start", "scratch": scratch})

    def _lock_status(self, deadline: float) -> None:
        """The child's first frame: {"locked": true}, or {"fatal": text} when its lockdown failed. Written before the
        candidate's code runs, so a "fatal" here is the sandbox's failure; one later is only a wrong reply."""
        try:
            st = _recv(self.fd, deadline)
        except (TimeoutError, EOFError, OSError):
            self.gone = True
            raise ChildGone from None
        if time.monotonic() > deadline:
            self.gone = True
            raise ChildGone
        if type(st) is dict and st.get("locked") is True and len(st) == 1:
            self.locked = True
            return
        if type(st) is dict and type(st.get("fatal")) is str:
            raise SandboxFailure(_clean(st["fatal"]))
        raise FrameError("malformed lockdown status")

    def request(self, msg: dict, deadline: float) -> dict:
        return self.exchange(*self.prepare(msg), deadline)

    @staticmethod
    def prepare(msg: dict) -> tuple[int, bytes]:
        """(nonce, frame) for `msg` with a fresh nonce; ValueError when marshal cannot carry a value in it."""
        nonce = _nonce()  # not `random`: the dataset's tests may seed it
        return nonce, _mframe({**msg, "nonce": nonce})

    def exchange(self, nonce: int, frame: bytes, deadline: float) -> dict:
        """Send a prepared request and return the reply that carries its nonce. The first request follows the start
        frame in the same write, before the child's lockdown status is read: the child reads its frames in order and
        answers `locked` (or `fatal`) before it reads this one, so no candidate code runs any earlier."""
        if self.gone:
            raise ChildGone
        data = self._pending + frame
        self._pending = b""
        sent = True
        try:
            _write_until(self.fd, data, deadline)
        except TimeoutError:
            self.gone = True
            raise ChildGone from None
        except OSError:
            sent = False  # a child that died at its lockdown: its `fatal` frame is still read first
        if not self.locked:
            self._lock_status(deadline)
        try:
            if not sent:
                raise EOFError
            reply = _recv(self.fd, deadline)
        except (TimeoutError, EOFError, OSError):
            self.gone = True
            raise ChildGone from None
        if time.monotonic() > deadline:   # a reply after the deadline is a timeout, never a verdict
            self.gone = True
            raise ChildGone
        if type(reply) is not dict or reply.get("nonce") != nonce:
            raise FrameError("reply with a wrong nonce")
        return reply

    def leftover(self) -> bool:
        """Bytes the child wrote that no request asked for (checked at the end of a job)."""
        if self.gone:
            return False
        if _RBUF.get(self.fd):
            return True
        try:
            p = select.poll()
            p.register(self.fd, _POLL_IN)
            r = p.poll(0)
            if not r:
                return False
            if r[0][1] & select.POLLPRI:
                return True         # an out-of-band byte nobody asked for
            return bool(os.read(self.fd, 1))
        except OSError:
            return False

    def kill(self) -> None:
        try:
            os.killpg(self.pid, _signal.SIGKILL)  # the child's session: it and any thread it left
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, _signal.SIGKILL)  # it died before its setsid
            except (ProcessLookupError, PermissionError):
                pass
        _RBUF.pop(self.fd, None)
        try:
            os.close(self.fd)
        except OSError:
            pass
        if self.scratch is None:
            return
        try:
            os.rmdir(self.scratch)  # the common case: the job wrote nothing
        except FileNotFoundError:
            pass
        except OSError:
            _wait_gone(self.pid, 2.0)  # no thread of the job may still be writing while the tree is removed
            remove_tree(self.scratch)


_ONE = [None]


def _oob_inline(fd: int) -> None:
    """SO_OOBINLINE on the checker's end of a child's socket: an out-of-band byte (MSG_OOB) arrives in the stream
    like any other, so it breaks the frame it lands in (tampering). Without it, a plain read skipped the byte (and
    consumed it: poll no longer reported POLLPRI), and the checker waited for a reply until the deadline."""
    import ctypes

    if _ONE[0] is None:
        _ONE[0] = ctypes.byref(ctypes.c_int(1))
    _lockdown._libc.setsockopt(fd, _socket.SOL_SOCKET, _socket.SO_OOBINLINE, _ONE[0], 4)


def _wait_gone(pid: int, limit_s: float) -> None:
    try:
        pfd = os.pidfd_open(pid)
    except OSError:
        return                  # already gone
    try:
        select.select([pfd], [], [], limit_s)
    finally:
        os.close(pfd)


class _Checker:
    def __init__(self, cfg: dict, zygote: _socket.socket | None = None):
        self.cfg = cfg
        self.zygote = zygote if zygote is not None else _start_zygote(cfg)
        self._serial = 0
        self._ask()

    def _ask(self) -> None:
        self.zygote.send(b"f")

    def child(self) -> _Child:
        """The pre-forked child, started in a folder made now: the previous job's child is dead and its folder
        removed, so no other job's folder exists while this one runs (nor does the next child's)."""
        c = _Child(self.zygote)
        self._serial += 1
        scratch = os.path.join(self.cfg["scratch_root"], f"job-{self._serial}")
        try:
            os.mkdir(scratch, 0o700)
        except OSError:
            c.kill()
            raise
        c.start(scratch)
        self._ask()  # the next child forks while this one works; it gets its folder when its job starts
        return c

    # -- jobs

    def run(self, job: dict) -> dict:
        deadline = time.monotonic() + float(job.get("timeout", 10.0))
        res = {"tests": [], "tamper": False, "timed_out": False, "error": None}
        try:
            if job["mode"] == "stdio":
                self._stdio(job, deadline, res)
            else:
                _arm(deadline)   # the dataset's test code runs here, on the candidate's values: bounded too
                try:
                    self._calls(job, deadline, res)
                finally:
                    _disarm()
                if _ALARM["fired"]:
                    res["timed_out"] = True
        except CheckerDeadline:
            res["tests"] = [False] * max(len(res["tests"]), 1)
            res["timed_out"] = True
        except FrameError as e:
            res["tests"] = [False] * len(res["tests"])
            res["tamper"], res["error"] = True, _clean(f"tampering: {e}")
        except ChildGone:
            res["tests"] = [False] * len(res["tests"])
            res["timed_out"] = time.monotonic() >= deadline
        except SandboxFailure as e:
            res["error"] = _clean(str(e))
            res["sandbox_failure"] = True
        if res["error"] is not None:
            res["error"] = _clean(res["error"])
        return res

    def _stdio(self, job: dict, deadline: float, res: dict) -> None:
        for case in job["cases"]:
            c = self.child()
            try:
                reply = c.request({"op": "load", "mode": "stdio", "program": job["program"],
                                   "stdin": case.get("input", "")}, deadline)
                if c.leftover():
                    raise FrameError("bytes after the reply")
                if "stdout" not in reply or type(reply["stdout"]) is not str:
                    raise FrameError("reply without stdout")
                err = _field(reply, "error")
                ok = reply.get("ok") is True and _same_output(reply["stdout"], case.get("output", ""))
                res["tests"].append(ok)
                if reply.get("ok") is not True and res["error"] is None:
                    res["error"] = err
            except ChildGone:
                res["tests"].append(False)
                res["timed_out"] = res["timed_out"] or time.monotonic() >= deadline
            finally:
                c.kill()

    def _calls(self, job: dict, deadline: float, res: dict) -> None:
        c = self.child()
        try:
            try:
                reply = c.request({"op": "load", "mode": "call", "program": job["program"]}, deadline)
            except ChildGone:
                reply = {"ok": False, "error": "the program did not finish loading before the deadline"}
                res["timed_out"] = True
            n_tests = _count_tests(job)
            if reply.get("ok") is not True:
                res["tests"] = [False] * max(n_tests, 1)
                res["error"] = _field(reply, "error")
                return
            # state["tamper"] is set wherever a FrameError starts, and state["calls"] counts calls, so that a test's
            # bare `except:` swallowing FrameError or ChildGone still cannot turn them into a pass (see below)
            state = {"tamper": None, "calls": 0}

            def call(fn_name: str):
                def proxy(*args, **kwargs):
                    # the arguments travel as marshal (exact builtin data; anything else is not transferable)
                    mutable = _has_mutable(args, kwargs)
                    try:
                        req = c.prepare({"op": "call", "fn": fn_name, "args": args, "kwargs": kwargs,
                                         "m": mutable})
                    except Exception as e:  # noqa: BLE001
                        raise TypeError(f"argument not transferable: {e}") from None
                    state["calls"] += 1
                    try:
                        r = c.exchange(*req, deadline)
                        if "exc" in r:
                            etype, text = _field(r, "etype"), _field(r, "exc") or ""
                        if mutable:
                            _copy_back(args, kwargs, r, deadline)
                    except FrameError as e:
                        state["tamper"] = state["tamper"] or str(e)
                        raise
                    if "exc" in r:
                        raise _candidate_exception(etype, text)
                    if "v" not in r:
                        state["tamper"] = "reply without a value"
                        raise FrameError(state["tamper"])
                    try:
                        return _codec.decode(r["v"], deadline=deadline)
                    except Exception as e:  # noqa: BLE001
                        state["tamper"] = f"undecodable value: {e}"
                        raise FrameError(state["tamper"]) from None
                proxy.__name__ = fn_name
                return proxy

            if job["mode"] == "call":   # HumanEval: check(candidate) from the dataset's test code
                results: dict[int, bool] = {}
                ns: dict = {"__name__": "__check__"}
                exec(_plain(job.get("prelude", "")), ns)
                ns[job["entry"]] = call(job["entry"])  # tests may name the function (HumanEval/33 calls sort_third)
                tree, n_tests = _instrument(job["test"])
                ns["__rlvr_assert__"] = _asserter(results)
                # the test module itself may call check(...) (HumanEval-X style) or assert at module level: a
                # candidate's exception there fails the check, as in the original harness
                completed = _guard(lambda: exec(tree, ns), state) and not c.gone
                if completed and callable(ns.get("check")):
                    completed = _guard(lambda: ns["check"](call(job["entry"])), state) and not c.gone
                if not completed:       # the original harness: any exception out of check() fails the whole check
                    res["tests"] = [False] * max(n_tests, 1)
                else:                   # each assert recorded; one never reached (a branch not taken) passed
                    res["tests"] = [results.get(i, True) for i in range(n_tests)] or [True]
            else:                       # MBPP: assert strings naming the program's functions
                # Only the names the tests use that the program defines, and never a builtin's or a dunder's name,
                # become proxies: a program defining `set` or `abs` must not decide `set(f(x)) == {4, 5}` (nor
                # receive the expected value as an argument). The setup code, run after, wins over a proxy.
                used = _used_names(job["asserts"] + [job.get("setup") or ""])
                names = [n for n in _defined_names(job["program"]) if n in used and n not in _BUILTIN_NAMES
                         and not n.startswith("__")]
                ns = {"__name__": "__check__"}
                ns.update({n: call(n) for n in names})
                if job.get("setup"):
                    exec(_plain(job["setup"]), ns)
                tests = []
                for src in job["asserts"]:
                    tree, k = _instrument(src)
                    sub: dict[int, bool] = {}
                    ns["__rlvr_assert__"] = _asserter(sub)
                    calls = state["calls"]
                    done = _guard(lambda: exec(tree, ns), state)
                    done = done and not (c.gone and state["calls"] > calls)  # a call that found no live child
                    # the original harness: the string passes when it runs to the end without an exception
                    tests.append(done and all(sub.get(j, True) for j in range(k)))
                res["tests"] = tests
            if state["tamper"]:
                raise FrameError(state["tamper"])
            if c.leftover():
                raise FrameError("bytes after the last reply")
            res["timed_out"] = c.gone and time.monotonic() >= deadline
        finally:
            c.kill()


class CandidateError(Exception):
    """The candidate raised inside the sandbox (message only; the exception object never crosses). Re-raised in the
    checker as a subclass of the builtin exception type the candidate's was (by name; the candidate may claim any
    builtin Exception type, the same power as raising it), so a test's `except ValueError:` works as in the
    original harness."""


_CANDIDATE_EXC: dict[str, type] = {}


class CandidateBaseError(BaseException):
    """The candidate raised an exception that is not an `Exception` (SystemExit, KeyboardInterrupt, GeneratorExit,
    a class derived from BaseException itself). Re-raised in the checker as a subclass of that builtin type, so a
    test's `except Exception:` does not catch it, as in the original harness, where it ends `check` (and the test
    fails). `_guard` catches it at the end of the test."""


def _candidate_exception(etype: str | None, msg: str) -> BaseException:
    import builtins

    base = getattr(builtins, etype, None) if etype and etype.isidentifier() else None
    if not (isinstance(base, type) and issubclass(base, BaseException)):
        return CandidateError(msg[:200])
    root = CandidateError if issubclass(base, Exception) else CandidateBaseError
    cls = _CANDIDATE_EXC.get(etype)
    if cls is None:
        try:
            cls = type(f"Candidate{etype}", (root, base), {}) if base is not BaseException else root
        except TypeError:       # an incompatible layout
            cls = base
        _CANDIDATE_EXC[etype] = cls
    try:
        return cls(msg[:200])
    except Exception:  # noqa: BLE001 - a constructor that needs other arguments (UnicodeDecodeError, ...)
        return root(msg[:200])


_MUTABLE = (list, dict, set)


def _has_mutable(args: tuple, kwargs: dict) -> bool:
    """Whether a call passes a list, dict or set, which the candidate may change in place."""
    return any(type(a) in _MUTABLE for a in args) or any(type(a) in _MUTABLE for a in kwargs.values())


def _copy_back(args: tuple, kwargs: dict, reply: dict, deadline: float) -> None:
    """In-place changes the candidate made to its list, dict and set arguments, made to the test's own objects.

    The original harnesses call the function in the test's process, so `xs = [3, 1, 2]; f(xs); assert xs == [3, 1,
    2]` sees a sort in place, and `f(xs); assert xs == [1, 2, 3]` sees one that happened. Here the arguments travel
    as a copy, so the child sends back those it changed (`"a"`: asked for only when a list, dict or set is passed;
    an argument counts as changed when its marshal bytes differ after the call; decoded under the same bounds as a
    return value; left out when the reply would pass the 1 MiB frame cap, and the change then stays invisible), and
    the checker applies them: lists and dicts element by element (recursing into nested lists, dicts and sets, so
    the test's inner objects keep their identity), sets as a whole. Values that are not plain data come back
    opaque, as return values do."""
    if "a" not in reply:
        return
    try:
        post = _codec.decode(reply["a"], deadline=deadline)
    except Exception as e:  # noqa: BLE001
        raise FrameError(f"undecodable arguments: {e}") from None
    if type(post) is not dict or set(post) != {"p", "k"} or type(post["p"]) is not dict or \
            type(post["k"]) is not dict or not all(type(i) is int and 0 <= i < len(args) for i in post["p"]) or \
            not all(k in kwargs for k in post["k"]):
        raise FrameError("malformed arguments")
    for i, b in post["p"].items():
        _sync(args[i], b)
    for k, b in post["k"].items():
        _sync(kwargs[k], b)


def _sync(orig, new) -> bool:
    """Make `orig` (a list, dict or set of the test's) equal to `new` in place; False when it is not one of them or
    `new` is not of its type (the caller then replaces the element). `new` is bounded in depth by the codec."""
    t = type(orig)
    if t is not type(new):
        return False
    if t is list:
        for i in range(min(len(orig), len(new))):
            if not _sync(orig[i], new[i]):
                orig[i] = new[i]
        del orig[len(new):]
        orig.extend(new[len(orig):])
        return True
    if t is dict:
        for k in [k for k in orig if k not in new]:
            del orig[k]
        for k, v in new.items():
            if not (k in orig and _sync(orig[k], v)):
                orig[k] = v
        return True
    if t is set:
        if orig != new:
            orig.clear()
            orig.update(new)
        return True
    return False


def _guard(fn, state: dict) -> bool:
    try:
        fn()
        return True
    except FrameError as e:
        state["tamper"] = str(e)
        return False
    except ChildGone:
        return False
    except BaseException:  # noqa: BLE001 - the test's own failure (a candidate exception, SystemExit included, a
        return False       # failed non-split check, the checker's own deadline: `CheckerDeadline`)


def _asserter(results: dict[int, bool]):
    def check(i: int, cond) -> None:
        try:
            ok = bool(cond())
        except (FrameError, ChildGone):
            results[i] = False
            raise
        except Exception:  # noqa: BLE001
            ok = False
        results[i] = results.get(i, True) and ok
    return check


_AST: list = []   # [ast module, _AssertRewriter]: imported on first use, in the checker after its zygote is forked


def _ast():
    """The `ast` module, imported when the checker first needs it: never in the zygote, so no child's page tables
    carry it (each fork copies the zygote's page tables, and each exit tears them down)."""
    if not _AST:
        import ast

        class _AssertRewriter(ast.NodeTransformer):
            """`assert TEST, MSG` -> `__rlvr_assert__(i, lambda: TEST)`: every assert is recorded (not raised), so one
            failed assert does not hide the others. `assert <true constant>` (HumanEval's `assert True, "..."`) is not
            a test and becomes `pass`; `assert <false constant>` (the must-raise idiom `try: f(-1)` / `except
            ValueError: pass` / `else: assert False`) stays a test that fails whenever it is reached."""

            def __init__(self):
                self.n = 0

            def visit_Assert(self, node: ast.Assert):
                if isinstance(node.test, ast.Constant) and node.test.value:
                    return ast.copy_location(ast.Pass(), node)
                i = self.n
                self.n += 1
                call = ast.Call(ast.Name("__rlvr_assert__", ast.Load()),
                                [ast.Constant(i), ast.Lambda(ast.arguments([], [], None, [], [], None, []), node.test)],
                                [])
                return ast.copy_location(ast.Expr(call), node)

        _AST[:] = [ast, _AssertRewriter]
    return _AST[0]


_COMPILED: dict[str, tuple] = {}


def _instrument(src: str):
    """(code object, number of asserts) for trusted test source, cached: RL revisits the same problems."""
    hit = _COMPILED.get(src)
    if hit is None:
        ast = _ast()
        rw = _AST[1]()
        tree = ast.fix_missing_locations(rw.visit(ast.parse(src)))
        if len(_COMPILED) > 4096:
            _COMPILED.clear()
        hit = _COMPILED[src] = (compile(tree, "<test>", "exec"), rw.n)
    return hit


def _plain(src: str):
    """Compiled trusted code (the prompt's helpers, MBPP imports), cached, asserts left as they are."""
    key = "\0plain\0" + src
    hit = _COMPILED.get(key)
    if hit is None:
        hit = _COMPILED[key] = compile(src, "<prelude>", "exec")
    return hit


def _count_tests(job: dict) -> int:
    if job["mode"] == "call":
        return _instrument(job["test"])[1]
    return len(job["asserts"])


_BUILTIN_NAMES = frozenset(dir(__import__("builtins")))
_USED: dict[tuple, frozenset] = {}


def _used_names(asserts: list[str]) -> frozenset:
    """Every name the (trusted) test strings read, cached."""
    key = tuple(asserts)
    hit = _USED.get(key)
    if hit is None:
        names = set()
        ast = _ast()
        for src in asserts:
            try:
                names |= {n.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Name)}
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                pass
        if len(_USED) > 4096:
            _USED.clear()
        hit = _USED[key] = frozenset(names)
    return hit


def _defined_names(program: str) -> list[str]:
    """Top-level names the program binds by def, class or a plain `name = ...` (a lambda)."""
    ast = _ast()
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    out = []
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(n.name)
        elif isinstance(n, ast.Assign):
            out += [t.id for t in n.targets if isinstance(t, ast.Name)]
    return out


_INT_TOKEN = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_TOKEN = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?\Z")


def _same_output(got: str, expected: str, tol: float = 1e-6) -> bool:
    """Line by line after stripping trailing whitespace and trailing blank lines; the line counts must match (a prefix
    of the expected output is not a pass). Tokens equal as text; only where the *expected* token is a decimal float
    literal (a point or an exponent: `0.3`, `1e-9`) may the output's token be any decimal number within `tol`
    (absolute or relative). Integer tokens and everything else compare exactly: `1000001000` is not `1000000000`."""
    a = [ln.rstrip() for ln in got.rstrip().splitlines()]
    b = [ln.rstrip() for ln in expected.rstrip().splitlines()]
    if len(a) != len(b):
        return False
    for la, lb in zip(a, b):
        if la == lb:
            continue
        ta, tb = la.split(), lb.split()
        if len(ta) != len(tb):
            return False
        for x, y in zip(ta, tb):
            if x == y:
                continue
            if len(y) > 400 or len(x) > 400 or not _FLOAT_TOKEN.match(y) or not (
                    _FLOAT_TOKEN.match(x) or _INT_TOKEN.match(x)):
                return False
            fx, fy = float(x), float(y)
            if not (math.isfinite(fx) and math.isfinite(fy) and math.isclose(fx, fy, rel_tol=tol, abs_tol=tol)):
                return False
    return True


def remove_tree(path: str) -> bool:
    """Remove a folder the candidate wrote, whatever it made of it, without recursion and with two fds open at a
    time: every subfolder is first renamed to the top level (so a 10,000-deep tree is flattened, never walked by
    path, which would hit PATH_MAX, the fd limit or the recursion limit), folders made unreadable are chmodded
    back, symlinks are removed, never followed. Never raises; returns whether `path` is gone."""
    if _rmdir(path):
        return True
    for _ in range(3):  # a dying child may still be writing: retry the sweep
        try:
            _sweep(path)
        except OSError:
            pass
        if _rmdir(path):
            return True
    try:
        os.unlink(path)  # a symlink or a file where the folder was
        return True
    except OSError:
        return False


def _rmdir(path: str) -> bool:
    """rmdir that reports whether `path` is gone (already absent counts); never raises."""
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _sweep(path: str) -> None:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.chmod(path, 0o700, follow_symlinks=False)
    except OSError:
        pass
    root = os.open(path, flags)
    try:
        pending, serial = [None], 0        # None: the root itself; else a folder's name in the root
        while pending:
            name = pending.pop()
            if name is not None:
                try:
                    os.chmod(name, 0o700, dir_fd=root, follow_symlinks=False)
                except (OSError, NotImplementedError):
                    pass
            try:
                fd = root if name is None else os.open(name, flags, dir_fd=root)
            except OSError:
                continue
            try:
                with os.scandir(fd) as it:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
                for ename, is_dir in entries:
                    try:
                        if not is_dir:
                            os.unlink(ename, dir_fd=fd)
                        elif name is None:
                            pending.append(ename)
                        else:
                            while True:
                                serial += 1
                                new = f".rlvr-rm-{serial}"
                                try:
                                    os.rename(ename, new, src_dir_fd=fd, dst_dir_fd=root)
                                    break
                                except OSError as e:
                                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                                        raise
                            pending.append(new)
                    except OSError:
                        continue
            finally:
                if fd != root:
                    os.close(fd)
            if name is not None:
                try:
                    os.rmdir(name, dir_fd=root)
                except OSError:
                    pass
    finally:
        os.close(root)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if len(sys.argv) < 3:
        # No PR_SET_PDEATHSIG here: the pool's death closes stdin, which ends the loop below; inside bwrap,
        # --die-with-parent (set from the pool's long-lived spawner thread) kills the whole sandbox with the pool.
        os.makedirs(cfg["scratch_root"], exist_ok=True)
        if cfg["tier"] in ("bwrap", "landlock"):
            _Z["isolation"] = _lockdown.isolate_worker(cfg["scratch_root"], cfg["scratch_bytes"],
                                                       cfg["scratch_inodes"])
        zygote = _start_zygote(cfg)
        # The zygote, and so every child, holds this interpreter's string-hash secret (fork copies it), so a job
        # could build strings or bytes that all hash alike in a set of the checker's. The checker therefore starts
        # over as a fresh interpreter, with a secret of its own (python -I ignores PYTHONHASHSEED), keeping only
        # its pipes to the pool, the zygote's socket and a few facts about the worker. The zygote stays its child.
        # (What the checker sends a child can still depend on its secret: the order of a set of strings passed as an
        # argument. That shows a few low bits of keyed SipHash values, which does not let anyone build collisions.)
        os.set_inheritable(zygote.fileno(), True)
        state = {"fd": zygote.fileno(), "z": {k: _Z[k] for k in ("isolation", "threads", "landlock_abi", "pid")
                                              if k in _Z}}
        argv = getattr(sys, "orig_argv", None)   # [interpreter, -I, -S, -c, bootstrap, folder, config]
        if not argv:
            with open("/proc/self/cmdline", "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
        os.execv(sys.executable, [sys.executable, *argv[1:], json.dumps(state)])
    state = json.loads(sys.argv[2])
    _Z.update(state["z"])
    zygote = _socket.socket(fileno=state["fd"])
    os.set_inheritable(state["fd"], False)
    sys.setrecursionlimit(10_000)
    _ALARM["own"] = frozenset({_serve.__code__.co_filename, _codec.decode.__code__.co_filename})
    _signal.signal(_signal.SIGALRM, _on_alarm)
    checker = _Checker(cfg, zygote)
    gc.freeze()   # the checker's start-up objects: its collections walk only what its jobs allocate
    # The pool's pipes move to private fds, and fds 0 and 1 become /dev/null: the dataset's test code runs in this
    # process, and what it prints (a candidate's return value included) must not reach the result channel.
    inp, out = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = open(os.devnull, "w")
    sys.stdin = open(os.devnull)
    iso = _Z.get("isolation", {})
    _send(out, {"ready": True, "landlock_abi": _Z.get("landlock_abi", 0), "pid": os.getpid(),
                "scratch_capped": bool(iso.get("scratch_capped")), "isolation_error": iso.get("error"),
                "threads": _Z["threads"]})
    while True:
        try:
            job = _recv(inp, None, max_len=1 << 28)
        except (EOFError, OSError, FrameError):
            break
        try:
            res = checker.run(job)
        except BaseException as e:  # noqa: BLE001 - a bad job must not kill the worker
            res = {"tests": [], "tamper": False, "timed_out": False, "error": _clean(f"{type(e).__name__}: {e}"),
                   "sandbox_failure": True}
        res["id"] = job.get("id")
        _send(out, res)
    if not _Z.get("isolation", {}).get("scratch_capped"):
        remove_tree(cfg["scratch_root"])  # else the worker's own tmpfs, which goes with its mount namespace


if __name__ == "__main__":
    main()
