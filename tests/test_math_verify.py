"""factory.checks.math: math-verify in worker processes with hard timeouts, and the precision of
verifying the FINAL answer only (verify_traces) against naive math-verify over the whole text."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("math_verify")

from factory.checks.math import VerifyPool, normalize_answer, verify_many, verify_one, verify_traces  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "benchmarks"


@pytest.fixture(scope="module")
def pool():
    with VerifyPool(workers=2) as p:
        yield p


def run(pool, pairs, timeout_s=5.0):
    items = [(i, pred, ref) for i, (pred, ref) in enumerate(pairs)]
    got = dict(pool.verify_many(items, timeout_s=timeout_s))
    return [got[i] for i in range(len(items))]


# --------------------------------------------------------------------------- equivalences

EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"),
    ("1/2", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("\\dfrac{1}{2}", "\\frac12"),
    ("\\tfrac{1}{2}", "0.5"),
    ("1000", "1,000"),
    ("1,000", "1000"),
    ("1{,}000", "1000"),
    ("\\$1,000", "1000"),
    ("18 dollars", "18"),
    ("\\$18", "18"),
    ("18.00", "18"),
    ("30^\\circ", "30"),
    ("30^{\\circ}", "30"),
    ("30", "30^\\circ"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("(3,4]", "(3,4]"),
    ("(-\\infty, 0]", "(-\\infty, 0]"),
    ("[-2,7]", "x \\in [-2,7]"),
    ("(0,9) \\cup (9,36)", "(0,9) \\cup (9,36)"),
    ("(6,31,-1)", "(6,31,-1)"),
    ("\\text{(C)}", "\\text{(C)}"),
    ("C", "\\text{(C)}"),
    ("\\text{Evelyn}", "\\text{Evelyn}"),
    ("-2, 1", "1,-2"),
    ("10080", "10,\\!080"),
    ("32348", "\\$32,\\!348"),
    ("58500", "58,500"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("x = 5", "5"),
    ("\\boxed{5}", "5"),
    ("$5$", "5"),
    ("5.4", "5.4 \\text{ cents}"),
    ("\\frac{270}{7}", "\\frac{270}7\\text{ degrees}"),
]

NOT_EQUIVALENT = [
    ("19", "18"),
    ("17", "18"),
    ("180", "18"),
    ("1.8", "18"),
    ("\\frac{1}{3}", "0.5"),
    ("100", "1,000"),
    ("[3,4]", "(3,4]"),
    ("(3,4)", "(3,4]"),
    ("(4, 3)", "(3, 4)"),
    ("\\text{(B)}", "\\text{(C)}"),
    ("\\sqrt{3}", "3"),
    ("-5", "5"),
    ("18 \\text{ or } 20", "18"),
    ("3 thousand", "3"),
    ("\\pi", "3.14"),
    ("\\text{Navin}", "\\text{Evelyn}"),
]


def test_equivalent(pool):
    verdicts = run(pool, EQUIVALENT)
    bad = [(p, r, v) for (p, r), v in zip(EQUIVALENT, verdicts) if v.status != "passed"]
    assert not bad


def test_not_equivalent(pool):
    verdicts = run(pool, NOT_EQUIVALENT)
    bad = [(p, r, v) for (p, r), v in zip(NOT_EQUIVALENT, verdicts) if v.status == "passed"]
    assert not bad


def test_no_answer_and_errors(pool):
    v = run(pool, [(None, "3"), ("", "3"), ("3", ""), ("x" * 10_000, "3")])
    assert [x.status for x in v] == ["no_answer", "no_answer", "error", "error"]


def test_references_verify_against_themselves(pool):
    """Every MATH-500 reference, rendered as a boxed final answer, verifies against itself."""
    refs = [json.loads(line)["answer"] for line in open(DATA / "math500_test.jsonl")][:150]
    verdicts = run(pool, [(r, r) for r in refs])
    assert [r for r, v in zip(refs, verdicts) if v.status != "passed"] == []


def test_normalize_answer():
    assert normalize_answer("1,000") == "1000"
    assert normalize_answer("\\$1,000.50") == "1000.50"
    assert normalize_answer("$18$.") == "18"
    assert normalize_answer("18 dollars") == "18"
    assert normalize_answer("3 thousand") == "3 thousand"
    assert normalize_answer("3 pi") == "3 pi"
    assert normalize_answer("1,-2") == "1,-2"
    assert normalize_answer("10,\\!080") == "10080"


def test_verify_one():
    assert verify_one("\\dfrac{1}{2}", "0.5").status == "passed"
    assert verify_one("3", "4").status == "failed"
    assert verify_one(None, "4").status == "no_answer"


# --------------------------------------------------------------------------- the pool


def test_pathological_times_out_and_pool_recovers(pool):
    items = [("bad1", "9^{9^{9^{9}}}", "5"), ("ok1", "0.5", "\\frac{1}{2}"), ("bad2", "10^{10^{10}}", "3"),
             ("ok2", "1,000", "1000")]
    t0 = time.monotonic()
    seen = {}
    for key, v in pool.verify_many(items, timeout_s=2.0):
        seen[key] = (v, time.monotonic() - t0)
    assert seen["bad1"][0].status == "verify_timeout"
    assert seen["bad2"][0].status == "verify_timeout"
    assert seen["ok1"][0].status == "passed" and seen["ok2"][0].status == "passed"
    # each pathological item is cut at its deadline (2 s) plus a small margin
    assert seen["bad1"][0].seconds < 2.0 + 0.5
    assert seen["bad2"][0].seconds < 2.0 + 0.5
    assert time.monotonic() - t0 < 12
    # and the pool keeps working afterwards (the killed workers were replaced)
    assert [v.status for v in run(pool, [("7", "7"), ("8", "7")])] == ["passed", "failed"]
    assert len(pool.workers) == 2


def test_worker_death_is_an_error_not_a_hang(pool):
    items = [("slow", "9^{9^{9^{9}}}", "5")]
    gen = pool.verify_many(items, timeout_s=30.0)

    def kill_busy():
        for w in pool.workers:
            if w.job is not None:
                w.proc.kill()

    timer = threading.Timer(1.0, kill_busy)
    timer.start()
    t0 = time.monotonic()
    (key, v), = list(gen)
    timer.cancel()
    assert key == "slow" and v.status == "error" and "died" in v.detail
    assert time.monotonic() - t0 < 10
    assert run(pool, [("2", "2")])[0].status == "passed"


def test_works_off_the_main_thread():
    """math-verify's own signal timeout fails off the main thread; the pool does not care."""
    out = {}

    def job():
        out["v"] = list(verify_many([(1, "0.5", "\\frac12"), (2, "9^{9^{9^{9}}}", "1")], timeout_s=1.5, workers=1))

    t = threading.Thread(target=job)
    t.start()
    t.join(60)
    assert dict(out["v"])[1].status == "passed"
    assert dict(out["v"])[2].status == "verify_timeout"


def test_streaming_consumes_lazily(pool):
    consumed = 0

    def items():
        nonlocal consumed
        for i in range(200):
            consumed += 1
            yield i, str(i), str(i)

    gen = pool.verify_many(items(), timeout_s=5)
    next(gen)
    assert consumed <= len(pool.workers) + 2  # only what the workers hold, not the whole input
    rest = list(gen)
    assert len(rest) == 199 and all(v.status == "passed" for _, v in rest)
    # closing a generator early leaves the pool usable
    gen = pool.verify_many(items(), timeout_s=5)
    next(gen)
    gen.close()
    assert run(pool, [("1", "1")])[0].status == "passed"


# --------------------------------------------------------------------------- precision set


def _gsm_cases(n: int):
    rows = [json.loads(line) for line in open(DATA / "gsm8k_test.jsonl")][:n]
    cases = []
    for i, r in enumerate(rows):
        reasoning, final = r["answer"].split("####")
        reasoning, x = reasoning.strip(), final.strip()
        xv = int(x.replace(",", ""))
        w = str(xv + 1)  # a wrong final answer
        y = str(xv + 2)
        says = f"{reasoning}\nSo the answer is {x}."
        k = f"gsm{i}"
        cases += [
            # correct, clean: must pass
            (f"{k}-boxed", f"<think>{says}</think>\nThe final answer is $\\boxed{{{x}}}$.", None, "stop", x, True),
            (f"{k}-field", f"Final answer: {x}", says, "stop", x, True),
            (f"{k}-hashes", f"{reasoning}\n#### {x}", None, "stop", x, True),
            (f"{k}-answer-is", f"{reasoning}\nThe answer is {x}.", None, "stop", x, True),
            (f"{k}-dollars", f"<think>{says}</think>\nShe gets **\\${xv:,}**, so the answer is $\\boxed{{\\${xv:,}}}$.",
             None, "stop", x, True),
            (f"{k}-decimal", f"<think>{says}</think>\\boxed{{{xv}.00}}", None, "stop", x, True),
            # adversarial, all wrong: must NOT pass
            (f"{k}-truncated", f"<think>{says} Let me double-check this by",  None, "length", x, False),
            (f"{k}-truncated-after", f"<think>{says}</think>\nSo $\\boxed{{{x}}}$. To double-check, we",
             None, "length", x, False),
            (f"{k}-unclosed", f"<think>{says}\n\\boxed{{{x}}}", None, "stop", x, False),
            (f"{k}-hedged", f"<think>{says}</think>\nThe answer is either {x} or {y}.", None, "stop", x, False),
            (f"{k}-hedged-or", f"<think>{says}</think>\nThe answer is {y} or {x}.", None, "stop", x, False),
            (f"{k}-two-boxed", f"<think>{says}</think>\nIt is $\\boxed{{{x}}}$, or perhaps $\\boxed{{{y}}}$.",
             None, "stop", x, False),
            (f"{k}-reasoning-only", f"<think>{says} \\boxed{{{x}}}</think>\nOn reflection the answer is {w}.",
             None, "stop", x, False),
            (f"{k}-field-only", f"The final answer is {w}.", says + f" \\boxed{{{x}}}", "stop", x, False),
            (f"{k}-no-final", f"<think>{says} \\boxed{{{x}}}</think>\nI could not decide.", None, "stop", x, False),
            (f"{k}-wrong", f"<think>{says}</think>\n\\boxed{{{w}}}", None, "stop", x, False),
        ]
    return cases


def _math_cases(n: int):
    rows = [json.loads(line) for line in open(DATA / "math500_test.jsonl")]
    rows = [r for r in rows if len(r["answer"]) < 40 and r["solution"].count("\\boxed") == 1][:n + 1]
    cases = []
    for i, r in enumerate(rows[:n]):
        sol, a = r["solution"], r["answer"]
        wrong = rows[i + 1]["answer"]  # another problem's answer
        k = f"math{i}"
        cases += [
            (f"{k}-clean", f"<think>{sol}</think>\nThe final answer is $\\boxed{{{a}}}$.", None, "stop", a, True),
            (f"{k}-plain", sol, None, "stop", a, True),
            (f"{k}-unclosed", f"<think>{sol}\nLet me verify once more.", None, "stop", a, False),
            (f"{k}-truncated", f"<think>{sol}\nHmm, wait", None, "length", a, False),
            (f"{k}-reasoning-only", f"<think>{sol}</think>\nThe final answer is $\\boxed{{{wrong}}}$.",
             None, "stop", a, False),
            (f"{k}-two-boxed", f"<think>{sol}</think>\n$\\boxed{{{a}}}$ or $\\boxed{{{wrong}}}$", None, "stop", a, False),
        ]
    return cases


def precision_cases(n_gsm: int = 10, n_math: int = 10):
    """[(key, text, reasoning_field, finish_reason, reference, should_pass)]"""
    return _gsm_cases(n_gsm) + _math_cases(n_math)


def naive_text(text, reasoning_field):
    """What plain math-verify sees: the whole completion, reasoning included."""
    return (f"<think>{reasoning_field}</think>" if reasoning_field else "") + (text or "")


def score(cases, passed_keys):
    tp = sum(1 for c in cases if c[5] and c[0] in passed_keys)
    fp = sum(1 for c in cases if not c[5] and c[0] in passed_keys)
    pos = sum(1 for c in cases if c[5])
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / pos, fp


def precision_report(pool, cases):
    """(factory (precision, recall, fp), naive (precision, recall, fp), factory verdicts, naive verdicts)."""
    ours = dict(verify_traces([c[:5] for c in cases], pool=pool, timeout_s=5.0))
    naive = dict(pool.verify_many([(c[0], naive_text(c[1], c[2]), c[4]) for c in cases], timeout_s=5.0,
                                  mode="raw_text"))
    ours_pass = {k for k, v in ours.items() if v.status == "passed"}
    naive_pass = {k for k, v in naive.items() if v.status == "passed"}
    return score(cases, ours_pass), score(cases, naive_pass), ours, naive


def test_precision_set(pool):
    cases = precision_cases()
    assert len(cases) >= 100
    (p, r, fp), (np_, nr, nfp), ours, naive = precision_report(pool, cases)
    print(f"\nprecision set: {len(cases)} cases ({sum(c[5] for c in cases)} correct)")
    print(f"  factory verify_traces : precision {p:.3f}  recall {r:.3f}  false passes {fp}")
    print(f"  naive math-verify     : precision {np_:.3f}  recall {nr:.3f}  false passes {nfp}")
    false_passes = [(c[0], ours[c[0]]) for c in cases if not c[5] and ours[c[0]].status == "passed"]
    missed = [(c[0], ours[c[0]]) for c in cases if c[5] and ours[c[0]].status != "passed"]
    assert false_passes == []
    assert p == 1.0
    assert r >= 0.95, missed
    # the point of parsing first: the naive baseline credits the adversarial traces
    assert nfp > 0 and np_ < p
    # verdicts name the reason
    by_kind = {c[0].split("-", 1)[1]: ours[c[0]].status for c in cases if c[0].startswith("gsm0-")}
    assert by_kind["truncated"] == "truncated" and by_kind["unclosed"] == "unclosed_think"
    assert by_kind["hedged"] == "hedged_answer" and by_kind["two-boxed"] == "hedged_answer"
    assert by_kind["wrong"] == "failed" and by_kind["no-final"] == "no_answer"
    assert ours["gsm0-boxed"].answer == "18"
