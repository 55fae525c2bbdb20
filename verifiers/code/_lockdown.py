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
import resource
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_ARCH = os.uname().machine
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


def landlock_folder(abi: int, write_dir: str) -> None:
    """Layer 2, after layer 1 (`restrict(base_ruleset)`): write access (create, write, remove, truncate, rename) only
    beneath this job's `write_dir`. Landlock intersects layers, so the job reads what layer 1 allows and writes only
    its own folder. Raises OSError if the kernel refuses. (Neither layer needs the other's syscalls allowed by
    seccomp: the landlock calls stay allowed, so layer 2 can come after the filter.)"""
    FolderLayer(abi).apply(write_dir)


class FolderLayer:
    """`landlock_folder` with its structures built once (in the zygote) and reused by every forked child: a child
    then pays only the syscalls (create a ruleset, open the folder, add the rule, restrict itself, two closes).

    The layer is scoped (ABI >= 6: signals, abstract unix sockets) like layer 1. Layer 1 is applied once in the
    zygote, so the zygote and every child share its domain, and Landlock lets a process signal any process of its
    own domain or one nested in it: without a scope of its own, a child could signal the zygote and the next,
    pre-forked child. With it, each child's domain is its own, as when each child applied layer 1 itself."""

    def __init__(self, abi: int):
        fs = _fs_rights(abi)
        self.write = fs & ~(_FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR)
        self._attr = _RulesetAttr(self.write, 0, (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0)
        self._args = (ctypes.byref(self._attr),
                      ctypes.c_size_t(ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)),
                      ctypes.c_uint32(0))
        self._pb = _PathBeneath(self.write, -1)
        self._pb_ref = ctypes.byref(self._pb)
        self._rule = ctypes.c_int(_RULE_PATH_BENEATH)
        self._zero = ctypes.c_uint32(0)

    def apply(self, write_dir: str) -> None:
        rs = _syscall(SYS_LANDLOCK_CREATE_RULESET, *self._args)
        if rs < 0:
            raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
        try:
            wfd = os.open(write_dir, os.O_PATH | os.O_CLOEXEC)
            try:
                self._pb.parent_fd = wfd
                if _syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(rs), self._rule, self._pb_ref, self._zero) < 0:
                    raise OSError(ctypes.get_errno(), "landlock_add_rule")
            finally:
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
    "pidfd_getfd", "process_madvise", "kcmp", "fsopen", "fsmount", "fspick", "fsconfig", "move_mount", "open_tree",
    "mount_setattr",
    # metadata: Landlock has no right for it, and a sandbox keeping the host's uid owns the host's files (chmod and
    # utime: `_NOOP`, a success that changes nothing)
    "chown", "fchown", "lchown", "fchownat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr",
    # System V IPC and POSIX message queues: kernel objects that outlive the job (and, without an IPC namespace of
    # its own, the pool); POSIX shared memory and semaphores are files in /dev/shm, which Landlock already denies
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop",
    "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # another process's I/O priority
    "ioprio_set",
    # kernel objects that no rlimit counts: memfd buffers (not in RLIMIT_AS: a job held 1.5 GiB past the 1 GiB
    # cap), AIO contexts (the host-wide fs.aio-nr: one job took all 65,536 and every other process's io_setup
    # failed), inotify instances (fs.inotify.max_user_instances, per uid: the trainer's too)
    "memfd_create", "memfd_secret", "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents",
    "io_pgetevents", "inotify_init", "inotify_init1",
]
# chmod and utime succeed without doing anything: the metadata of host files must not change (see above), and the
# standard library's copies inside the job's folder (shutil.copy: copymode, shutil.copy2: copystat) must not fail.
# The mode and times of the job's own files therefore stay as created.
_NOOP = ["chmod", "fchmod", "fchmodat", "utime", "utimes", "futimesat", "utimensat"]
# syscalls newer than some libseccomp releases know by name (same numbers on x86_64 and aarch64)
_DENY_NUMBERS = {"setxattrat": 463, "removexattrat": 466, "memfd_secret": 447}
_NOOP_NUMBERS = {"fchmodat2": 452}
# scheduling calls allowed on the calling thread only (first argument 0): a job may renice or re-pin itself, never
# another process of its uid (the trainer's, as root every process)
_SELF_ONLY = ["sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr"]
# ioctl is an allow list (`ioctl_program`): every request not named here fails with ENOTTY, as on a file that does
# not support it. The list is what the standard library itself issues on the fds a job can have (its files, pipes,
# /dev/null); none changes anything outside the calling process's own fds. The deny list it replaces missed the
# inode-version ioctls (FS_IOC_SETVERSION, accepted on host files in the landlock tier as root).
IOCTL_ALLOW = {
    0x5401: "TCGETS: isatty(), tcgetattr() (every open() asks, for buffering)",
    0x802C542A: "TCGETS2: tcgetattr() in newer glibc",
    0x5413: "TIOCGWINSZ: os.get_terminal_size()",
    0x540F: "TIOCGPGRP: os.tcgetpgrp()",
    0x541B: "FIONREAD: bytes waiting on a pipe",
    0x5421: "FIONBIO: non-blocking mode of the caller's own fd",
    0x5450: "FIONCLEX: os.set_inheritable(fd, True)",
    0x5451: "FIOCLEX: os.set_inheritable(fd, False)",
}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_IOCTL_NR = {"x86_64": 16, "aarch64": 29}
_CLONE_THREAD = 0x00010000
_CLONE_NS_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080]


# What the zygote itself still needs (it forks the children and hands each one's socket over); denied by the
# children's own small filter, loaded right after fork. The two filters stack: a child runs under both, which together
# are exactly the deny list above (every rule is in one of them).
_CHILD_ONLY = ["socketpair", "fork", "vfork", "setrlimit", "prlimit64"]


def seccomp_program(threads: bool = True, part: str = "all") -> bytes:
    """The BPF program (built once with libseccomp through pyseccomp): default allow; EPERM on sockets, process
    creation (fork, vfork, clone without CLONE_THREAD or with a namespace flag; with `threads=False` every clone),
    exec, ptrace and cross-process memory or fd access, privilege and rlimit changes, kernel-level operations
    (mount, modules, bpf, io_uring, ...), metadata changes (chown and xattrs; chmod and utime return success and do
    nothing, `_NOOP`), System V IPC and POSIX message queues, kernel objects no rlimit counts (memfd, AIO contexts,
    inotify instances), scheduling changes to any process but the caller, and `kill` of a process group or of every
    process (pid <= 0); ENOSYS on clone3 so glibc falls back to clone. ioctl (inode flags included) is limited by a
    second program, `ioctl_program`, an allow list.

    `part`: "all" (the whole list in one program), "zygote" (all but `_CHILD_ONLY` and the clone rules: installed
    once in the zygote, inherited by every child through fork), or "child" (only `_CHILD_ONLY` and the clone rules:
    each child installs it after its rlimits; a short program, so loading it per fork is cheap, where the whole list
    cost each child ~0.15-0.3 ms of JIT and syscall-cache preparation)."""
    import tempfile

    import pyseccomp as sc

    if part not in ("all", "zygote", "child"):
        raise ValueError(f"part must be all, zygote or child, got {part!r}")
    zygote, child = part in ("all", "zygote"), part in ("all", "child")
    f = sc.SyscallFilter(sc.ALLOW)
    done = set()
    for name in _DENY_EPERM:
        if not (child if name in _CHILD_ONLY else zygote):
            continue
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
            done.add(name)
        except Exception:  # syscall absent on this architecture (e.g. fork on aarch64) or unknown to libseccomp
            continue
    if zygote:
        for name, nr in _DENY_NUMBERS.items():
            if name not in done:
                f.add_rule(sc.ERRNO(errno.EPERM), nr)
        for name in _NOOP:
            try:
                f.add_rule(sc.ERRNO(0), name)
                done.add(name)
            except Exception:  # noqa: BLE001 - absent on this architecture
                continue
        for name, nr in _NOOP_NUMBERS.items():
            try:
                f.add_rule(sc.ERRNO(0), name)
            except Exception:  # noqa: BLE001 - unknown to this libseccomp: by number
                f.add_rule(sc.ERRNO(0), nr)
    if child:
        if threads:
            f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
            for flag in _CLONE_NS_FLAGS:
                f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        else:
            f.add_rule(sc.ERRNO(errno.EPERM), "clone")
    if zygote:
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for name in ("kill", "tkill"):
            f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.EQ, 0))
            f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.GT, 0x7FFFFFFF))  # negative pids (sign-extended)
        f.add_rule(sc.ERRNO(errno.EPERM), "tgkill", sc.Arg(0, sc.GT, 0x7FFFFFFF))
        for name in _SELF_ONLY:
            f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.NE, 0))
        f.add_rule(sc.ERRNO(errno.EPERM), "setpriority", sc.Arg(0, sc.NE, 0))   # PRIO_PGRP, PRIO_USER
        f.add_rule(sc.ERRNO(errno.EPERM), "setpriority", sc.Arg(1, sc.NE, 0))   # another process
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def ioctl_program(arch: str = _ARCH) -> bytes:
    """A second, hand-assembled BPF program, stacked on the first (the kernel applies the stricter result): ioctl
    with a request in `IOCTL_ALLOW` is allowed, any other ioctl fails with ENOTTY (x32 system calls, numbered from
    0x40000000, fail too). libseccomp cannot say "none of these values" for one argument, hence the raw program.
    The request is an `unsigned int` (the kernel ignores the upper 32 bits), so only the low word is compared."""
    if arch not in _AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"no ioctl filter for {arch}")
    LD_ABS, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.ENOTTY
    reqs = sorted(IOCTL_ALLOW)
    n = len(reqs)
    # 0 ld arch; 1 jeq arch; 2 ld nr; 3 jge x32 -> deny; 4 jeq ioctl; 5 ld args[1] (low word);
    # 6..6+n-1 jeq req -> allow; 6+n ret deny; 7+n ret allow
    deny_at, allow_at = 6 + n, 7 + n
    prog = [(LD_ABS, 0, 0, 4), (JEQ, 0, allow_at - 2, _AUDIT_ARCH[arch]), (LD_ABS, 0, 0, 0),
            (JGE, deny_at - 4, 0, 0x40000000 if arch == "x86_64" else 0xFFFFFFFF),
            (JEQ, 0, allow_at - 5, _IOCTL_NR[arch]),
            (LD_ABS, 0, 0, 24)]
    for i, r in enumerate(reqs):
        prog.append((JEQ, allow_at - (6 + i) - 1, 0, r))
    prog += [(RET, 0, 0, deny), (RET, 0, 0, allow)]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program: bytes) -> None:
    """Install a BPF program exported by `seccomp_program` (needs no_new_privs, set by `drop_privileges`)."""
    PreparedFilter(program).load()


class PreparedFilter:
    """A BPF program's `sock_fprog`, built once (in the zygote): each forked child installs it with one prctl, without
    making a ctypes array type of its own."""

    def __init__(self, program: bytes):
        self._buf = ctypes.create_string_buffer(program, len(program))
        self._prog = _SockFprog(len(program) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        self._ref = ctypes.byref(self._prog)

    def load(self) -> None:
        if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._ref, 0, 0) != 0:
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


def set_rlimits(*, address_space: int, cpu_seconds: int, file_size: int, open_files: int,
                processes: int | None = None) -> None:
    """Hard and soft limits (bytes / seconds / count). CPU: SIGXCPU at the soft limit, SIGKILL one second later.
    `processes` (RLIMIT_NPROC) counts the tasks, threads included, of this uid in this user namespace; the kernel
    ignores it for the host's root (kuid 0), which is why the pool uses a pids cgroup there."""
    set_shared_rlimits(address_space=address_space, file_size=file_size, open_files=open_files)
    set_own_rlimits(cpu_seconds=cpu_seconds, processes=processes)


def set_shared_rlimits(*, address_space: int, file_size: int, open_files: int) -> None:
    """The limits a zygote can hold itself and hand to every child through fork: address space, file size, open
    files, no core dumps."""
    for res, val in ((resource.RLIMIT_AS, address_space), (resource.RLIMIT_FSIZE, file_size),
                     (resource.RLIMIT_NOFILE, open_files), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (val, val))


def set_own_rlimits(*, cpu_seconds: int, processes: int | None = None) -> None:
    """The limits each child sets for itself: CPU time (counted per process from its fork) and RLIMIT_NPROC (which a
    zygote holding it would apply to its own forks)."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    if processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


# ------------------------------------------------------------------------------------------------ the worker

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 1 << 14, 1 << 18


def _unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unshare: {os.strerror(e)}")


def _mount(source, target, fstype, flags: int, data) -> None:
    enc = (lambda x: x.encode() if isinstance(x, str) else x)
    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {target}: {os.strerror(e)}")


def _enter_namespaces(uid: int, gid: int, userns: bool) -> None:
    if not userns:
        _unshare(CLONE_NEWNS | CLONE_NEWIPC)
        return
    _unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _works_in_a_child(fn) -> bool:
    """Whether `fn` succeeds, tried in a forked child first: a user namespace half set up (unshared, its uid map
    refused) cannot be left again, so the worker itself only enters one that is known to work."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def isolate_worker(scratch_root: str, size_bytes: int, inodes: int) -> dict:
    """Run once in the worker before its zygote exists: a mount and an IPC namespace of its own (with a user
    namespace of its own when it lacks CAP_SYS_ADMIN: an ordinary user, or inside an unprivileged bwrap), and a
    fresh tmpfs of `size_bytes` and `inodes` over `scratch_root`, private to this worker and gone with it.
    Returns what holds: {"scratch_capped", "own_userns", "error"}."""
    out = {"scratch_capped": False, "own_userns": False, "error": None}
    uid, gid = os.getuid(), os.getgid()
    opts = f"size={max(size_bytes, 1 << 20)},nr_inodes={max(inodes, 64)},mode=0700"

    def setup(userns: bool) -> None:
        _enter_namespaces(uid, gid, userns)
        _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
        _mount("tmpfs", scratch_root, "tmpfs", MS_NOSUID | MS_NODEV, opts)

    for userns in (False, True):
        if not _works_in_a_child(lambda: setup(userns)):
            continue
        try:
            setup(userns)
        except OSError as e:
            out["error"] = str(e)
            return out
        out["scratch_capped"], out["own_userns"] = True, userns
        return out
    out["error"] = "neither a mount namespace nor a user namespace could be created"
    return out


def seccomp_available() -> bool:
    try:
        seccomp_program()
        return True
    except Exception:
        return False
