"""select.student: the student answers each seed k times, its answers are verified like any trace,
and a seed is kept only if its pass rate lies in the band. Pass rates are known by construction: a
fake student answers seed i right in exactly CORRECT[i] of its 4 samples."""

from __future__ import annotations

import json
from collections import Counter
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
    tmp_path.mkdir(parents=True, exist_ok=True)
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
    # when the band is decided shapes no kept seed: not hashed
    assert cfg.config_hash() == _config(tmp_path, "select.student.before_generation=false").config_hash()


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


# -- select.student.before_generation: the band decides before the teachers generate -----------------------

def _asked(cfg, request_ids: list[str]) -> dict[str, int]:
    """Problem -> how many of `request_ids` were about it."""
    with duckdb.connect(str(cfg.store_path), read_only=True) as con:
        problem_of = dict(con.execute("SELECT q.request_id, d.problem FROM requests q JOIN seeds d USING (seed_id)"
                                      ).fetchall())
    out: dict[str, int] = {}
    for request_id in request_ids:
        out[problem_of[request_id]] = out.get(problem_of[request_id], 0) + 1
    return out


def _pipeline(cfg, student=None, console=None):
    from factory.pipeline import run_pipeline

    teacher = ScriptedTeacher()
    result = run_pipeline(cfg, console=console or Console(quiet=True), teachers={"scripted": teacher},
                          judges={"student": student} if student is not None else None, export=False)
    assert result.exit_code == 0 and result.filtered is not None
    return result, teacher


@pytest.mark.slow
def test_before_generation_the_teachers_never_see_an_out_of_band_seed_and_the_kept_set_is_the_same(tmp_path):
    before = _config(tmp_path / "before")
    console = Console(record=True, width=200)
    student = FakeStudent()
    result, teacher = _pipeline(before, student, console)
    # seeds 0 (0/4: too hard) and 3 (4/4: too easy) are never sent; the in-band and undecided ones are
    assert _asked(before, teacher.seen) == {_problem(i): 2 for i in (1, 2, 4, 5)} | {NO_REFERENCE: 2}
    assert len(student.seen) == 7 * K  # asked once, before the teachers: the filter stage asks nothing more
    b = result.build
    assert (b.student["in_band"], b.student["too_easy"], b.student["too_hard"], b.student["undecided"]) == (3, 1, 1, 2)
    assert (b.requests_planned, b.requests_skipped, b.requests_sent, b.requests_cached) == (14, 4, 10, 0)
    out = console.export_text()
    assert "3 seeds in band, 1 too easy, 1 too hard, 2 undecided; teachers skip 2 seeds (4 requests)" in out
    f = result.filtered
    # the failed K are not asked twice in one run (the next run asks them again)
    assert f.checks_run["student_asked"] == 0 and f.checks_run["student_unanswered"] == K
    assert f.checks_run["student_too_easy"] == 1 and f.checks_run["student_too_hard"] == 1  # the same decisions
    assert f.funnel.get("student", {}) == {} and f.candidates == 10  # nothing to drop: never generated

    # when the band decides shapes no kept seed: the same hash, so the same version
    assert _config(tmp_path / "before", "select.student.before_generation=false").config_hash() == before.config_hash()
    after = _config(tmp_path / "after", "select.student.before_generation=false")
    result_after, teacher_after = _pipeline(after, FakeStudent())
    assert len(teacher_after.seen) == 14 and result_after.build.student == Counter()
    assert result_after.filtered.funnel["student"] == {"too_hard": 2, "too_easy": 2}
    kept = _kept(before, f.version)
    assert kept == _kept(after, result_after.filtered.version)
    assert set(kept) == {_problem(1), _problem(2), _problem(4), _problem(5), NO_REFERENCE}


@pytest.mark.slow
def test_before_generation_a_rerun_asks_nobody_and_a_new_band_asks_only_its_new_seeds(tmp_path):
    cfg = _config(tmp_path)
    answering = [0, 1, 2, 4, 3, 1]  # seed 5 answered too (1/4: in the band): no failure to ask again
    _pipeline(cfg, FakeStudent(answering))
    student = FakeStudent(answering)
    again, teacher = _pipeline(cfg, student)
    assert student.seen == [] and teacher.seen == [] and again.build.requests_sent == 0
    assert again.build.requests_cached == 10 and again.build.requests_skipped == 4

    # a wider band: decided again from the cached verdicts; only seed 3 (4/4), now in the band, is generated
    wide = _config(tmp_path, "select.student.pass_rate=[0.25, 1]")
    student = FakeStudent(answering)
    result, teacher = _pipeline(wide, student)
    assert student.seen == [] and _asked(wide, teacher.seen) == {_problem(3): 2}
    assert result.build.requests_skipped == 2 and result.build.student["too_hard"] == 1
    assert set(_kept(wide, result.filtered.version)) == {_problem(i) for i in (1, 2, 3, 4, 5)} | {NO_REFERENCE}

    # a narrower one asks nobody; seeds 1, 3 and 5 now out of band keep their stored traces out of the corpus
    narrow = _config(tmp_path, "select.student.pass_rate=[0.5, 0.5]")
    student = FakeStudent(answering)
    result, teacher = _pipeline(narrow, student)
    assert student.seen == [] and teacher.seen == [] and result.build.requests_skipped == 2  # seed 0's, never sent
    assert result.filtered.funnel["student"] == {"too_hard": 4, "too_easy": 4}  # seeds 1, 5; 3, 4 (generated earlier)
    assert set(_kept(narrow, result.filtered.version)) == {_problem(2), NO_REFERENCE}


@pytest.mark.slow
def test_before_generation_an_unanswered_or_unverifiable_seed_is_still_generated(tmp_path):
    # traces made with before_generation false first: switching it on sends nothing and drops them in the filter
    cfg = _config(tmp_path, "select.student.before_generation=false")
    _pipeline(cfg, FakeStudent())
    result, teacher = _pipeline(_config(tmp_path), FakeStudent())
    assert teacher.seen == [] and result.build.requests_skipped == 0 and result.build.requests_cached == 14
    assert result.filtered.funnel["student"] == {"too_hard": 2, "too_easy": 2}

    # a student whose endpoint is down (nothing listens on the port): every seed is undecided and generated
    fresh = _config(tmp_path / "down")
    console = Console(record=True, width=200)
    result, teacher = _pipeline(fresh, console=console)
    assert len(teacher.seen) == 14 and result.build.student["undecided"] == 7 and result.build.requests_skipped == 0
    assert "0 seeds in band, 0 too easy, 0 too hard, 7 undecided; teachers skip 0 seeds (0 requests)" in console.export_text()
    assert result.filtered.kept == 7


def test_build_sends_no_request_of_a_seed_its_gate_leaves_out(tmp_path):
    cfg = _config(tmp_path)  # build_dataset alone: no gate, every seed is sent, as before
    teacher = ScriptedTeacher()
    summary = build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": teacher})
    assert len(teacher.seen) == 14 and summary.student == Counter() and summary.to_json()["student"] == {}

    def gate(store):  # any callable: store -> seed id -> decision (the pipeline passes filter.student_gate)
        seeds = dict(store.sql("SELECT problem, seed_id FROM seeds"))
        return {seeds[_problem(0)]: "too_hard", seeds[_problem(3)]: "too_easy", seeds[_problem(1)]: "in_band",
                seeds[NO_REFERENCE]: "undecided"}

    fresh = _config(tmp_path / "gated")
    teacher = ScriptedTeacher()
    summary = build_dataset(fresh, console=Console(quiet=True), teachers={"scripted": teacher}, gate=gate)
    assert _problem(0) not in _asked(fresh, teacher.seen) and _problem(3) not in _asked(fresh, teacher.seen)
    assert (summary.requests_planned, summary.requests_skipped, summary.requests_sent) == (14, 4, 10)
    assert summary.student == Counter(in_band=1, too_easy=1, too_hard=1, undecided=1)
    with duckdb.connect(str(fresh.store_path), read_only=True) as con:  # left out of what is sent, not of the plan
        assert con.execute("SELECT count(*) FROM plan").fetchone()[0] == 14
    # the teachers already answered seed 0: a gate that drops it then saves nothing, and sends nothing either
    teacher = ScriptedTeacher()
    again = build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": teacher}, gate=gate)
    assert teacher.seen == [] and again.requests_skipped == 0 and again.requests_cached == 14
