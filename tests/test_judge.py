"""The optional LLM judge: asked only about verdicts the symbolic verifier could not decide,
cached in the store, counted in the funnel, never overriding a symbolic "equal"."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
from rich.console import Console

from factory.build import build_dataset
from factory.config import ConfigError, load_config
from factory.filter import run_filter
from factory.judge import read_verdict
from factory.records import Response

# problem -> (reference, what the teacher answers): the words are not something the symbolic verifier reads
SEEDS = {
    "How many legs do 18 cats have altogether?": ("72", "half of 144"),
    "Which day comes two days after Saturday?": ("Monday", "\\text{Mon.}"),
    "Which day comes after Sunday?": ("Monday", "Tuesday"),
    "What is 6 times 7?": ("42", "forty-two"),  # number words are read exactly: no judge needed
}


class WordTeacher:
    name, model = "words", "words-model"

    def generate(self, requests):
        for r in requests:
            problem = next(p for p in SEEDS if p in r.messages[-1]["content"])
            answer = SEEDS[problem][1]
            text = (f"<think>{problem} Sample {r.sample_index}: I count carefully, one step after another, "
                    f"and check it.</think>\n\nThe answer is {answer}.")
            yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason="stop", completion_tokens=20)


class FakeJudge:
    """Says SAME when the answer spells the reference's number; records what it was asked."""

    name, model = "judge", "judge-model"
    WORDS = {"half of 144": "72", "\\text{mon.}": "Monday"}

    def __init__(self):
        self.asked: list[str] = []

    def generate(self, requests):
        for r in requests:
            prompt = r.messages[-1]["content"]
            self.asked.append(prompt)
            ref = re.search(r"Reference answer: (.*)", prompt).group(1).strip()
            ans = re.search(r"Student's final answer: (.*)", prompt).group(1).strip()
            same = self.WORDS.get(ans.lower()) == ref
            yield Response(r.request_id, r.teacher, r.model, text=f"They {'match' if same else 'differ'}.\n"
                           f"VERDICT: {'SAME' if same else 'DIFFERENT'}", finish_reason="stop")


def _config(tmp_path, judge: bool = True):
    src = tmp_path / "seeds.jsonl"
    src.write_text("".join(json.dumps({"q": p, "a": a}) + "\n" for p, (a, _) in SEEDS.items()))
    data = {"workdir": str(tmp_path / "w"), "sources": [{"name": "words", "path": str(src),
                                                         "fields": {"problem": "q", "answer": "a"}}],
            "teachers": [{"name": "words", "backend": "openai", "base_url": "http://127.0.0.1:9", "model": "words-model"},
                         {"name": "judge", "backend": "openai", "base_url": "http://127.0.0.1:9", "model": "judge-model",
                          "generate": False}],
            "generation": {"samples_per_seed": 2},
            "filter": {"benchmarks": {}, "math": {"judge": "judge" if judge else None, "min_reasoning_words": 1}}}
    return load_config(data=data)


def test_read_verdict():
    assert read_verdict("They are the same.\nVERDICT: SAME") is True
    assert read_verdict("verdict: different") is False
    assert read_verdict("Verdict - NOT EQUAL") is False
    assert read_verdict("VERDICT: SAME ... on reflection VERDICT: DIFFERENT") is False  # the last one counts
    assert read_verdict("I think they match") is None
    assert read_verdict(None) is None


def test_judge_decides_only_what_the_verifier_could_not(tmp_path):
    cfg = _config(tmp_path)
    build_dataset(cfg, console=Console(quiet=True), teachers={"words": WordTeacher()})
    judge = FakeJudge()
    s = run_filter(cfg, console=Console(quiet=True), judges={"judge": judge})
    # the judge teacher wrote no traces of its own (generate: false)
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    assert con.execute("SELECT count(*) FROM requests WHERE teacher = 'judge'").fetchone()[0] == 0
    # asked once per distinct (problem, answer, reference), never about the symbolically equal 42
    assert len(judge.asked) == 3
    assert not any("forty-two" in a for a in judge.asked)
    kept = dict(con.execute("""SELECT d.problem, k.verified FROM kept k JOIN seeds d USING (seed_id)
                               WHERE k.version = ?""", [s.version]).fetchall())
    con.close()
    assert kept == {p: True for p in SEEDS if p != "Which day comes after Sunday?"}
    assert s.funnel["verify"].get("judge_unequal") == 2  # both Tuesday samples, named as the judge's call
    assert s.checks_run["judge_equal"] == 4 and s.checks_run["judge_asked"] == 3

    # a second run asks nothing (the verdicts are stored)
    again = FakeJudge()
    run_filter(cfg, console=Console(quiet=True), judges={"judge": again})
    assert again.asked == []


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_without_a_judge_the_words_are_wrong_answers(tmp_path):
    cfg = _config(tmp_path, judge=False)
    build_dataset(cfg, console=Console(quiet=True), teachers={"words": WordTeacher()})
    s = run_filter(cfg, console=Console(quiet=True))
    assert s.funnel["verify"].get("wrong_answer") == 6
    assert s.kept == 1


def test_judge_must_name_a_teacher(tmp_path):
    cfg = _config(tmp_path).resolved()
    cfg["filter"]["math"]["judge"] = "nobody"
    with pytest.raises(ConfigError, match="filter.math.judge: no teacher named 'nobody'"):
        load_config(data=cfg)
