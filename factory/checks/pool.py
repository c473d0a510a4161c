"""Worker processes for checks that may hang or blow up (math-verify, reasoning-gym's scorers).

    pool = WorkerPool("factory.checks.math", workers=2, env={"FACTORY_VERIFY_MEM_MB": "2048"}, what=...)
    for done in pool.run(jobs, timeout_s=5.0): ...     # jobs: (key, args or None, context)

A worker is `python -c "from <module> import _worker_main; _worker_main()"`; the module's
`_worker_main` calls `serve(handle, ...)`, which prepares the process (dies with its parent, a memory
limit, library prints kept out of the protocol), says `{"ready": 1}` and then answers JSON lines
`[seq, *args]` with `[seq, handle(*args), error, seconds]`. An exception in `handle` is that item's
error; the worker lives on.

The parent hands one job at a time to each ready worker and waits (selectors) for a reply, a death,
or the nearest deadline: a worker past its item's deadline is SIGKILLed and replaced, one that dies is
replaced, one that answered `max_tasks` items is recycled (bounded caches). Results come back as they
complete, in any order, as `Done(key, context, kind, value, seconds)`:

    kind "ok"       value = what `handle` returned
         "error"    value = the worker's one-line error (the exception in `handle`)
         "timeout"  no reply within timeout_s; the worker was killed
         "died"     the worker died holding the item (memory limit, crash)
         "unsent"   the worker died before the item could be sent
         "decided"  the job had no args: its context passes straight through (decided by the caller)

Pure: no store, no config. One `run` at a time per pool.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["WorkerPool", "Done", "serve"]

STARTUP_TIMEOUT_S = 120.0  # a worker not ready by then is killed (a slow import on a busy box)
_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `factory` package


class Done(NamedTuple):
    key: Hashable
    context: Any
    kind: str  # ok | error | timeout | died | unsent | decided
    value: Any
    seconds: float


# -- worker side -----------------------------------------------------------------------------------

def serve(handle: Callable[..., Any], memory_env: str, warm: Callable[[], Any] | None = None) -> None:
    """The worker's loop (see the module's docstring); `memory_env` names the variable holding its
    address-space limit in MiB; `warm` runs (imports, first calls) before the worker says it is ready,
    so the first item's deadline is its own."""
    out = os.fdopen(os.dup(1), "w", encoding="ascii", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    try:  # Linux: die with the parent, even when it is SIGKILLed mid-item
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            return
    except Exception:  # noqa: BLE001 - not Linux: stdin EOF still ends an idle worker
        pass
    mem = int(os.environ.get(memory_env) or 0)
    if mem > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (mem << 20, mem << 20))
        except (ImportError, ValueError, OSError):
            pass
    if warm is not None:
        warm()
    out.write('{"ready": 1}\n')
    for line in sys.stdin.buffer:
        seq, t0 = -1, time.perf_counter()
        value = error = None
        try:
            seq, *args = json.loads(line)
            value = handle(*args)
        except MemoryError:
            error = "out of memory"
        except RecursionError:
            error = "recursion limit"
        except Exception as e:  # noqa: BLE001 - report, never die on one item
            error = f"{type(e).__name__}: {str(e)[:200]}"
        out.write(json.dumps([seq, value, error, time.perf_counter() - t0]) + "\n")


# -- parent side -----------------------------------------------------------------------------------

class _Worker:
    __slots__ = ("proc", "fd", "buf", "ready", "job", "deadline", "tasks", "started")

    def __init__(self, module: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from {module} import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, cwd=str(_ROOT), env=env, bufsize=0,
        )
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.ready = False
        self.job: tuple | None = None  # (seq, key, context, sent_at)
        self.deadline = 0.0
        self.tasks = 0
        self.started = time.monotonic()

    def send(self, msg: bytes) -> bool:
        try:
            self.proc.stdin.write(msg)
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def kill(self) -> None:
        try:
            self.proc.kill()  # SIGKILL
        except OSError:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class WorkerPool:
    """`workers` processes of `module`'s `_worker_main`; `env` adds to this process's environment;
    `what` names them in the error raised when they keep failing to start ("math-verify workers (is
    math-verify installed? …)")."""

    def __init__(self, module: str, workers: int = 2, env: dict[str, str] | None = None, max_tasks: int = 5000,
                 what: str = "check workers"):
        self.module, self.n, self.max_tasks, self.what = module, max(1, int(workers)), max_tasks, what
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.env.update(env or {})
        self.workers: list[_Worker] = []
        self.sel = selectors.DefaultSelector()
        self.failed_starts = 0
        self.stats = {"timeouts": 0, "crashes": 0, "restarts": 0}
        self._busy = False
        self._closed = False
        for _ in range(self.n):
            self._spawn()

    # -- lifecycle
    def _spawn(self) -> None:
        w = _Worker(self.module, self.env)
        self.workers.append(w)
        self.sel.register(w.fd, selectors.EVENT_READ, w)

    def _drop(self, w: _Worker) -> None:
        try:
            self.sel.unregister(w.fd)
        except (KeyError, ValueError):
            pass
        w.kill()
        self.workers.remove(w)

    def _replace(self, w: _Worker) -> None:
        self._drop(w)
        self.stats["restarts"] += 1
        if not self._closed:
            self._spawn()

    def _started_badly(self) -> None:
        self.failed_starts += 1
        if self.failed_starts >= 3 * self.n + 3:
            raise RuntimeError(f"{self.what} keep failing to start")

    def close(self) -> None:
        self._closed = True
        for w in list(self.workers):
            self._drop(w)
        self.sel.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # best effort: never leave workers behind
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- the loop
    def run(self, jobs: Iterable[tuple[Hashable, list | None, Any]], timeout_s: float) -> Iterator[Done]:
        """`(key, args, context)` jobs -> `Done`s as they complete (see the module's docstring).
        Streaming: a job is taken from `jobs` only when a worker is free for it."""
        if self._closed:
            raise RuntimeError(f"the pool of {self.what} is closed")
        if self._busy:
            raise RuntimeError(f"the pool of {self.what} is already running (one run at a time per pool)")
        self._busy = True
        it = iter(jobs)
        more, seq = True, 0
        try:
            while True:
                # 1. a job to every idle, ready worker (jobs decided by the caller go straight out)
                for w in list(self.workers):
                    while more and w.ready and w.job is None:
                        try:
                            key, args, context = next(it)
                        except StopIteration:
                            more = False
                            break
                        if args is None:
                            yield Done(key, context, "decided", None, 0.0)
                            continue
                        seq += 1
                        if not w.send((json.dumps([seq, *args]) + "\n").encode("ascii")):
                            self.stats["crashes"] += 1
                            self._replace(w)
                            yield Done(key, context, "unsent", None, 0.0)
                            break
                        w.job = (seq, key, context, time.monotonic())
                        w.deadline = w.job[3] + timeout_s
                busy = [w for w in self.workers if w.job is not None]
                if not more and not busy:
                    return
                # 2. wait for a reply, a ready line, a death or the nearest deadline
                now = time.monotonic()
                waits = [w.deadline - now for w in busy]
                waits += [w.started + STARTUP_TIMEOUT_S - now for w in self.workers if not w.ready]
                for sk, _ in self.sel.select(max(0.0, min(waits)) if waits else None):
                    w = sk.data
                    if w not in self.workers:
                        continue
                    try:
                        data = os.read(w.fd, 1 << 16)
                    except OSError:
                        data = b""
                    if not data:  # the worker died
                        job = w.job
                        if not w.ready:
                            self._started_badly()
                        self.stats["crashes"] += 1
                        self._replace(w)
                        if job is not None:
                            yield Done(job[1], job[2], "died", None, time.monotonic() - job[3])
                        continue
                    w.buf += data
                    while b"\n" in w.buf:
                        line, w.buf = w.buf.split(b"\n", 1)
                        msg = json.loads(line)
                        if isinstance(msg, dict):
                            w.ready, self.failed_starts = True, 0
                            continue
                        rseq, value, error, secs = msg
                        job = w.job
                        if job is None or rseq not in (job[0], -1):
                            continue  # stale (cannot happen with one job per worker)
                        w.job = None
                        w.tasks += 1
                        yield Done(job[1], job[2], "ok" if error is None else "error",
                                   value if error is None else error, secs)
                    if w.job is None and w.tasks >= self.max_tasks and w in self.workers:
                        self._replace(w)  # recycle: bounded caches
                # 3. deadlines: SIGKILL the overrunning worker, report the item, start a new worker
                now = time.monotonic()
                for w in list(self.workers):
                    if w.job is not None and now >= w.deadline:
                        job = w.job
                        self.stats["timeouts"] += 1
                        self._replace(w)
                        yield Done(job[1], job[2], "timeout", None, now - job[3])
                    elif not w.ready and now >= w.started + STARTUP_TIMEOUT_S:
                        self._started_badly()
                        self._replace(w)
        finally:
            # closed early (or failed): a worker still holding an item would answer later; replace it
            for w in list(self.workers):
                if w.job is not None:
                    self._replace(w)
            self._busy = False
