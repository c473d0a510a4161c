"""Decontamination against benchmark sets (factory/checks/ngrams.py)."""

from __future__ import annotations

import random

import duckdb
import pytest

from factory.checks.ngrams import Decontaminator, Hit, views
from support.benchmarks import load_benchmark



B = load_benchmark("decontam")


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


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
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
    assert ev["recall"] >= 0.985, ev["per_disguise"]
    assert ev["false_hit_rate"] <= 0.005


# -- short items, boilerplate, one shared n-gram -------------------------------------------------

def _short_items(benchmarks, lo=10, hi=20):
    return [(b, i, t) for b in ("math500", "gsm8k_test") for i, t in benchmarks[b] if lo <= B._words(t) <= hi]


@pytest.mark.parametrize("disguise", ["sentence_dropped", "word_swap", "numbers"])
def test_short_items_under_disguise_are_caught(benchmarks, dec, disguise):
    """10-20-word items with a sentence dropped, one word swapped, or numbers changed."""
    rng = random.Random(1)
    fn = B.SHORT_DISGUISE_FNS[disguise]
    texts, targets = [], []
    for bench, item_id, text in _short_items(benchmarks):
        out = fn(text, rng, bench)
        if out is None or out == text:
            continue
        texts.append((f"k{len(texts)}", out))
        targets.append((bench, item_id))
    assert len(texts) >= 10
    hits = dec.find(texts)
    caught = sum(t in hit_items(hits, k) for (k, _), t in zip(texts, targets))
    assert caught / len(texts) >= 0.95, (disguise, caught, len(texts))


def test_known_short_disguises(benchmarks, dec):
    item_id = next(i for i, t in benchmarks["math500"] if t.startswith("What power of 4 is equal to 8?"))
    power = item(benchmarks, "math500", item_id)
    texts = [("swapped", power.replace("What power", "Which power")),
             ("numbers", "What power of 9 is equal to 27? Express your answer as a common fraction."),
             ("prefixed", "Quick question: " + power.replace("What", "Which"))]
    hits = dec.find(texts)
    for key in ("swapped", "numbers", "prefixed"):
        assert ("math500", item_id) in hit_items(hits, key), key


def test_boilerplate_alone_is_not_a_hit(dec):
    """Unrelated competition problems that share MATH-500's openings and closing instructions."""
    hits = dec.find(list(enumerate(B.HARD_NEGATIVES)))
    assert hits == [], [(B.HARD_NEGATIVES[h.key], h.item_id) for h in hits]
    stitched = ("What is the smallest positive integer n such that the sum of the digits of n is 20? "
                "Express your answer as a common fraction. Find the number of ordered pairs of primes "
                "whose sum is 60. Express your answer in simplest radical form.")
    assert dec.find([("s", stitched)]) == []


def test_one_shared_13gram_is_not_enough():
    shared = "the number of ordered pairs of positive integers a and b such that"  # 13 tokens
    d = Decontaminator({"m": [
        ("long", f"Find {shared} a divides b and b divides 360, and the quotient is a perfect square greater "
                 "than one; give the total count of such pairs as an integer."),
        ("short", f"Compute {shared} ab equals 48."),
    ]})
    other = (f"Determine {shared} the least common multiple of a and b equals 1200 while the greatest "
             "common divisor equals 10.")
    # the long item shares one 13-gram (13 of its 33 tokens) with the other problem: no hit;
    # the short item (17 tokens) is mostly that span: a hit, as is a prefixed copy with new numbers
    assert [h.item_id for h in d.find([("other", other)])] == ["short"]
    assert [h.item_id for h in d.find([("copy", f"Please compute {shared} ab equals 75.")])] == ["short"]
    d_long = Decontaminator({"m": [("long", f"Find {shared} a divides b and b divides 360, and the "
                                                "quotient is a perfect square greater than one; give the "
                                                "total count of such pairs as an integer.")]})
    assert d_long.find([("other", other)]) == []


def test_boilerplate_ngrams_are_not_indexed():
    closing = "Express your answer as a common fraction in lowest terms please."
    items = [(f"i{k}", f"{what} {closing}") for k, what in enumerate(
        ["What is the chance of two heads in three coin tosses?", "Find the ratio of the areas of the circles.",
         "What is the probability of rolling a sum of seven?", "Compute the slope of the line through the points."])]
    d = Decontaminator({"m": items})
    assert d.find([("x", "A jar holds marbles. " + closing)]) == []
    assert [h.item_id for h in d.find([("y", items[1][1])])] == ["i1"]
