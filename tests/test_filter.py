"""The filter stage end to end over a real store: parse, quality, verify (math-verify and the
sandbox), dedup, decontamination, select, diversity, version, and the export TRL reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from factory.build import build_dataset
from factory.config import load_config
from factory.export import export_version
from factory.filter import run_filter
from factory.versions import text_diversity
from factory.records import Response
from support.teachers import CODE, GSM8K, GSM8K_TEST, ScriptedTeacher

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    shutil.copytree(ROOT / "filters", tmp_path / "filters")
    shutil.copytree(ROOT / "data" / "benchmarks", tmp_path / "data" / "benchmarks")
    rows = list(GSM8K)
    rows.append({"question": "  " + GSM8K[0]["question"].upper() + " ", "answer": GSM8K[0]["answer"]})  # exact dup
    rows.append({"question": "Here is a new puzzle for you. " + GSM8K_TEST["question"], "answer": GSM8K_TEST["answer"]})
    with open(tmp_path / "data" / "seeds.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(tmp_path / "data" / "code.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in CODE)
    (tmp_path / "factory.yaml").write_text("""
sources:
  - {name: gsm8k, path: data/seeds.jsonl, preset: gsm8k}
  - {name: code, path: data/code.jsonl, preset: humaneval}
teachers: [{name: scripted, backend: openai, model: scripted-model}]
generation: {samples_per_seed: 4}
filter: {sandbox_wall_s: 5}
""")
    return tmp_path


def build_and_filter(project: Path, *overrides: str):
    cfg = load_config(project / "factory.yaml", list(overrides))
    build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": ScriptedTeacher()})
    return cfg, run_filter(cfg, console=Console(quiet=True))


@pytest.mark.slow
def test_funnel_keeps_one_verified_trace_per_clean_seed_and_exports_for_trl(project):
    cfg, s = build_and_filter(project)
    # 8 math seeds x 4 + 2 code seeds x 4
    assert s.candidates == 40
    f = s.funnel
    assert f["quality"]["truncated_in_reasoning"] == 8  # sample 2 of every math seed: cut off inside <think>
    assert f["verify"]["wrong_answer"] == 8  # sample 1
    assert f["verify"]["tests_failed"] == 4  # odd code samples
    assert f["dedup"]["duplicate_trace"] == 7  # sample 3 copies sample 0
    assert f["dedup"]["duplicate_problem"] == 2  # both surviving traces of the upper-cased copy of a problem
    assert f["decontam"] == {"contaminated:gsm8k_test": 1}  # a GSM8K test item behind a prefix
    assert s.kept == 8 and f["select"]["not_selected"] == 2  # 6 clean math seeds + 2 code seeds, one each
    assert "student" not in f  # no select.student: the funnel does not list a stage that never ran
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    hit = con.execute("SELECT benchmark, item_id FROM contamination WHERE kind = 'seed'").fetchall()
    assert hit == [("gsm8k_test", "1")]
    assert con.execute("SELECT count(*) FROM kept WHERE version = 1 AND verified").fetchone()[0] == 8
    con.close()
    for key in ("distinct_1", "distinct_2", "distinct_3", "compression_ratio", "near_dup_clusters", "per_source",
                "per_teacher", "answer_spread"):
        assert key in s.diversity

    result = export_version(cfg)
    assert result.counts["sft"] == 8 and result.counts["dpo"] >= 6
    import datasets

    sft = datasets.load_dataset("parquet", data_files=str(result.path / "sft" / "*.parquet"), split="train")
    row = sft[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][-1]["content"].startswith("<think>\n") and "\n</think>\n\n" in row["messages"][-1]["content"]
    dpo = datasets.load_dataset("parquet", data_files=str(result.path / "dpo" / "*.parquet"), split="train")
    assert dpo[0]["chosen"][0]["role"] == "assistant" and dpo[0]["chosen"] != dpo[0]["rejected"]
    card = (result.path / "README.md").read_text()
    assert "config_name: sft" in card and "config_name: dpo" in card and "MIT" in card and "contaminated" in card


@pytest.mark.slow
def test_refilter_is_idempotent_and_thresholds_only_redecide(project):
    cfg, first = build_and_filter(project)
    again = run_filter(cfg, console=Console(quiet=True))
    assert again.version == first.version and not again.new_version
    assert again.checks_run["parsed"] == 0 and again.checks_run["verify_math"] == 0
    stricter = load_config(project / "factory.yaml", ["filter.per_seed=2", "filter.math.max_reasoning_words=10"])
    third = run_filter(stricter, console=Console(quiet=True))
    assert third.new_version and third.version == first.version + 1
    assert third.funnel["quality"].get("too_long", 0) > 0
    assert third.checks_run["verify_math"] == 0  # a threshold change re-decides in SQL, computes nothing


def test_text_diversity_falls_when_the_corpus_collapses():
    varied = [f"the {w} jumps over {v} fences quickly" for w in ("cat", "dog", "fox", "owl") for v in range(5)]
    same = ["the cat jumps over the fence"] * 20
    a, b = text_diversity(varied), text_diversity(same)
    assert a["distinct_2"] > b["distinct_2"] and a["compression_ratio"] < b["compression_ratio"]


@pytest.mark.slow
def test_trl_trainers_accept_the_exported_rows_as_they_are(project, embedded_model, tmp_path):
    """SFTTrainer and DPOTrainer train a few steps of a tiny Llama on the export, unchanged."""
    trl = pytest.importorskip("trl")
    import datasets
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    cfg, _ = build_and_filter(project)
    out = export_version(cfg).path
    tok = AutoTokenizer.from_pretrained(embedded_model)  # the embedded teacher's tokenizer and chat template
    tiny = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    args = dict(max_steps=2, per_device_train_batch_size=2, report_to=[], logging_steps=1, save_strategy="no",
                use_cpu=True, max_length=512)
    sft = datasets.load_dataset("parquet", data_files=str(out / "sft" / "*.parquet"), split="train")
    trainer = trl.SFTTrainer(model=LlamaForCausalLM(tiny), processing_class=tok, train_dataset=sft,
                             args=trl.SFTConfig(output_dir=str(tmp_path / "sft"), **args))
    assert trainer.train().training_loss > 0
    dpo = datasets.load_dataset("parquet", data_files=str(out / "dpo" / "*.parquet"), split="train")
    trainer = trl.DPOTrainer(model=LlamaForCausalLM(tiny), ref_model=LlamaForCausalLM(tiny), processing_class=tok,
                             train_dataset=dpo,
                             args=trl.DPOConfig(output_dir=str(tmp_path / "dpo"), **args))
    assert trainer.train().training_loss > 0


class VotingTeacher:
    """Samples 0 and 1 give equivalent answers in different forms, sample 2 another answer."""

    name, model = "voter", "voter-model"

    def generate(self, requests):
        answers = {0: "\\frac{1}{2}", 1: "0.5", 2: "3"}
        for r in requests:
            words = " ".join(r.seed_id[2 * k:2 * k + 5] + str(r.sample_index) for k in range(12))
            text = f"<think>{words} for {r.seed_id[:6]}</think>\n\nThe answer is \\boxed{{{answers[r.sample_index]}}}."
            yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason="stop")


def _unlabelled_project(tmp_path: Path, questions: list[str], samples: int, filter_yaml: str = "{}") -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    with open(tmp_path / "unlabelled.jsonl", "w") as f:
        f.writelines(json.dumps({"q": q}) + "\n" for q in questions)
    (tmp_path / "factory.yaml").write_text(f"""
sources: [{{name: open, path: unlabelled.jsonl, fields: {{problem: q}}}}]
teachers: [{{name: voter, backend: openai, model: voter-model}}]
generation: {{samples_per_seed: {samples}}}
filter: {filter_yaml}
""")
    return tmp_path


@pytest.mark.slow
def test_majority_vote_labels_seeds_without_a_reference(tmp_path):
    _unlabelled_project(tmp_path, ["What is half of one?", "What is 1 divided by 2?"], 3,
                        "{per_seed: 2, prefer: diverse, majority_min_share: 0.6}")
    cfg = load_config(tmp_path / "factory.yaml")
    build_dataset(cfg, console=Console(quiet=True), teachers={"voter": VotingTeacher()})
    s = run_filter(cfg, console=Console(quiet=True))
    assert s.funnel["verify"] == {"majority_minority": 2}  # the '3' of each seed
    assert s.kept == 4 and s.diversity["kept"] == 4
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    details = [json.loads(d) for (d,) in con.execute(
        "SELECT detail FROM checks WHERE reason = 'majority'").fetchall()]
    assert len(details) == 4 and all(d["share"] == 0.667 and d["votes"] == 3 for d in details)
    pseudo = con.execute("SELECT count(*), count(passed) FROM checks WHERE reason = 'majority'").fetchone()
    assert pseudo == (4, 0)  # agreeing traces are not passed, nor failed
    assert con.execute("SELECT count(*) FROM kept WHERE verified").fetchone()[0] == 0  # a pseudo-label is no proof
    con.close()
    # the default rule (filter.majority_min_share 0.8) gives 2 of 3 no label: no consensus, nothing kept
    s = run_filter(load_config(tmp_path / "factory.yaml", ["filter.majority_min_share=0.8"]),
                   console=Console(quiet=True))
    assert s.funnel["verify"] == {"no_consensus": 6} and s.kept == 0


# what each sample of a seed answers (None: a truncated sample without an answer), by the seed's problem
VOTES = {
    "all agree in four forms": ["\\frac{1}{2}", "0.5", "1/2", "\\dfrac{1}{2}"],
    "three of four agree": ["7", "7", "7", "8"],
    "a common mistake ties": ["12", "12", "10", "10"],
    "too few answered": ["5", "5", None, None],
    "three answered, all agree": ["9", None, "9.0", "9"],
    "everyone differs": ["1", "2", "3", "4"],
}


class VoteTeacher:
    """Answers each seed's samples from VOTES; a None is a long trace cut off before its answer."""

    name, model = "voter", "voter-model"

    def generate(self, requests):
        for r in requests:
            user = r.messages[-1]["content"]
            problem = next(p for p in VOTES if p in user)
            answer = VOTES[problem][r.sample_index]
            words = " ".join(f"{problem.split()[0]}{k}-{r.sample_index}" for k in range(12))
            if answer is None:
                yield Response(r.request_id, r.teacher, r.model, text=f"<think>{words} and so", finish_reason="length")
            else:
                yield Response(r.request_id, r.teacher, r.model, finish_reason="stop",
                               text=f"<think>{words} gives {answer}.</think>\n\nThe answer is \\boxed{{{answer}}}.")


@pytest.mark.slow
def test_majority_vote_needs_enough_answers_and_share_and_never_verifies(tmp_path):
    project = _unlabelled_project(tmp_path, list(VOTES), 4)
    cfg = load_config(project / "factory.yaml")
    build_dataset(cfg, console=Console(quiet=True), teachers={"voter": VoteTeacher()})
    s = run_filter(cfg, console=Console(quiet=True))  # defaults: 3 answers, share >= 0.8, no tie
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    votes = con.execute("""SELECT d.problem, c.reason, c.passed, c.detail FROM checks c
                           JOIN requests q USING (request_id) JOIN seeds d USING (seed_id)
                           WHERE c."check" = 'verify'""").fetchall()
    con.close()
    by = {}
    for problem, reason, passed, detail in votes:
        by.setdefault(problem, []).append((reason, passed, json.loads(detail)))
    assert {reason for reason, _, _ in by["all agree in four forms"]} == {"majority"}
    assert by["all agree in four forms"][0][2]["share"] == 1.0 and by["all agree in four forms"][0][2]["votes"] == 4
    assert by["three answered, all agree"][0][2]["label"] in ("9", "9.0") and len(by["three answered, all agree"]) == 3
    assert {r for r, _, _ in by["three answered, all agree"]} == {"majority"}
    for problem in ("three of four agree", "a common mistake ties", "everyone differs"):
        assert {r for r, _, _ in by[problem]} == {"no_consensus"}, problem  # voted, did not agree: dropped
    assert {r for r, _, _ in by["too few answered"]} == {"no_majority"}  # could not vote: unverified
    assert "tie" in by["a common mistake ties"][0][2]["why"]
    assert "majority_min_samples" in by["too few answered"][0][2]["why"]
    assert all(passed is None for rows in by.values() for _, passed, _ in rows)  # nothing is verified
    assert s.kept == 3 and "majority_minority" not in s.funnel["verify"]  # labelled, or unverified: one per seed
    assert s.funnel["verify"] == {"no_consensus": 12}

    # a lower share labels 3 of 4 and rejects the 4th; a tie is never a label
    s = run_filter(load_config(project / "factory.yaml", ["filter.majority_min_share=0.5"]),
                   console=Console(quiet=True))
    assert s.funnel["verify"] == {"majority_minority": 1, "no_consensus": 8}

    # require_verified drops pseudo-labelled traces too, each with its reason in the funnel
    strict = load_config(project / "factory.yaml", ["filter.require_verified=true"])
    s = run_filter(strict, console=Console(quiet=True))
    assert s.kept == 0
    assert s.funnel["verify"] == {"pseudo_labelled": 7, "no_consensus": 12, "no_majority": 2}

    # the export: pseudo-labelled rows are not verified and carry their label and vote share
    s = run_filter(cfg, console=Console(quiet=True))
    import datasets

    out = export_version(cfg, s.version).path
    sft = datasets.load_dataset("parquet", data_files=str(out / "sft" / "*.parquet"), split="train")
    assert len(sft) == 3 and not any(r["verified"] for r in sft)
    labelled = [r for r in sft if r["pseudo_label"] is not None]
    assert sorted(r["vote_share"] for r in labelled) == [1.0, 1.0]
    assert {r["pseudo_label"] for r in labelled} == {"9", "0.5"}  # the most common form, else the first in order
    assert all(r["vote_share"] is None for r in sft if r["pseudo_label"] is None)
    import pyarrow.parquet as pq

    from factory.export import dpo_features

    dpo = pq.read_table(out / "dpo")  # no verified trace: no pair, an empty split with its schema
    assert dpo.num_rows == 0 and dpo.schema.equals(dpo_features().arrow_schema)
    assert "2 more agree with their seed's majority vote" in (out / "README.md").read_text()


@pytest.mark.slow
def test_verified_rows_carry_no_pseudo_label(project):
    cfg, _ = build_and_filter(project)
    import datasets

    out = export_version(cfg).path
    sft = datasets.load_dataset("parquet", data_files=str(out / "sft" / "*.parquet"), split="train")
    assert all(r["verified"] and r["pseudo_label"] is None and r["vote_share"] is None for r in sft)
