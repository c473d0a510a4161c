"""Decontamination against benchmark sets (factory/checks/ngrams.py)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import duckdb
import pytest

from factory.checks.ngrams import Decontaminator, Hit, views

ROOT = Path(__file__).resolve().parent.parent


def _load_bench_module():
    spec = importlib.util.spec_from_file_location("bench_decontam", ROOT / "benchmarks" / "decontam.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


B = _load_bench_module()


@pytest.fixture(scope="module")
def benchmarks():
    return B.load_benchmarks()


@pytest.fixture(scope="module")
def train():
    return B.load_train()


@pytest.fixture(scope="module")
def dec(benchmarks):
    return Decontaminator(benchmarks)


def item(benchmarks, bench, item_id):
    return dict(benchmarks[bench])[item_id]


def hit_items(hits, key):
    return {(h.benchmark, h.item_id) for h in hits if h.key == key}


GSM = ("gsm8k_test", "gsm8k_test/0")  # Janet's ducks


def test_views():
    v = views("Natalia sold 48 clips, then 3.5 more. How many? total_count(x)")
    assert v["strict"].startswith("Natalia sold 48")
    assert " 0 " in v["lower"] and "48" not in v["lower"] and "3.5" not in v["lower"]
    assert "Natalia" not in v["names"] and "How" not in v["names"] and "total_count" not in v["names"]


@pytest.mark.parametrize("disguise", B.DISGUISES)
@pytest.mark.parametrize("bench", ["gsm8k_test", "math500", "humaneval"])
def test_each_disguise_is_caught(benchmarks, dec, disguise, bench):
    """The first 5 items (from a fixed offset) that the disguise applies to are all caught."""
    rng = random.Random(7)
    texts, targets = [], []
    items = benchmarks[bench]
    for item_id, text in items[40:] + items[:40]:
        if len(texts) == 5:
            break
        if B._words(text) < B.SHORT_WORDS:
            continue
        out = B.DISGUISE_FNS[disguise](text, rng, bench)
        if out is None or (disguise != "verbatim" and out == text):
            continue
        texts.append((f"k{len(texts)}", out))
        targets.append((bench, item_id))
    assert len(texts) == 5
    hits = dec.find(texts)
    for (key, out), target in zip(texts, targets):
        assert target in hit_items(hits, key), (disguise, out)


def test_disguises_on_a_known_gsm8k_item(benchmarks, dec):
    janet = item(benchmarks, *GSM)
    copies = {
        "prefix": "Here is my homework, please help!\n" + janet,
        "case_spacing": janet.upper().replace(" ", "   "),
        "dropped": janet.replace("She eats three for breakfast every morning and bakes muffins for her "
                                 "friends every day with four. ", ""),
        "name": janet.replace("Janet", "Priyanka"),
        "numbers": janet.replace("16", "22").replace("$2", "$3"),
        "embedded": "Some unrelated preamble about farming. " * 5 + janet + " And a postscript." * 3,
    }
    assert "Priyanka" in copies["name"] and copies["dropped"] != janet
    hits = dec.find(list(copies.items()))
    for key in copies:
        assert GSM in hit_items(hits, key), key


def test_short_benchmark_items_are_caught(benchmarks, dec):
    short = [(i, t) for i, t in benchmarks["math500"] if len(views(t)["strict"].split()) < 6][:10]
    assert short
    texts = []
    for k, (item_id, t) in enumerate(short):
        texts.append((f"v{k}", t))
        texts.append((f"p{k}", "Problem 3. " + t + " Give a short answer."))
        texts.append((f"c{k}", t.upper()))
    hits = dec.find(texts)
    for k, (item_id, _) in enumerate(short):
        for prefix in "vpc":
            assert ("math500", item_id) in hit_items(hits, f"{prefix}{k}"), (prefix, item_id)
    kinds = {h.kind for h in hits}
    assert "short/strict" in kinds


def test_short_item_needs_the_whole_sequence(benchmarks):
    d = Decontaminator({"m": [("a", "Evaluate $\\log_264$.")]})
    assert [h.item_id for h in d.find([("x", "Now evaluate log_264 please")])] == ["a"]
    assert d.find([("y", "Evaluate log_265 instead"), ("z", "We evaluate the log of 264")]) == []


def test_clean_problems_are_not_flagged(dec, train):
    rng = random.Random(3)
    sample = rng.sample(range(len(train)), 2000)
    hits = dec.find([(i, train[i]) for i in sample])
    assert len({h.key for h in hits}) <= 4  # 0.2%; the full train set has 6, 4 real near-copies
    unrelated = ["The weather in Paris was mild this spring.", "def add(a, b):\n    return a + b\n",
                 "Prove that there are infinitely many primes."]
    assert dec.find([(t, t) for t in unrelated]) == []


def test_duckdb_path_equals_python_path(benchmarks, dec, train):
    rows = B.planted_set(5, per_type={"gsm8k_test": 15, "math500": 10, "humaneval": 8}, n_clean=800,
                         benchmarks=benchmarks, train=train)
    texts = [(k, t) for k, t, _ in rows]
    a = dec.find(texts, method="duckdb")
    b = dec.find(texts, method="python")
    assert a == b and len(a) > 200
    assert all(isinstance(h, Hit) and 0 < h.score <= 1 for h in a)
    # a caller-provided connection works too, and repeated calls reuse the benchmark table
    d2 = Decontaminator(benchmarks, con=duckdb.connect())
    assert d2.find(texts[:100]) == d2.find(texts[:100]) == [h for h in a if h.key in {k for k, _ in texts[:100]}]


def test_planted_recall_and_false_hits(benchmarks, dec, train):
    rows = B.planted_set(11, per_type={"gsm8k_test": 25, "math500": 15, "humaneval": 10}, n_clean=3000,
                         benchmarks=benchmarks, train=train)
    ev = B.evaluate(dec.find([(k, t) for k, t, _ in rows]), rows)
    assert ev["planted"] >= 300
    assert ev["recall"] >= 0.98, ev["per_disguise"]
    assert ev["false_hit_rate"] <= 0.005
