"""Decontamination: recall on planted disguised benchmark copies, false hits on clean
GSM8K training problems, and throughput of the DuckDB n-gram join vs Python set lookups.

    python benchmarks/decontam.py [--seed 0] [--repeat 3] [--scale 10]

The planted set (``planted_set``, also used by tests/test_decontam.py) mixes ~7000 clean
GSM8K train problems with copies of GSM8K test / MATH-500 / HumanEval items under each
disguise: verbatim, prefix (+ suffix) added, spacing and case changed, a sentence dropped,
a name swapped (the function name for HumanEval), all numbers changed, and a combination
(prefix + names + numbers); plus short items (MATH-500 problems under 13 words) verbatim,
prefixed, and with spacing/case changed. Numbers are not changed in short items: in a
one-line item a changed number makes a different problem.
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
SHORT_DISGUISES = ("verbatim", "prefix", "spacing_case")
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


DISGUISE_FNS = {"verbatim": d_verbatim, "prefix": d_prefix, "spacing_case": d_spacing_case,
                "sentence_dropped": d_sentence_dropped, "name_swap": d_name_swap, "numbers": d_numbers,
                "combo": d_combo}


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
    if "math500" in per_type:
        short = [it for it in benchmarks["math500"] if _words(it[1]) < SHORT_WORDS]
        rng.shuffle(short)
        for j, (item_id, text) in enumerate(short):
            disguise = SHORT_DISGUISES[j % len(SHORT_DISGUISES)]
            out = DISGUISE_FNS[disguise](text, rng, "math500")
            rows.append((f"planted:math500:short_{disguise}:{j}", out, ("math500", item_id, "short_" + disguise)))
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
    clean_flagged = []
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
        per[disguise][0] += (bench, item_id) in by_key.get(key, set())
    caught = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    return {"recall": caught / max(total, 1), "caught": caught, "planted": total,
            "per_disguise": {k: v[0] / v[1] for k, v in sorted(per.items())},
            "per_disguise_counts": {k: tuple(v) for k, v in sorted(per.items())},
            "false_hits": len(clean_flagged), "clean": n_clean,
            "false_hit_rate": len(clean_flagged) / max(n_clean, 1), "flagged_clean": clean_flagged}


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
    print("\nrecall per disguise, all seeds:")
    _table([(k, f"{c}/{t}", f"{c / t:.3f}") for k, (c, t) in sorted(per_disguise.items())],
           ("disguise", "caught", "recall"))

    # every clean GSM8K train problem flagged, to judge by eye
    hits = dec.find(list(enumerate(train)))
    item_text = {(b, i): t for b, its in benchmarks.items() for i, t in its}
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
    for method, fn in (("duckdb", dec._counts_duckdb), ("python", dec._counts_python)):
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
