"""Fidelity: per real-shaped source, the factory keeps every correct trace and no wrong one.

The oracle teacher (tests/support/oracle.py) answers with known right, wrong, truncated and hedged
chains of thought through the real `openai` teacher; benchmarks/fidelity.py builds, filters and
joins the store with the truth. Thresholds per shape: precision of `verified` >= 0.995 and recall
>= 0.97. Larger runs and the misses by category: `python benchmarks/fidelity.py`.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from support.oracle import Oracle, TruthSeed, right_forms, sha256, wrong_values
from support.benchmarks import load_benchmark
from support.shapes import BUILDERS, build_shapes

MIN_PRECISION, MIN_RECALL = 0.995, 0.97
SEEDS_PER_SHAPE, SAMPLES = 30, 4


# -- the instrument itself (fast) -----------------------------------------------------------------

def test_oracle_logs_the_truth_of_every_choice_through_the_sdk():
    import openai

    seeds = [TruthSeed("Tom has 3 apples and buys 4 more. How many apples does he have?", "7", "number", "apples")]
    with Oracle(seeds, mix={"right": 0.4, "wrong": 0.2, "truncated": 0.2, "hedged": 0.2}) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY")
        out = client.chat.completions.create(model="oracle", n=12, messages=[
            {"role": "user", "content": "Solve the following problem.\n\n" + seeds[0].problem}])
        logged = json.loads(urllib.request.urlopen(srv.base_url.removesuffix("/v1") + "/truth").read())
    assert len(out.choices) == 12
    labels = set()
    for choice in out.choices:
        truth = srv.truth[sha256(choice.message.content)]
        assert truth["seed"] == 0 and logged[sha256(choice.message.content)]["label"] == truth["label"]
        labels.add(truth["label"])
        assert (choice.finish_reason == "length") == (truth["label"] == "truncated")
        if truth["wrapper"] == "reasoning_content":
            assert choice.message.model_extra.get("reasoning_content")
    assert labels == {"right", "wrong", "truncated", "hedged"}


def test_oracle_finds_the_seed_by_its_problem_inside_any_template():
    seeds = {"a": TruthSeed("What is 2 + 2?", "4"), "b": TruthSeed("What is 2 + 2? Then add 1.", "5")}
    srv = Oracle(seeds)
    assert srv.find_seed("Solve:\n\nWhat is 2 + 2?") == "a"
    assert srv.find_seed("Please   solve  what is 2 + 2? Then add 1.\nThink first.") == "b"
    assert srv.find_seed("Something else") is None


@pytest.mark.parametrize("seed", [
    TruthSeed("p", "1234", "number", "cm"), TruthSeed("p", "18.5", "money"), TruthSeed("p", "\\frac{3}{8}", "fraction"),
    TruthSeed("p", "12:50", "time"), TruthSeed("p", "4 \\times 10^{33}", "sci"), TruthSeed("p", "2516_8", "base"),
    TruthSeed("p", "50", "percent"), TruthSeed("p", "\\left( 3, \\frac{\\pi}{2} \\right)", "latex"),
    TruthSeed("p", "0.0000673")])
def test_wrong_values_never_equal_a_right_form(seed):
    import random

    rights = {latex for _, _, latex in right_forms(seed)} | {prose for _, prose, _ in right_forms(seed)}
    wrongs = wrong_values(seed, random.Random(0))
    assert wrongs and not rights & {latex for _, _, latex in wrongs}


def test_every_shape_writes_its_rows_and_truth(tmp_path):
    shapes = build_shapes(tmp_path, n=12)
    assert [s.name for s in shapes] == list(BUILDERS)
    for s in shapes:
        assert len(s.seeds) == 12 and all(f.exists() for f in s.files)
        assert "answer" not in s.unlabelled["fields"]


# -- the measurement (slow: a build and a filter over every shape) --------------------------------

@pytest.fixture(scope="module")
def fidelity(tmp_path_factory):
    bench = load_benchmark("fidelity")
    work = tmp_path_factory.mktemp("fidelity")
    shapes = build_shapes(work / "data", SEEDS_PER_SHAPE)
    runs = bench.run_mode(shapes, "reference", work / "reference", SAMPLES, dict(bench.DEFAULT_MIX))
    return bench, runs


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(BUILDERS))
def test_verified_keeps_every_right_trace_and_no_wrong_one(fidelity, shape):
    bench, runs = fidelity
    run = runs[shape]
    assert run.error is None, f"{shape}: the source could not be read: {run.error}"
    assert run.seeds_loaded == SEEDS_PER_SHAPE, f"{shape}: {run.seeds_loaded} seeds loaded, bad rows {dict(run.bad_rows)}"
    tp, fp, fn = bench.counts(run.traces, "accepted")
    precision, recall = bench.pr(tp, fp, fn)
    shares = None
    wrong = [f"{bench.miss_category(t, shares)} [{t.truth.get('format')}/{t.truth.get('form') or t.truth.get('strategy')}]"
             f" `{bench._tail(t.text, 80)}` ref `{t.reference}` parsed `{t.parsed}`"
             for t in run.traces if t.right != t.accepted][:6]
    assert precision is not None and precision >= MIN_PRECISION and recall >= MIN_RECALL, (
        f"{shape}: precision {precision:.3f}, recall {recall:.3f} (tp {tp}, fp {fp}, fn {fn}); e.g.\n" + "\n".join(wrong))
