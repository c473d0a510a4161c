"""Decontamination: recall on planted disguised benchmark copies, false hits on clean
GSM8K training problems, and throughput of the DuckDB n-gram join vs Python set lookups.

    python benchmarks/decontam.py [--seed 0] [--repeat 3] [--scale 10]

The planted set (``planted_set``, also used by tests/test_decontam.py) mixes ~7000 clean
GSM8K train problems with copies of GSM8K test / MATH-500 / HumanEval items under each
disguise: verbatim, prefix (+ suffix) added, spacing and case changed, a sentence dropped,
a name swapped (the function name for HumanEval), all numbers changed, and a combination
(prefix + names + numbers); plus every short item (under 21 words, from all three sets)
under each short disguise that applies: verbatim, prefixed, spacing/case changed, a
sentence dropped, one word swapped (a synonym, or two neighbours trading places), numbers
changed. Numbers are changed only in short items with at least 6 other words: in a
one-line item like "Compute $\\dbinom{8}{4}$." a changed number makes a different problem.

``HARD_NEGATIVES``: ~50 unrelated competition-style problems written for this benchmark
that share MATH-500's boilerplate ("What is the smallest positive integer", "Express your
answer as a common fraction.", "Find the number of ordered pairs"); none should be flagged.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
sys.path.insert(0, str(ROOT))

DISGUISES = ("verbatim", "prefix", "spacing_case", "sentence_dropped", "name_swap", "numbers", "combo")
SHORT_DISGUISES = ("verbatim", "prefix", "spacing_case", "sentence_dropped", "word_swap", "numbers")
PREFIXES = [
    "Solve the following math problem. ", "Question: ", "Here is a problem from my homework:\n\n",
    "Please answer step by step.\n", "I found this puzzle online, can you help? ", "Problem 17. ",
    "You are a helpful assistant. Solve this carefully and explain your reasoning.\n\n",
    "Complete the following task.\n",
]
SUFFIXES = ["", "", " Show your work.", "\nThink step by step and put the final answer in \\boxed{}.",
            "\nAnswer:"]
NAMES = ["Maria", "Kevin", "Aisha", "Tomas", "Priya", "Oliver", "Chen", "Fatima", "Lucas", "Zoe",
         "Ibrahim", "Hannah", "Mateo", "Yuki", "Grace", "Dmitri"]
FUNC_NAMES = ["solve", "my_function", "compute_result", "helper", "process_values", "f", "check"]
_SENT = re.compile(r"(?<=[.!?])\s+")
_CAPWORD = re.compile(r"\b[A-Z][a-z]+\b")
_NUMBER = re.compile(r"\d+")
SHORT_WORDS = 13
SHORT_POOL_WORDS = 21  # items under this many words also get the short disguises
SYNONYMS = {"find": "determine", "compute": "calculate", "what": "which", "smallest": "least",
            "largest": "greatest", "number": "count", "total": "overall", "many": "much", "value": "result",
            "integer": "whole number", "positive": "nonnegative", "simplify": "reduce", "evaluate": "work out",
            "buy": "purchase", "bought": "purchased", "each": "every", "sum": "total", "spend": "pay",
            "how": "in what way", "real": "complex", "minimum": "least", "maximum": "largest"}

# Unrelated competition-style problems (written for this benchmark, not taken from any
# contest) that reuse MATH-500's boilerplate: openings, closing instructions, templates.
HARD_NEGATIVES = [
    "What is the smallest positive integer $n$ such that $n!$ ends in exactly 12 zeros?",
    "What is the smallest positive integer that can be written as the sum of nine consecutive integers and also as the sum of ten consecutive integers?",
    "What is the largest prime factor of $2^{16} - 1$?",
    "What is the value of $\\log_3 81 + \\log_2 \\frac{1}{8}$?",
    "What is the value of $x$ if $\\frac{x+4}{x-2} = \\frac{x-1}{x+3}$? Express your answer as a common fraction.",
    "A bag holds 5 red marbles and 7 blue marbles. Two marbles are drawn without replacement. What is the probability that both are blue? Express your answer as a common fraction.",
    "Two fair six-sided dice are rolled. What is the probability that the product of the numbers shown is a perfect square? Express your answer as a common fraction.",
    "Find the number of ordered pairs $(x,y)$ of positive integers such that $xy = 2^{10} 3^4$ and $\\gcd(x,y) = 6$.",
    "Find the number of ordered triples $(a,b,c)$ of nonnegative integers with $a + b + c = 12$ and $a \\le b \\le c$.",
    "How many positive divisors of $10!$ are perfect squares?",
    "How many positive three-digit integers have digits whose sum is 9?",
    "In how many ways can 7 people sit around a round table if two particular people refuse to sit next to each other?",
    "In how many ways can the letters of the word BANANA be arranged so that no two A's are adjacent?",
    "Find the minimum value of $x^2 + 4y^2 + \\frac{1}{xy}$ over all positive real numbers $x$ and $y$.",
    "Let $a$, $b$, and $c$ be positive real numbers such that $abc = 8$. Find the minimum value of $(a+2)(b+2)(c+2)$.",
    "Let $x$ and $y$ be real numbers such that $x^2 + y^2 = 25$. Find the maximum value of $3x + 4y$.",
    "Find the remainder when $7^{2023}$ is divided by 100.",
    "Find the remainder when $x^{100}$ is divided by $x^2 - 3x + 2$.",
    "What is the sum of all positive integers $n$ for which $n^2 - 19n + 99$ is a perfect square?",
    "What is the sum of the digits of the smallest prime greater than 1000?",
    "The area of a rectangle is 48 and its perimeter is 28. What is the length of its diagonal? Express your answer in simplest radical form.",
    "A regular hexagon has side length 4. What is the area of the hexagon? Express your answer in simplest radical form.",
    "In triangle $ABC$, $AB = 13$, $BC = 14$, and $CA = 15$. What is the length of the altitude from $A$? Express your answer as a decimal to the nearest tenth.",
    "Compute $\\sum_{k=1}^{20} k^3$.",
    "Compute the product of the roots of $2x^3 - 5x^2 + 7x - 11 = 0$.",
    "Evaluate $\\sqrt{12 + \\sqrt{12 + \\sqrt{12 + \\cdots}}}$.",
    "Simplify $\\frac{1}{\\sqrt{5} + \\sqrt{3}} + \\frac{1}{\\sqrt{3} - 1}$.",
    "Solve for $x$: $\\log_2 (x+6) + \\log_2 (x-1) = 3$.",
    "Find all real solutions to $x^4 - 5x^2 + 4 = 0$. Enter all the solutions, separated by commas.",
    "Find all complex numbers $z$ such that $z^2 = \\overline{z}$. Enter all the solutions, separated by commas.",
    "If $f(x) = 2x + 3$ and $g(x) = x^2 - 1$, what is $f(g(2)) - g(f(1))$?",
    "If $a + b = 7$ and $ab = 10$, what is the value of $a^3 + b^3$?",
    "The sum of three consecutive odd integers is 147. What is the product of the smallest and the largest?",
    "A circle is inscribed in a square of side 10, and a smaller square is inscribed in the circle. What is the area of the smaller square?",
    "How many ways can 5 distinct books be placed on 3 distinct shelves if every shelf gets at least one book?",
    "What is the greatest common divisor of $n^2 + 1$ and $(n+1)^2 + 1$ over all positive integers $n$?",
    "Find the largest integer $k$ such that $3^k$ divides $100!$.",
    "Convert $2021_{10}$ to base 7.",
    "Express $0.\\overline{27}$ as a common fraction in lowest terms.",
    "Express $\\frac{7}{16}$ as a decimal.",
    "What is the units digit of $3^{2024} + 7^{2024}$?",
    "Let $p(x)$ be a monic quadratic with $p(1) = 4$ and $p(2) = 9$. Find $p(5)$.",
    "The vertices of a triangle are $(0,0)$, $(6,0)$ and $(2,5)$. What is the area of the triangle?",
    "A right circular cone has volume $96\\pi$ and height 8. What is the slant height of the cone?",
    "Find the number of positive integers less than 1000 that are divisible by 7 but not by 11.",
    "Find the number of subsets of $\\{1,2,\\ldots,10\\}$ that contain no two consecutive integers.",
    "What is the probability that a randomly chosen divisor of 360 is odd? Express your answer as a common fraction.",
    "Let $z = \\cos \\frac{2\\pi}{7} + i \\sin \\frac{2\\pi}{7}$. Compute $z + z^2 + z^4$.",
    "For how many integers $n$ between 1 and 100 is $n^2 + n + 41$ prime?",
    "What is the least positive integer with exactly 12 positive divisors?",
    "Find the sum of all real numbers $x$ such that $|x - 3| + |x + 1| = 10$.",
    "What is the value of $\\binom{10}{3} - \\binom{9}{3}$?",
]



def load_benchmarks() -> dict[str, list[tuple[str, str]]]:
    gsm = [json.loads(line) for line in open(DATA / "benchmarks" / "gsm8k_test.jsonl")]
    m5 = [json.loads(line) for line in open(DATA / "benchmarks" / "math500_test.jsonl")]
    he = [json.loads(line) for line in gzip.open(DATA / "benchmarks" / "humaneval.jsonl.gz", "rt")]
    return {
        "gsm8k_test": [(f"gsm8k_test/{i}", d["question"]) for i, d in enumerate(gsm)],
        "math500": [(d["unique_id"], d["problem"]) for d in m5],
        "humaneval": [(d["task_id"], d["prompt"]) for d in he],
    }


def load_train() -> list[str]:
    return [json.loads(line)["question"] for line in open(DATA / "gsm8k_train.jsonl")]


# -- disguises: each returns the disguised text, or None when it does not apply ------------


def d_verbatim(text, rng, bench):
    return text


def d_prefix(text, rng, bench):
    return rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)


def d_spacing_case(text, rng, bench):
    text = re.sub(r" ", lambda m: rng.choice([" ", " ", "  ", "\n", " \t", "   "]), text)
    if bench == "humaneval":
        text = text.replace("    ", "  ")
    case = rng.choice(["lower", "upper", "title", "swap"])
    return {"lower": text.lower(), "upper": text.upper(), "title": text.title(), "swap": text.swapcase()}[case]


def d_sentence_dropped(text, rng, bench):
    """Drop one sentence holding at most 40% of the item's words (so the copy is still
    recognisably the item, not just its generic closing instruction)."""
    sents = _SENT.split(text.strip())
    if len(sents) < 2:
        return None
    total = _words(text)
    small = [i for i, s in enumerate(sents) if _words(s) <= 0.4 * total]
    if not small:
        return None
    drop = rng.choice(small)
    return " ".join(s for i, s in enumerate(sents) if i != drop)


def d_name_swap(text, rng, bench, entry_point=None):
    if bench == "humaneval":
        m = re.search(r"def (\w+)\(", text)
        if not m:
            return None
        old = m.group(1)
        new = rng.choice([f for f in FUNC_NAMES if f != old])
        return re.sub(rf"\b{re.escape(old)}\b", new, text)
    # names: capitalised words that occur somewhere other than a sentence start
    starts = {m.start(1) for m in re.finditer(r"(?:^|[.!?]\s+)([A-Z])", text)}
    cands = sorted({m.group(0) for m in _CAPWORD.finditer(text) if m.start() not in starts})
    if not cands:
        return None
    out = text
    for old in cands:
        new = rng.choice([n for n in NAMES if n != old])
        out = re.sub(rf"\b{old}\b", new, out)
    return out


def d_numbers(text, rng, bench):
    if not _NUMBER.search(text):
        return None

    def change(m):
        s = m.group(0)
        while True:
            lo = 10 ** (len(s) - 1) if len(s) > 1 else 0
            new = str(rng.randint(lo, 10 ** len(s) - 1))
            if new != s or len(s) == 1 and s == new == "0":
                return new if new != s else str((int(s) + 1) % 10)

    return _NUMBER.sub(change, text)


def d_combo(text, rng, bench):
    t = d_name_swap(text, rng, bench)
    if t is None:
        return None
    t = d_numbers(t, rng, bench)
    if t is None:
        return None
    return d_prefix(t, rng, bench)


def d_word_swap(text, rng, bench):
    """One word outside $...$ math replaced by a synonym, or two neighbouring words swapped."""
    plain = [m for m in re.finditer(r"\$[^$]*\$|[A-Za-z]{3,}", text) if not m.group(0).startswith("$")]
    if not plain:
        return None
    syn = [m for m in plain if m.group(0).lower() in SYNONYMS]
    if syn and rng.random() < 0.6:
        m = rng.choice(syn)
        new = SYNONYMS[m.group(0).lower()]
        new = new.capitalize() if m.group(0)[0].isupper() else new
        return text[:m.start()] + new + text[m.end():]
    pairs = [(a, b) for a, b in zip(plain, plain[1:]) if text[a.end():b.start()] == " "]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    return text[:a.start()] + b.group(0) + " " + a.group(0) + text[b.end():]


def d_short_numbers(text, rng, bench):
    if len(re.findall(r"[A-Za-z]{2,}", _NUMBER.sub(" ", text))) < 6:
        return None
    return d_numbers(text, rng, bench)


DISGUISE_FNS = {"verbatim": d_verbatim, "prefix": d_prefix, "spacing_case": d_spacing_case,
                "sentence_dropped": d_sentence_dropped, "name_swap": d_name_swap, "numbers": d_numbers,
                "combo": d_combo, "word_swap": d_word_swap}
SHORT_DISGUISE_FNS = {**DISGUISE_FNS, "numbers": d_short_numbers}


def _words(text: str) -> int:
    return len(re.findall(r"[^\W_]+", text.lower()))


def planted_set(seed: int = 0, per_type: dict[str, int] | None = None, n_clean: int = 7000,
                benchmarks: dict | None = None, train: list[str] | None = None):
    """Reproducible planted set: list of (key, text, label) where label is
    ``(benchmark, item_id, disguise)`` for planted copies and None for clean texts."""
    rng = random.Random(seed)
    benchmarks = benchmarks or load_benchmarks()
    train = train or load_train()
    per_type = per_type or {"gsm8k_test": 60, "math500": 40, "humaneval": 30}
    rows = []
    for bench, k in per_type.items():
        items = benchmarks[bench]
        long_items = [it for it in items if _words(it[1]) >= SHORT_WORDS]
        for disguise in DISGUISES:
            fn = DISGUISE_FNS[disguise]
            order = list(range(len(long_items)))
            rng.shuffle(order)
            got = 0
            for idx in order:
                if got >= k:
                    break
                item_id, text = long_items[idx]
                out = fn(text, rng, bench)
                if out is None or (disguise != "verbatim" and out == text):
                    continue
                rows.append((f"planted:{bench}:{disguise}:{got}", out, (bench, item_id, disguise)))
                got += 1
    for bench in per_type:
        short = [it for it in benchmarks[bench] if _words(it[1]) < SHORT_POOL_WORDS]
        rng.shuffle(short)
        for j, (item_id, text) in enumerate(short):
            for disguise in SHORT_DISGUISES:
                out = SHORT_DISGUISE_FNS[disguise](text, rng, bench)
                if out is None or (disguise != "verbatim" and out == text):
                    continue
                rows.append((f"planted:{bench}:short_{disguise}:{j}", out, (bench, item_id, "short_" + disguise)))
    clean_idx = rng.sample(range(len(train)), min(n_clean, len(train)))
    for i in clean_idx:
        rows.append((f"clean:{i}", train[i], None))
    rng.shuffle(rows)
    return rows


def evaluate(hits, rows) -> dict:
    """Recall per disguise (hit on the planted item), false-hit rate on clean texts."""
    by_key: dict[str, set] = {}
    for h in hits:
        by_key.setdefault(h.key, set()).add((h.benchmark, h.item_id))
    per: dict[str, list[int]] = {}
    clean_flagged, missed = [], []
    n_clean = 0
    for key, _, label in rows:
        if label is None:
            n_clean += 1
            if key in by_key:
                clean_flagged.append(key)
            continue
        bench, item_id, disguise = label
        per.setdefault(disguise, [0, 0])
        per[disguise][1] += 1
        found = (bench, item_id) in by_key.get(key, set())
        per[disguise][0] += found
        if not found:
            missed.append(label)
    caught = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    return {"recall": caught / max(total, 1), "caught": caught, "planted": total,
            "per_disguise": {k: v[0] / v[1] for k, v in sorted(per.items())},
            "per_disguise_counts": {k: tuple(v) for k, v in sorted(per.items())},
            "false_hits": len(clean_flagged), "clean": n_clean,
            "false_hit_rate": len(clean_flagged) / max(n_clean, 1), "flagged_clean": clean_flagged,
            "missed": missed}


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def plain_overlap_hits(benchmarks, texts, n: int = 8):
    """Baseline: a hit when text and item share any word n-gram (lowercase, punctuation
    stripped, numbers kept)."""
    import numpy as np

    from factory.checks.minhash import _tokenise
    from factory.checks.ngrams import Hit, _ngram_keys

    items = [(b, i, t) for b, rows in benchmarks.items() for i, t in rows]
    th, off = _tokenise([t for _, _, t in items])
    doc, key = _ngram_keys(th, off, n, np.uint64(0))
    index = {}
    for d, k in zip(doc.tolist(), key.tolist()):
        index.setdefault(k, set()).add(d)
    th, off = _tokenise([t for _, t in texts])
    doc, key = _ngram_keys(th, off, n, np.uint64(0))
    found = set()
    for d, k in zip(doc.tolist(), key.tolist()):
        for i in index.get(k, ()):
            found.add((d, i))
    return [Hit(texts[d][0], items[i][0], items[i][1], f"{n}-gram/plain", 1.0) for d, i in sorted(found)]


def main() -> None:
    from factory.checks.ngrams import Decontaminator

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5, help="planted sets 0..N-1 (seed 0 was used for tuning)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=int, default=10, help="throughput corpus = scale x GSM8K train")
    args = ap.parse_args()

    benchmarks = load_benchmarks()
    train = load_train()
    t0 = time.perf_counter()
    dec = Decontaminator(benchmarks)
    build_s = time.perf_counter() - t0
    print(f"benchmark index: {len(dec.items)} items, {dec._bench_key.size} n-gram keys, built in {build_s:.2f}s")

    # 1. planted sets: recall / false hits (both join paths must agree)
    per_seed, per_disguise = [], {}
    for seed in range(args.seeds):
        rows = planted_set(seed, benchmarks=benchmarks, train=train)
        texts = [(k, t) for k, t, _ in rows]
        hits_db = dec.find(texts, method="duckdb")
        hits_py = dec.find(texts, method="python")
        assert hits_db == hits_py, "DuckDB and Python paths disagree"
        ev = evaluate(hits_db, rows)
        evb = evaluate(plain_overlap_hits(benchmarks, texts), rows)
        per_seed.append((seed, ev, evb, len(hits_db)))
        for k, (c, t) in ev["per_disguise_counts"].items():
            per_disguise.setdefault(k, [0, 0])
            per_disguise[k][0] += c
            per_disguise[k][1] += t
    print(f"\nplanted sets: {per_seed[0][1]['planted']} disguised copies of GSM8K test / MATH-500 / HumanEval "
          f"items + {per_seed[0][1]['clean']} clean GSM8K train problems each; DuckDB hits == Python hits")
    _table([(seed, f"{ev['recall']:.4f}", f"{ev['false_hits']} ({ev['false_hit_rate']:.2%})",
              f"{evb['recall']:.4f}", f"{evb['false_hits']} ({evb['false_hit_rate']:.2%})")
            for seed, ev, evb, _ in per_seed],
           ("seed", "recall", "false hits", "plain 8-gram recall", "plain 8-gram false hits"))
    item_text = {(b, i): t for b, its in benchmarks.items() for i, t in its}
    misses = [(m, item_text[m[:2]]) for _, ev, _, _ in per_seed for m in ev["missed"]]
    print(f"\nmissed copies, all seeds ({len(misses)}): disguise, item words, item")
    for (bench, item_id, disguise), text in misses:
        print(f"- {disguise:22s} {_words(text):3d}  {text[:90]!r}")
    hn = dec.find(list(enumerate(HARD_NEGATIVES)))
    print(f"\nhard negatives: {len({h.key for h in hn})} of {len(HARD_NEGATIVES)} unrelated competition problems "
          "sharing MATH-500 boilerplate flagged")
    for h in hn:
        print(f"- {HARD_NEGATIVES[h.key][:90]!r} ~ {h.item_id} [{h.kind} {h.score:.2f}]")
    print("\nrecall per disguise, all seeds:")
    _table([(k, f"{c}/{t}", f"{c / t:.3f}") for k, (c, t) in sorted(per_disguise.items())],
           ("disguise", "caught", "recall"))

    # every clean GSM8K train problem flagged, to judge by eye
    hits = dec.find(list(enumerate(train)))
    print(f"\nall {len(train)} GSM8K train problems: {len({h.key for h in hits})} flagged "
          f"({len({h.key for h in hits}) / len(train):.2%}):")
    for h in hits:
        print(f"- train #{h.key} ~ {h.item_id} [{h.kind} {h.score:.2f}]\n    train: {train[h.key][:300]!r}\n"
              f"    bench: {item_text[(h.benchmark, h.item_id)][:300]!r}")

    # 2. throughput: DuckDB join vs Python set lookups on the same n-grams
    corpus = [(f"t{i}", train[i % len(train)] + ("" if i < len(train) else f" (copy {i // len(train)})"))
              for i in range(args.scale * len(train))]
    res = []
    for method in ("duckdb", "python"):
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            h = dec.find(corpus, method=method)
            best = min(best, time.perf_counter() - t)
        res.append((method, best, len(h), h))
    assert res[0][3] == res[1][3], "DuckDB and Python paths disagree on the throughput corpus"
    t = time.perf_counter()
    doc, key, _ = dec._text_grams([t for _, t in corpus])
    grams_s = time.perf_counter() - t
    joins = {}
    for method, fn in (("duckdb", dec._matches_duckdb), ("python", dec._matches_python)):
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn(doc, key)
            best = min(best, time.perf_counter() - t)
        joins[method] = best
    n = len(corpus)
    print(f"\nthroughput: {n:,} texts ({args.scale} x GSM8K train), {key.size:,} distinct text n-grams "
          f"(all channels) vs {dec._bench_key.size:,} benchmark n-grams; best of {args.repeat}; "
          f"n-gram hashing alone {grams_s:.2f}s")
    _table([
        ("find(): DuckDB join", f"{res[0][1]:.2f}", f"{n / res[0][1]:,.0f}", f"{res[1][1] / res[0][1]:.2f}x", res[0][2]),
        ("find(): Python set lookups", f"{res[1][1]:.2f}", f"{n / res[1][1]:,.0f}", "1.00x", res[1][2]),
        ("join only: DuckDB", f"{joins['duckdb']:.2f}", f"{n / joins['duckdb']:,.0f}",
         f"{joins['python'] / joins['duckdb']:.2f}x", ""),
        ("join only: Python", f"{joins['python']:.2f}", f"{n / joins['python']:,.0f}", "1.00x", ""),
    ], ("path", "seconds", "texts/s", "vs Python", "hits"))


if __name__ == "__main__":
    main()
