"""How fast a reasoning_gym source streams seeds, and how fast the tasks' own scorers give verdicts.

    .venv/bin/python benchmarks/gym.py [--seeds 2000] [--verdicts 2000] [--workers 2]

Seeds: `read_seeds(plan_source(...))`, the build's own reading path (the entry generated, checked,
encoded into the seed's meta), per task and for a mix. Verdicts: `factory.checks.gym.score_many` in
worker processes (the filter stage's path) over right and wrong answers of a mix; the pool's start-up
(importing reasoning-gym in each worker) is reported apart from the steady rate.
"""

from __future__ import annotations

import argparse
import itertools
import time

from factory.checks.gym import score_many
from factory.config import load_config
from factory.records import Seed
from factory.sources import plan_source, read_seeds

TASKS = ["basic_arithmetic", "word_sorting", "letter_counting", "number_sorting", "knights_knaves", "mini_sudoku",
         "zebra_puzzles"]
MIX = {t: 1 for t in TASKS if t != "zebra_puzzles"}


def source(name: str, **kind) -> object:
    cfg = load_config(data={"sources": [{"name": name, "kind": "reasoning_gym", "size": 10**6, "seed": 7, **kind}]})
    return plan_source(cfg.sources[0])


def seeds_per_second(plan, n: int, budget_s: float = 20.0) -> tuple[float, int]:
    started, got = time.perf_counter(), 0
    for item in itertools.islice(read_seeds(plan), n):
        got += isinstance(item, Seed)
        if time.perf_counter() - started > budget_s:  # the slow generators (zebra_puzzles) get a time budget
            break
    return got / (time.perf_counter() - started), got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2000)
    ap.add_argument("--verdicts", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    print(f"seeds streamed (read_seeds of a kind: reasoning_gym source, up to {args.seeds} each)")
    for task in TASKS:
        rate, n = seeds_per_second(source(task, task=task), args.seeds)
        print(f"  {task:<18} {rate:9.0f} seeds/s  ({n} seeds)")
    rate, n = seeds_per_second(source("mix", tasks=MIX), args.seeds)
    print(f"  {'mix of ' + str(len(MIX)):<18} {rate:9.0f} seeds/s  ({n} seeds)")

    seeds = [s for s in itertools.islice(read_seeds(source("mix", tasks=MIX)), args.verdicts) if isinstance(s, Seed)]
    items = []
    for i, s in enumerate(seeds):  # half right, half wrong
        gym = s.meta["gym"]
        answer = s.answer if i % 2 == 0 else (s.answer or "")[::-1] + "x"
        items.append((i, gym["task"], gym["config"], gym["entry"], {"answer_tag": answer}))
    started = time.perf_counter()
    verdicts, first = [], None
    for v in score_many(items, timeout_s=5.0, workers=args.workers):
        verdicts.append(v)
        first = first or time.perf_counter()  # the pool's start-up (importing reasoning-gym) ends here
    end = time.perf_counter()
    passed = sum(v[1] for v in verdicts)
    steady = (len(verdicts) - 1) / max(end - first, 1e-9)
    print(f"verdicts (score_many, {args.workers} workers, {len(verdicts)} answers of the mix, {passed} passed)")
    print(f"  pool start-up {first - started:.1f} s; {len(verdicts) / (end - started):.0f} verdicts/s with it, "
          f"{steady:.0f} verdicts/s after it")

if __name__ == "__main__":
    main()
