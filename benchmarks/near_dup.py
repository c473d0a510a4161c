"""Near-duplicate detection: factory (numpy MinHash + DuckDB band join) vs datasketch vs rensa.

    python benchmarks/near_dup.py [--docs 100000] [--threads 1] [--repeat 3] [--skip-datasketch]

Corpus (``build_corpus``, reproducible): 60% "unique" documents, each two GSM8K training
problems (question + answer) concatenated -- documents that share one problem have
Jaccard ~0.33, hard negatives -- and 40% planted near-duplicates of random unique
documents: 5% exact copies, the rest with random word swaps / deletions / insertions /
replacements sized for a target Jaccard drawn uniformly from [0.5, 1.0], plus case,
spacing and punctuation noise that normalisation removes.

All three use the same shingles (word 5-grams of ``normalise_tokens``), 128 permutations,
threshold 0.8, the same LSH bands (16 x 8: factory's recall-weighted choice; datasketch
via ``params=``, rensa via ``num_bands``), and the same verification: a candidate pair
is kept when its estimated Jaccard from the signatures is >= 0.8 ("estimates only"
rows). Factory's default additionally decides the pairs whose estimate is within 0.07 of
the threshold by their exact shingle Jaccard (``exact_margin``). datasketch and rensa get
their shingles from Python (as their users do); factory starts from the raw texts.

Ground truth: exact Jaccard of the shingle sets for every planted pair, every pair any
method reported, and a random sample of pairs; true pairs are those with J >= 0.8.
``--threads`` caps every library (RAYON_NUM_THREADS for rensa, DuckDB threads, factory
workers); datasketch is single-threaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NUM_PERM = 128
NGRAM = 5
THRESHOLD = 0.8
SEED = 1
FILLER = ["really", "then", "also", "some", "more", "apples", "each", "total", "after", "seven", "blue"]


# -- corpus -------------------------------------------------------------------------------------


def _edit(words: list[str], rng: random.Random, n_edits: int) -> list[str]:
    words = list(words)
    for _ in range(n_edits):
        k = rng.randrange(len(words))
        op = rng.random()
        if op < 0.25 and k + 1 < len(words):
            words[k], words[k + 1] = words[k + 1], words[k]
        elif op < 0.5 and len(words) > 10:
            del words[k]
        elif op < 0.75:
            words.insert(k, rng.choice(FILLER))
        else:
            words[k] = rng.choice(FILLER)
    return words


def _noise(text: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.2:
        return text.lower()
    if r < 0.3:
        return text.replace(" ", "  ")
    if r < 0.4:
        return text.replace(",", " ,").replace(".", " .")
    return text


def build_corpus(n_docs: int, seed: int = 0):
    """Returns texts, source (index of the unique doc a planted copy came from, or -1)."""
    rng = random.Random(seed)
    problems = [json.loads(line) for line in open(ROOT / "data" / "gsm8k_train.jsonl")]
    pieces = [p["question"] + "\n" + p["answer"] for p in problems]
    n_unique = int(n_docs * 0.6)
    texts, source = [], []
    seen = set()
    while len(texts) < n_unique:
        i, j = rng.randrange(len(pieces)), rng.randrange(len(pieces))
        if i == j or (i, j) in seen:
            continue
        seen.add((i, j))
        texts.append(pieces[i] + "\n\n" + pieces[j])
        source.append(-1)
    while len(texts) < n_docs:
        s = rng.randrange(n_unique)
        words = texts[s].split(" ")
        if rng.random() < 0.05:
            new = texts[s]
        else:
            target = rng.uniform(0.5, 1.0)
            shingles = max(len(words) - NGRAM + 1, 1)
            n_edits = max(1, round(shingles * (1 - target) / (5.5 * (1 + target))))
            new = " ".join(_edit(words, rng, n_edits))
        texts.append(_noise(new, rng))
        source.append(s)
    return texts, source


def python_shingles(texts):
    """The shingles datasketch and rensa get: word 5-grams of normalise_tokens."""
    from factory.checks.minhash import normalise_tokens

    out = []
    for t in texts:
        w = normalise_tokens(t)
        if len(w) < NGRAM:
            out.append([" ".join(w)] if w else [])
        else:
            out.append([" ".join(w[i: i + NGRAM]) for i in range(len(w) - NGRAM + 1)])
    return out


# -- methods: each returns (verified pairs as set of (i, j) i<j, stage timings) -----------------


def run_factory(texts, threads, bands, sketch="fast", exact_margin=0.07):
    import duckdb

    from factory.checks import minhash as M

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    ids = [f"{i:07d}" for i in range(len(texts))]
    t0 = time.perf_counter()
    sigs = M.minhash_signatures(texts, NUM_PERM, NGRAM, SEED, sketch=sketch, workers=threads)
    t1 = time.perf_counter()
    mapping, (pa, pb, _) = M.near_duplicate_clusters(con, ids, texts, signatures=sigs, threshold=THRESHOLD,
                                                      bands=bands, exact_margin=exact_margin,
                                                      return_pairs=True)
    t2 = time.perf_counter()
    pairs = {(int(a), int(b)) if int(a) < int(b) else (int(b), int(a)) for a, b in zip(pa, pb)}
    # documents with identical signatures are collapsed onto one representative (star
    # edges) before the band join; expand to all pairs so that pair-level precision and
    # recall compare like with like (not timed: the clusters are already final)
    pairs = _expand_identical(sigs, pairs)
    n_clusters = len(set(mapping.values()))
    return pairs, {"sketch": t1 - t0, "lsh+verify+cluster": t2 - t1, "total": t2 - t0,
                   "clusters": n_clusters}


def _expand_identical(sigs, pairs):
    import numpy as np

    groups = {}
    view = np.ascontiguousarray(sigs).view(f"V{sigs.shape[1] * 4}").ravel()
    for i, k in enumerate(view.tolist()):
        groups.setdefault(k, []).append(i)
    member = {}
    out = set()
    for g in groups.values():
        for i in g:
            member[i] = g
        if len(g) > 1:
            out |= {(a, b) for x, a in enumerate(g) for b in g[x + 1:]}
    for a, b in pairs:
        ga, gb = member[a], member[b]
        if len(ga) == 1 and len(gb) == 1:
            out.add((a, b))
        else:
            out |= {(min(x, y), max(x, y)) for x in ga for y in gb if x != y}
    return out


def _verify(sigs, cand):
    import numpy as np

    if not cand:
        return set()
    arr = np.array(sorted(cand), dtype=np.int64)
    eq = (sigs[arr[:, 0]] == sigs[arr[:, 1]]).mean(axis=1)
    keep = arr[eq >= THRESHOLD - 1e-12]
    return set(map(tuple, keep.tolist()))


def run_datasketch(texts, bands):
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    sh = python_shingles(texts)
    t1 = time.perf_counter()
    mhs = []
    for s in sh:
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        m.update_batch([x.encode("utf-8") for x in s])
        mhs.append(m)
    t2 = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=bands)
    with lsh.insertion_session() as session:
        for i, m in enumerate(mhs):
            session.insert(i, m)
    cand = set()
    for i, m in enumerate(mhs):
        for j in lsh.query(m):
            if j != i:
                cand.add((i, j) if i < j else (j, i))
    sigs = np.array([m.hashvalues for m in mhs])
    pairs = _verify(sigs, cand)
    t3 = time.perf_counter()
    return pairs, {"shingles (python)": t1 - t0, "sketch": t2 - t1, "lsh+verify": t3 - t2, "total": t3 - t0,
                   "candidates": len(cand)}


def run_rensa(texts, bands):
    import numpy as np
    import rensa

    t0 = time.perf_counter()
    sh = python_shingles(texts)
    t1 = time.perf_counter()
    mhs = rensa.RMinHash.from_token_sets(sh, NUM_PERM, SEED)
    t2 = time.perf_counter()
    lsh = rensa.RMinHashLSH(THRESHOLD, NUM_PERM, bands[0])
    lsh.insert_many(mhs, 0)
    cand = set()
    for i, keys in enumerate(lsh.query_all(mhs)):
        for j in keys:
            if j != i:
                cand.add((i, j) if i < j else (j, i))
    sigs = np.array([m.digest() for m in mhs], dtype=np.uint32)
    pairs = _verify(sigs, cand)
    t3 = time.perf_counter()
    return pairs, {"shingles (python)": t1 - t0, "sketch": t2 - t1, "lsh+verify": t3 - t2, "total": t3 - t0,
                   "candidates": len(cand)}


def sketch_only(texts, threads):
    """Signature matrices only: factory from raw texts; rensa from Python shingles, and
    from factory's vectorised shingle hashes (rensa's pre-hashed flat API)."""
    import numpy as np
    import rensa

    from factory.checks import minhash as M

    out = {}
    t = time.perf_counter()
    M.minhash_signatures(texts, NUM_PERM, NGRAM, SEED, workers=threads)
    out["factory: texts -> signatures"] = time.perf_counter() - t
    t = time.perf_counter()
    sh = python_shingles(texts)
    rensa.RMinHash.digest_matrix_from_token_sets(sh, NUM_PERM, SEED)
    out["rensa: texts -> python shingles -> digest matrix"] = time.perf_counter() - t
    t = time.perf_counter()
    rensa.RMinHash.digest_matrix_from_token_sets(sh, NUM_PERM, SEED)
    out["rensa: shingles given -> digest matrix (sketch kernel only)"] = time.perf_counter() - t
    t = time.perf_counter()
    hs, off = M.shingle_hashes(texts, NGRAM)
    rensa.RMinHash.digest_matrix_from_flat_token_hashes(hs, off.astype(np.uint64), NUM_PERM, SEED)
    out["rensa fed factory's vectorised shingle hashes"] = time.perf_counter() - t
    t = time.perf_counter()
    M.shingle_hashes(texts, NGRAM)
    out["(factory shingle hashing alone)"] = time.perf_counter() - t
    return out


# -- ground truth -------------------------------------------------------------------------------


def exact_jaccards(texts, pairs):
    from factory.checks.minhash import shingle_hashes

    sh, off = shingle_hashes(texts, NGRAM)
    cache = {}

    def s(i):
        v = cache.get(i)
        if v is None:
            v = cache[i] = frozenset(sh[off[i]: off[i + 1]].tolist())
        return v

    out = {}
    for a, b in pairs:
        x, y = s(a), s(b)
        u = len(x | y)
        out[(a, b)] = len(x & y) / u if u else 1.0
    return out


def planted_pairs(source):
    groups = {}
    for i, s in enumerate(source):
        if s >= 0:
            groups.setdefault(s, [s]).append(i)
    pairs = set()
    for g in groups.values():
        g = sorted(g)
        pairs |= {(a, b) for x, a in enumerate(g) for b in g[x + 1:]}
    return pairs


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for factory and rensa")
    ap.add_argument("--random-pairs", type=int, default=200_000)
    ap.add_argument("--skip-datasketch", action="store_true")
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before rensa starts its pool

    from factory.checks.minhash import lsh_bands, recall_bands

    bands = recall_bands(THRESHOLD, NUM_PERM)
    texts, source = build_corpus(args.docs)
    n = len(texts)
    print(f"corpus: {n} docs ({sum(s < 0 for s in source)} unique, {sum(s >= 0 for s in source)} planted), "
          f"word {NGRAM}-shingles, {NUM_PERM} permutations, threshold {THRESHOLD}, bands {bands} "
          f"(datasketch's equal-weight optimum would be {lsh_bands(THRESHOLD, NUM_PERM)}), threads {args.threads}")

    results = {}
    for name, fn, reps in [("factory", lambda: run_factory(texts, args.threads, bands), args.repeat),
                           ("factory, estimates only", lambda: run_factory(texts, args.threads, bands, "fast", None),
                            args.repeat),
                           ("factory, classic sketch, estimates only",
                            lambda: run_factory(texts, args.threads, bands, "classic", None), args.repeat),
                           ("rensa", lambda: run_rensa(texts, bands), args.repeat),
                           ("datasketch", lambda: run_datasketch(texts, bands), 1)]:
        if name == "datasketch" and args.skip_datasketch:
            continue
        best = None
        for _ in range(reps):
            c0 = time.process_time()
            pairs, t = fn()
            t["cpu"] = time.process_time() - c0
            if best is None or t["total"] < best[1]["total"]:
                best = (pairs, t)
        results[name] = best
        print(f"  {name}: " + ", ".join(f"{k} {v:.2f}s" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in best[1].items()), flush=True)

    # throughput table
    base = results["rensa"][1]["total"]
    rows = []
    for name, (pairs, t) in results.items():
        rows.append((name, f"{t['total']:.2f}", f"{t['cpu']:.2f}", f"{n / t['total']:,.0f}",
                     f"{base / t['total']:.2f}x",
                     f"{results['datasketch'][1]['total'] / t['total']:.1f}x" if "datasketch" in results else "-"))
    print(f"\nend to end (texts -> verified near-duplicate pairs), best of {args.repeat} "
          f"(datasketch: 1 run); wall seconds, CPU seconds of the process:")
    _table(rows, ("method", "wall s", "cpu s", "docs/s", "vs rensa", "vs datasketch"))

    so = sketch_only(texts, args.threads)
    print("\nsignatures only (one run each):")
    f = so["factory: texts -> signatures"]
    _table([(k, f"{v:.2f}", f"{n / v:,.0f}", f"{v / f:.2f}x") for k, v in so.items()],
           ("path", "seconds", "docs/s", "time vs factory"))

    # precision / recall against exact Jaccard
    rng = random.Random(5)
    sample = set()
    while len(sample) < args.random_pairs:
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b:
            sample.add((min(a, b), max(a, b)))
    planted = planted_pairs(source)
    universe = planted | sample
    for pairs, _ in results.values():
        universe |= pairs
    t = time.perf_counter()
    jac = exact_jaccards(texts, universe)
    truth = {p for p, j in jac.items() if j >= THRESHOLD}
    print(f"\nground truth: exact Jaccard of {len(universe):,} pairs (planted {len(planted):,}, reported by any "
          f"method, random {len(sample):,}) in {time.perf_counter() - t:.1f}s: {len(truth):,} pairs with J >= "
          f"{THRESHOLD}; random pairs with J >= {THRESHOLD}: {sum(jac[p] >= THRESHOLD for p in sample)}")
    rows = []
    for name, (pairs, t) in results.items():
        tp = len(pairs & truth)
        prec = tp / max(len(pairs), 1)
        rec = tp / max(len(truth), 1)
        # away from the threshold: pairs with J >= 0.85 found, reported pairs with J >= 0.75
        far_truth = {p for p in truth if jac[p] >= THRESHOLD + 0.05}
        rec_far = len(pairs & far_truth) / max(len(far_truth), 1)
        prec_far = sum(jac[p] >= THRESHOLD - 0.05 for p in pairs) / max(len(pairs), 1)
        rows.append((name, f"{len(pairs):,}", f"{prec:.4f}", f"{rec:.4f}", f"{prec_far:.4f}", f"{rec_far:.4f}"))
    _table(rows, ("method", "pairs", "precision", "recall", "precision (J>=0.75)", "recall (J>=0.85)"))


if __name__ == "__main__":
    main()
