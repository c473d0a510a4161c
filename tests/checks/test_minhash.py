"""MinHash + LSH near-duplicate detection (factory/checks/minhash.py)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest

from factory.checks import minhash as M

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gsm8k() -> list[str]:
    rows = [json.loads(line) for line in open(ROOT / "data" / "gsm8k_train.jsonl")]
    return [r["question"] + "\n" + r["answer"] for r in rows[:600]]


@pytest.fixture()
def con():
    c = duckdb.connect()
    yield c
    c.close()


def exact_jaccard(texts: list[str], i: int, j: int, ngram: int = 5) -> float:
    sh, off = M.shingle_hashes([texts[i], texts[j]], ngram)
    a, b = set(sh[off[0]:off[1]].tolist()), set(sh[off[1]:off[2]].tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def edit(text: str, rng: random.Random, n_edits: int) -> str:
    words = text.split()
    for _ in range(n_edits):
        k = rng.randrange(len(words))
        op = rng.choice(["swap", "delete", "insert", "replace"])
        if op == "swap" and k + 1 < len(words):
            words[k], words[k + 1] = words[k + 1], words[k]
        elif op == "delete" and len(words) > 5:
            del words[k]
        elif op == "insert":
            words.insert(k, rng.choice(["really", "then", "also", "quickly", "some"]))
        else:
            words[k] = rng.choice(["apples", "cars", "seven", "blue", "house"])
    return " ".join(words)


# -- tokenisation and hashing ------------------------------------------------------------


def test_vectorised_tokeniser_matches_reference():
    texts = ["Hello, World! It's 3.5 o'clock", "", "   \n\t ", "Ünïcödé — naïve café’s ΣΊΣΥΦΟΣ",
             "snake_case and CamelCase", "x" * 37 + " y", "a\x00b", "tabs\tand\nnewlines  here",
             "日本語のテキスト、句読点。", "$\\frac{3}{20}$ = 0.15", "end."]
    th, off = M._tokenise(texts)
    for i, text in enumerate(texts):
        ref = [M.token_hash(t) for t in M.normalise_tokens(text)]
        assert th[off[i]:off[i + 1]].tolist() == ref, text


def test_identical_and_normalised_texts_have_the_same_signature(gsm8k):
    t = gsm8k[3]
    variants = [t, t.upper(), "  " + t.replace(" ", "   ") + "\n", t.replace(".", " . ").replace(",", ";")]
    sigs = M.minhash_signatures(variants + [gsm8k[4]])
    assert sigs.dtype == np.uint32 and sigs.shape == (5, 128)
    for k in range(1, 4):
        assert (sigs[k] == sigs[0]).all()
    assert M.estimated_jaccard(sigs[0], sigs[4]) < 0.2


def test_signatures_are_stable_and_independent_of_batching(gsm8k):
    a = M.minhash_signatures(gsm8k, workers=1)
    b = M.minhash_signatures(gsm8k[::-1], workers=2, batch_size=37, block=64)[::-1]
    assert (a == b).all()
    c = M.minhash_signatures(gsm8k[:10], seed=2)
    assert not (a[:10] == c).all()
    d = M.minhash_signatures(gsm8k, sketch="classic", workers=1)
    e = M.minhash_signatures(gsm8k, sketch="classic", workers=2, batch_size=50, block=64)
    assert (d == e).all() and not (d == a).all()
    # a doc longer than the block goes through the chunked path: same result
    long = [" ".join(gsm8k[:40]), gsm8k[0]]
    for sketch in ("fast", "classic"):
        assert (M.minhash_signatures(long, sketch=sketch, block=64)
                == M.minhash_signatures(long, sketch=sketch, block=100_000)).all()


def test_short_and_empty_documents(gsm8k):
    # a document's signature does not depend on short documents sharing its batch
    alone = M.minhash_signatures(gsm8k[:3])
    mixed = M.minhash_signatures([gsm8k[0], "tiny", gsm8k[1], "", gsm8k[2]])
    assert (alone == mixed[[0, 2, 4]]).all()
    assert (M.minhash_signatures(["bad \ud800 surrogate"]) != 0xFFFFFFFF).any()
    sigs = M.minhash_signatures(["", "   ", "two words", "Two  WORDS!", "three words here"], ngram=5)
    assert (sigs[0] == 0xFFFFFFFF).all() and (sigs[1] == sigs[0]).all()
    assert (sigs[2] == sigs[3]).all()  # < ngram tokens: one shingle of all tokens
    assert not (sigs[2] == sigs[4]).all()


def test_estimated_jaccard_is_close_to_exact(gsm8k):
    rng = random.Random(0)
    base = [t for t in gsm8k if len(t.split()) > 60][:150]
    texts, pairs = [], []
    for k, t in enumerate(base):
        texts += [t, edit(t, rng, 1 + k % 12)]
        pairs.append((2 * k, 2 * k + 1))
    sigs = M.minhash_signatures(texts)
    errs, z = [], []
    for i, j in pairs:
        ex = exact_jaccard(texts, i, j)
        est = float(M.estimated_jaccard(sigs[i], sigs[j]))
        sd = max(np.sqrt(ex * (1 - ex) / 128), 1e-3)
        errs.append(est - ex)
        z.append((est - ex) / sd)
    assert abs(np.mean(errs)) < 0.01  # unbiased
    assert 0.6 < np.std(z) < 1.4  # binomial spread
    assert np.max(np.abs(z)) < 5


@pytest.mark.parametrize("sketch", ["fast", "classic"])
@pytest.mark.parametrize("size", [40, 200])
def test_sketch_statistics_match_theory(sketch, size):
    """On random shingle sets: unbiased Jaccard estimates, spread at most the binomial
    sqrt(J(1-J)/k) (the fast sketch samples without replacement: less), and band
    collision rates 1 - (1 - J^r)^b."""
    rng = np.random.default_rng(size)
    k, trials = 128, 300
    a, b = M._permutations(k, 1)
    for J in (0.8, 0.6):
        c = int(round(2 * size * J / (1 + J)))
        jt = c / (2 * size - c)
        docs = []
        for _ in range(trials):
            u = rng.integers(0, 2**64, size=2 * size, dtype=np.uint64)
            docs += [u[:size], np.concatenate([u[:c], u[size: 2 * size - c]])]
        sh = np.concatenate(docs)
        off = np.arange(0, sh.size + 1, size, dtype=np.int64)
        out = np.empty((2 * trials, k), dtype=np.uint32)
        if sketch == "fast":
            M._fast(sh, off, a, b, M._round_salts(1), out, 1024)
        else:
            M._classic((sh >> np.uint64(32)).astype(np.uint32), off, a, b, out, 1024)
        est = M.estimated_jaccard(out[0::2], out[1::2])
        sd = np.sqrt(jt * (1 - jt) / k)
        assert abs(est.mean() - jt) < 4 * sd / np.sqrt(trials)
        assert est.std() < 1.15 * sd
        bh = M.band_hashes(out, 16, 8)
        rate = (bh[0::2] == bh[1::2]).any(axis=1).mean()
        p = 1 - (1 - jt**8) ** 16
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / trials) + 0.02, (J, rate, p)


# -- LSH parameters ------------------------------------------------------------------------


def test_lsh_bands():
    assert M.lsh_bands(0.8, 128) == (9, 13)
    assert M.recall_bands(0.8, 128) == (16, 8)
    for t in (0.5, 0.7, 0.9):
        b, r = M.lsh_bands(t, 128)
        assert b * r <= 128
    datasketch_lsh = pytest.importorskip("datasketch.lsh")
    for t in (0.5, 0.8, 0.9):
        for k in (64, 128):
            assert M.lsh_bands(t, k) == datasketch_lsh._optimal_param(t, k, 0.5, 0.5)


# -- band join, clustering, survivors --------------------------------------------------------


def python_band_pairs(bands: np.ndarray) -> set[tuple[int, int]]:
    buckets = defaultdict(list)
    for doc, row in enumerate(bands.tolist()):
        for band, h in enumerate(row):
            buckets[(band, h)].append(doc)
    pairs = set()
    for docs in buckets.values():
        for x in docs:
            for y in docs:
                if x < y:
                    pairs.add((x, y))
    return pairs


def test_duckdb_band_join_equals_python_buckets(gsm8k, con):
    rng = random.Random(1)
    texts = gsm8k[:150] + [edit(t, rng, rng.randint(1, 8)) for t in gsm8k[:150]]
    sigs = M.minhash_signatures(texts)
    bands = M.band_hashes(sigs, 16, 8)
    a, b = M.candidate_pairs(con, bands)
    got = set(zip(a.tolist(), b.tolist()))
    assert got == python_band_pairs(bands)
    assert len(got) >= 50
    # the stored-table variant gives the same pairs, by request id
    ids = [f"r{i:04d}" for i in range(len(texts))]
    M.write_signatures(con, "signatures", ids, sigs)
    stored = set(M.candidate_pairs_from_table(con, "signatures"))
    assert stored == {(ids[x], ids[y]) for x, y in got}


def test_write_signatures_replaces_rows(con):
    sigs = M.minhash_signatures(["alpha beta gamma delta epsilon zeta", "one two three four five six"])
    assert M.write_signatures(con, "sigs", ["a", "b"], sigs) == 2 * 16
    M.write_signatures(con, "sigs", ["a"], sigs[1:])
    assert con.execute("SELECT count(*) FROM sigs").fetchone()[0] == 32
    assert con.execute("SELECT count(DISTINCT hash) FROM sigs").fetchone()[0] == 16
    with pytest.raises(ValueError):
        M.write_signatures(con, "sigs; DROP TABLE x", ["a"], sigs[:1])


def test_exact_jaccard_pairs(gsm8k):
    texts = gsm8k[:200] + ["", "", "one two"]
    rng = random.Random(5)
    pairs = [(rng.randrange(len(texts)), rng.randrange(len(texts))) for _ in range(500)]
    pairs += [(200, 201), (200, 202), (3, 3)]
    got = M.exact_jaccard_pairs(texts, [p[0] for p in pairs], [p[1] for p in pairs], chunk=3000)
    want = [exact_jaccard(texts, i, j) for i, j in pairs]
    assert np.allclose(got, want)


def test_exact_margin_decides_borderline_pairs(gsm8k, con):
    """With the exact check, a kept pair really has J >= threshold and (almost) every
    candidate pair with J >= threshold is kept; estimates alone misjudge some."""
    rng = random.Random(8)
    base = [t for t in gsm8k if len(t.split()) > 80][:120]
    texts, ids = [], []
    for g, t in enumerate(base):
        for v in range(3):
            texts.append(t if v == 0 else edit(t, rng, rng.randint(1, 6)))
            ids.append(f"{g:03d}-{v}")
    idx = {i: k for k, i in enumerate(ids)}
    _, (ea, eb, ej) = M.near_duplicate_clusters(con, ids, texts, return_pairs=True)
    _, (fa, fb, fj) = M.near_duplicate_clusters(con, ids, texts, exact_margin=None, return_pairs=True)
    exact = {(x, y): exact_jaccard(texts, idx[x], idx[y]) for x, y in zip(ea + fa, eb + fb)}
    assert all(exact[p] >= 0.8 for p in zip(ea, eb))
    wrong_est = sum(exact[p] < 0.8 for p in zip(fa, fb))
    assert wrong_est >= 1  # estimates alone let some J < 0.8 pairs through
    truth = {p for p, j in exact.items() if j >= 0.8}
    assert len(truth - set(zip(ea, eb))) <= 0.05 * len(truth)


def test_near_duplicates_cluster_and_unrelated_do_not(gsm8k, con):
    rng = random.Random(2)
    base = [t for t in gsm8k if len(t.split()) > 80][:100]
    texts, ids, group = [], [], []
    for g, t in enumerate(base):
        texts.append(t)
        ids.append(f"g{g:03d}-orig")
        group.append(g)
        texts.append(edit(t, rng, 1))  # one edit in 80+ words: J > 0.85
        ids.append(f"g{g:03d}-dup")
        group.append(g)
    mapping = M.near_duplicate_clusters(con, ids, texts, threshold=0.8)
    same = [mapping[f"g{g:03d}-orig"] == mapping[f"g{g:03d}-dup"] for g in range(len(base))]
    assert np.mean(same) >= 0.95
    reps = {mapping[f"g{g:03d}-orig"] for g in range(len(base))}
    assert len(reps) == len(base)  # no two unrelated problems merged


def test_survivor_is_deterministic_and_prefers_low_rank(con):
    t = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
         "in May. How many clips did Natalia sell altogether in April and May? She sold 72.")
    texts = [t, t + " Thanks!", t.replace("72", "seventy-two"), "Completely unrelated text about trains and "
             "stations and timetables across the whole country for the summer holidays."]
    ids = ["c", "a", "b", "z"]
    m1 = M.near_duplicate_clusters(con, ids, texts)
    assert m1 == {"c": "a", "a": "a", "b": "a", "z": "z"}  # ties: smallest id
    perm = [2, 0, 3, 1]
    m2 = M.near_duplicate_clusters(con, [ids[i] for i in perm], [texts[i] for i in perm])
    assert m2 == m1  # input order does not matter
    rank = [0, 1, 1, 0]  # "c" is verified: it survives
    m3 = M.near_duplicate_clusters(con, ids, texts, rank=rank)
    assert m3 == {"c": "c", "a": "c", "b": "c", "z": "z"}
    m4 = M.near_duplicate_clusters(con, [ids[i] for i in perm], [texts[i] for i in perm],
                                   rank=[rank[i] for i in perm])
    assert m4 == m3
    with pytest.raises(ValueError):
        M.near_duplicate_clusters(con, ["a", "a"], ["x", "y"])


def test_big_buckets_and_exact_duplicates(gsm8k, con):
    # 300 copies of one text + 40 one-word variants: exact copies collapse, the star path
    # for buckets over max_bucket still links everything into one cluster
    rng = random.Random(4)
    t = max(gsm8k, key=lambda s: len(s.split()))
    texts = [t] * 300 + [edit(t, rng, 1) for _ in range(40)] + gsm8k[:20]
    ids = [f"d{i:04d}" for i in range(len(texts))]
    mapping, (pa, pb, est) = M.near_duplicate_clusters(con, ids, texts, max_bucket=10, return_pairs=True)
    assert {mapping[i] for i in ids[:340]} == {"d0000"}
    assert len({mapping[i] for i in ids[340:]}) == 20
    assert len(pa) < 2000  # no quadratic blow-up
    assert min(est) >= 0.8


def test_clusters_from_pairs_union_find():
    # chain 0-1-2-3 and 4-5, 6 alone; order puts 3 first
    order = np.array([3, 0, 1, 2, 4, 5, 6])
    reps = M.clusters_from_pairs(7, np.array([0, 1, 2, 4]), np.array([1, 2, 3, 5]), order)
    assert reps.tolist() == [3, 3, 3, 3, 4, 4, 6]
    rng = np.random.default_rng(0)
    n = 2000
    a = rng.integers(0, n, 1500)
    b = rng.integers(0, n, 1500)
    reps = M.clusters_from_pairs(n, a, b)
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    assert reps.tolist() == [find(x) for x in range(n)]
