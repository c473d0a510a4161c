"""Code verification sandbox: run a seed's tests against a teacher's extracted code.

    run_tests(code, tests, entry_point, limits=Limits()) -> SandboxResult
    run_many(items, limits, workers=2) -> iterator of (key, SandboxResult), as they finish
    isolation() -> dict saying which isolation layers hold on this machine

HumanEval style: `tests` defines `check(candidate)`; the harness calls `check(<entry_point>)`.
With `entry_point=None` the tests are plain top-level code (asserts) that call the
candidate's functions by name.

Proof of completion
-------------------
A pass needs proof that the tests ran to the end; an exit status of 0 proves nothing.

Why not a nonce in the candidate's interpreter: whatever the harness can do in a process,
code running in that process can do too.  It can read every fd (os.read on 3, 4, ...),
every object (gc.get_objects, frames via tracebacks), its own memory (/proc/self/mem), so a
nonce that is anywhere in that process before check() returns can be found, and a nonce
that arrives only after check() returns needs somebody to decide when that is -- and the
only witness is the same process, whose word can be forged ("check is done, send the
nonce").  So no in-process scheme is unforgeable against a candidate that knows the harness.

Design here: the tests and the candidate run in two different processes, under two
different throwaway uids.

  * candidate process (C): execs the candidate code, then serves calls: "call f(args)" ->
    return value.  It never sees the tests, the nonce or the result channel.
  * tests process (T): execs the test code with the candidate's functions bound to
    proxies; `check(candidate)` runs entirely inside T, each candidate call is one
    round trip to C.  After check() returns normally T writes the per-run nonce
    (secrets.token_hex, known only to T and the parent) to a pipe only T holds, then exits.

The parent says "passed" only if that exact nonce arrives.  C cannot forge it: the nonce
never enters C; C runs as another uid than T, so it cannot signal, ptrace or open
/proc/<T>/fd|mem (T is also non-dumpable); C holds only the read end of the request pipe
and the write end of the reply pipe.  The worst C can do to T is reply garbage or die,
and both end in "failed"/"crashed".  The usual exits all fail for free: sys.exit(0) or
os._exit(0) in the candidate ends C, T's next call sees EOF; an atexit hook in C runs in C;
redefining check() or patching builtins happens in C's interpreter, not T's.

What comes back from C is data, never objects: values cross as `marshal` of builtin types
only (None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset;
T rejects anything else, code objects included), so a candidate cannot return an object
whose __eq__ always says True.  Candidate exceptions are re-raised in T as the builtin
exception of the same name (message kept, marked as from the candidate).  Lists, dicts,
sets and bytearrays passed as arguments are copied back after the call, so in-place
mutation stays visible to the test.  Candidate top-level names are offered to the test as
proxies (HumanEval/32, 38 and 50 call prompt helpers such as `poly` from the test), except
names that would shadow a builtin (a candidate `def abs(x): return 0` cannot reach T).
Limits of this: a value of a non-builtin type (numpy array, custom class instance, a
generator) cannot be returned -- the call raises TypeError in T and the run fails with that
reason; arguments T sends must be marshal- or pickle-able; identity (`is`) is lost except
for None/True/False.

Isolation (what holds where)
----------------------------
Every run, both processes: a new session/process group (start_new_session); an environment
built from scratch (PATH, LANG, LC_ALL, HOME, TMPDIR, PYTHONHASHSEED=0, never os.environ);
`python -s -S -P -B` (no site, no user site, no script dir on sys.path: -I without -E, so
that our own PYTHONHASHSEED=0 makes set order reproducible; the env is ours anyway, so -E
adds nothing), i.e. the stdlib only; stdin /dev/null; rlimits RLIMIT_CPU (SIGXCPU, then
SIGKILL one second later), RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC,
RLIMIT_CORE=0; output read by the parent with a byte cap (past it: killed); a wall-clock
deadline after which everything is SIGKILLed; a throwaway working directory.

As root, with namespaces (this machine: kernel 6.x, checked -- `isolation()` probes it):
  * a fresh random uid/gid per process (no passwd entry, owns no files), dropped to after
    setup (setgroups([]), setresgid, setresuid), then PR_SET_NO_NEW_PRIVS (setuid binaries
    give nothing back) and a parent-death SIGKILL.  A per-run uid turns RLIMIT_NPROC, which
    counts processes per uid, into a per-run limit; the candidate cannot signal anything
    outside its run (the factory, other sandboxes, the tests process); cleanup can kill
    every process of the run, detached or not, with one kill(-1) sent as that uid.
  * new network namespace: only a down loopback, so 127.0.0.1 is unreachable.
  * new PID namespace: the candidate is PID 1 there, under a small root relay that waits
    for it and reports its status.  When it ends, the kernel kills and reaps whatever it
    started, before the relay's wait returns (this container's PID 1 does not reap
    orphans, so without it a detached grandchild would at best leave a zombie).
  * new mount namespace and a whitelist root (chroot into a tmpfs): read-only binds of
    /usr /bin /sbin /lib* /etc and of the Python install (here /root/.pyenv/versions/3.11.7;
    /root itself is otherwise empty), /dev with only null, zero, full, random, urandom, a
    new /proc showing only the namespace's processes, and private tmpfs /tmp (the working
    directory, 64 MiB), /var/tmp, /dev/shm -- freed when the namespace goes.  Homes, /work,
    the factory's files and every other host path do not exist there; nothing outside the
    tmpfs mounts is writable.
If namespaces are missing as root: the uid drop still holds (files, signals, NPROC); the
working directory is a host tempdir, removed afterwards; sockets are blocked by an audit
hook (weaker: ctypes gets round it); /tmp stays writable (whatever the candidate leaves
there belongs to its dead uid); world-readable host files can be read.  If the Python
install is not readable by other uids (as here: /root is 0700), that mode cannot run and
every run is reported "crashed: sandbox setup failed".  If namespaces worked at the probe,
a run where they fail is also reported crashed instead of silently running weaker.
Not root: no uid drop (the candidate runs as the factory's user and can signal it or read
its files), no PID namespace (a setsid'd grandchild escapes the session kill), network
namespace through an unprivileged user namespace where the kernel allows it, else the
audit-hook socket block.  The proof is sound against the generic exits there too, but a
candidate that goes for the parent process itself is not contained in that mode.
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Literal

__all__ = ["Limits", "SandboxResult", "run_tests", "run_many", "isolation"]

Status = Literal["passed", "failed", "timeout", "crashed"]

# Throwaway uids are drawn from here (no passwd entry, no files).  Tests use the range to
# check that nothing of a sandbox survives.
UID_BASE = 1_500_000_000
UID_SPAN = 1 << 24


@dataclasses.dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0  # wall clock for the whole run, then SIGKILL of everything
    cpu_s: int = 10  # RLIMIT_CPU per process (SIGXCPU at cpu_s, SIGKILL at cpu_s + 1)
    memory_bytes: int = 1 << 30  # RLIMIT_AS per process
    max_procs: int = 32  # RLIMIT_NPROC: processes of the candidate's uid (root mode)
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_output_bytes: int = 1 << 20  # stdout+stderr of both processes; more -> killed


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    status: Status
    reason: str  # short: "AssertionError (tests line 3: ...)", "wall-clock timeout", ...
    stderr_tail: str  # last ~1 KB of the processes' output (stdout and stderr interleaved)
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# --------------------------------------------------------------------------- child side
# Runs as `python -s -S -P -B -c _CHILD`; reads its config (marshal) from stdin.
_CHILD = r'''
import os, sys, marshal, resource

def _readall(fd):
    out = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(out)
        out.append(b)

cfg = marshal.loads(_readall(0))
_nul = os.open("/dev/null", os.O_RDWR)
os.dup2(_nul, 0)
os.close(_nul)
ROLE = cfg["role"]

def _die(msg):
    os.write(2, ("SANDBOX-SETUP: " + msg + "\n").encode())
    os._exit(3)

for _res, _soft, _hard in cfg["rlimits"]:
    try:
        resource.setrlimit(_res, (_soft, _hard))
    except (ValueError, OSError) as e:
        if _res != resource.RLIMIT_NPROC:
            _die("setrlimit %d: %s" % (_res, e))

HELD = {"root": os.geteuid() == 0, "uid_drop": False, "netns": False, "mountns": False,
        "pidns": False, "socket_hook": False}

def _block_sockets():
    def hook(event, args):
        if event.startswith("socket.") and event != "socket.gethostname":
            raise PermissionError("network disabled in the sandbox")
    sys.addaudithook(hook)
    HELD["socket_hook"] = True

def _new_root(mount, setattr_ro, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE):
    """Build a whitelist root on a tmpfs and chroot into it: read-only binds of the system
    directories and of the Python install, a minimal /dev, empty /proc (mounted later,
    inside the PID namespace), private tmpfs /tmp (the working directory), /var/tmp and
    /dev/shm.  Nothing else of the host (homes, /work, the factory's files) exists there."""
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    keep = cfg["keep"]
    keepfd = os.open(keep, os.O_PATH)
    R = "/tmp"  # the host's /tmp is covered by the new root in this mount namespace
    mount("tmpfs", R, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    covered = False
    for d in cfg["system_dirs"]:
        if os.path.islink(d):
            os.symlink(os.readlink(d), R + d)
        elif os.path.isdir(d):
            os.mkdir(R + d, 0o755)
            mount(d, R + d, None, MS_BIND | MS_REC, None)
            setattr_ro(R + d, True)
            covered = covered or keep == d or keep.startswith(d + "/")
        else:
            continue
    if not covered:
        os.makedirs(R + keep, 0o755, exist_ok=True)
        mount("/proc/self/fd/%d" % keepfd, R + keep, None, MS_BIND | MS_REC, None)
        setattr_ro(R + keep, True)
    os.close(keepfd)
    os.mkdir(R + "/dev", 0o755)
    for n in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists("/dev/" + n):
            os.close(os.open(R + "/dev/" + n, os.O_CREAT | os.O_WRONLY, 0o666))
            mount("/dev/" + n, R + "/dev/" + n, None, MS_BIND, None)
    for i, n in enumerate(("stdin", "stdout", "stderr")):
        os.symlink("/proc/self/fd/%d" % i, R + "/dev/" + n)
    os.symlink("/proc/self/fd", R + "/dev/fd")
    os.makedirs(R + "/var/tmp", 0o755)
    for d, size in (("/tmp", cfg["tmp_bytes"]), ("/var/tmp", 16 << 20), ("/dev/shm", 16 << 20)):
        os.makedirs(R + d, 0o755, exist_ok=True)
        mount("tmpfs", R + d, "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,mode=1777" % size)
    os.mkdir(R + "/proc", 0o555)
    setattr_ro(R, False)
    os.chdir(R)
    os.chroot(".")
    os.chdir("/")

def _setup_root():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    def chk(r, what):
        if r != 0:
            e = ctypes.get_errno()
            raise OSError(e, "%s: %s" % (what, os.strerror(e)))
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
    def setattr_ro(path, recursive):
        a = MountAttr(1 | 2, 0, 0, 0)  # MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
        chk(libc.syscall(442, -100, path.encode(), 0x8000 if recursive else 0,
                         ctypes.byref(a), ctypes.sizeof(a)), "mount_setattr " + path)
    def mount(src, dst, fstype, flags, data):
        chk(libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                       data and data.encode()), "mount " + dst)
    MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
    uid = cfg["uid"]
    ns = False
    if cfg["namespaces"]:
        try:
            chk(libc.unshare(0x00020000 | 0x40000000 | 0x20000000), "unshare")  # NS|NET|PID
            ns = True
        except OSError as e:
            if cfg.get("require_ns"):
                _die("namespaces worked before and fail now: %s" % e)
            HELD["ns_error"] = str(e)
    if ns:
        HELD["netns"] = HELD["pidns"] = True
        try:
            _new_root(mount, setattr_ro, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE)
            HELD["mountns"] = True
        except OSError as e:
            _die("mount namespace setup failed: %s" % e)
    else:
        _block_sockets()
        if not cfg["stdlib_world_readable"]:
            _die("sandbox unavailable: no mount namespace and the Python install is not "
                 "readable by other uids")
    if ns:
        # Below here: a root relay (waits, reports the status) and the real child, PID 1
        # of the new PID namespace.  When PID 1 ends the kernel kills the whole namespace.
        pid = os.fork()
        if pid:
            libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG SIGKILL
            if os.getppid() != cfg["ppid"]:
                os._exit(3)
            os.closerange(3, 1 << 16)
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
            if os.WIFSIGNALED(st):
                sig = os.WTERMSIG(st)
                cpu_soft = [s_ for r, s_, _h in cfg["rlimits"] if r == resource.RLIMIT_CPU][0]
                if sig == 9 and ru.ru_utime + ru.ru_stime >= cpu_soft:
                    # nothing inside the namespace can SIGKILL its PID 1: with the CPU spent
                    # this is RLIMIT_CPU's hard limit; report it as SIGXCPU
                    sig = 24
                try:
                    import signal
                    if sig != 9:
                        signal.signal(sig, signal.SIG_DFL)
                    os.kill(os.getpid(), sig)
                except BaseException:
                    pass
                os._exit(128 + sig)
            os._exit(os.WEXITSTATUS(st))
        os.setsid()
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG SIGKILL: the relay dies -> we die
        try:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        except OSError as e:
            _die("cannot mount /proc: %s" % e)
        os.chdir("/tmp")
        os.chown("/tmp", uid, uid)
    else:
        os.chdir(cfg["workdir"])
    parent = os.getppid()
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    HELD["uid_drop"] = True
    chk(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG SIGKILL (cleared by the uid change)
    if os.getppid() != parent:
        os._exit(3)
    if ROLE == "tests":
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0

def _setup_user():
    os.chdir(cfg["workdir"])
    ok = False
    if cfg["namespaces"]:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            uid, gid = os.getuid(), os.getgid()
            if libc.unshare(0x10000000 | 0x40000000) == 0:  # NEWUSER | NEWNET
                with open("/proc/self/uid_map", "w") as f:
                    f.write("%d %d 1" % (uid, uid))
                ok = True
                libc.prctl(38, 1, 0, 0, 0)
        except OSError:
            pass
    HELD["netns"] = ok
    if not ok:
        _block_sockets()

if HELD["root"]:
    try:
        _setup_root()
    except OSError as e:
        _die(str(e))
else:
    _setup_user()

if ROLE == "probe":
    os.write(1, marshal.dumps(HELD))
    os._exit(0)

SOURCES = {}

def _send(fd, data, kind=b"M"):
    data = kind + len(data).to_bytes(4, "big") + data
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

def _recv_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        b = os.read(fd, min(n - len(buf), 1 << 20))
        if not b:
            return None
        buf += b
    return bytes(buf)

def _recv(fd, cap):
    head = _recv_exact(fd, 5)
    if head is None:
        return None
    kind, n = head[:1], int.from_bytes(head[1:], "big")
    if n > cap:
        raise _Protocol("message of %d bytes is over the %d byte cap" % (n, cap))
    data = _recv_exact(fd, n)
    if data is None:
        return None
    return kind, data

class _Protocol(Exception):
    pass

def _where(tb, filename):
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None:
        return ""
    lines = SOURCES.get(filename, "").splitlines()
    src = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return "%s line %d: %s" % (filename.strip("<>"), line, src[:120])

# ----------------------------------------------------------------------- candidate role
def _candidate():
    req, resp = cfg["fds"]
    src = cfg["code"]
    SOURCES["<candidate>"] = src
    g = {"__name__": "candidate", "__builtins__": __builtins__}
    try:
        exec(compile(src, "<candidate>", "exec"), g)
    except BaseException as e:
        _send(resp, marshal.dumps(("loaderr", type(e).__name__, str(e)[:300],
                                   _where(e.__traceback__, "<candidate>"))))
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
            out = ("exc", type(e).__name__, str(e)[:300], _where(e.__traceback__, "<candidate>"))
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

def _tests():
    import builtins, sys as _sys
    req, resp, res = cfg["fds"]
    nonce = cfg.pop("nonce")
    ALLOWED = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set,
               frozenset)

    def report(category, reason):
        try:
            _sys.stdout.flush()
            _sys.stderr.flush()
        except Exception:
            pass
        line = "FAIL\t%s\t%s\n" % (category, " ".join(str(reason).split())[:500])
        os.write(res, line.encode("utf-8", "replace"))
        os._exit(0)

    def take(data):
        try:
            v = marshal.loads(data)
        except Exception as e:
            raise _Protocol("undecodable reply from the candidate (%s)" % type(e).__name__)
        stack, seen = [v], set()
        while stack:
            x = stack.pop()
            if type(x) not in ALLOWED:
                raise _Protocol("reply from the candidate holds a %s" % type(x).__name__)
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

    def recv():
        msg = _recv(resp, 64 << 20)
        if msg is None:
            raise CandidateGone()
        kind, data = msg
        if kind != b"M":
            raise _Protocol("bad frame from the candidate")
        v = take(data)
        if type(v) is not tuple or not v or type(v[0]) is not str:
            raise _Protocol("malformed reply from the candidate")
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
            tname, text, where = (str(x) for x in v[1:])
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
            exc._sandbox = (tname, text, where)
            raise exc
        raise _Protocol("malformed reply from the candidate")

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
    except _Protocol as e:
        report("crashed", "protocol violation from the candidate: %s" % e)
    if first[0] == "loaderr" and len(first) == 4:
        tname, text, where = (str(x) for x in first[1:])
        msg = "candidate raised %s while loading%s" % ("%s: %s" % (tname, text) if text else tname,
                                                         " (%s)" % where if where else "")
        if tname == "MemoryError":
            report("crashed", "memory limit: " + msg)
        report("failed", msg)
    if first[0] != "ready" or len(first) != 2 or type(first[1]) is not dict:
        report("crashed", "protocol violation from the candidate: no ready message")
    entry = cfg["entry_point"]
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
        elif spec[0] == "module" and len(spec) == 2 and spec[1] in _sys.stdlib_module_names:
            try:
                ns[name] = __import__(spec[1])
            except Exception:
                pass
    if entry is not None and not isinstance(ns.get(entry), Remote):
        report("failed", "NameError: the candidate does not define %r" % entry)
    src = cfg["tests"]
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
    except _Protocol as e:
        report("crashed", "protocol violation from the candidate: %s" % e)
    except BaseException as e:
        import linecache, traceback
        for fn, text in SOURCES.items():
            linecache.cache[fn] = (len(text), None, text.splitlines(True), fn)
        traceback.print_exc(limit=-3)
        where = _where(e.__traceback__, "<tests>")
        origin = getattr(e, "_sandbox", None)
        if origin:
            tname, text, cwhere = origin
            msg = "candidate raised %s%s" % (tname, ": " + text if text else "")
            if cwhere:
                msg += " (%s)" % cwhere
            if where:
                msg += " (%s)" % where
            report("crashed" if tname == "MemoryError" else "failed",
                   ("memory limit: " if tname == "MemoryError" else "") + msg)
        text = str(e)
        msg = type(e).__name__ + (": " + text if text else "")
        if where:
            msg += " (%s)" % where
        if isinstance(e, MemoryError):
            report("crashed", "memory limit in the tests: " + msg)
        report("failed", msg)
    try:
        _sys.stdout.flush()
        _sys.stderr.flush()
    except Exception:
        pass
    os.write(res, ("PASS\t%s\n" % nonce).encode())
    os._exit(0)

if ROLE == "candidate":
    _candidate()
else:
    _tests()
'''

# --------------------------------------------------------------------------- parent side
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"
_PY_FLAGS = ("-s", "-S", "-P", "-B")
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
_KILL = shutil.which("kill", path=_ENV_PATH)


def _python() -> str:
    return os.path.realpath(sys.executable)


def _env(home: str) -> dict[str, str]:
    return {"PATH": _ENV_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": home,
            "TMPDIR": home, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _world_readable_chain(path: str) -> bool:
    """Can another uid reach and read `path` (every ancestor o+x, the dir o+rx)?"""
    p = os.path.realpath(path)
    parts = p.split(os.sep)
    for i in range(1, len(parts) + 1):
        d = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(d).st_mode
        except OSError:
            return False
        if not mode & 0o001:
            return False
    return bool(os.stat(p).st_mode & 0o004)


# What the candidate's root holds (read-only binds), besides the Python install, a minimal
# /dev, /proc and private tmpfs /tmp, /var/tmp, /dev/shm.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


_static_cfg: dict | None = None


def _static() -> dict:
    global _static_cfg
    if _static_cfg is None:
        keep = os.path.realpath(sys.base_prefix)
        _static_cfg = {
            "keep": keep,
            "system_dirs": [d for d in SYSTEM_DIRS if os.path.lexists(d)],
            "stdlib_world_readable": _world_readable_chain(os.path.dirname(os.__file__)),
            "root": os.geteuid() == 0,
        }
    return _static_cfg


def _alloc_uid() -> int:
    with _uid_lock:
        while True:
            u = UID_BASE + secrets.randbelow(UID_SPAN)
            if u not in _uids_in_use:
                _uids_in_use.add(u)
                return u


def _release_uid(u: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(u)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` at once: kill(-1) sent by a process of that uid."""
    argv = [_KILL, "-KILL", "-1"] if _KILL else [_python(), *_PY_FLAGS, "-c",
                                                  "import os;os.kill(-1,9)"]
    try:
        subprocess.run(argv, user=uid, group=uid, extra_groups=[], env=_env("/"), cwd="/",
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pass


def _rlimits(limits: Limits, nproc: int) -> list[tuple[int, int, int]]:
    import resource as r
    cpu = max(1, int(limits.cpu_s))
    return [
        (r.RLIMIT_CPU, cpu, cpu + 1),
        (r.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (r.RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes),
        (r.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        (r.RLIMIT_NPROC, nproc, nproc),
        (r.RLIMIT_CORE, 0, 0),
    ]


class _Proc:
    """One sandboxed child: its Popen, uid, workdir, output reader state."""

    def __init__(self, role: str, cfg: dict, pass_fds: tuple[int, ...], root: bool):
        self.role = role
        self.uid = _alloc_uid() if root else os.getuid()
        self.workdir = tempfile.mkdtemp(prefix=f"factory-sbx-{role}-")
        if root:
            os.chown(self.workdir, self.uid, self.uid)
        cfg = dict(cfg, role=role, uid=self.uid, workdir=self.workdir, ppid=os.getpid())
        home = "/tmp" if root else self.workdir
        try:
            self.popen = subprocess.Popen(
                [_python(), *_PY_FLAGS, "-c", _CHILD], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds,
                start_new_session=True, env=_env(home), cwd="/", close_fds=True)
        except BaseException:
            if root:
                _release_uid(self.uid)
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.pidfd = os.pidfd_open(self.popen.pid)
        self.out = self.popen.stdout.fileno()
        os.set_blocking(self.out, False)
        self.tail = bytearray()
        self.done = False  # relay/main process exited
        try:
            self.popen.stdin.write(marshal.dumps(cfg))
            self.popen.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def keep_tail(self, chunk: bytes) -> None:
        self.tail += chunk
        if len(self.tail) > 4096:
            del self.tail[:-2048]


def _signame(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def run_tests(code: str, tests: str, entry_point: str | None,
              limits: Limits = Limits()) -> SandboxResult:
    """Run `tests` against `code` in a fresh sandbox and say whether they provably passed."""
    t0 = time.monotonic()
    st = _static()
    root = st["root"]
    nonce = secrets.token_hex(16)
    pidns = bool(root and isolation().get("pidns"))
    base = {"namespaces": pidns if root else True, "require_ns": pidns, "keep": st["keep"],
            "system_dirs": st["system_dirs"], "tmp_bytes": 64 << 20,
            "stdlib_world_readable": st["stdlib_world_readable"]}
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    res_r, res_w = os.pipe()
    procs: list[_Proc] = []
    sel = selectors.DefaultSelector()
    output = 0
    res_buf = bytearray()
    verdict: tuple[Status, str] | None = None
    try:
        try:
            cand = _Proc("candidate", dict(base, code=code, fds=(req_r, resp_w),
                                           rlimits=_rlimits(limits, limits.max_procs)),
                         (req_r, resp_w), root)
            procs.append(cand)
            os.close(req_r), os.close(resp_w)
            req_r = resp_w = -1
            tst = _Proc("tests", dict(base, tests=tests, entry_point=entry_point, nonce=nonce,
                                      fds=(req_w, resp_r, res_w),
                                      rlimits=_rlimits(limits, 4)),
                        (req_w, resp_r, res_w), root)
            procs.append(tst)
        finally:
            for fd in (req_r, resp_w, req_w, resp_r, res_w):
                if fd >= 0:
                    os.close(fd)
        os.set_blocking(res_r, False)
        for p in procs:
            sel.register(p.out, selectors.EVENT_READ, ("out", p))
            sel.register(p.pidfd, selectors.EVENT_READ, ("exit", p))
        sel.register(res_r, selectors.EVENT_READ, ("res", None))
        deadline = t0 + limits.wall_s
        while not tst.done:
            left = deadline - time.monotonic()
            if left <= 0:
                verdict = ("timeout", "wall-clock timeout")
                break
            for key, _ in sel.select(left):
                what, p = key.data
                if what == "out":
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    output += len(chunk)
                    p.keep_tail(chunk)
                    if output > limits.max_output_bytes:
                        verdict = ("crashed", f"killed: output limit ({limits.max_output_bytes} bytes)")
                elif what == "res":
                    _drain_res(res_r, res_buf, sel)
                else:  # a process (the relay, in root mode) exited
                    sel.unregister(key.fd)
                    p.done = True
                    if p is cand:
                        # nothing of the candidate may outlive its main process: this also
                        # closes the reply pipe, so the tests see EOF right away
                        _kill_procs([cand], root, pidns)
            if verdict:
                break
        if verdict is None:
            _drain_res(res_r, res_buf, None)
    finally:
        if procs:
            if verdict is None and pidns and cand.popen.poll() is None:
                # normal end: the candidate leaves on its own once the tests hang up
                try:
                    cand.popen.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            _kill_procs(procs, root, pidns)
        for p in procs:
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
            if verdict is None or verdict[0] != "crashed":
                _drain_out(p)
            p.popen.stdout.close()
            os.close(p.pidfd)
            if root:
                _release_uid(p.uid)
            shutil.rmtree(p.workdir, ignore_errors=True)
        sel.close()
        os.close(res_r)
    if verdict is None:
        verdict = _judge(bytes(res_buf), nonce, procs)
    tail = b""
    for p in procs:
        if p.tail:
            tail += b"[%s] " % p.role.encode() + bytes(p.tail[-1024:]) + b"\n"
    return SandboxResult(verdict[0], verdict[1], tail[-1024:].decode("utf-8", "replace"),
                         round(time.monotonic() - t0, 4))


def _drain_res(fd: int, buf: bytearray, sel: selectors.BaseSelector | None) -> None:
    while len(buf) < 8192:
        try:
            chunk = os.read(fd, 8192)
        except BlockingIOError:
            return
        if not chunk:
            if sel is not None:
                sel.unregister(fd)
            return
        buf += chunk


def _drain_out(p: _Proc) -> None:
    """After the kill: pick up what is left in the pipe (bounded)."""
    for _ in range(16):
        try:
            chunk = os.read(p.out, 65536)
        except (BlockingIOError, OSError):
            return
        if not chunk:
            return
        p.keep_tail(chunk)


def _kill_procs(procs: list[_Proc], root: bool, pidns: bool) -> None:
    """SIGKILL everything of these runs.

    Root: every process of the run's uid at once (kill(-1) as that uid) -- the namespace's
    PID 1 among them, so the kernel takes the whole PID namespace down and the root relay
    reaps it and exits by itself.  With a PID namespace and the relay already gone there is
    nothing left to kill: the kernel killed and reaped the namespace before the relay's
    wait returned, and no process of the uid exists outside it.  Then the session, as a
    fallback."""
    if root:
        for p in procs:
            if not (pidns and p.popen.poll() is not None):
                _kill_uid(p.uid)
        for p in procs:
            try:
                p.popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
    for p in procs:
        if p.popen.returncode is None:
            try:
                os.killpg(p.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not root:
            _kill_session_members(p.popen.pid)


def _kill_session_members(sid: int) -> None:
    """Not root: SIGKILL what still sits in the child's session (setsid escapees are lost)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) == sid:
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


def _judge(res: bytes, nonce: str, procs: list[_Proc]) -> tuple[Status, str]:
    line = res.split(b"\n", 1)[0].decode("utf-8", "replace")
    parts = line.split("\t", 2)
    if parts[0] == "PASS" and len(parts) == 2 and secrets.compare_digest(
            parts[1].encode("utf-8", "replace"), nonce.encode()):
        return "passed", "all tests ran to the end"
    cand = procs[0] if procs else None
    tst = procs[1] if len(procs) > 1 else None
    if parts[0] == "FAIL" and len(parts) == 3:
        cat, why = parts[1], parts[2]
        if cat in ("failed", "crashed"):
            return cat, why  # type: ignore[return-value]
        if cat == "candidate_gone":
            return _candidate_end(cand, why)
    for p, who in ((tst, "tests"), (cand, "candidate")):
        if p is None:
            continue
        if b"SANDBOX-SETUP:" in p.tail:
            msg = bytes(p.tail).split(b"SANDBOX-SETUP:", 1)[1].split(b"\n", 1)[0]
            return "crashed", f"sandbox setup failed ({who}): {msg.decode('utf-8', 'replace').strip()}"
    if tst is not None and tst.popen.returncode is not None and tst.popen.returncode < 0:
        rc = tst.popen.returncode
        if -rc == signal.SIGXCPU:
            return "timeout", "CPU time limit (tests)"
        return "crashed", f"tests process killed by {_signame(rc)}; no proof the tests finished"
    return "crashed", "no proof the tests finished"


def _candidate_end(cand: _Proc | None, when: str) -> tuple[Status, str]:
    rc = cand.popen.returncode if cand is not None else None
    if rc is None:
        return "failed", f"candidate process hung up {when}"
    if rc >= 0:
        if rc == 3 and b"SANDBOX-SETUP:" in cand.tail:
            msg = bytes(cand.tail).split(b"SANDBOX-SETUP:", 1)[1].split(b"\n", 1)[0]
            return "crashed", f"sandbox setup failed (candidate): {msg.decode('utf-8', 'replace').strip()}"
        return "failed", f"candidate exited (code {rc}) {when}; no proof the tests finished"
    if -rc == signal.SIGXCPU:
        return "timeout", f"killed: CPU time limit ({when})"
    if -rc == signal.SIGKILL:
        return "crashed", f"candidate killed by SIGKILL {when}"
    return "crashed", f"candidate killed by {_signame(rc)} {when}"


def _run_safely(code: str, tests: str, entry: str | None, limits: Limits) -> SandboxResult:
    t0 = time.monotonic()
    try:
        return run_tests(code, tests, entry, limits)
    except Exception as e:  # e.g. out of fds or processes on the host: not the candidate's fault
        return SandboxResult("crashed", f"sandbox error: {type(e).__name__}: {e}", "",
                             round(time.monotonic() - t0, 4))


def run_many(items: Iterable[tuple[Hashable, str, str, str | None]], limits: Limits = Limits(),
             workers: int = 2) -> Iterator[tuple[Hashable, SandboxResult]]:
    """Run sandboxes `workers` at a time; yield (key, result) as each finishes."""
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        pending: dict = {}

        def fill() -> None:
            while len(pending) < workers * 2:
                try:
                    key, code, tests, entry = next(it)
                except StopIteration:
                    return
                pending[pool.submit(_run_safely, code, tests, entry, limits)] = key

        fill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                yield key, fut.result()
            fill()


_isolation: dict | None = None
_isolation_lock = threading.Lock()


def isolation() -> dict:
    """Which layers hold here (probed once by starting a sandbox child in probe mode)."""
    global _isolation
    with _isolation_lock:
        if _isolation is None:
            _isolation = _probe()
    return dict(_isolation)


def _probe() -> dict:
    """Start one sandbox child in probe mode: it sets up what it can and says what held."""
    st = _static()
    cfg = {"role": "probe", "namespaces": True, "keep": st["keep"],
           "system_dirs": st["system_dirs"], "tmp_bytes": 1 << 20,
           "stdlib_world_readable": st["stdlib_world_readable"],
           "rlimits": _rlimits(Limits(), 4), "ppid": os.getpid()}
    uid = _alloc_uid() if st["root"] else os.getuid()
    work = tempfile.mkdtemp(prefix="factory-sbx-probe-")
    try:
        if st["root"]:
            os.chown(work, uid, uid)
        cfg.update(uid=uid, workdir=work)
        p = subprocess.run([_python(), *_PY_FLAGS, "-c", _CHILD], input=marshal.dumps(cfg),
                           capture_output=True, env=_env(work), cwd="/",
                           start_new_session=True, timeout=30)
        try:
            held = marshal.loads(p.stdout)
        except (EOFError, ValueError, TypeError):
            held = {"error": (p.stdout + p.stderr).decode("utf-8", "replace")[-500:]}
        if held.get("mountns"):
            held["visible_dirs"] = st["system_dirs"] + [st["keep"]]
        return held
    finally:
        if st["root"]:
            _kill_uid(uid)
            _release_uid(uid)
        shutil.rmtree(work, ignore_errors=True)
