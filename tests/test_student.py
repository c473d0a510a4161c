"""select.student: the student answers each seed k times, its answers are verified like any trace,
and a seed is kept only if its pass rate lies in the band. Pass rates are known by construction: a
fake student answers seed i right in exactly CORRECT[i] of its 4 samples."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from factory.build import build_dataset
from factory.config import ConfigError, load_config
from factory.errors import TeacherError
from factory.export import export_version
from factory.filter import run_filter
from factory.records import Response
from support.teachers import GSM8K, ScriptedTeacher, reference

K = 4
# GSM8K seed i -> right answers of the student's 4 samples; None: every request to the student fails
CORRECT = [0, 1, 2, 4, 3, None]
NO_REFERENCE = "A riddle with no reference: what has keys but opens no locks?"


class FakeStudent:
    """Answers seed i right in its first CORRECT[i] samples, wrong in the rest; records what it saw."""

    name, model = "student", "student-model"

    def __init__(self, correct=CORRECT, raise_after: int | None = None):
        self.correct, self.raise_after = correct, raise_after
        self.seen: list[str] = []

    def generate(self, requests):
        for r in requests:
            if self.raise_after is not None and len(self.seen) >= self.raise_after:
                raise TeacherError("student endpoint went away")
            self.seen.append(r.request_id)
            user = r.messages[-1]["content"]
            i = next((n for n, row in enumerate(GSM8K) if row["question"] in user), None)
            if i is not None and self.correct[i] is None:
                yield Response(r.request_id, r.teacher, r.model, error="http_503", attempts=1)
                continue
            ref = int(reference(user) or 0)
            right = i is not None and r.sample_index < self.correct[i]
            text = (f"<think>student sample {r.sample_index}: I add it up step by step.</think>\n\n"
                    f"The answer is \\boxed{{{ref if right else ref + 7}}}.")
            yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason="stop", completion_tokens=12)


def _config(tmp_path: Path, *overrides: str, student: dict | None = None):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    noref = tmp_path / "noref.jsonl"
    noref.write_text(json.dumps({"q": NO_REFERENCE}) + "\n")
    data = {"workdir": str(tmp_path / "w"),
            "sources": [{"name": "gsm8k", "path": str(seeds), "preset": "gsm8k"},
                        {"name": "noref", "path": str(noref), "fields": {"problem": "q"}}],
            "teachers": [{"name": "scripted", "backend": "openai", "base_url": "http://127.0.0.1:9", "model": "scripted-model"},
                         {"name": "student", "backend": "openai", "base_url": "http://127.0.0.1:9",
                          "model": "student-model", "generate": False, "max_retries": 0}],
            "generation": {"samples_per_seed": 2},
            "select": {"student": student or {"teacher": "student", "samples": K, "pass_rate": [0.25, 0.75]}},
            "filter": {"benchmarks": {}, "verify_workers": 1, "math": {"min_reasoning_words": 1}}}
    return load_config(data=data, overrides=list(overrides))


def _problem(i: int) -> str:
    return GSM8K[i]["question"]


def _kept(cfg, version: int) -> dict[str, str]:
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        return dict(con.execute("""SELECT d.problem, q.teacher FROM kept k JOIN requests q USING (request_id)
                                   JOIN seeds d ON d.seed_id = k.seed_id WHERE k.version = ?""", [version]).fetchall())


def test_exactly_the_seeds_in_the_band_are_kept_and_the_student_never_enters_the_corpus(tmp_path):
    cfg = _config(tmp_path)
    build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": ScriptedTeacher()})
    student = FakeStudent()
    console = Console(record=True, width=200)
    s = run_filter(cfg, console=console, judges={"student": student})
    # the student answered every seed of the plan k times, and only the student was asked
    assert len(student.seen) == 7 * K
    kept = _kept(cfg, s.version)
    # 0/4 too hard, 1/4 and 3/4 on the bounds (kept), 2/4 inside, 4/4 too easy; the failing seed and the
    # seed without a reference are not decided (their teacher traces go on through the funnel)
    assert set(kept) == {_problem(1), _problem(2), _problem(4), _problem(5), NO_REFERENCE}
    assert set(kept.values()) == {"scripted"}
    assert s.funnel["student"] == {"too_hard": 2, "too_easy": 2}  # both teacher traces of seeds 0 and 3
    assert s.candidates == 7 * 2  # the teacher's traces only
    assert (s.checks_run["student_in_band"], s.checks_run["student_too_easy"], s.checks_run["student_too_hard"],
            s.checks_run["student_undecided"]) == (3, 1, 1, 2)
    assert s.checks_run["student_asked"] == 28 and s.checks_run["student_failed"] == 4
    out = console.export_text()
    assert "3 seeds; 1 too easy, 1 too hard, 2 not decided" in out and "4 of 28 requests to student failed" in out

    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        # stored like any answer, verified like any trace, never planned
        assert con.execute("SELECT count(*) FROM plan JOIN requests USING (request_id) WHERE teacher = 'student'"
                           ).fetchone()[0] == 0
        assert con.execute("""SELECT count(*) FROM checks c JOIN requests q USING (request_id)
                              WHERE q.teacher = 'student' AND c."check" = 'verify'""").fetchone()[0] == 6 * K - K
        assert con.execute("SELECT count(*) FROM funnel f JOIN requests q USING (request_id) WHERE q.teacher = 'student'"
                           ).fetchone()[0] == 0
    export = export_version(cfg, s.version)
    rows = [r for p in sorted(Path(export.path).rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    sft = pq.read_table(Path(export.path) / "sft").to_pylist()
    assert len(sft) == 5 and {r["teacher"] for r in sft} == {"scripted"}
    assert not any("student sample" in json.dumps(r, default=str) for r in rows)  # nor in dpo / soft labels


@pytest.mark.slow
def test_a_rerun_asks_only_what_failed_and_a_new_band_asks_nothing(tmp_path):
    cfg = _config(tmp_path)
    build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": ScriptedTeacher()})
    run_filter(cfg, console=Console(quiet=True), judges={"student": FakeStudent()})
    # a rerun asks only what failed; answered now, the failing seed is decided (1/4 right: in the band)
    again = FakeStudent(correct=CORRECT[:5] + [1])
    s2 = run_filter(cfg, console=Console(quiet=True), judges={"student": again})
    assert len(again.seen) == K and s2.checks_run["student_cached"] == 24
    assert s2.checks_run["student_undecided"] == 1 and s2.checks_run["student_in_band"] == 4
    assert set(_kept(cfg, s2.version)) == {_problem(1), _problem(2), _problem(4), _problem(5), NO_REFERENCE}

    # another band asks the student nothing: the same requests, only the SQL decides again
    cfg_mid = _config(tmp_path, "select.student.pass_rate=[0.5, 0.5]")
    third = FakeStudent()
    s3 = run_filter(cfg_mid, console=Console(quiet=True), judges={"student": third})
    assert third.seen == [] and s3.version != s2.version
    assert set(_kept(cfg_mid, s3.version)) == {_problem(2), NO_REFERENCE}
    assert s3.funnel["student"] == {"too_hard": 6, "too_easy": 4}  # seeds 0, 1, 5 (<= 1/4); 3, 4 (>= 3/4)


@pytest.mark.slow
def test_a_failing_student_loses_nothing(tmp_path):
    cfg = _config(tmp_path)
    build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": ScriptedTeacher()})
    # the real backend against a port nothing listens on: every request fails, the run goes on
    console = Console(record=True, width=200)
    s = run_filter(cfg, console=console)
    assert s.checks_run["student_failed"] == 7 * K and s.funnel["student"] == {}
    assert s.checks_run["student_undecided"] == 7 and s.kept == 7
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        assert con.execute("""SELECT count(*) FROM responses s JOIN requests q USING (request_id)
                              WHERE q.teacher = 'student' AND s.error IS NOT NULL""").fetchone()[0] == 7 * K
    # a backend that dies mid-run: what it answered is stored, and only the rest is asked next time
    dying = FakeStudent(raise_after=10)
    s = run_filter(cfg, console=console, judges={"student": dying})
    assert len(dying.seen) == 10 and s.checks_run["student_error"] == 1
    assert "student endpoint went away" in console.export_text()
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        answered = con.execute("""SELECT count(*) FROM responses s JOIN requests q USING (request_id)
                                  WHERE q.teacher = 'student' AND s.error IS NULL""").fetchone()[0]
    assert 0 < answered <= 10
    rest = FakeStudent()
    run_filter(cfg, console=Console(quiet=True), judges={"student": rest})
    assert len(rest.seen) == 7 * K - answered


@pytest.mark.parametrize("student, message", [
    ({"teacher": "nobody", "pass_rate": [0.2, 0.8]}, "select.student.teacher: no teacher named 'nobody'"),
    ({"teacher": "scripted", "pass_rate": [0.2, 0.8]}, "teacher 'scripted' must have generate: false"),
    ({"teacher": "student", "pass_rate": [0.8, 0.2]}, "select.student.pass_rate: .*0 <= lo <= hi <= 1"),
    ({"teacher": "student", "pass_rate": [0, 1.5]}, "select.student.pass_rate"),
    ({"teacher": "student", "pass_rate": [0.2, 0.8], "samples": 0}, "select.student.samples"),
    ({"teacher": "student"}, "missing required key 'select.student.pass_rate'"),
])
def test_bad_student_settings_are_one_line_config_errors(tmp_path, student, message):
    with pytest.raises(ConfigError, match=message) as e:
        _config(tmp_path, student=student)
    assert "\n" not in str(e.value)


def test_config_hash_is_unchanged_without_a_student_and_follows_the_band(tmp_path):
    cfg = _config(tmp_path)
    data = cfg.resolved()
    plain = {**data, "select": {}}
    assert load_config(data=plain).config_hash() == load_config(data={k: v for k, v in data.items()
                                                                       if k != "select"}).config_hash()
    assert cfg.config_hash() != load_config(data=plain).config_hash()
    assert cfg.config_hash() != _config(tmp_path, "select.student.pass_rate=[0.25, 1]").config_hash()


def test_the_student_sees_the_seeds_prompt_or_its_own_template(tmp_path):
    from factory.errors import PromptError
    from factory.prompts import Prompts
    from factory.store import Store
    from factory.student import student_requests

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "student.jinja").write_text("Solve briefly ({{ domain }}): {{ problem }}")
    (prompts / "broken.jinja").write_text("{{ problem ")
    cfg = _config(tmp_path, f"prompts_dir={prompts}", "select.student.temperature=1.0")
    build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": ScriptedTeacher()})
    with Store(cfg.store_path) as store:
        plain = student_requests(store, cfg, Prompts(prompts))
        planned = {json.dumps(json.loads(m)) for (m,) in store.sql("SELECT messages FROM plan JOIN requests USING (request_id)")}
        own = student_requests(store, _config(tmp_path, f"prompts_dir={prompts}", "select.student.template=student.jinja"),
                               Prompts(prompts))
        with pytest.raises(PromptError, match="broken.jinja"):
            student_requests(store, _config(tmp_path, "select.student.template=broken.jinja"), Prompts(prompts))
    assert len(plain) == len(own) == 7 * K and [r.sample_index for r in plain[:K]] == list(range(K))
    assert {json.dumps(list(r.messages)) for r in plain} == planned  # the prompt the teachers saw
    assert all(r.params["temperature"] == 1.0 and r.params["logprobs"] == 0 and r.teacher == "student" for r in plain)
    assert own[0].messages[-1]["content"].startswith("Solve briefly (math): ") and own[0].template == "student.jinja"
    assert not {r.request_id for r in plain} & {r.request_id for r in own}
