"""kind: reasoning_gym sources (factory/gym.py): config errors, streamed seeds, the parser on the tasks'
answer formats, a build whose verdicts are the tasks' own scorers', and refresh.fresh_seeds."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import time
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

reasoning_gym = pytest.importorskip("reasoning_gym")

from factory import refresh as refresh_module  # noqa: E402
from factory.build import build_dataset  # noqa: E402
from factory.checks.gym import decode_entry  # noqa: E402
from factory.config import load_config  # noqa: E402
from factory.errors import ConfigError, SourceError  # noqa: E402
from factory.gym import GymPlan, read_gym_seeds, with_recorded_draws  # noqa: E402
from factory.parse import parse  # noqa: E402
from factory.pipeline import run_pipeline  # noqa: E402
from factory.prompts import Prompts  # noqa: E402
from factory.records import Response, Seed, content_hash  # noqa: E402
from factory.refresh import EXIT_PUBLISHED, run_refresh  # noqa: E402
from factory.sources import plan_source, read_seeds  # noqa: E402
from factory.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUIET = Console(quiet=True)
# one task per family: arithmetic, a word and a letter task, lists, logic puzzles, a grid
MIX = {"basic_arithmetic": 1, "word_sorting": 1, "letter_counting": 1, "spell_backward": 1, "number_sorting": 1,
       "knights_knaves": 1, "syllogism": 1, "mini_sudoku": 1, "sentence_reordering": 1}


def gym_source(**over) -> dict:
    return {"name": "arith", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5, "seed": 1, **over}


def config(project: Path, sources: list[dict], **over):
    data = {"workdir": str(project / ".factory"), "prompts_dir": str(ROOT / "prompts"), "sources": sources,
            "teachers": [{"name": "oracle", "backend": "local"}], "generation": {"samples_per_seed": 2},
            "filter": {"verify_workers": 1}, "refresh": {"publish": False}, **over}
    return load_config(data=data)


# -- config and source errors: one line naming the source and the field --------------------------

@pytest.mark.parametrize("source, words", [
    (gym_source(size=0), ["sources.0.size", "greater than or equal to 1"]),
    (gym_source(size=None), ["sources.0.size", "required"]),
    (gym_source(task=None), ["sources.0.task", "tasks"]),
    (gym_source(tasks={"gcd": 1}), ["sources.0.task", "one of"]),
    (gym_source(path="x.jsonl"), ["sources.0.path", "not a setting of a reasoning_gym source"]),
    (gym_source(answer_after="####"), ["sources.0.answer_after", "not a setting"]),
    (gym_source(task=None, tasks={"gcd": 0}), ["sources.0.tasks", "positive"]),
    ({"name": "f", "path": "x.jsonl", "task": "gcd"}, ["sources.0.task", "kind: reasoning_gym"]),
    ({"name": "f", "path": "x.jsonl", "seed": 3}, ["sources.0.seed", "kind: reasoning_gym"]),
    ({"name": "f"}, ["sources.0.path", "required"]),
])
def test_a_bad_source_config_is_one_line_naming_the_field(tmp_path, source, words):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, [source])
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("source, words", [
    (gym_source(task="basic_arithmetc"), ["source 'arith'", "task", "basic_arithmetc",
                                          "did you mean basic_arithmetic"]),
    (gym_source(task=None, tasks={"gcd": 1, "no_such_task": 2}), ["source 'arith'", "tasks",
                                                                  "no_such_task"]),
    (gym_source(config={"min_terms": 5, "max_terms": 2}), ["source 'arith'", "config",
                                                           "max_terms must be >= min_terms"]),
    (gym_source(config={"no_such_setting": 1}), ["source 'arith'", "config", "no_such_setting"]),
    (gym_source(config={"seed": 4}), ["source 'arith'", "config.seed", "on the source"]),
    (gym_source(task=None, tasks={"gcd": 1}, config={"lcm": {}}), ["config.lcm", "not one of the source's tasks"]),
    (gym_source(task=None, tasks={"gcd": 1}, config={"gcd": {"min_numbers": 0}}), ["config.gcd", "refuses"]),
])
def test_an_unknown_task_or_a_setting_the_task_refuses_is_a_source_error(tmp_path, source, words):
    with pytest.raises(SourceError) as e:
        plan_source(config(tmp_path, [source]).sources[0])
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_config_hash_of_file_sources_is_unchanged_and_gym_keys_count(tmp_path):
    files = config(tmp_path, [{"name": "g", "path": "data/gsm8k_train_sample.jsonl", "preset": "gsm8k"}])
    dumped = load_config(data=files.resolved())  # a config written out with every key loads again
    assert dumped.config_hash() == files.config_hash()
    a = config(tmp_path, [gym_source()])
    assert a.config_hash() != config(tmp_path, [gym_source(seed=2)]).config_hash()
    assert a.config_hash() != config(tmp_path, [gym_source(config={"max_terms": 3})]).config_hash()
    assert a.config_hash() == config(tmp_path, [gym_source()], refresh={"fresh_seeds": 9}).config_hash()


# -- seeds -------------------------------------------------------------------------------------

def test_seeds_stream_one_entry_at_a_time_and_carry_the_whole_entry(tmp_path):
    cfg = config(tmp_path, [gym_source(size=10**7)])  # ten million: only what is read is generated
    started = time.monotonic()
    seeds = list(itertools.islice(read_seeds(plan_source(cfg.sources[0])), 5))
    assert time.monotonic() - started < 5
    dataset = reasoning_gym.create_dataset("basic_arithmetic", seed=1, size=10**7)
    for i, seed in enumerate(seeds):
        entry = dataset[i]
        assert seed.problem == entry["question"] and seed.answer == entry["answer"] and seed.domain == "math"
        assert seed.seed_id == content_hash("seed", "arith", entry["question"])
        gym = seed.meta["gym"]
        assert (gym["task"], gym["seed"], gym["index"], gym["config"]) == ("basic_arithmetic", 1, i, {})
        assert decode_entry(json.loads(json.dumps(gym["entry"]))) == entry


def test_a_mix_draws_each_task_by_weight_and_scores_each_with_its_own(tmp_path):
    cfg = config(tmp_path, [gym_source(name="mix", task=None, tasks={"gcd": 3, "word_sorting": 1}, size=200,
                                       config={"word_sorting": {"max_words": 6}})])
    plan = plan_source(cfg.sources[0])
    assert isinstance(plan, GymPlan) and plan.licence.startswith("Apache-2.0")
    seeds = [s for s in read_seeds(plan) if isinstance(s, Seed)]
    tasks = [s.meta["gym"]["task"] for s in seeds]
    assert 110 < tasks.count("gcd") < 190 and tasks.count("gcd") + tasks.count("word_sorting") == len(seeds)
    words = next(s for s in seeds if s.meta["gym"]["task"] == "word_sorting")
    assert words.meta["gym"]["config"] == {"max_words": 6}


def test_a_task_without_a_single_answer_has_no_reference(tmp_path):
    cfg = config(tmp_path, [gym_source(name="logic", task="propositional_logic", size=3)])
    seeds = list(read_seeds(plan_source(cfg.sources[0])))
    assert seeds and all(s.answer is None and s.meta["gym"]["entry"]["metadata"] for s in seeds)


# -- the parser reads what the tasks expect ----------------------------------------------------

@pytest.mark.parametrize("task", sorted(MIX) + ["arc_1d", "rotate_matrix", "zebra_puzzles", "family_relationships",
                                                "emoji_mystery", "gcd"])
def test_the_final_answer_in_answer_tags_scores_full_marks(task):
    dataset = reasoning_gym.create_dataset(task, size=6, seed=9)
    from factory.checks.gym import answer_tag_text

    for i in range(6):
        e = dataset[i]
        text = (f"<think>I work through the problem carefully, one step after another.</think>\n\n"
                f"<answer>{e['answer']}</answer>")
        p = parse(text, None, "math", "stop")
        assert p.error is None and p.answer is not None, (task, e["answer"], p)
        best = max(dataset.score_answer(p.answer, e), dataset.score_answer(answer_tag_text(text), e))
        assert best == 1.0, (task, e["answer"], p.answer)


def test_the_template_asks_for_answer_tags_and_keeps_the_tasks_own_instructions(tmp_path):
    cfg = config(tmp_path, [gym_source(name="s", task="word_sorting", size=2),
                            gym_source(name="g", task="mini_sudoku", size=1)])
    prompts = Prompts(ROOT / "prompts")
    for source in cfg.sources:
        seed = next(s for s in read_seeds(plan_source(source)) if isinstance(s, Seed))
        system, user = prompts.render("gym_cot.jinja", seed)
        assert "<answer>" in system["content"] and seed.problem in user["content"]
        assert "<answer>...</answer>" in user["content"]
        assert ("one row per line" in user["content"]) == (source.task == "mini_sudoku")
        assert seed.answer not in user["content"].split(seed.problem)[-1]  # the reference never leaks


# -- a build: the task's scorer decides ----------------------------------------------------------

class GymOracle:
    """Answers from the seeds it was given: sample 0 the entry's answer, sample 1 a changed one, sample 2
    the answer with an extra full stop or spaces; writes what each trace said, for the test to score."""

    def __init__(self, seeds: dict[str, Seed]):
        self.name, self.model = "oracle", "oracle-model"
        self.seeds, self.said = seeds, {}
        self.calls = 0

    def answer_for(self, seed: Seed, sample: int) -> str:
        right = seed.answer
        if sample == 0:
            return right
        if sample == 1:
            return str(int(right) + 1) if right.lstrip("-").isdigit() else right[::-1] + "x"
        return right + "." if not right.endswith(".") else right[:-1]

    def generate(self, requests):
        for r in requests:
            self.calls += 1
            seed = self.seeds[r.seed_id]
            said = self.answer_for(seed, r.sample_index)
            self.said[r.request_id] = (seed, said)
            words = " ".join(random.Random(r.request_id).choice(["first", "then", "check", "carry", "so", "next",
                                                                 "count", "compare"]) for _ in range(12))
            text = f"<think>{seed.problem[:40]} {words} sample {r.sample_index}.</think>\n<answer>{said}</answer>"
            yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason="stop", completion_tokens=30)


def planned_seeds(cfg) -> dict[str, Seed]:
    out = {}
    with Store(cfg.store_path) as store:
        for source in cfg.sources:
            plan = with_recorded_draws(store, plan_source(source))
            out.update({s.seed_id: s for s in read_gym_seeds(plan) if isinstance(s, Seed)})
    return out


def verdicts(cfg) -> dict[str, tuple[bool, str]]:
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        return {r: (p, why) for r, p, why in con.execute(
            """SELECT request_id, passed, reason FROM checks WHERE "check" = 'verify'""").fetchall()}


@pytest.mark.slow
def test_a_build_is_decided_by_each_tasks_scorer_with_precision_and_recall_one(tmp_path):
    cfg = config(tmp_path, [gym_source(name="arith", size=6), gym_source(name="mix", task=None, tasks=MIX, size=30,
                                                                          seed=4)],
                 generation={"samples_per_seed": 3})
    oracle = GymOracle(planned_seeds(cfg))
    result = run_pipeline(cfg, console=QUIET, teachers={"oracle": oracle}, export=False)
    assert result.filtered and not result.stopped
    got = verdicts(cfg)
    assert set(got) == set(oracle.said)  # every trace was scored (none lost to the parser)
    tp = fp = fn = 0
    tasks = set()
    for request_id, (seed, said) in oracle.said.items():
        gym = seed.meta["gym"]
        tasks.add(gym["task"])
        dataset = reasoning_gym.create_dataset(gym["task"], **gym["config"])
        truth = dataset.score_answer(said, decode_entry(gym["entry"])) >= 1.0  # the task's own verdict
        passed, reason = got[request_id]
        assert reason == ("gym_score" if passed else "gym_wrong")
        tp += passed and truth
        fp += passed and not truth
        fn += truth and not passed
    assert tp > 30 and fp == 0 and fn == 0  # precision and recall 1.0
    assert len(tasks) >= 7 and "basic_arithmetic" in tasks
    funnel = result.filtered.funnel["verify"]
    assert funnel.get("gym_wrong", 0) > 0 and set(funnel) <= {"gym_wrong"}
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:  # math-verify and majority vote stayed away
        assert con.execute("SELECT count(*) FROM reference_checks").fetchone()[0] == 0
    # a second run re-asks and re-scores nothing
    again = run_pipeline(cfg, console=QUIET, teachers={"oracle": oracle}, export=False)
    assert again.build.requests_sent == 0 and again.filtered.checks_run["verify_gym"] == 0


# -- refresh.fresh_seeds ---------------------------------------------------------------------------

def gym_refresh(cfg, oracle: GymOracle, monkeypatch, fresh: int):
    """A refresh whose teacher is the oracle (run_refresh builds its own teachers otherwise)."""
    cfg.refresh.fresh_seeds = fresh

    def pipeline(c, **kw):
        oracle.seeds.update(planned_seeds(c))  # the draws this refresh recorded, before the build asks
        return run_pipeline(c, teachers={"oracle": oracle}, **kw)

    monkeypatch.setattr(refresh_module, "run_pipeline", pipeline)
    return run_refresh(cfg, console=QUIET)


def stored_seeds(cfg) -> set[str]:
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT seed_id FROM seeds").fetchall()}


def planned(cfg) -> set[str]:
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        rows = con.execute("SELECT DISTINCT seed_id FROM plan JOIN requests USING (request_id)").fetchall()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_a_refresh_with_fresh_seeds_adds_only_seeds_never_seen_and_builds_keep_them(tmp_path, monkeypatch):
    # gcd of small numbers repeats problems: a fresh draw must skip what any earlier draw gave
    cfg = config(tmp_path, [gym_source(name="gcd", task="gcd", size=8, config={"min_value": 1, "max_value": 12})],
                 generation={"samples_per_seed": 1}, refresh={"publish": False, "gates": {"max_diversity_drop": None}})
    oracle = GymOracle(planned_seeds(cfg))
    build_dataset(cfg, console=QUIET, teachers={"oracle": oracle})
    first = stored_seeds(cfg)

    result = gym_refresh(cfg, oracle, monkeypatch, fresh=5)
    assert result.exit_code == EXIT_PUBLISHED, result.message
    second = stored_seeds(cfg)
    added = second - first
    assert len(added) == 5 and planned(cfg) == second  # five new problems, none seen before; nothing lost
    drawn = result.comparison["sources"]["fresh_seeds"]["gcd"]
    assert drawn["new"] == 5 and drawn["seed"] > 1 + 8 and result.comparison["sources"]["added"] == 5
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(new_seeds) FROM gym_draws").fetchone() == (1, 5)

    # a plain build afterwards plans the recorded draw again and asks nothing (idempotent)
    cfg.refresh.fresh_seeds = 0
    calls = oracle.calls
    again = build_dataset(cfg, console=QUIET, teachers={"oracle": oracle})
    assert again.requests_sent == 0 and oracle.calls == calls and planned(cfg) == second

    third = gym_refresh(cfg, oracle, monkeypatch, fresh=4)  # the next refresh draws past both draws
    assert third.exit_code == EXIT_PUBLISHED, third.message
    assert len(stored_seeds(cfg) - second) == 4 and planned(cfg) == stored_seeds(cfg)

    # another seed is another stream: the recorded draws are not replayed for it
    other = config(tmp_path, [gym_source(name="gcd", task="gcd", size=8, seed=2,
                                         config={"min_value": 1, "max_value": 12})])
    with Store(other.store_path) as store:
        assert with_recorded_draws(store, plan_source(other.sources[0])).draws == ()


def test_a_rebuild_reads_drawn_seeds_back_from_the_store_instead_of_generating_them(tmp_path, monkeypatch):
    from factory import gym

    cfg = config(tmp_path, [gym_source(size=6), gym_source(name="words", task="word_sorting", size=4)])
    oracle = GymOracle(planned_seeds(cfg))
    first = build_dataset(cfg, console=QUIET, teachers={"oracle": oracle})
    ids = planned(cfg)
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        assert con.execute("SELECT count(*), count(seed_id) FROM gym_seeds").fetchone() == (10, 10)

    def no_generator(*_):
        raise AssertionError("the generator ran although the store holds the draw")

    monkeypatch.setattr(gym, "_dataset", no_generator)
    again = build_dataset(cfg, console=QUIET, teachers={"oracle": oracle})
    assert planned(cfg) == ids and again.requests_sent == 0 and again.seeds_loaded == first.seeds_loaded == 10

    # a draw whose seeds did not all reach the store (a build killed in between) is generated again
    monkeypatch.undo()
    with Store(cfg.store_path) as store:
        victim = store.sql("SELECT seed_id FROM gym_seeds WHERE source = 'words' ORDER BY idx LIMIT 1")[0][0]
        store.sql("DELETE FROM seeds WHERE seed_id = ?", [victim])
    build_dataset(cfg, console=QUIET, teachers={"oracle": oracle})
    assert planned(cfg) == ids


# -- the embedded teacher ----------------------------------------------------------------------

@pytest.mark.slow
def test_a_build_with_the_embedded_teacher_scores_its_answers(tmp_path, embedded_model):
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    cfg = config(tmp_path, [gym_source(size=4)], generation={"samples_per_seed": 1, "max_tokens": 160,
                                                                       "temperature": 0})  # greedy: the same answers
    result = run_pipeline(cfg, console=QUIET, export=False)
    assert not result.stopped and result.build.requests_ok == 4
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        rows = con.execute("""SELECT c.reason FROM checks c WHERE c."check" = 'verify'""").fetchall()
        parsed = con.execute("SELECT count(*) FROM parsed").fetchone()[0]
    # SmolLM2-135M rarely gets one right; what matters is that the task's scorer, not math-verify, decided
    assert parsed == 4 and rows and all(r[0] in ("gym_score", "gym_wrong", "gym_error") for r in rows)
