"""Majority vote without references: how right are the pseudo-labelled traces?

A simulation, not a measurement of one teacher: seeds get a teacher accuracy drawn from a spread
of easy, medium and hard problems; a sample sometimes gives no answer (truncated); a wrong sample
often lands on the seed's *common mistake* (the same wrong value as other wrong samples, as real
teachers do), else on one of a few other wrong values. The rule is factory's (filter.majority_vote):
a seed gets a pseudo-label when at least `min_samples` samples gave an answer, the top answer has
a vote share >= `min_share` of them, and no other answer ties it. Its agreeing traces are kept.

  precision  share of kept (label-agreeing) traces whose answer is right
  recall     share of all right traces that are kept as pseudo-labelled
  seeds      share of seeds that get a label

    .venv/bin/python benchmarks/majority.py [--seeds 40000] [--min-samples 4]
"""

from __future__ import annotations

import argparse

import numpy as np

K_MAX = 8
SHARES = (0.5, 0.6, 0.67, 0.75, 0.8, 0.9, 1.0)
NO_ANSWER = -1

# (weight, accuracy Beta(a, b)) per difficulty; collision = chance a wrong sample is the common mistake
SCENARIOS = {
    # a word-problem set (GSM8K-like) with a strong teacher: ~85 % right per sample
    "word problems, strong teacher": {"mix": [(0.75, (12, 1)), (0.20, (4, 2)), (0.05, (1.5, 3))],
                                      "collision": (2, 3), "no_answer": 0.05, "tail": 6},
    # the same set with a mid-sized teacher: ~70 % right per sample (the case)
    "word problems, mid teacher": {"mix": [(0.60, (9, 1.2)), (0.25, (3, 2)), (0.15, (1.2, 4))],
                                   "collision": (2, 3), "no_answer": 0.08, "tail": 6},
    # the same, with wrong samples landing on the common mistake far more often (~60 % of them)
    "word problems, mid teacher, frequent common mistakes": {
        "mix": [(0.60, (9, 1.2)), (0.25, (3, 2)), (0.15, (1.2, 4))], "collision": (3, 2), "no_answer": 0.08, "tail": 6},
    # competition maths with the same teacher: ~45 % right per sample, more common mistakes
    "hard maths": {"mix": [(0.30, (9, 1.5)), (0.30, (3, 3)), (0.40, (1.2, 5))], "collision": (3, 2),
                   "no_answer": 0.15, "tail": 12},
}


def simulate(spec: dict, seeds: int, rng: np.random.Generator) -> np.ndarray:
    """(seeds, K_MAX) answers: 0 right, 1 the seed's common mistake, 2.. other wrong values, -1 none."""
    weights = np.array([w for w, _ in spec["mix"]])
    kind = rng.choice(len(weights), size=seeds, p=weights / weights.sum())
    accuracy = np.empty(seeds)
    for i, (_, (a, b)) in enumerate(spec["mix"]):
        accuracy[kind == i] = rng.beta(a, b, size=(kind == i).sum())
    collision = rng.beta(*spec["collision"], size=seeds)
    u = rng.random((seeds, K_MAX))
    right = u < accuracy[:, None]
    common = rng.random((seeds, K_MAX)) < collision[:, None]
    other = 2 + rng.integers(0, spec["tail"], size=(seeds, K_MAX))
    answers = np.where(right, 0, np.where(common, 1, other))
    return np.where(rng.random((seeds, K_MAX)) < spec["no_answer"], NO_ANSWER, answers)


def vote_counts(answers: np.ndarray, k: int) -> np.ndarray:
    """(seeds, values) votes among the first k samples; no-answer samples do not vote."""
    a = answers[:, :k]
    values = answers.max() + 1
    counts = np.zeros((a.shape[0], values), dtype=np.int32)
    rows = np.repeat(np.arange(a.shape[0]), k).reshape(a.shape)
    np.add.at(counts, (rows[a >= 0], a[a >= 0]), 1)
    return counts


def score(counts: np.ndarray, min_samples: int, min_share: float) -> tuple[float, float, float]:
    answered = counts.sum(1)
    order = np.sort(counts, axis=1)
    top_n, second_n = order[:, -1], order[:, -2]
    top = counts.argmax(1)
    share = np.divide(top_n, answered, out=np.zeros(len(answered)), where=answered > 0)
    labelled = (answered >= min_samples) & (share >= min_share - 1e-9) & (top_n > second_n)
    kept = top_n[labelled].sum()
    right_kept = top_n[labelled & (top == 0)].sum()
    precision = right_kept / kept if kept else float("nan")
    return precision, right_kept / max(counts[:, 0].sum(), 1), labelled.mean()


def old_rule(answers: np.ndarray, rng: np.random.Generator, k: int = 4) -> str:
    """The rule before: share >= 0.5 of any number of votes, ties kept, agreeing traces *verified*;
    unlabelled seeds kept an unverified trace; one trace kept per seed (filter.per_seed = 1)."""
    counts = vote_counts(answers, k)
    answered, top_n = counts.sum(1), counts.max(1)
    labelled = (answered > 0) & (top_n >= 0.5 * answered)
    labels = top_n[labelled & (counts.argmax(1) == 0)].sum() / top_n[labelled].sum()
    # one kept trace per seed: an agreeing one where labelled, else any answered one
    rest = (answered > 0) & ~labelled
    pick = [rng.choice(row[row >= 0]) for row in answers[rest, :k]]
    kept_right = (labelled & (counts.argmax(1) == 0)).sum() + sum(1 for a in pick if a == 0)
    return (f"old rule at k = {k}: label-agreeing traces right {labels:.3f}; one kept trace per seed right "
            f"{kept_right / (labelled.sum() + rest.sum()):.3f}")


def table(name: str, answers: np.ndarray, min_samples: int | None) -> None:
    rule = f"min_samples = {min_samples}" if min_samples else "min_samples = k (every sample answered)"
    print(f"\n## {name}: per-sample accuracy {np.mean(answers == 0):.2f}, no answer {np.mean(answers < 0):.2f}; {rule}")
    print("precision / recall / seeds labelled\n")
    print("| k | " + " | ".join(f"share >= {s}" for s in SHARES) + " |")
    print("| --- |" + " --- |" * len(SHARES))
    for k in range(2, K_MAX + 1):
        counts = vote_counts(answers, k)
        cells = []
        for s in SHARES:
            p, r, c = score(counts, min(min_samples or k, k), s)
            cells.append(f"{p:.3f} / {r:.2f} / {c:.2f}" if min_samples is None or min_samples <= k else "-")
        print(f"| {k} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=40_000)
    ap.add_argument("--min-samples", type=int, nargs="*", default=[3, 4])
    ap.add_argument("--rng", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.rng)
    for name, spec in SCENARIOS.items():
        answers = simulate(spec, args.seeds, rng)
        print(f"\n# {name}\n\n{old_rule(answers, rng)}")
        for m in args.min_samples:
            table(name, answers, m)


if __name__ == "__main__":
    main()
