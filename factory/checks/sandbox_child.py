"""The code sandbox's child program (one per sandboxed process).

Run by factory.checks.code as `python -s -S -P -B <this file>`, so it sees the stdlib only:
it imports nothing from the factory package, and nothing here runs on import (tests import
it for its pure helpers).  It reads its config (marshal) from stdin, isolates itself, then
plays one role:

  * probe      sets up what it can and writes which layers held (marshal) to stdout;
  * candidate  execs the candidate code and serves calls ("call f(args)" -> value);
  * tests      execs the tests with the candidate's functions bound to proxies and writes
               "PASS\\t<nonce>" to its result pipe only if they ran to the end.

Isolation modes (cfg["mode"]; docs/sandbox.md has the threat model):
  * "ns"   namespaces.  As root: new mount/network/PID/IPC namespaces, a whitelist root,
           then a drop to a throwaway uid.  Not root: the same inside a new user namespace
           (our uid mapped to 0 there), then every capability dropped.
  * "lsm"  no namespaces: Landlock (read-only whitelist, the run's folder writable, no TCP,
           no signals or ptrace out of the domain) and seccomp (no socket(), no setsid, no
           ptrace, kill only inside the run).  As root, after the uid drop.
  * "weak" none of that (only with allow_weak_sandbox): limits and an audit-hook socket block.
"""

import marshal
import os
import resource
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 1, 4, 24, 28
PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 22, 38, 47
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18

CFG: dict = {}
HELD: dict = {}
SOURCES: dict = {}


# ---------------------------------------------------------------------- pure helpers
def frame(data: bytes, kind: bytes = b"M") -> bytes:
    """One message on a pipe: kind (1 byte), length (4 bytes, big endian), data."""
    return kind + len(data).to_bytes(4, "big") + data


PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set,
               frozenset)


class ProtocolError(Exception):
    pass


def plain_data(data: bytes):
    """Decode a reply from the candidate: marshal of builtin data types only.  Anything
    else (a code object, an object whose __eq__ lies) is a protocol violation."""
    try:
        v = marshal.loads(data)
    except Exception as e:
        raise ProtocolError("undecodable reply from the candidate (%s)" % type(e).__name__)
    stack, seen = [v], set()
    while stack:
        x = stack.pop()
        if type(x) not in PLAIN_TYPES:
            raise ProtocolError("reply from the candidate holds a %s" % type(x).__name__)
        if isinstance(x, (tuple, list, set, frozenset)):
            if id(x) not in seen:
                seen.add(id(x))
                stack.extend(x)
        elif isinstance(x, dict):
            if id(x) not in seen:
                seen.add(id(x))
                stack.extend(x.keys())
                stack.extend(x.values())
    return v


def where(tb, filename: str, sources: dict) -> str:
    """'candidate line 3: return x' for the innermost frame of `filename` in a traceback."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None:
        return ""
    lines = sources.get(filename, "").splitlines()
    src = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return "%s line %d: %s" % (filename.strip("<>"), line, src[:120])


# seccomp: syscall numbers per architecture (audit arch, numbers)
SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, {"socket": 41, "ptrace": 101, "process_vm_readv": 310,
                            "process_vm_writev": 311, "pidfd_send_signal": 424,
                            "setsid": 112, "kill": 62, "tkill": 200, "tgkill": 234}),
    "aarch64": (0xC00000B7, {"socket": 198, "ptrace": 117, "process_vm_readv": 270,
                             "process_vm_writev": 271, "pidfd_send_signal": 424,
                             "setsid": 157, "kill": 129, "tkill": 130, "tgkill": 131}),
}
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM, EACCES = 1, 13


def seccomp_program(arch: str, mypid: int, restrict_kill: bool) -> list:
    """A classic-BPF seccomp filter as (code, jt, jf, k) tuples.

    Denied with an errno: socket() of every family (socketpair stays), ptrace,
    process_vm_readv/writev, pidfd_send_signal, setsid (every process of the run stays in
    its session, so cleanup finds it).  With restrict_kill: kill() only to 0, mypid and
    -mypid (our session leader's group), tkill/tgkill only to mypid (raise() in the main
    process) -- for kernels whose Landlock cannot scope signals.  A foreign architecture
    or x32 syscall is denied outright."""
    audit_arch, nr = SECCOMP_ARCHES[arch]
    deny = [nr[n] for n in ("ptrace", "process_vm_readv", "process_vm_writev",
                            "pidfd_send_signal", "setsid")]
    me, neg_me = mypid & 0xFFFFFFFF, (-mypid) & 0xFFFFFFFF
    # (op, k, jump-if-true label, jump-if-false label); ("label", name) marks a target
    body = [("ld", 4), ("jeq", audit_arch, None, "EPERM"),  # seccomp_data.arch
            ("ld", 0),  # seccomp_data.nr
            ("jge", 0x40000000, "EPERM", None),  # x32 syscalls
            ("jeq", nr["socket"], "EACCES", None)]
    body += [("jeq", n, "EPERM", None) for n in deny]
    if restrict_kill:
        body += [("jeq", nr["kill"], "KILLCHK", None),
                 ("jeq", nr["tkill"], "TKILLCHK", None),
                 ("jeq", nr["tgkill"], "TKILLCHK", None)]
    body += [("label", "ALLOW"), ("ret", SECCOMP_RET_ALLOW),
             ("label", "EPERM"), ("ret", SECCOMP_RET_ERRNO | EPERM),
             ("label", "EACCES"), ("ret", SECCOMP_RET_ERRNO | EACCES)]
    if restrict_kill:
        # BPF jumps only forward: these blocks end in their own returns
        body += [("label", "KILLCHK"), ("ld", 16),  # low half of args[0] (pid_t is an int)
                 ("jeq", 0, "ALLOW2", None), ("jeq", me, "ALLOW2", None),
                 ("jeq", neg_me, "ALLOW2", "EPERM2"),
                 ("label", "TKILLCHK"), ("ld", 16), ("jeq", me, "ALLOW2", "EPERM2"),
                 ("label", "ALLOW2"), ("ret", SECCOMP_RET_ALLOW),
                 ("label", "EPERM2"), ("ret", SECCOMP_RET_ERRNO | EPERM)]
    labels, n = {}, 0
    for ins in body:
        if ins[0] == "label":
            labels[ins[1]] = n
        else:
            n += 1
    out = []
    for ins in body:
        op = ins[0]
        if op == "label":
            continue
        if op == "ld":
            out.append((_LD_W_ABS, 0, 0, ins[1]))
        elif op == "ret":
            out.append((_RET_K, 0, 0, ins[1]))
        else:
            here = len(out)
            offs = []
            for target in ins[2:]:
                off = 0 if target is None else labels[target] - here - 1
                if not 0 <= off < 256:
                    raise ValueError("seccomp jump out of range")
                offs.append(off)
            out.append((_JEQ_K if op == "jeq" else _JGE_K, offs[0], offs[1], ins[1]))
    return out


def run_bpf(prog: list, nr: int, arch: int, args: tuple = ()) -> int:
    """Evaluate a seccomp_program on one syscall (for tests): the action it returns."""
    data = struct.pack("<iIQ", nr, arch, 0) + b"".join(
        struct.pack("<Q", a & 0xFFFFFFFFFFFFFFFF) for a in (tuple(args) + (0,) * 6)[:6])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == _LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == _RET_K:
            return k
        else:
            hit = acc == k if code == _JEQ_K else acc >= k
            pc += 1 + (jt if hit else jf)


def pack_bpf(prog: list) -> bytes:
    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)


# Landlock access rights (include/uapi/linux/landlock.h), by the ABI that brought them
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_FS_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
LL_REFER, LL_TRUNCATE, LL_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1, 2
LL_SCOPE_ABSTRACT_UNIX, LL_SCOPE_SIGNAL = 1, 2


def landlock_rights(abi: int) -> tuple:
    """(handled fs rights, handled net rights, scopes, ruleset attr size) for a Landlock ABI."""
    fs = LL_FS_V1
    if abi >= 2:
        fs |= LL_REFER
    if abi >= 3:
        fs |= LL_TRUNCATE
    if abi >= 5:
        fs |= LL_IOCTL_DEV
    net = (LL_NET_BIND_TCP | LL_NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL) if abi >= 6 else 0
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    return fs, net, scoped, size


# --------------------------------------------------------------------------- setup
def _readall(fd: int) -> bytes:
    out = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(out)
        out.append(b)


def _die(msg: str) -> None:
    os.write(2, ("SANDBOX-SETUP: " + msg + "\n").encode())
    os._exit(3)


class _Libc:
    """The few libc calls we need, through ctypes (imported only here: the stdlib has it)."""

    def __init__(self):
        import ctypes
        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)

    def check(self, r: int, what: str) -> None:
        if r != 0:
            e = self.ctypes.get_errno()
            raise OSError(e, "%s: %s" % (what, os.strerror(e)))

    def prctl(self, *args) -> int:
        a = list(args) + [0] * (5 - len(args))
        return self.libc.prctl(*[self.ctypes.c_ulong(x) for x in a])

    def syscall(self, *args) -> int:
        return self.libc.syscall(*args)

    def unshare(self, flags: int) -> None:
        self.check(self.libc.unshare(flags), "unshare")

    def mount(self, src, dst, fstype, flags, data) -> None:
        self.check(self.libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(),
                                   self.ctypes.c_ulong(flags), data and data.encode()),
                   "mount " + dst)

    def setattr_ro(self, path: str, recursive: bool) -> None:
        ctypes = self.ctypes

        class MountAttr(ctypes.Structure):
            _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                        ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
        a = MountAttr(1 | 2, 0, 0, 0)  # MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
        self.check(self.libc.syscall(442, -100, path.encode(), 0x8000 if recursive else 0,
                                     ctypes.byref(a), ctypes.sizeof(a)), "mount_setattr " + path)


def _apply_rlimits(skip_nproc: bool) -> None:
    for res, soft, hard in CFG["rlimits"]:
        if skip_nproc and res == resource.RLIMIT_NPROC:
            continue
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as e:
            if res != resource.RLIMIT_NPROC:
                _die("setrlimit %d: %s" % (res, e))


def _nproc_limit() -> int:
    return [s for r, s, _h in CFG["rlimits"] if r == resource.RLIMIT_NPROC][0]


def _block_sockets() -> None:
    def hook(event, args):
        if event.startswith("socket.") and event != "socket.gethostname":
            raise PermissionError("network disabled in the sandbox")
    sys.addaudithook(hook)
    HELD["socket_hook"] = True


def _new_root(lc: _Libc) -> None:
    """Build a whitelist root on a tmpfs and chroot into it: read-only binds of the system
    directories and of the Python install, a minimal /dev, empty /proc (mounted later,
    inside the PID namespace), private tmpfs /tmp (the working directory), /var/tmp and
    /dev/shm.  Nothing else of the host (homes, /work, the factory's files) exists there."""
    lc.mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    keep = CFG["keep"]
    keepfd = os.open(keep, os.O_PATH)
    R = "/tmp"  # the host's /tmp is covered by the new root in this mount namespace
    lc.mount("tmpfs", R, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    covered = False
    for d in CFG["system_dirs"]:
        if os.path.islink(d):
            os.symlink(os.readlink(d), R + d)
        elif os.path.isdir(d):
            os.mkdir(R + d, 0o755)
            lc.mount(d, R + d, None, MS_BIND | MS_REC, None)
            lc.setattr_ro(R + d, True)
            covered = covered or keep == d or keep.startswith(d + "/")
    if not covered:
        os.makedirs(R + keep, 0o755, exist_ok=True)
        lc.mount("/proc/self/fd/%d" % keepfd, R + keep, None, MS_BIND | MS_REC, None)
        lc.setattr_ro(R + keep, True)
    os.close(keepfd)
    os.mkdir(R + "/dev", 0o755)
    for n in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists("/dev/" + n):
            os.close(os.open(R + "/dev/" + n, os.O_CREAT | os.O_WRONLY, 0o666))
            lc.mount("/dev/" + n, R + "/dev/" + n, None, MS_BIND, None)
    for i, n in enumerate(("stdin", "stdout", "stderr")):
        os.symlink("/proc/self/fd/%d" % i, R + "/dev/" + n)
    os.symlink("/proc/self/fd", R + "/dev/fd")
    os.makedirs(R + "/var/tmp", 0o755)
    for d, size in (("/tmp", CFG["tmp_bytes"]), ("/var/tmp", 16 << 20), ("/dev/shm", 16 << 20)):
        os.makedirs(R + d, 0o755, exist_ok=True)
        lc.mount("tmpfs", R + d, "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,mode=1777" % size)
    os.mkdir(R + "/proc", 0o555)
    lc.setattr_ro(R, False)
    os.chdir(R)
    os.chroot(".")
    os.chdir("/")


def _enter_user_namespace(lc: _Libc, flags: int) -> None:
    """Not root: a new user namespace with our uid/gid mapped to 0, and the other namespaces
    owned by it.  RLIMIT_NPROC counts per (user namespace, uid) from here on, so it becomes a
    limit of this run alone (set after the unshare: the new namespace also caps its creator's
    count at the limit in force when it is created)."""
    uid, gid = os.geteuid(), os.getegid()
    lc.unshare(CLONE_NEWUSER | flags)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write("0 %d 1" % uid)
    with open("/proc/self/gid_map", "w") as f:
        f.write("0 %d 1" % gid)
    nproc = _nproc_limit() + 1  # + the relay, which lives in this user namespace too
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    HELD["userns"] = True


def _relay_and_fork(lc: _Libc, subreaper: bool) -> int:
    """Fork the process that runs the role under a relay that waits for it and reports its
    status as its own.  SIGTERM to the relay (the parent's way to end a run) SIGKILLs it.

    With a PID namespace the child is its PID 1: when it ends the kernel kills the whole
    namespace.  Without one the relay is a child subreaper: every orphan of the run is
    re-parented to it, not to init, and once the main child is gone the relay kills and
    reaps all of them before it exits (setsid and double forks do not get away, and no
    zombie is left to an init that does not reap).  Returns, in the child only, the read
    end of a pipe whose EOF means the relay is gone."""
    import signal
    alive_r, alive_w = os.pipe()
    if subreaper:
        lc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    main_pid = []

    def on_term(sig, frame):
        for pid in main_pid:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    pid = os.fork()
    if not pid:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.close(alive_w)
        os.setsid()
        return alive_r
    main_pid.append(pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    lc.prctl(PR_SET_PDEATHSIG, 9)
    if os.getppid() != CFG["ppid"]:
        os._exit(3)
    os.closerange(3, alive_w)
    os.closerange(alive_w + 1, 1 << 16)
    nul = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(nul, fd)
    os.close(nul)
    while True:
        try:
            _, st, ru = os.wait4(pid, 0)
            break
        except ChildProcessError:
            os._exit(3)
        except InterruptedError:
            continue
    if subreaper:
        _kill_descendants()
    if os.WIFSIGNALED(st):
        sig = os.WTERMSIG(st)
        cpu_soft = [s for r, s, _h in CFG["rlimits"] if r == resource.RLIMIT_CPU][0]
        if sig == 9 and ru.ru_utime + ru.ru_stime >= cpu_soft:
            # nothing inside the namespace can SIGKILL its PID 1: with the CPU spent
            # this is RLIMIT_CPU's hard limit; report it as SIGXCPU
            sig = 24
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if sig != 9:
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        except BaseException:
            pass
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(st))


def _children(me: int) -> list:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == me:
                        out.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _kill_descendants() -> None:
    """Subreaper relay: SIGKILL every child, reap, repeat until none is left (a killed
    process's children are re-parented to us, so this reaches every descendant)."""
    import time
    me = os.getpid()
    while True:
        kids = _children(me)
        for k in kids:
            try:
                os.kill(k, 9)
            except OSError:
                pass
        try:
            # one of the killed ones will die; with none found, only look
            if os.waitpid(-1, 0 if kids else os.WNOHANG)[0] == 0:
                time.sleep(0.001)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def _relay_alive(lc: _Libc, alive_r: int) -> None:
    """After the last PR_SET_PDEATHSIG: if the relay died before it, die now."""
    lc.prctl(PR_SET_PDEATHSIG, 9)
    os.set_blocking(alive_r, False)
    try:
        gone = os.read(alive_r, 1) == b""
    except BlockingIOError:
        gone = False
    if gone:
        os._exit(3)
    os.close(alive_r)


def _drop_capabilities(lc: _Libc) -> None:
    """Not root, in our user namespace: give up every capability for good (bounding set,
    ambient, effective/permitted/inheritable; securebits so that uid 0 there gets none back
    on exec).  What stays is an ordinary uid facing read-only mounts it cannot change."""
    lc.prctl(PR_SET_SECUREBITS, 0xEF)  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off, NO_CAP_AMBIENT_RAISE, all locked
    for cap in range(64):
        if lc.prctl(PR_CAPBSET_DROP, cap) != 0:
            break  # EINVAL: past the last capability of this kernel
    lc.prctl(PR_CAP_AMBIENT, 4)  # PR_CAP_AMBIENT_CLEAR_ALL
    ctypes = lc.ctypes
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (ctypes.c_uint32 * 6)()
    lc.check(lc.libc.capset(header, data), "capset")
    with open("/proc/self/status") as f:
        eff = [ln for ln in f if ln.startswith(("CapEff", "CapBnd", "CapPrm"))]
    if any(int(ln.split()[1], 16) for ln in eff):
        raise OSError(1, "capabilities still held: " + " ".join(ln.strip() for ln in eff))
    HELD["caps_dropped"] = True


def _setup_namespaces(lc: _Libc, root: bool) -> None:
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
    if root:
        lc.unshare(flags)
    else:
        _enter_user_namespace(lc, flags)
    HELD["netns"] = HELD["pidns"] = HELD["ipcns"] = True
    _new_root(lc)
    HELD["mountns"] = True
    alive_r = _relay_and_fork(lc, subreaper=False)
    # PID 1 of the new PID namespace from here on
    try:
        lc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    except OSError as e:
        _die("cannot mount /proc: %s" % e)
    os.chdir("/tmp")
    if root:
        uid = CFG["uid"]
        os.chown("/tmp", uid, uid)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        HELD["uid_drop"] = True
    else:
        _drop_capabilities(lc)
    lc.check(lc.prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    _relay_alive(lc, alive_r)  # the uid change cleared PR_SET_PDEATHSIG: set it again
    if CFG["role"] == "tests":
        lc.prctl(PR_SET_DUMPABLE, 0)


def _landlock_abi(lc: _Libc) -> int:
    v = lc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, VERSION)
    return v if v > 0 else 0


def _apply_landlock(lc: _Libc, abi: int) -> None:
    """Read-only: the system directories, the Python install, /dev, /proc (another process's
    /proc files need ptrace rights, which Landlock denies out of the domain).  Everything
    in the run's folder.  Nothing else is even readable.  No TCP bind/connect (ABI 4), no
    signals or abstract unix sockets out of the domain (ABI 6)."""
    ctypes = lc.ctypes
    fs, net, scoped, size = landlock_rights(abi)
    attr = struct.pack("<QQQ", fs, net, scoped)[:size]
    buf = ctypes.create_string_buffer(attr, size)
    rfd = lc.syscall(444, buf, ctypes.c_size_t(size), 0)
    if rfd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        read = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
        file_rights = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | (fs & (LL_TRUNCATE | LL_IOCTL_DEV))
        rules = [(d, read) for d in CFG["system_dirs"] + [CFG["keep"], "/dev", "/proc"]]
        rules += [("/dev/null", file_rights), ("/dev/zero", file_rights), (CFG["workdir"], fs)]
        for path, rights in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    rights &= file_rights
                rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, pfd), 12)
                lc.check(lc.syscall(445, rfd, 1, rule, 0), "landlock_add_rule " + path)
            finally:
                os.close(pfd)
        lc.check(lc.prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
        lc.check(lc.syscall(446, rfd, 0), "landlock_restrict_self")
    finally:
        os.close(rfd)
    HELD["landlock"] = abi


def _apply_seccomp(lc: _Libc, restrict_kill: bool) -> None:
    import platform
    arch = platform.machine()
    if arch not in SECCOMP_ARCHES:
        raise OSError(0, "seccomp: no syscall table for " + arch)
    prog = pack_bpf(seccomp_program(arch, os.getpid(), restrict_kill))
    ctypes = lc.ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
    fprog = SockFprog(len(prog) // 8, prog)
    lc.check(lc.prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    lc.check(lc.libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog),
                           ctypes.c_ulong(0), ctypes.c_ulong(0)), "seccomp")
    HELD["seccomp"] = True
    HELD["seccomp_kill_filter"] = restrict_kill


def _setup_lsm(lc: _Libc) -> None:
    """No namespaces: Landlock and seccomp, each where the kernel has it."""
    try:
        abi = _landlock_abi(lc)
        if abi:
            _apply_landlock(lc, abi)
    except OSError as e:
        HELD["landlock_error"] = str(e)
    try:
        _apply_seccomp(lc, restrict_kill=HELD.get("landlock", 0) < 6)
    except (OSError, AttributeError) as e:
        HELD["seccomp_error"] = str(e)


def _user_nproc() -> int:
    """Not root and no user namespace: RLIMIT_NPROC counts every process of our uid, so the
    limit is what runs under it now plus the run's own allowance."""
    uid, n = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat("/proc/" + pid).st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n + _nproc_limit()


def _setup() -> None:
    lc = _Libc()
    root = os.geteuid() == 0
    mode = CFG["mode"]
    HELD.update(root=root, mode=mode, uid_drop=False, userns=False, netns=False,
                mountns=False, pidns=False, ipcns=False, caps_dropped=False, landlock=0,
                seccomp=False, socket_hook=False)
    _apply_rlimits(skip_nproc=not root)
    if mode == "ns":
        try:
            _setup_namespaces(lc, root)
            return
        except OSError as e:
            if CFG.get("require_ns") or HELD["mountns"]:
                _die("namespaces: %s" % e)
            HELD["ns_error"] = str(e)
            HELD.update(userns=False, netns=False, pidns=False, ipcns=False)
    # no namespaces (mode "lsm"/"weak", or the probe found none)
    os.chdir(CFG["workdir"])
    alive_r = _relay_and_fork(lc, subreaper=True)
    if root:
        uid = CFG["uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        HELD["uid_drop"] = True
        if not CFG["stdlib_world_readable"]:
            _die("sandbox unavailable: no mount namespace and the Python install is not "
                 "readable by other uids")
    else:
        try:
            n = _user_nproc()
            resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        except (ValueError, OSError):
            pass
    lc.check(lc.prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    _relay_alive(lc, alive_r)  # the uid change cleared PR_SET_PDEATHSIG: set it again
    if CFG["role"] == "tests":
        lc.prctl(PR_SET_DUMPABLE, 0)
    _block_sockets()
    if mode != "weak":
        _setup_lsm(lc)
        if CFG.get("require_lsm") and not (HELD["landlock"] and HELD["seccomp"]):
            _die("Landlock/seccomp worked before and fail now: %s" % (
                HELD.get("landlock_error") or HELD.get("seccomp_error")))


# ------------------------------------------------------------------------ messaging
def _send(fd: int, data: bytes, kind: bytes = b"M") -> None:
    view = memoryview(frame(data, kind))
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _recv_exact(fd: int, n: int):
    buf = bytearray()
    while len(buf) < n:
        b = os.read(fd, min(n - len(buf), 1 << 20))
        if not b:
            return None
        buf += b
    return bytes(buf)


def _recv(fd: int, cap: int):
    head = _recv_exact(fd, 5)
    if head is None:
        return None
    kind, n = head[:1], int.from_bytes(head[1:], "big")
    if n > cap:
        raise ProtocolError("message of %d bytes is over the %d byte cap" % (n, cap))
    data = _recv_exact(fd, n)
    if data is None:
        return None
    return kind, data


# ----------------------------------------------------------------------- candidate role
def _candidate() -> None:
    import builtins
    req, resp = CFG["fds"]
    src = CFG["code"]
    SOURCES["<candidate>"] = src
    g = {"__name__": "candidate", "__builtins__": builtins}
    try:
        exec(compile(src, "<candidate>", "exec"), g)
    except BaseException as e:
        _send(resp, marshal.dumps(("loaderr", type(e).__name__, str(e)[:300],
                                   where(e.__traceback__, "<candidate>", SOURCES))))
        os._exit(0)
    names = {}
    for k, v in list(g.items()):
        if k.startswith("__"):
            continue
        if isinstance(v, type(os)):
            names[k] = ("module", str(getattr(v, "__name__", "")))
        elif callable(v):
            names[k] = ("callable",)
        else:
            try:
                if len(marshal.dumps(v)) < (1 << 20):
                    names[k] = ("value", v)
            except Exception:
                pass
    _send(resp, marshal.dumps(("ready", names)))
    MUT = (list, dict, set, bytearray)
    while True:
        msg = _recv(req, 1 << 30)
        if msg is None:
            os._exit(0)
        kind, data = msg
        try:
            if kind == b"P":
                import pickle
                _, name, args, kwargs = pickle.loads(data)
            else:
                _, name, args, kwargs = marshal.loads(data)
            fn = g[name]
            result = fn(*args, **kwargs)
        except BaseException as e:
            out = ("exc", type(e).__name__, str(e)[:300], where(e.__traceback__, "<candidate>", SOURCES))
            try:
                out = marshal.dumps(out)
            except Exception:
                out = marshal.dumps(("exc", "RuntimeError", "unprintable exception", ""))
            _send(resp, out)
            continue
        muts = [(i, a) for i, a in enumerate(args) if type(a) in MUT]
        muts += [(k, a) for k, a in kwargs.items() if type(a) in MUT]
        try:
            out = marshal.dumps(("ok", result, muts))
        except Exception:
            try:
                marshal.dumps(result)
                bad = "an argument mutated into"
            except Exception:
                bad = "a return value of"
            out = marshal.dumps(("exc", "TypeError",
                                 "sandbox: %s type %s cannot leave the candidate process "
                                 "(builtin data types only)" % (bad, type(result).__name__), ""))
        _send(resp, out)


# --------------------------------------------------------------------------- tests role
class CandidateGone(BaseException):
    """The candidate process closed its side (exited, was killed, or hung up)."""


class CandidateError(RuntimeError):
    pass


def _tests() -> None:
    import builtins
    req, resp, res = CFG["fds"]
    nonce = CFG.pop("nonce")

    def report(category, reason):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        line = "FAIL\t%s\t%s\n" % (category, " ".join(str(reason).split())[:500])
        os.write(res, line.encode("utf-8", "replace"))
        os._exit(0)

    def recv():
        msg = _recv(resp, 64 << 20)
        if msg is None:
            raise CandidateGone()
        kind, data = msg
        if kind != b"M":
            raise ProtocolError("bad frame from the candidate")
        v = plain_data(data)
        if type(v) is not tuple or not v or type(v[0]) is not str:
            raise ProtocolError("malformed reply from the candidate")
        return v

    def call(name, args, kwargs):
        msg = ("call", name, args, kwargs)
        try:
            data, kind = marshal.dumps(msg), b"M"
        except ValueError:
            try:
                import pickle
                data, kind = pickle.dumps(msg, protocol=5), b"P"
            except Exception as e:
                raise TypeError("sandbox: cannot send these arguments to the candidate (%s)" % e)
        try:
            _send(req, data, kind)
        except (BrokenPipeError, ConnectionResetError):
            raise CandidateGone()
        v = recv()
        if v[0] == "ok" and len(v) == 3:
            for key, new in v[2]:
                try:
                    old = args[key] if type(key) is int else kwargs[key]
                except (IndexError, KeyError, TypeError):
                    continue
                if type(old) is not type(new):
                    continue
                if isinstance(old, (list, bytearray)):
                    old[:] = new
                elif isinstance(old, (dict, set)):
                    old.clear()
                    old.update(new)
            return v[1]
        if v[0] == "exc" and len(v) == 4:
            tname, text, cwhere = (str(x) for x in v[1:])
            cls = getattr(builtins, tname, None)
            exc = None
            if (isinstance(cls, type) and issubclass(cls, Exception)
                    and not issubclass(cls, (StopIteration, StopAsyncIteration))):
                try:
                    exc = cls(text)
                except Exception:
                    exc = None
            if exc is None:
                exc = CandidateError("%s: %s" % (tname, text) if text else tname)
            exc._sandbox = (tname, text, cwhere)
            raise exc
        raise ProtocolError("malformed reply from the candidate")

    class Remote:
        def __init__(self, name):
            self.__name__ = name

        def __call__(self, *args, **kwargs):
            return call(self.__name__, args, kwargs)

        def __repr__(self):
            return "<candidate function %s>" % self.__name__

    try:
        first = recv()
    except CandidateGone:
        report("candidate_gone", "before the tests ran")
    except ProtocolError as e:
        report("crashed", "protocol violation from the candidate: %s" % e)
    if first[0] == "loaderr" and len(first) == 4:
        tname, text, cwhere = (str(x) for x in first[1:])
        msg = "candidate raised %s while loading%s" % ("%s: %s" % (tname, text) if text else tname,
                                                         " (%s)" % cwhere if cwhere else "")
        if tname == "MemoryError":
            report("crashed", "memory limit: " + msg)
        report("failed", msg)
    if first[0] != "ready" or len(first) != 2 or type(first[1]) is not dict:
        report("crashed", "protocol violation from the candidate: no ready message")
    entry = CFG["entry_point"]
    ns = {"__name__": "__main__", "__builtins__": builtins}
    for name, spec in first[1].items():
        if type(name) is not str or type(spec) is not tuple or not spec:
            continue
        if name != entry and (name.startswith("__") or hasattr(builtins, name)):
            continue
        if spec[0] == "callable":
            ns[name] = Remote(name)
        elif spec[0] == "value" and len(spec) == 2:
            ns[name] = spec[1]
        elif spec[0] == "module" and len(spec) == 2 and spec[1] in sys.stdlib_module_names:
            try:
                ns[name] = __import__(spec[1])
            except Exception:
                pass
    if entry is not None and not isinstance(ns.get(entry), Remote):
        report("failed", "NameError: the candidate does not define %r" % entry)
    src = CFG["tests"]
    SOURCES["<tests>"] = src
    try:
        code = compile(src, "<tests>", "exec")
    except SyntaxError as e:
        report("crashed", "the tests do not compile: %s" % e)
    try:
        exec(code, ns)
        if entry is not None:
            check = ns.get("check")
            if not callable(check):
                report("crashed", "the tests define no check()")
            check(ns[entry])
    except CandidateGone:
        report("candidate_gone", "during the tests")
    except ProtocolError as e:
        report("crashed", "protocol violation from the candidate: %s" % e)
    except BaseException as e:
        import linecache
        import traceback
        for fn, text in SOURCES.items():
            linecache.cache[fn] = (len(text), None, text.splitlines(True), fn)
        traceback.print_exc(limit=-3)
        twhere = where(e.__traceback__, "<tests>", SOURCES)
        origin = getattr(e, "_sandbox", None)
        if origin:
            tname, text, cwhere = origin
            msg = "candidate raised %s%s" % (tname, ": " + text if text else "")
            if cwhere:
                msg += " (%s)" % cwhere
            if twhere:
                msg += " (%s)" % twhere
            report("crashed" if tname == "MemoryError" else "failed",
                   ("memory limit: " if tname == "MemoryError" else "") + msg)
        text = str(e)
        msg = type(e).__name__ + (": " + text if text else "")
        if twhere:
            msg += " (%s)" % twhere
        if isinstance(e, MemoryError):
            report("crashed", "memory limit in the tests: " + msg)
        report("failed", msg)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    os.write(res, ("PASS\t%s\n" % nonce).encode())
    os._exit(0)


# ------------------------------------------------------------------------------ main
def _probe_extras(lc: _Libc) -> None:
    """With namespaces holding, still say whether the fallbacks would (for isolation())."""
    try:
        HELD["landlock_abi"] = _landlock_abi(lc)
    except OSError:
        HELD["landlock_abi"] = 0
    HELD["seccomp_available"] = lc.prctl(21) >= 0  # PR_GET_SECCOMP


def main() -> None:
    CFG.update(marshal.loads(_readall(0)))
    nul = os.open("/dev/null", os.O_RDWR)
    os.dup2(nul, 0)
    os.close(nul)
    try:
        _setup()
    except OSError as e:
        _die(str(e))
    if CFG["role"] == "probe":
        if HELD["mountns"]:
            _probe_extras(_Libc())
        else:
            HELD["landlock_abi"] = HELD["landlock"]
            HELD["seccomp_available"] = HELD["seccomp"]
        os.write(1, marshal.dumps(HELD))
        os._exit(0)
    if CFG["role"] == "candidate":
        _candidate()
    else:
        _tests()


if __name__ == "__main__":
    main()
