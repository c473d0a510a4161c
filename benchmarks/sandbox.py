"""Code sandbox throughput: all 164 HumanEval canonical solutions (every one must pass) and one
mutant of each (first comparison operator flipped, or `return None` where there is none:
mostly failing), run through factory.checks.code.run_many on `--workers` workers.
Also the per-run cost of the isolation: a bare `python -c pass` subprocess, the sandbox
interpreter flags alone, and a trivial sandbox run (two sandboxed processes, namespaces,
uid drop, cleanup), each timed one at a time.

    python benchmarks/sandbox.py [--workers 2] [--limit 164] [--overhead-runs 20]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from factory.checks.code import Limits, isolation, run_many, run_tests  # noqa: E402

FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
        ast.IsNot: ast.Is}


def mutate(code: str, entry: str) -> tuple[str, str]:
    """Flip the first comparison in the entry function, else make it return None."""
    tree = ast.parse(code)
    fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry), None)
    if fn is not None:
        for node in ast.walk(fn):
            if isinstance(node, ast.Compare):
                node.ops[0] = FLIP[type(node.ops[0])]()
                return ast.unparse(tree), "flip-compare"
        fn.body = [ast.Return(ast.Constant(None))]
        return ast.unparse(tree), "return-none"
    return code + "\n\ndef " + entry + "(*a, **k):\n    return None\n", "return-none"


def cpu_s() -> float:
    """CPU seconds of this process and of every child (and grandchild) reaped so far."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def fmt(xs: list[float]) -> str:
    xs = sorted(xs)
    return (f"median {statistics.median(xs) * 1000:7.1f} ms   p90 {xs[int(len(xs) * 0.9)] * 1000:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=164)
    ap.add_argument("--overhead-runs", type=int, default=20)
    ap.add_argument("--wall", type=float, default=20.0)
    args = ap.parse_args()

    print("isolation:", isolation())
    with gzip.open(ROOT / "data" / "benchmarks" / "humaneval.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f][: args.limit]
    limits = Limits(wall_s=args.wall)

    # ---- per-run overhead, one at a time
    py = sys.executable
    n = args.overhead_runs
    print(f"\nper-run cost, sequential, n={n}  (load average now {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs: wall times move with it, CPU times much less)")
    cpu = {}
    for label, fn in (
            ("python -c pass (subprocess)", lambda: subprocess.run([py, "-c", "pass"], check=True)),
            ("python -s -S -P -B -c pass", lambda: subprocess.run([py, "-s", "-S", "-P", "-B", "-c", "pass"],
                                                                  check=True)),
            ("sandbox, trivial passing run", lambda: run_tests("def f():\n    return 1\n",
                                                               "def check(c):\n    assert c() == 1\n", "f",
                                                               limits))):
        c0 = cpu_s()
        xs = timed(fn, n)
        cpu[label] = (cpu_s() - c0) / n
        print(f"  {label:30} wall {fmt(xs)}   CPU {cpu[label] * 1000:6.1f} ms/run")
    extra = cpu["sandbox, trivial passing run"] - cpu["python -c pass (subprocess)"]
    print(f"  isolation cost over a plain `python -c pass`: {extra * 1000:.1f} CPU-ms per run "
          f"(two interpreters, tests + candidate, each with net/mount/PID namespaces and a relay)")

    # ---- throughput
    def run(label: str, items: list[tuple]) -> dict:
        t, c0 = time.perf_counter(), cpu_s()
        got = dict(run_many(items, limits, workers=args.workers))
        wall, used = time.perf_counter() - t, cpu_s() - c0
        counts = Counter(r.status for r in got.values())
        durs = [r.duration_s for r in got.values()]
        print(f"\n{label}: {len(items)} runs in {wall:.1f} s on {args.workers} workers = "
              f"{len(items) / wall:.2f} executions/s")
        print(f"  statuses: {dict(counts)}   pass rate {counts['passed'] / len(items):.1%}")
        print(f"  per-run duration: {fmt(durs)}   max {max(durs):.2f} s")
        print(f"  CPU {used / len(items) * 1000:.1f} ms per execution -> at most "
              f"{args.workers / (used / len(items)):.1f} executions/s on {args.workers} idle cores")
        return got

    canon = [(r["task_id"], r["prompt"] + r["canonical_solution"], r["test"], r["entry_point"])
             for r in rows]
    got = run("canonical solutions", canon)
    bad = {k: (v.status, v.reason) for k, v in got.items() if v.status != "passed"}
    if bad:
        print("  NOT PASSED:", json.dumps(bad, indent=1))

    mutants, kinds = [], Counter()
    for r in rows:
        code, kind = mutate(r["prompt"] + r["canonical_solution"], r["entry_point"])
        kinds[kind] += 1
        mutants.append((r["task_id"], code, r["test"], r["entry_point"]))
    print(f"\nmutants: {dict(kinds)}")
    mgot = run("mutated solutions", mutants)
    reasons = Counter(v.reason.split(" (")[0].split(":")[0] for v in mgot.values() if v.status != "passed")
    print("  top reasons:", reasons.most_common(6))
    survivors = sorted(k for k, v in mgot.items() if v.passed)
    print(f"  mutants that still pass (weak tests or equivalent mutants): {len(survivors)} {survivors}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
