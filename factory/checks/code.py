"""Code verification sandbox: run a seed's tests against a teacher's extracted code.

    run_tests(code, tests, entry_point, limits=Limits(), allow_weak=False) -> SandboxResult
    run_many(items, limits, workers=2, allow_weak=False) -> iterator of (key, SandboxResult)
    isolation() -> dict saying which isolation layers hold on this machine (and "mode")

HumanEval style: `tests` defines `check(candidate)`; the harness calls `check(<entry_point>)`.
With `entry_point=None` the tests are plain top-level code (asserts) that call the
candidate's functions by name.

The candidate and the tests run in two processes (factory/checks/sandbox_child.py, run by
path with `python -s -S -P -B`); a pass needs a per-run nonce that only the tests process
holds, written after check() returned.  Each process is isolated by the strongest mode
that holds here: "ns" (as root: namespaces, a whitelist root and a throwaway uid; not
root: the same inside an unprivileged user namespace, capabilities dropped), else "lsm"
(Landlock + seccomp), else "weak" -- which runs only with allow_weak=True
(filter.code.allow_weak_sandbox); otherwise SandboxUnavailable says what is missing.
The threat model, what holds in each mode and why: docs/sandbox.md.
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

from factory.errors import FilterError

__all__ = ["Limits", "SandboxResult", "SandboxUnavailable", "run_tests", "run_many", "isolation"]

Status = Literal["passed", "failed", "timeout", "crashed"]

# Throwaway uids are drawn from here (no passwd entry, no files).  Tests use the range to
# check that nothing of a sandbox survives.
UID_BASE = 1_500_000_000
UID_SPAN = 1 << 24

# The child program, run by path (stdlib only, so `-s -S -P` can keep site-packages out).
CHILD_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
Mode = Literal["ns", "lsm", "weak"]


class SandboxUnavailable(FilterError):
    """No isolation strong enough holds here and weak runs were not allowed."""


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


# --------------------------------------------------------------------------- parent side
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"
_PY_FLAGS = ("-s", "-S", "-P", "-B")
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
_KILL = shutil.which("kill", path=_ENV_PATH)


def _python() -> str:
    return os.path.realpath(sys.executable)


_child_pyc: str | None = None
_child_lock = threading.Lock()


def _child_program() -> str:
    """The child program as a .pyc compiled once per factory process (in a 0700 temp
    folder, removed at exit): the interpreter runs it as is, so no sandboxed process
    spends ~6 ms compiling the source.  Falls back to the source file."""
    global _child_pyc
    with _child_lock:
        if _child_pyc is None:
            import atexit
            import py_compile
            folder = tempfile.mkdtemp(prefix="factory-sbx-child-")
            atexit.register(shutil.rmtree, folder, True)
            try:
                _child_pyc = py_compile.compile(CHILD_PATH, cfile=os.path.join(folder, "sandbox_child.pyc"),
                                                doraise=True)
            except (py_compile.PyCompileError, OSError):
                _child_pyc = CHILD_PATH
    return _child_pyc


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
        home = "/tmp" if cfg["mode"] == "ns" else self.workdir  # "ns": the private tmpfs
        try:
            self.popen = subprocess.Popen(
                [_python(), *_PY_FLAGS, _child_program()], stdin=subprocess.PIPE,
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
              limits: Limits = Limits(), allow_weak: bool = False) -> SandboxResult:
    """Run `tests` against `code` in a fresh sandbox and say whether they provably passed.
    Raises SandboxUnavailable where only the weak mode holds, unless allow_weak."""
    t0 = time.monotonic()
    st = _static()
    root = st["root"]
    mode = _mode(allow_weak)
    nonce = secrets.token_hex(16)
    base = {"mode": mode, "require_ns": mode == "ns", "require_lsm": mode == "lsm",
            "keep": st["keep"], "system_dirs": st["system_dirs"], "tmp_bytes": 64 << 20,
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
                        _kill_procs([cand], root, mode)
            if verdict:
                break
        if verdict is None:
            _drain_res(res_r, res_buf, None)
    finally:
        if procs:
            if verdict is None and cand.popen.poll() is None:
                # normal end: the candidate leaves on its own once the tests hang up
                try:
                    cand.popen.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            _kill_procs(procs, root, mode)
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


def _kill_procs(procs: list[_Proc], root: bool, mode: Mode) -> None:
    """SIGKILL everything of these runs.

    Root: every process of the run's uid at once (kill(-1) as that uid) -- the namespace's
    PID 1 among them, so the kernel takes the whole PID namespace down and the root relay
    reaps it and exits by itself.  With a PID namespace and the relay already gone there is
    nothing left to kill: the kernel killed and reaped the namespace before the relay's
    wait returned, and no process of the uid exists outside it.  Then the session: not
    root with namespaces that is the relay alone, and its death SIGKILLs the namespace's
    PID 1 (PR_SET_PDEATHSIG), which takes the namespace down; in "lsm" mode seccomp
    denies setsid, so every process of the run is still in its session."""
    if root:
        for p in procs:
            if not (mode == "ns" and p.popen.poll() is not None):
                _kill_uid(p.uid)
    for p in procs:
        if p.popen.poll() is None:
            try:  # the relay SIGKILLs what it runs, reaps it all and exits
                os.kill(p.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
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
        if mode == "weak" and not root:
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


def _run_safely(code: str, tests: str, entry: str | None, limits: Limits,
                allow_weak: bool) -> SandboxResult:
    t0 = time.monotonic()
    try:
        return run_tests(code, tests, entry, limits, allow_weak)
    except Exception as e:  # e.g. out of fds or processes on the host: not the candidate's fault
        return SandboxResult("crashed", f"sandbox error: {type(e).__name__}: {e}", "",
                             round(time.monotonic() - t0, 4))


def run_many(items: Iterable[tuple], limits: Limits = Limits(),
             workers: int = 2, allow_weak: bool = False) -> Iterator[tuple[Hashable, SandboxResult]]:
    """Run sandboxes `workers` at a time; yield (key, result) as each finishes.  Items are
    (key, code, tests, entry_point), or with a fifth element, that run's own Limits (a seed
    with many input/output cases gets a longer wall clock).
    Raises SandboxUnavailable before the first run where only the weak mode holds, unless
    allow_weak."""
    _mode(allow_weak)
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        pending: dict = {}

        def fill() -> None:
            while len(pending) < workers * 2:
                try:
                    key, code, tests, entry, *own = next(it)
                except StopIteration:
                    return
                pending[pool.submit(_run_safely, code, tests, entry, own[0] if own else limits,
                                    allow_weak)] = key

        fill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                yield key, fut.result()
            fill()


_isolation: dict | None = None
_isolation_lock = threading.Lock()
# Tests set this to probe and run the no-namespace ("lsm") mode on a machine that has both.
_NO_NAMESPACES = False


def isolation() -> dict:
    """Which layers hold here, probed once by starting a sandbox child in probe mode.

    Keys: mode ("ns", "lsm" or "weak"), weak (bool), missing (what a weak mode lacks, in
    words), layers (what holds, in words), and the probe's own flags: root, uid_drop,
    userns, caps_dropped, netns, mountns, pidns, ipcns, landlock_abi, seccomp_available,
    socket_hook, visible_dirs (with a mount namespace), ns_error (why namespaces failed)."""
    global _isolation
    with _isolation_lock:
        if _isolation is None:
            _isolation = _summarize(_probe())
    return dict(_isolation)


def _mode(allow_weak: bool) -> Mode:
    iso = isolation()
    if iso["weak"] and not allow_weak:
        raise SandboxUnavailable(
            "code sandbox: no isolation holds on this machine (" + "; ".join(iso["missing"])
            + "): a candidate could kill the factory, leave processes running or write outside "
            "its folder; set filter.code.allow_weak_sandbox: true to run code checks anyway")
    return iso["mode"]


def _summarize(held: dict) -> dict:
    """Name the mode the probe allows and say what holds and what is missing."""
    root = bool(held.get("root"))
    ns = bool(held.get("mountns") and held.get("pidns") and held.get("netns")
              and (held.get("uid_drop") if root else held.get("caps_dropped")))
    landlock, seccomp = int(held.get("landlock_abi") or 0), bool(held.get("seccomp_available"))
    lsm = landlock >= 1 and seccomp
    mode: Mode = "ns" if ns else "lsm" if lsm else "weak"
    layers = []
    if ns:
        layers.append("own uid (root)" if root else "user namespace, no capabilities")
        layers += ["PID namespace", "network namespace", "mount namespace + whitelist root",
                   "IPC namespace"]
    else:
        if root and held.get("uid_drop"):
            layers.append("own uid (root)")
        if mode == "lsm":
            layers += [f"Landlock ABI {landlock}", "seccomp"]
    missing = []
    if mode == "weak":
        why = held.get("ns_error") or held.get("error") or "refused"
        missing.append(f"no namespaces ({why})" if root else f"no user namespaces ({why})")
        if not landlock:
            missing.append("no Landlock" + (f" ({held['landlock_error']})" if held.get("landlock_error") else ""))
        if not seccomp:
            missing.append("no seccomp" + (f" ({held['seccomp_error']})" if held.get("seccomp_error") else ""))
    return dict(held, mode=mode, weak=mode == "weak", layers=layers, missing=missing)


def _probe() -> dict:
    """Start one sandbox child in probe mode: it sets up what it can and says what held."""
    st = _static()
    cfg = {"role": "probe", "mode": "lsm" if _NO_NAMESPACES else "ns", "require_ns": False,
           "require_lsm": False, "keep": st["keep"], "system_dirs": st["system_dirs"],
           "tmp_bytes": 1 << 20, "stdlib_world_readable": st["stdlib_world_readable"],
           "rlimits": _rlimits(Limits(), 4), "ppid": os.getpid()}
    uid = _alloc_uid() if st["root"] else os.getuid()
    work = tempfile.mkdtemp(prefix="factory-sbx-probe-")
    try:
        if st["root"]:
            os.chown(work, uid, uid)
        cfg.update(uid=uid, workdir=work)
        p = subprocess.run([_python(), *_PY_FLAGS, _child_program()], input=marshal.dumps(cfg),
                           capture_output=True, env=_env(work), cwd="/",
                           start_new_session=True, timeout=30)
        try:
            held = marshal.loads(p.stdout)
        except (EOFError, ValueError, TypeError):
            held = {"error": (p.stdout + p.stderr).decode("utf-8", "replace").strip()[-300:]
                    or f"probe exited with {p.returncode}", "root": st["root"]}
        if held.get("mountns"):
            held["visible_dirs"] = st["system_dirs"] + [st["keep"]]
        return held
    finally:
        if st["root"]:
            _kill_uid(uid)
            _release_uid(uid)
        shutil.rmtree(work, ignore_errors=True)
