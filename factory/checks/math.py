"""Math answers against references with math-verify, in worker processes with hard timeouts.

math-verify's own timeout is ``signal.alarm``: it only works on a process's main thread, and
it cannot interrupt C code (sympy evaluating ``9^{9^{9^{9}}}`` multiplies big integers in C
and never returns to the interpreter). So every comparison runs in a small pool of worker
processes, each the main thread of its own interpreter with math-verify's timeouts disabled:

- ``workers`` processes (default 2, factory/checks/pool.py) are started with ``subprocess`` (a fresh interpreter:
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
  answer ``(B)``, ``\\text{B}``, ``B) 42``, ``Option B``. A reference written with its value (NuminaMath
  ``C: 70``, ``\\textbf{(B)}\\ 60``): the letter decides, a value beside a right letter must not contradict
  it, and a value alone may match the option's value (``70``; a wrong letter never passes). ARC's numeric keys
  (``3``): ``Option 3``, ``3. \\$4,829``, ``(3) 20`` by their number.
  A bare label (``C``, ARC's ``3``) against an answer that is a value (``27``), when the item carries the
  problem and the options in it are read (``values.read_options``): ``choice_equal`` iff the value equals
  option C's and no other option's; equal to another option, or to two, is ``choice_unequal``; equal to
  none is ``text_unequal`` (a numeric key: compared with the key as before, ``3 apples`` for ``3``).
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
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Hashable, Iterable, Iterator

from factory.checks.pool import WorkerPool
from factory.values import (  # noqa: F401 - strip_units, read_plain_value: part of this API
    PlainValue,
    _num_eq,
    _show,
    _text_key,
    _UNESCAPED_DOLLAR,
    clean_value_text,
    compare_plain,
    fast_verdict,
    labelled_choice_values,
    normalize_answer,
    option_label,
    option_reference,
    option_value_verdict,
    read_choice,
    read_labelled_choice,
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


def check_pair(predicted: str, reference: str, mode: str = "answer",
               options: dict[str, str] | None = None) -> tuple[str, str]:
    """(status, "<rule>: detail") for one comparison, in THIS process and with no timeout.

    Only ever called inside a worker (or on trusted, tiny inputs): a pathological expression
    can hang it. ``mode="answer"``: ``predicted`` is a final answer: plain values first
    (``fast_verdict``), then math-verify on ``$\\boxed{…}$`` with guards; ``mode="raw_text"``:
    ``predicted`` is a whole completion, handed to math-verify as is (the naive baseline);
    ``mode="reference"``: is ``reference`` usable (``predicted`` is ignored). ``options``: the
    problem's options (``values.read_options``) when ``reference`` is a bare choice label and
    ``predicted`` a value: it is compared with every option (``values.option_value_verdict``).
    """
    if mode == "reference":
        return reference_verdict(reference)
    label = option_label(predicted, reference, options) if mode == "answer" and options else None
    if label is not None:
        return _option_value_check(predicted, reference, label, options)
    if mode == "answer":
        fast = fast_verdict(predicted, reference)
        if fast is not None:
            return fast
        values = labelled_choice_values(predicted, reference)
        if values is not None:  # "C: \frac{\sqrt3}{2}": the letters agree (or the answer is a value): compare values
            return _choice_values_verdict(predicted, reference, *values)
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
        why = _guard_exponents(gold, target, normalize_answer(predicted), normalize_answer(reference))
    if why is not None:
        return FAILED, why
    return PASSED, "symbolic_equal: math-verify"


def _option_value_check(predicted: str, reference: str, label: str, options: dict[str, str]) -> tuple[str, str]:
    """The worker's side of ``option_value_verdict``: every option compared in full (math-verify too)."""
    def compare(pred: str, text: str) -> tuple[str, str] | None:
        try:
            got = check_pair(pred, text)
            if got[0] == PASSED and got[1].startswith("symbolic_") and reference_problem(text) is not None:
                return None  # math-verify read 12 out of "12 or more": that option is not 12, nor surely another
            return got
        except Exception:  # noqa: BLE001 - one option that cannot be read leaves the verdict open
            return None

    got = option_value_verdict(predicted, label, options, compare, reference)
    if got is None and label.isdigit():
        return check_pair(predicted, reference)  # a numeric key: as before
    if got is None:
        return FAILED, f"text_unequal: the reference is choice ({label}); an option could not be compared with the answer"
    return got


def _choice_values_verdict(predicted: str, reference: str, value: str, ref_value: str) -> tuple[str, str]:
    """A choice reference written with its value, compared by value in the worker (``fast_verdict`` left it)."""
    status, detail = check_pair(value, ref_value)
    letter_given = value.strip() != predicted.strip()
    if not letter_given:  # a value alone against the option's value
        return status, detail + " (the value of the reference's choice)"
    if status == PASSED or detail.startswith(("text_unequal", "unparseable_answer")):
        return PASSED, "choice_equal: the letters agree" + ("" if status == PASSED else "; the value beside it is not "
                                                             "comparable")
    return FAILED, f"choice_unequal: the letters agree but the value beside it differs ({detail})"


def _worker_main() -> None:
    """Entry point of a worker process (checks/pool.py): [pred, ref, mode] -> [status, detail]."""
    from factory.checks.pool import serve

    def warm() -> None:  # import and warm up before saying ready
        _mv()
        check_pair("x+1", "1+x")
        check_pair("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}")

    serve(lambda pred, ref, mode, options=None: list(check_pair(pred, ref, mode, options)),
          "FACTORY_VERIFY_MEM_MB", warm)


# --------------------------------------------------------------------------- parent side


class VerifyPool(WorkerPool):
    """A pool of math-verify worker processes (checks/pool.py); reuse it for many ``verify_many`` calls.

    Not thread-safe: one ``verify_many`` at a time per pool.
    """

    def __init__(self, workers: int = 2, memory_mb: int = 2048, max_tasks: int = 5000):
        super().__init__("factory.checks.math", workers, {"FACTORY_VERIFY_MEM_MB": str(int(memory_mb or 0))},
                         max_tasks, what="math-verify workers (is math-verify installed? "
                                         "pip install 'math-verify[antlr4_13_2]')")

    def verify_many(self, items: Iterable[tuple], timeout_s: float = 5.0, mode: str = "answer") -> Iterator[tuple[Hashable, Verdict]]:
        """Yield ``(key, Verdict)`` for ``(key, predicted, reference[, problem])`` items, as they complete."""
        return self._run(((k, p, r, None, *problem) for k, p, r, *problem in items), timeout_s, mode)

    def _run(self, items: Iterable[tuple], timeout_s: float, mode: str) -> Iterator[tuple[Hashable, Verdict]]:
        """`(key, predicted, reference, verdict decided before or None[, problem])` -> (key, Verdict)."""
        max_pred = MAX_TEXT_CHARS if mode == "raw_text" else MAX_ANSWER_CHARS

        def jobs():
            for key, pred, ref, pre, *problem in items:
                options = None
                if pre is None:
                    pre, options = _precheck(pred, ref, max_pred, mode, problem[0] if problem else None)
                if pre is not None:
                    yield key, None, pre
                else:  # the options go to the worker only when it must compare the answer with them
                    yield key, [pred, ref, mode] + ([options] if options else []), None

        for d in self.run(jobs(), timeout_s):
            if d.kind == "decided":
                yield d.key, d.context
            elif d.kind == "ok":
                yield d.key, Verdict(d.value[0], d.value[1], seconds=d.seconds)
            elif d.kind == "timeout":
                yield d.key, Verdict(TIMEOUT, f"no verdict within {timeout_s:g}s; worker killed", seconds=d.seconds)
            else:
                why = {"died": "worker died (memory limit or crash)",
                       "unsent": "worker died before the item was sent"}.get(d.kind, d.value)
                yield d.key, Verdict(ERROR, why, seconds=d.seconds)


def _precheck(pred, ref, max_pred: int, mode: str = "answer",
              problem: str | None = None) -> tuple[Verdict | None, dict[str, str] | None]:
    """(a verdict decided in the parent (no worker round trip) or None, the problem's options when the
    worker must compare the answer with them (``values.option_reference``) or None)."""
    if mode == "reference":
        if ref is None or not isinstance(ref, str) or not ref.strip():
            return Verdict(FAILED, "empty reference"), None
        why = reference_problem(ref)
        return (Verdict(FAILED, why) if why is not None else None), None
    if pred is None or not isinstance(pred, str) or not pred.strip():
        return Verdict(NO_ANSWER, "no final answer"), None
    if ref is None or not isinstance(ref, str) or not ref.strip():
        return Verdict(ERROR, "no reference"), None
    if len(pred) > max_pred:
        return Verdict(ERROR, f"answer longer than {max_pred} characters"), None
    if len(ref) > MAX_REFERENCE_CHARS:
        return Verdict(ERROR, f"reference longer than {MAX_REFERENCE_CHARS} characters"), None
    if mode == "answer":
        t0 = time.perf_counter()
        try:
            chosen = option_reference(pred, ref, problem) if problem else None
            if chosen is not None:  # "27" for reference (C): the options in the problem decide
                fast = option_value_verdict(pred, *chosen, reference=ref)
                if fast is None:
                    return None, chosen[1]
            else:
                fast = fast_verdict(pred, ref)
        except Exception:  # noqa: BLE001 - the worker will decide
            fast = None
        if fast is not None:
            return Verdict(fast[0], fast[1], seconds=time.perf_counter() - t0), None
    return None, None


# --------------------------------------------------------------------------- public API


def verify_many(
    items: Iterable[tuple],
    timeout_s: float = 5.0,
    workers: int = 2,
    *,
    pool: VerifyPool | None = None,
    mode: str = "answer",
) -> Iterator[tuple[Hashable, Verdict]]:
    """Verify ``(key, predicted_final_answer, reference)`` items; yields ``(key, Verdict)`` as
    they complete (any order). Streaming: items are consumed only as workers free up.

    An item may carry the seed's problem text as a fourth element: a bare choice reference (``C``,
    ARC's ``3``) then also accepts the VALUE of that option (``27``) when the options written in the
    problem say so (``values.read_options``; equal to another option, or to two, fails).

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
    if read_choice(reference) is not None or read_labelled_choice(reference) is not None:
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
    items: Iterable[tuple],
    timeout_s: float = 5.0,
    workers: int = 2,
    *,
    pool: VerifyPool | None = None,
    domain: str = "math",
) -> Iterator[tuple[Hashable, Verdict]]:
    """Verify whole completions ``(key, text, reasoning_field, finish_reason, reference[, problem])``
    (the problem as in ``verify_many``).

    The verdict comes from the FINAL answer only (``factory.parse``): ``truncated``,
    ``unclosed_think``, ``hedged_answer`` and ``no_answer`` are decided before math-verify is
    called; the rest is ``verify_many`` on the parsed answer (``Verdict.answer`` holds it).
    """
    from factory.parse import parse

    answers: dict[Hashable, str] = {}

    def prepared():
        for key, text, reasoning, finish_reason, reference, *problem in items:
            p = parse(text, reasoning, domain, finish_reason)
            pre = _trace_verdict(p)
            if pre is None:
                answers[key] = p.answer
            yield key, p.answer, reference, pre, *problem

    def run(pl: VerifyPool):
        for key, v in pl._run(prepared(), timeout_s, "answer"):
            a = answers.pop(key, None)
            yield key, (Verdict(v.status, v.detail, a, v.seconds) if a is not None else v)

    if pool is not None:
        yield from run(pool)
        return
    with VerifyPool(workers=workers) as p:
        yield from run(p)
