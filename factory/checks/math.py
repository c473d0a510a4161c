"""Math answers against references with math-verify, in worker processes with hard timeouts.

math-verify's own timeout is ``signal.alarm``: it only works on a process's main thread, and
it cannot interrupt C code (sympy evaluating ``9^{9^{9^{9}}}`` multiplies big integers in C
and never returns to the interpreter). So every comparison runs in a small pool of worker
processes, each the main thread of its own interpreter with math-verify's timeouts disabled:

- ``workers`` processes (default 2) are started with ``subprocess`` (a fresh interpreter:
  nothing forked from a parent that holds threads or database handles), import math-verify,
  warm it up and say ``ready``; only ready workers get items.
- The parent feeds one item at a time to each idle worker over its stdin (JSON lines) and
  waits on the workers' stdout with ``selectors``. Each item gets a deadline when it is sent
  (``timeout_s``); a worker that overruns is killed with SIGKILL and replaced, and the item is
  recorded as ``verify_timeout``. A worker that dies (e.g. its address-space limit,
  ``memory_mb``, was hit) records ``error`` and is replaced; workers are also recycled after
  ``max_tasks`` items so sympy's caches cannot grow without bound.
- Items are pulled from the input iterator only when a worker is free, and results are
  yielded as they complete (not in input order): memory stays bounded for any input size.

Every verdict's ``detail`` starts with the rule that decided it, ``"<rule>: <free text>"``:

- ``numeric_equal`` / ``numeric_unequal``: both sides are plain values (``fast_verdict``, pure, run
  in the parent before any worker): exact rationals, relative tolerance 1e-9, after dropping
  currency (``\\$``, ``USD``, ``€``), thousands separators, unit words (``cm^2``, ``km/h``,
  ``(apples)``), degrees and ``x =``; with ``12:50`` / ``3:45 PM`` times, ``4e33`` /
  ``4 \\times 10^{33}``, fractions and mixed numbers (``2\\frac{1}{2}``). A reference written with
  d decimals also accepts an exact fraction, or a decimal with at least d+2 places, that rounds
  to it (``1/3`` for ``0.33``, ``3.1416`` for ``3.14``); never a coarser one (``0.33`` for ``1/3``).
  Percent: ``50\\%`` equals both ``50`` (GSM8K writes the number) and ``0.5``. Multiplier words
  change the value (``3 thousand`` is 3000, never 3); ``7 dozen`` answers both "how many dozen" (7)
  and "how many" (84).
- ``base_mismatch``: ``2516_9`` against ``2516_8``; a bare ``2516`` against ``2516_8`` is the same
  digits (``numeric_equal``).
- ``choice_equal`` / ``choice_unequal``: a reference ``B`` / ``(B)`` / ``\\text{(B)}`` against an
  answer ``(B)``, ``\\text{B}``, ``B) 42``, ``Option B``.
- ``text_equal`` / ``text_unequal``: words (``Monday``, ``\\text{yes}``), case/space/LaTeX-insensitive;
  also a choice reference against an answer that is not a letter (it may be the option's value).
- ``symbolic_equal`` / ``symbolic_unequal``: math-verify, in a worker. Its "equal" is re-checked:
  numbers exactly (its float tolerance matches ``.0000673`` with ``.0000672``), a rounded decimal
  for an exact irrational reference is refused, and differing exponents as written get an exact
  sympy check.
- ``unparseable_answer`` (failed) / ``unparseable_reference`` (error): math-verify reads nothing.

``unparseable_answer``, ``unparseable_reference`` and ``text_unequal`` are the verdicts a judge
may re-check; every other rule is final.

Precision over recall: ``verify_traces`` takes whole completions and verifies only the FINAL
answer that ``factory.parse`` finds after the reasoning. A truncated trace, an unclosed
``<think>``, a hedged answer or a right number met only inside the reasoning is rejected
before math-verify is even called, where math-verify over the whole text would credit it.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Hashable, Iterable, Iterator

from factory.values import (  # noqa: F401 - strip_units, read_plain_value: part of this API
    PlainValue,
    _num_eq,
    _show,
    _text_key,
    _UNESCAPED_DOLLAR,
    clean_value_text,
    compare_plain,
    fast_verdict,
    normalize_answer,
    read_choice,
    read_plain_value,
    strip_units,
)

__all__ = ["Verdict", "VerifyPool", "verify_many", "verify_one", "verify_traces", "check_pair", "check_references",
           "strip_units", "fast_verdict", "read_plain_value", "normalize_answer"]

# statuses
PASSED = "passed"
FAILED = "failed"
TIMEOUT = "verify_timeout"
NO_ANSWER = "no_answer"
ERROR = "error"

MAX_ANSWER_CHARS = 2_000      # longer "final answers" are not compared (prose, garbage)
MAX_REFERENCE_CHARS = 2_000
MAX_TEXT_CHARS = 65_536       # raw-text mode (the naive baseline): the tail of the text
STARTUP_TIMEOUT_S = 120.0     # a worker that is not ready by then is killed (slow import on a busy box)

_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `factory` package


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str            # passed | failed | verify_timeout | no_answer | error | truncated | unclosed_think | hedged_answer
    detail: str = ""
    answer: str | None = None   # the final answer that was compared (verify_traces)
    seconds: float = 0.0        # wall time in the worker pool (0 for verdicts decided up front)


# --------------------------------------------------------------------------- worker side

_MV: dict[str, Any] = {}


def _mv():
    if not _MV:
        import logging

        for name in ("math_verify", "latex2sympy2_extended"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        _MV.update(
            parse=parse,
            verify=verify,
            gold_cfg=[LatexExtractionConfig(), ExprExtractionConfig()],
            pred_cfg=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
            raw_cfg=[LatexExtractionConfig(), ExprExtractionConfig()],
        )
    return _MV


def _parse_gold(ref: str, _cache: dict = {}):  # noqa: B006 - a per-process cache on purpose
    got = _cache.get(ref)
    if got is None:
        mv = _mv()
        got = mv["parse"]("$" + normalize_answer(ref) + "$", extraction_config=mv["gold_cfg"], parsing_timeout=None)
        if len(_cache) > 50_000:
            _cache.clear()
        _cache[ref] = got
    return got


_BASE_SUB_RE = re.compile(r"(?<![A-Za-z\\])([0-9A-Fa-f]*\d[0-9A-Fa-f]*)\)?\s*_\s*\{?\s*(\d{1,2})\s*\}?")
_EXPONENT_RE = re.compile(r"\^\s*(\{[^{}]*\}|\\?[A-Za-z0-9])")


def _bases(s: str) -> set[int]:
    return {int(m.group(2)) for m in _BASE_SUB_RE.finditer(s)}


def _exponents(s: str) -> list[str]:
    return sorted(re.sub(r"\s+", "", m.group(1)).strip("{}") for m in _EXPONENT_RE.finditer(s))


def _numeric_value(expr) -> Fraction | None:
    """A sympy result of math-verify as an exact-enough rational (40 digits), None if not a number."""
    try:
        import sympy

        if not isinstance(expr, sympy.Basic) or expr.free_symbols:
            return None
        if expr.is_Rational:
            return Fraction(int(expr.p), int(expr.q))
        val = sympy.N(expr, 40)
        if not val.is_real or not val.is_finite:
            return None
        return Fraction(str(sympy.Float(val, 40)))
    except Exception:  # noqa: BLE001 - no number: no guard
        return None


def _guard_numbers(gold, target, ref_plain: PlainValue | None, ans_plain: PlainValue | None) -> str | None:
    """math-verify said equal: re-check numbers exactly (its floats match to ~6 digits)."""
    g = ref_plain.value if ref_plain is not None and ref_plain.kind == "number" else _numeric_value(gold[0])
    t = ans_plain.value if ans_plain is not None and ans_plain.kind == "number" else _numeric_value(target[0])
    if g is None or t is None:
        return None
    if ref_plain is not None and ref_plain.kind == "number":
        a = ans_plain if ans_plain is not None and ans_plain.kind == "number" else PlainValue("number", t, None, True)
        same, detail = compare_plain(a, ref_plain)
        return None if same else detail + " (math-verify's float tolerance overruled)"
    if not _num_eq(t, g):
        return f"numeric_unequal: {_show(t)} vs {_show(g)} (a rounded value for an exact reference)"
    return None


def _guard_exponents(gold, target, predicted: str, reference: str) -> str | None:
    """math-verify said equal but the exponents differ as written: a second, exact sympy check."""
    if _exponents(predicted) == _exponents(reference):
        return None
    try:
        import sympy

        g, t = gold[0], target[0]
        if not (isinstance(g, sympy.Expr) and isinstance(t, sympy.Expr)):
            return None
        diff = sympy.simplify(g - t)
        if diff == 0:
            return None
        syms = sorted(diff.free_symbols, key=str)
        for k in range(3):
            pt = {s: sympy.Rational(3 + 2 * k, 7 + k) for s in syms}
            val = complex(diff.subs(pt).evalf(30))
            if abs(val) > 1e-9:
                return f"symbolic_unequal: exponents differ ({','.join(_exponents(predicted))} vs " \
                       f"{','.join(_exponents(reference))}) and the difference is not 0"
    except Exception:  # noqa: BLE001 - cannot decide: keep math-verify's verdict
        return None
    return None


_MATH_NAMES = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "frac", "dfrac", "tfrac", "pi",
               "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "max", "min", "gcd", "lcm", "mod", "det",
               "infty", "infinity", "cdot", "times", "div", "left", "right", "circ", "le", "ge", "leq", "geq",
               "neq", "approx", "pm", "mp", "cup", "cap", "in", "mathbb", "text", "mathrm", "boxed", "binom"}


def _prose_words(answer: str) -> list[str]:
    """Words of three or more letters in an answer that are not LaTeX commands or math names."""
    return [w for w in re.findall(r"(?<![\\A-Za-z])[A-Za-z]{3,}", answer) if w.lower() not in _MATH_NAMES]


def check_pair(predicted: str, reference: str, mode: str = "answer") -> tuple[str, str]:
    """(status, "<rule>: detail") for one comparison, in THIS process and with no timeout.

    Only ever called inside a worker (or on trusted, tiny inputs): a pathological expression
    can hang it. ``mode="answer"``: ``predicted`` is a final answer: plain values first
    (``fast_verdict``), then math-verify on ``$\\boxed{…}$`` with guards; ``mode="raw_text"``:
    ``predicted`` is a whole completion, handed to math-verify as is (the naive baseline);
    ``mode="reference"``: is ``reference`` usable (``predicted`` is ignored).
    """
    if mode == "reference":
        return reference_verdict(reference)
    if mode == "answer":
        fast = fast_verdict(predicted, reference)
        if fast is not None:
            return fast
    mv = _mv()
    gold = _parse_gold(reference)
    if not gold:
        return ERROR, f"unparseable_reference: math-verify reads nothing in {reference[:60]!r}"
    if mode == "raw_text":
        target = mv["parse"](predicted[-MAX_TEXT_CHARS:], extraction_config=mv["raw_cfg"], parsing_timeout=None)
        if not target:
            return FAILED, "unparseable_answer: no answer in the text"
        ok = mv["verify"](gold, target, timeout_seconds=None)
        return (PASSED, "symbolic_equal: math-verify") if ok else (FAILED, "symbolic_unequal: math-verify")
    target = mv["parse"]("$\\boxed{" + normalize_answer(predicted) + "}$", extraction_config=mv["pred_cfg"],
                         parsing_timeout=None)
    if not target:
        return FAILED, f"unparseable_answer: math-verify reads nothing in {predicted[:60]!r}"
    pb, rb = _bases(predicted), _bases(reference)
    if pb and rb and pb != rb:
        return FAILED, f"base_mismatch: base {sorted(pb)} answer, base {sorted(rb)} reference"
    ok = mv["verify"](gold, target, timeout_seconds=None)
    if not ok:
        words = _prose_words(predicted)
        if words:  # math-verify read the words as products of symbols: no verdict on the meaning
            return FAILED, f"text_unequal: the answer has words math-verify cannot weigh: {', '.join(words[:3])}"
        return FAILED, "symbolic_unequal: math-verify"
    why = _guard_numbers(gold, target, read_plain_value(reference), read_plain_value(predicted))
    if why is None:
        why = _guard_exponents(gold, target, predicted, reference)
    if why is not None:
        return FAILED, why
    return PASSED, "symbolic_equal: math-verify"


def _worker_main() -> None:
    """Entry point of a worker process: JSON lines in on stdin, JSON lines out."""
    out = os.fdopen(os.dup(1), "w", encoding="ascii", buffering=1)
    os.dup2(2, 1)  # anything printed by a library goes to stderr, not into the protocol
    try:  # Linux: die with the parent, even when it is SIGKILLed mid-item
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            return
    except Exception:  # noqa: BLE001 - not Linux: stdin EOF still ends an idle worker
        pass
    mem = int(os.environ.get("FACTORY_VERIFY_MEM_MB") or 0)
    if mem > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (mem << 20, mem << 20))
        except (ImportError, ValueError, OSError):
            pass
    _mv()  # import and warm up before saying ready
    check_pair("x+1", "1+x")
    check_pair("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}")
    out.write('{"ready": 1}\n')
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return
        seq = -1
        t0 = time.perf_counter()
        try:
            seq, pred, ref, mode = json.loads(line)
            status, detail = check_pair(pred, ref, mode)
        except MemoryError:
            status, detail = ERROR, "out of memory"
        except RecursionError:
            status, detail = ERROR, "recursion limit"
        except Exception as e:  # noqa: BLE001 - report, never die on one item
            status, detail = ERROR, f"{type(e).__name__}: {str(e)[:200]}"
        out.write(json.dumps([seq, status, detail, time.perf_counter() - t0]) + "\n")


# --------------------------------------------------------------------------- parent side


class _Worker:
    """One worker process running `module`'s _worker_main (math-verify here; checks/gym.py's scorers too)."""

    __slots__ = ("proc", "fd", "buf", "ready", "job", "deadline", "tasks", "started")

    def __init__(self, env: dict[str, str], module: str = "factory.checks.math"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from {module} import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, cwd=str(_ROOT), env=env, bufsize=0,
        )
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.ready = False
        self.job: tuple | None = None  # (seq, key, answer, sent_at)
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


class VerifyPool:
    """A pool of math-verify worker processes; reuse it for many ``verify_many`` calls.

    Not thread-safe: one ``verify_many`` at a time per pool.
    """

    def __init__(self, workers: int = 2, memory_mb: int = 2048, max_tasks: int = 5000):
        self.n = max(1, int(workers))
        self.max_tasks = max_tasks
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        self.env["FACTORY_VERIFY_MEM_MB"] = str(int(memory_mb or 0))
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.workers: list[_Worker] = []
        self.sel = selectors.DefaultSelector()
        self.failed_starts = 0
        self.stats = {"timeouts": 0, "crashes": 0, "restarts": 0}
        self._busy = False
        self._closed = False
        for _ in range(self.n):
            self._spawn()

    # -- lifecycle
    def _spawn(self) -> _Worker:
        w = _Worker(self.env)
        self.workers.append(w)
        self.sel.register(w.fd, selectors.EVENT_READ, w)
        return w

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

    def close(self) -> None:
        self._closed = True
        for w in list(self.workers):
            self._drop(w)
        self.sel.close()

    def __enter__(self) -> VerifyPool:
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
    def verify_many(self, items: Iterable[tuple], timeout_s: float = 5.0, mode: str = "answer") -> Iterator[tuple[Hashable, Verdict]]:
        """Yield ``(key, Verdict)`` for ``(key, predicted, reference)`` items, as they complete."""
        return self._run(((k, p, r, None) for k, p, r in items), timeout_s, mode)

    def _run(self, items: Iterable[tuple], timeout_s: float, mode: str) -> Iterator[tuple[Hashable, Verdict]]:
        if self._closed:
            raise RuntimeError("VerifyPool is closed")
        if self._busy:
            raise RuntimeError("VerifyPool.verify_many is already running (one at a time per pool)")
        self._busy = True
        it = iter(items)
        more = True
        seq = 0
        max_pred = MAX_TEXT_CHARS if mode == "raw_text" else MAX_ANSWER_CHARS
        try:
            while True:
                # 1. hand an item to every idle, ready worker (verdicts decided up front go straight out)
                for w in list(self.workers):
                    while more and w.ready and w.job is None:
                        try:
                            key, pred, ref, pre = next(it)
                        except StopIteration:
                            more = False
                            break
                        if pre is not None:
                            yield key, pre
                            continue
                        v = _precheck(pred, ref, max_pred, mode)
                        if v is not None:
                            yield key, v
                            continue
                        seq += 1
                        msg = (json.dumps([seq, pred, ref, mode]) + "\n").encode("ascii")
                        if not w.send(msg):
                            self.stats["crashes"] += 1
                            self._replace(w)
                            yield key, Verdict(ERROR, "worker died before the item was sent")
                            break
                        w.job = (seq, key, pred, time.monotonic())
                        w.deadline = w.job[3] + timeout_s
                busy = [w for w in self.workers if w.job is not None]
                if not more and not busy:
                    return
                # 2. wait for a result, a ready line, a death or the nearest deadline
                now = time.monotonic()
                waits = [w.deadline - now for w in busy]
                waits += [w.started + STARTUP_TIMEOUT_S - now for w in self.workers if not w.ready]
                wait = max(0.0, min(waits)) if waits else None
                for sk, _ in self.sel.select(wait):
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
                            self.failed_starts += 1
                            if self.failed_starts >= 3 * self.n + 3:
                                raise RuntimeError("math-verify workers keep dying at start-up "
                                                   "(is math-verify installed? pip install 'math-verify[antlr4_13_2]')")
                        self.stats["crashes"] += 1
                        self._replace(w)
                        if job is not None:
                            yield job[1], Verdict(ERROR, "worker died (memory limit or crash)",
                                                  seconds=time.monotonic() - job[3])
                        continue
                    w.buf += data
                    while b"\n" in w.buf:
                        line, w.buf = w.buf.split(b"\n", 1)
                        msg = json.loads(line)
                        if isinstance(msg, dict):
                            w.ready = True
                            self.failed_starts = 0
                            continue
                        rseq, status, detail, secs = msg
                        job = w.job
                        if job is None or (rseq != job[0] and rseq != -1):
                            continue  # stale (cannot happen with one job per worker)
                        w.job = None
                        w.tasks += 1
                        yield job[1], Verdict(status, detail, seconds=secs)
                    if w.job is None and w.tasks >= self.max_tasks and w in self.workers:
                        self._replace(w)  # recycle: bounded caches
                # 3. deadlines: SIGKILL the overrunning worker, record the item, start a new worker
                now = time.monotonic()
                for w in list(self.workers):
                    if w.job is not None and now >= w.deadline:
                        job = w.job
                        self.stats["timeouts"] += 1
                        self._replace(w)
                        yield job[1], Verdict(TIMEOUT, f"no verdict within {timeout_s:g}s; worker killed",
                                              seconds=now - job[3])
                    elif not w.ready and now >= w.started + STARTUP_TIMEOUT_S:
                        self.failed_starts += 1
                        if self.failed_starts >= 3 * self.n + 3:
                            raise RuntimeError("math-verify workers do not start")
                        self._replace(w)
        finally:
            # closed early (or failed): a worker still holding an item would answer later; replace it
            for w in list(self.workers):
                if w.job is not None:
                    self._replace(w)
            self._busy = False


def _precheck(pred, ref, max_pred: int, mode: str = "answer") -> Verdict | None:
    """A verdict decided in the parent (no worker round trip), or None."""
    if mode == "reference":
        if ref is None or not isinstance(ref, str) or not ref.strip():
            return Verdict(FAILED, "empty reference")
        why = reference_problem(ref)
        return Verdict(FAILED, why) if why is not None else None
    if pred is None or not isinstance(pred, str) or not pred.strip():
        return Verdict(NO_ANSWER, "no final answer")
    if ref is None or not isinstance(ref, str) or not ref.strip():
        return Verdict(ERROR, "no reference")
    if len(pred) > max_pred:
        return Verdict(ERROR, f"answer longer than {max_pred} characters")
    if len(ref) > MAX_REFERENCE_CHARS:
        return Verdict(ERROR, f"reference longer than {MAX_REFERENCE_CHARS} characters")
    if mode == "answer":
        t0 = time.perf_counter()
        try:
            fast = fast_verdict(pred, ref)
        except Exception:  # noqa: BLE001 - the worker will decide
            fast = None
        if fast is not None:
            return Verdict(fast[0], fast[1], seconds=time.perf_counter() - t0)
    return None


# --------------------------------------------------------------------------- public API


def verify_many(
    items: Iterable[tuple[Hashable, str | None, str]],
    timeout_s: float = 5.0,
    workers: int = 2,
    *,
    pool: VerifyPool | None = None,
    mode: str = "answer",
) -> Iterator[tuple[Hashable, Verdict]]:
    """Verify ``(key, predicted_final_answer, reference)`` items; yields ``(key, Verdict)`` as
    they complete (any order). Streaming: items are consumed only as workers free up.

    Each item has a hard deadline of ``timeout_s`` seconds from when a worker gets it; an
    overrunning worker is SIGKILLed and replaced and the item is ``verify_timeout``.
    Pass ``pool`` to reuse warm workers across calls; otherwise a pool of ``workers``
    processes is started (about a second) and closed at the end.
    """
    if pool is not None:
        yield from pool.verify_many(items, timeout_s=timeout_s, mode=mode)
        return
    it = iter(items)
    first = next(it, None)
    if first is None:  # nothing to verify: start no workers (a refresh with nothing new pays nothing)
        return
    items = itertools.chain([first], it)
    with VerifyPool(workers=workers) as p:
        yield from p.verify_many(items, timeout_s=timeout_s, mode=mode)


# --------------------------------------------------------------------------- units and references
_TEX_WORD_RE = re.compile(r"\\[A-Za-z]+")
_KNOWN_WORDS = {"sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
                "log", "ln", "exp", "lim", "max", "min", "gcd", "lcm", "mod", "det", "deg", "sqrt", "frac",
                "infty", "text", "mathrm", "pmod", "bmod", "cup", "cap", "in", "or", "and"}


def reference_problem(reference: str) -> str | None:
    """Why a reference cannot be read as ONE value the way a human reads it, or None (pure checks)."""
    r = reference
    if not isinstance(r, str) or not r.strip():
        return "empty reference"
    if len(r) > MAX_REFERENCE_CHARS:
        return f"longer than {MAX_REFERENCE_CHARS} characters"
    depth = 0
    i = 0
    while i < len(r):
        c = r[i]
        if c == "\\":
            i += 2
            continue
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return "unbalanced braces"
        i += 1
    if depth:
        return "unbalanced braces"
    odd_dollars = len(_UNESCAPED_DOLLAR.findall(r)) % 2 == 1  # "$5" (currency) is fine when read as a value
    if (r.count("\\[") != r.count("\\]") or r.count("\\(") != r.count("\\)")
            or (odd_dollars and read_plain_value(r) is None)):
        return "leftover math delimiters"
    if r.count("\\begin") != r.count("\\end"):
        return "unbalanced \\begin/\\end"
    if read_choice(r) is not None:
        return None
    v = read_plain_value(r)
    if v is not None:
        return f"text around the value: {r.strip()[:60]!r} (strip_units: true reads {strip_units(r)!r})" if v.unit else None
    key = _text_key(r)
    if key is not None:
        return None if len(key.split()) <= 3 else f"long text: {r.strip()[:60]!r} (only a judge can compare it)"
    s = clean_value_text(r)
    s = re.sub(r"\\(?:begin|end)\s*\{[A-Za-z*]+\}", " ", s)
    # words outside \text{...} become products of symbols in sympy: "9 apples" = 9*a*p*p*l*e*s
    bare = re.sub(r"\\(?:text|mathrm|textrm|mbox|operatorname)\s*\{\s*(?:or|and|if|for|otherwise)?\s*\}", " ", s)
    bare = _TEX_WORD_RE.sub(" ", bare)
    for w in re.findall(r"[A-Za-z]{3,}", bare):
        if w.lower() not in _KNOWN_WORDS:
            return f"text around the value: {r.strip()[:60]!r}"
    return None


def reference_verdict(reference: str) -> tuple[str, str]:
    """(passed | failed, detail): is ``reference`` usable? Runs math-verify's parsing: call in a worker."""
    why = reference_problem(reference)
    if why is not None:
        return FAILED, why
    if read_choice(reference) is not None:
        return PASSED, "choice"
    if read_plain_value(reference) is not None:
        return PASSED, "plain value"
    if _text_key(reference) is not None:
        return PASSED, "text"
    if not _parse_gold(reference):
        return FAILED, "unparseable"
    return PASSED, "math-verify expression"


def check_references(
    items: Iterable[tuple[Hashable, str]],
    timeout_s: float = 5.0,
    workers: int = 2,
    *,
    pool: VerifyPool | None = None,
) -> Iterator[tuple[Hashable, Verdict]]:
    """Is each ``(key, reference)`` usable? Yields ``(key, Verdict)`` as they complete (any order):
    ``passed`` = the verifier reads all of it as one value/expression; ``failed`` = unusable, with a
    short reason in ``detail`` ("unbalanced braces", "text around the value: '9 (apples)'",
    "unparseable"). The parsing runs in the worker processes (``mode="reference"``), with the same
    hard deadline as verification (a hang is ``verify_timeout``).
    """
    triples = ((k, "-", r) for k, r in items)
    if pool is not None:
        yield from pool.verify_many(triples, timeout_s=timeout_s, mode="reference")
        return
    it = iter(triples)
    first = next(it, None)
    if first is None:
        return
    with VerifyPool(workers=workers) as p:
        yield from p.verify_many(itertools.chain([first], it), timeout_s=timeout_s, mode="reference")


_DEFAULT_POOL: VerifyPool | None = None


def _default_pool() -> VerifyPool:
    global _DEFAULT_POOL
    if _DEFAULT_POOL is None or _DEFAULT_POOL._closed:
        _DEFAULT_POOL = VerifyPool(workers=1)
        atexit.register(_DEFAULT_POOL.close)
    return _DEFAULT_POOL


def verify_one(predicted: str | None, reference: str, timeout_s: float = 5.0) -> Verdict:
    """One comparison on a shared, lazily started single-worker pool (kept warm between calls)."""
    for _, v in _default_pool().verify_many([(0, predicted, reference)], timeout_s=timeout_s):
        return v
    raise AssertionError("unreachable")


def _trace_verdict(p) -> Verdict | None:
    """The verdict decided by parsing alone (None: the answer goes to math-verify)."""
    if p.truncated:
        return Verdict("truncated", p.error or "finish_reason=length", p.answer)
    if p.error == "unclosed_think":
        return Verdict("unclosed_think", "the <think> block is never closed: no final answer", None)
    if p.error == "hedged_answer":
        return Verdict("hedged_answer", "more than one candidate final answer", None)
    if p.answer is None:
        return Verdict(NO_ANSWER, p.error or "no final answer after the reasoning", None)
    return None


def verify_traces(
    items: Iterable[tuple[Hashable, str | None, str | None, str | None, str]],
    timeout_s: float = 5.0,
    workers: int = 2,
    *,
    pool: VerifyPool | None = None,
    domain: str = "math",
) -> Iterator[tuple[Hashable, Verdict]]:
    """Verify whole completions ``(key, text, reasoning_field, finish_reason, reference)``.

    The verdict comes from the FINAL answer only (``factory.parse``): ``truncated``,
    ``unclosed_think``, ``hedged_answer`` and ``no_answer`` are decided before math-verify is
    called; the rest is ``verify_many`` on the parsed answer (``Verdict.answer`` holds it).
    """
    from factory.parse import parse

    answers: dict[Hashable, str] = {}

    def prepared():
        for key, text, reasoning, finish_reason, reference in items:
            p = parse(text, reasoning, domain, finish_reason)
            pre = _trace_verdict(p)
            if pre is None:
                answers[key] = p.answer
            yield key, p.answer, reference, pre

    def run(pl: VerifyPool):
        for key, v in pl._run(prepared(), timeout_s, "answer"):
            a = answers.pop(key, None)
            yield key, (Verdict(v.status, v.detail, a, v.seconds) if a is not None else v)

    if pool is not None:
        yield from run(pool)
        return
    with VerifyPool(workers=workers) as p:
        yield from run(p)
