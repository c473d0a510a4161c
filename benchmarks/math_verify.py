"""math-verify throughput in worker processes, hangs, and precision of final-answer verification.

1. GSM8K test (1319 references): each reference verified against completions whose final
   answer is the reference itself as ``\\boxed{}``, a formatting variant (``1,000``, ``\\$18``,
   ``18.0``, ``18 dollars``: must pass), off by one and a different number (must fail), through
   ``verify_traces`` (parse -> verify_many) on ``--workers`` processes. Reports verifications/s,
   agreement with the expected verdicts and the number of timeouts (hangs are killed).
2. A few pathological answers (``9^{9^{9^{9}}}`` …): each must come back ``verify_timeout``
   at its deadline, and the pool must keep going.
3. The precision set of tests/checks/test_math.py: precision / recall of ``verify_traces``
   against naive math-verify over the whole text; and its teacher-style table (every answer form
   in rotating teacher styles, hedges, truncations, placeholders).
4. MATH-500 references verified against themselves (symbolic answers: most go to math-verify),
   and the split of verdicts by rule (the fast exact path decides in the parent process).

    python benchmarks/math_verify.py [--workers 2] [--timeout 5] [--limit 1319]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this file is named like the math_verify package: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

from factory.checks.math import VerifyPool, verify_traces  # noqa: E402

PATHOLOGICAL = ["9^{9^{9^{9}}}", "10^{10^{10}}", "2^{2^{2^{2^{2^{2}}}}}", "99999!!"]


def gsm8k_items(limit: int):
    rows = [json.loads(line) for line in open(ROOT / "data" / "benchmarks" / "gsm8k_test.jsonl")][:limit]
    for i, r in enumerate(rows):
        reasoning, final = r["answer"].split("####")
        x = final.strip()
        v = int(x.replace(",", ""))
        variants = [
            ("exact", x, True),
            ("format", [f"{v:,}", f"\\${v}", f"{v}.0", f"{v} dollars"][i % 4], True),
            ("off_by_one", str(v + 1), False),
            ("different", str(v * 2 + 7), False),
        ]
        for kind, ans, expected in variants:
            text = f"<think>{reasoning.strip()}</think>\nThe final answer is $\\boxed{{{ans}}}$."
            yield (i, kind, expected), text, None, "stop", x


def load_precision_module():
    spec = importlib.util.spec_from_file_location("_precision_cases", ROOT / "tests" / "checks" / "test_math.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_rate(rounds: int = 5) -> float:
    """factory.parse over a mix of short and long completions (best of `rounds`)."""
    from factory.parse import parse

    texts = [
        "<think>Janet has 16 eggs, eats 3, bakes 4, sells 9 at $2: 18.</think>\nSo she makes $18.\n"
        "The final answer is $\\boxed{18}$.",
        "Step 1: 3+4=7.\nStep 2: 7*2=14.\n#### 14",
        "<think>" + "reasoning " * 300 + "</think>The answer is 3.5.",
        "<think>unclosed " * 50,
        "<|begin_of_thought|>" + "steps " * 200 + "<|end_of_thought|>\n<|begin_of_solution|>\\boxed{7}<|end_of_solution|>",
    ] * 400
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for text in texts:
            parse(text)
        best = max(best, len(texts) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--limit", type=int, default=1319)
    args = ap.parse_args()
    print(f"parse (final-answer extraction, one process): {parse_rate():,.0f} completions/s")

    t0 = time.monotonic()
    with VerifyPool(workers=args.workers) as pool:
        # warm: the workers import math-verify and say ready before the clock starts
        list(pool.verify_many([(0, "1", "1")] * args.workers))
        startup = time.monotonic() - t0

        t = time.monotonic()
        statuses: Counter = Counter()
        agree = Counter()
        total = Counter()
        n = 0
        rules: Counter = Counter()
        for (i, kind, expected), v in verify_traces(gsm8k_items(args.limit), timeout_s=args.timeout, pool=pool):
            n += 1
            statuses[v.status] += 1
            rules[v.detail.split(":", 1)[0]] += 1
            total[kind] += 1
            agree[kind] += (v.status == "passed") == expected
        dt = time.monotonic() - t

        t = time.monotonic()
        patho = list(pool.verify_many([(e, e, "5") for e in PATHOLOGICAL], timeout_s=args.timeout))
        patho_dt = time.monotonic() - t
        after = list(pool.verify_many([("after", "0.5", "\\frac{1}{2}")], timeout_s=args.timeout))

        prec = load_precision_module()
        cases = prec.precision_cases()
        (p, r, fp), (np_, nr, nfp), _, _ = prec.precision_report(pool, cases)

        table = prec.table_cases() if hasattr(prec, "table_cases") else []
        t = time.monotonic()
        got = dict(verify_traces([c[:5] for c in table], pool=pool, timeout_s=args.timeout))
        table_dt = time.monotonic() - t
        tp_, tr_, tfp = prec.score(table, {k for k, v in got.items() if v.status == "passed"})

        refs = [json.loads(line)["answer"] for line in open(ROOT / "data" / "benchmarks" / "math500_test.jsonl")]
        t = time.monotonic()
        m500 = list(pool.verify_many([(i, a, a) for i, a in enumerate(refs)], timeout_s=args.timeout))
        m500_dt = time.monotonic() - t
        m500_rules = Counter(v.detail.split(":", 1)[0] for _, v in m500)
        m500_pass = sum(v.status == "passed" for _, v in m500)

    print(f"\nmath-verify in {args.workers} worker processes (timeout {args.timeout:g}s), pool start {startup:.1f}s")
    print()
    print("| GSM8K test, verify_traces      | value |")
    print("|--------------------------------|-------|")
    print(f"| completions verified           | {n} |")
    print(f"| wall time                      | {dt:.2f} s |")
    print(f"| verifications / s              | {n / dt:.0f} |")
    print(f"| per item                       | {1000 * dt / max(n, 1):.3f} ms |")
    print(f"| verdicts by rule               | {dict(rules)} |")
    for kind in total:
        print(f"| agree with expected: {kind:<10}| {agree[kind]}/{total[kind]} |")
    print(f"| timeouts (hangs killed)        | {statuses['verify_timeout']} |")
    print(f"| statuses                       | {dict(statuses)} |")
    print()
    print("| pathological answer            | status | seconds |")
    print("|--------------------------------|--------|---------|")
    for key, v in patho:
        print(f"| {key:<30} | {v.status} | {v.seconds:.2f} |")
    print(f"| (all {len(patho)} in)                     | {patho_dt:.1f} s wall | pool after: {after[0][1].status} |")
    print()
    print(f"| precision set ({len(cases)} cases, {sum(c[5] for c in cases)} correct) | precision | recall | false passes |")
    print("|-------------------------------------|-----------|--------|--------------|")
    print(f"| factory verify_traces (final answer)| {p:.3f} | {r:.3f} | {fp} |")
    print(f"| naive math-verify over whole text   | {np_:.3f} | {nr:.3f} | {nfp} |")
    if table:
        print(f"| teacher table ({len(table)} cases, {sum(c[5] for c in table)} correct) | {tp_:.3f} | {tr_:.3f} | {tfp} |"
              f" ({1000 * table_dt / len(table):.2f} ms/item)")
    print()
    print(f"MATH-500 references against themselves: {m500_pass}/{len(refs)} passed, "
          f"{1000 * m500_dt / len(refs):.2f} ms/item, by rule {dict(m500_rules)}")


if __name__ == "__main__":
    main()
