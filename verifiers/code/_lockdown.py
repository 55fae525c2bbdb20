"""Per-job lockdown of a sandbox child: rlimits, capabilities, Landlock, seccomp (Linux, x86_64 / aarch64).

Everything here runs in the forked child just before it reads the candidate's code; the expensive parts (the
seccomp BPF program, the O_PATH handles of the readable directories) are prepared once in the zygote and inherited
through fork. See `verifiers/code/sandbox.py` for the threat model and `shared/research/sandbox.md` for the attacks
each piece stops. Landlock: kernel docs, Documentation/userspace-api/landlock.rst (ABI 1-7); seccomp: seccomp(2).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_ARCH = platform.machine()
# landlock_create_ruleset / add_rule / restrict_self share numbers on x86_64 and aarch64 (generic table)
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
SYS_CAPSET = 126 if _ARCH == "x86_64" else 91
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# Landlock access rights (ABI 1..7)
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_REMOVE_DIR, _FS_REMOVE_FILE, _FS_MAKE_CHAR, _FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
_FS_MAKE_REG, _FS_MAKE_SOCK, _FS_MAKE_FIFO, _FS_MAKE_BLOCK, _FS_MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_RULE_PATH_BENEATH = 1
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 = unavailable)."""
    v = _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(v), 0)


def _fs_rights(abi: int) -> int:
    r = (1 << 13) - 1            # ABI 1: bits 0-12
    if abi >= 2:
        r |= _FS_REFER
    if abi >= 3:
        r |= _FS_TRUNCATE
    if abi >= 5:
        r |= _FS_IOCTL_DEV
    return r


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def open_paths(paths: list[str]) -> list[tuple[int, bool]]:
    """O_PATH handles (fd, is_dir) for Landlock rules, opened once in the zygote; missing paths are skipped."""
    out = []
    for p in paths:
        try:
            fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        out.append((fd, os.path.isdir(p)))
    return out


def _ruleset(handled_fs: int, handled_net: int, scoped: int, abi: int) -> int:
    attr = _RulesetAttr(handled_fs, handled_net, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    rs = _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rs < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    return int(rs)


def _add_rule(rs: int, fd: int, access: int) -> None:
    pb = _PathBeneath(access, fd)
    if _syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(rs), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(pb),
                ctypes.c_uint32(0)) < 0:
        raise OSError(ctypes.get_errno(), "landlock_add_rule")


def base_ruleset(abi: int, read_fds: list[tuple[int, bool]], scratch_root: str) -> int:
    """Layer 1, built once in the zygote (adding ~200 rules costs ~0.8 ms; applying a ready ruleset is one
    syscall): read + execute beneath `read_fds`, everything beneath `scratch_root`, nothing else on the filesystem;
    no TCP bind/connect (ABI >= 4); no signals to, and no abstract unix sockets of, processes outside the sandbox
    (ABI >= 6). Returns the ruleset fd."""
    fs = _fs_rights(abi)
    rs = _ruleset(fs, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
                  (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0, abi)
    read = (_FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR) & fs
    for fd, is_dir in read_fds:
        _add_rule(rs, fd, read if is_dir else read & _FILE_RIGHTS)
    root = os.open(scratch_root, os.O_PATH | os.O_CLOEXEC)
    try:
        _add_rule(rs, root, fs)
    finally:
        os.close(root)
    return rs


def restrict(ruleset_fd: int) -> None:
    if _syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0)) < 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")


def landlock(abi: int, base_fd: int, write_dir: str) -> None:
    """Apply layer 1 (`base_ruleset`), then layer 2: write access (create, write, remove, truncate, rename) only
    beneath this job's `write_dir`. Landlock intersects layers, so the job reads what layer 1 allows and writes
    only its own scratch folder (not a sibling job's). Raises OSError if the kernel refuses."""
    restrict(base_fd)
    fs = _fs_rights(abi)
    write = fs & ~(_FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR)
    rs = _ruleset(write, 0, 0, abi)
    try:
        wfd = os.open(write_dir, os.O_PATH | os.O_CLOEXEC)
        _add_rule(rs, wfd, write)
        os.close(wfd)
        restrict(rs)
    finally:
        os.close(rs)


# ------------------------------------------------------------------------------------------------ seccomp

_DENY_EPERM = [
    "socket", "socketpair", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
    "chroot", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "syslog", "personality",
    "open_by_handle_at", "name_to_handle_at", "setrlimit", "prlimit64", "fork", "vfork", "execve", "execveat",
    "capset", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "fanotify_init",
    "mknod", "mknodat", "quotactl", "iopl", "ioperm", "move_pages", "migrate_pages", "mbind", "set_mempolicy",
]
_CLONE_THREAD = 0x00010000
_CLONE_NS_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080]


def seccomp_program() -> bytes:
    """The BPF program (built once with libseccomp through pyseccomp): default allow; EPERM on sockets, process
    creation (fork, vfork, clone without CLONE_THREAD or with a namespace flag), exec, ptrace and cross-process
    memory access, privilege and rlimit changes, kernel-level operations (mount, modules, bpf, io_uring, ...),
    and `kill` of a process group or of every process (pid <= 0); ENOSYS on clone3 so glibc falls back to clone."""
    import tempfile

    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    for name in _DENY_EPERM:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except Exception:  # syscall absent on this architecture (e.g. fork on aarch64)
            continue
    f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    for flag in _CLONE_NS_FLAGS:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for name in ("kill", "tkill"):
        f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.EQ, 0))
        f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.GT, 0x7FFFFFFF))  # negative pids (sign-extended)
    f.add_rule(sc.ERRNO(errno.EPERM), "tgkill", sc.Arg(0, sc.GT, 0x7FFFFFFF))
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.seek(0)
        return fh.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program: bytes) -> None:
    """Install a BPF program exported by `seccomp_program` (needs no_new_privs, set by `drop_privileges`)."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def drop_privileges() -> None:
    """no_new_privs, and every capability dropped (effective, permitted, inheritable): a root sandbox keeps uid 0
    but loses CAP_KILL, CAP_DAC_OVERRIDE, CAP_SYS_ADMIN and the rest."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    header = struct.pack("Ii", 0x20080522, 0)          # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)                                    # two zeroed __user_cap_data_struct
    if _syscall(SYS_CAPSET, ctypes.c_char_p(header), ctypes.c_char_p(data)) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def set_rlimits(*, address_space: int, cpu_seconds: int, file_size: int, open_files: int) -> None:
    """Hard and soft limits (bytes / seconds / count). CPU: SIGXCPU at the soft limit, SIGKILL one second later."""
    for res, val in ((resource.RLIMIT_AS, address_space), (resource.RLIMIT_FSIZE, file_size),
                     (resource.RLIMIT_NOFILE, open_files), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (val, val))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def seccomp_available() -> bool:
    try:
        seccomp_program()
        return True
    except Exception:
        return False
