"""The build pipeline with a canned teacher: plan, generate, resume, re-ask only what changed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from factory.build import build_dataset
from factory.config import load_config
from factory.prompts import PromptError
from factory.records import Response
from factory.sources import SourceError
from support.teachers import CannedTeacher

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "data").mkdir()
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", tmp_path / "data")
    (tmp_path / "factory.yaml").write_text(
        "sources:\n  - {name: gsm8k, path: data/gsm8k_train_sample.jsonl, preset: gsm8k, limit: 10}\n"
        "teachers:\n  - {name: canned, backend: openai, model: canned-model}\n"
        "generation: {samples_per_seed: 3}\n")
    return tmp_path


def run(project: Path, teacher, *overrides: str):
    cfg = load_config(project / "factory.yaml", list(overrides))
    return build_dataset(cfg, console=Console(quiet=True), teachers={"canned": teacher})


def test_build_stores_every_response_and_resumes_with_nothing_to_ask(project):
    teacher = CannedTeacher()
    summary = run(project, teacher)
    assert summary.seeds_loaded == 10
    assert summary.requests_planned == 30 and summary.requests_sent == 30 and summary.requests_ok == 30
    assert len(set(teacher.seen)) == 30
    again = CannedTeacher()
    summary = run(project, again)
    assert again.seen == [] and summary.requests_cached == 30 and summary.requests_sent == 0


def test_samples_of_one_prompt_arrive_adjacent(project):
    teacher = CannedTeacher()
    run(project, teacher)
    import duckdb

    con = duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True)
    prompt_of = dict(con.execute("SELECT request_id, prompt_id FROM requests").fetchall())
    prompts = [prompt_of[r] for r in teacher.seen]
    changes = sum(1 for a, b in zip(prompts, prompts[1:]) if a != b)
    assert changes == 9  # 10 prompts, each a contiguous run of 3 samples


def test_changing_a_parameter_or_template_reasks_only_what_changed(project):
    run(project, CannedTeacher())
    more = CannedTeacher()
    summary = run(project, more, "generation.samples_per_seed=4")
    assert len(more.seen) == 10 and summary.requests_cached == 30  # only sample index 3 is new
    hotter = CannedTeacher()
    run(project, hotter, "generation.temperature=1.0", "generation.samples_per_seed=3")
    assert len(hotter.seen) == 30  # a sampling parameter enters every request's hash
    template = project / "prompts" / "math_cot.jinja"
    template.write_text(template.read_text() + "\nShow your work.\n")
    edited = CannedTeacher()
    run(project, edited)
    assert len(edited.seen) == 30


def test_failures_are_stored_with_attempts_and_retried_next_run(project):
    summary = run(project, CannedTeacher(fail={2}))
    assert summary.requests_failed == {"http_500": 10}
    assert abs(summary.failure_rate - 10 / 30) < 1e-9
    import duckdb

    con = duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), min(attempts) FROM responses WHERE error = 'http_500'").fetchone() == (10, 3)
    con.close()
    retry = CannedTeacher()
    summary = run(project, retry)
    assert len(retry.seen) == 10 and summary.requests_ok == 10
    con = duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM responses WHERE error IS NULL").fetchone() == (30,)
    assert con.execute("SELECT max(attempts) FROM responses").fetchone() == (4,)  # 3 failed + 1


def test_undefined_template_variable_stops_before_any_teacher_call(project):
    (project / "prompts" / "math_cot.jinja").write_text("Solve:\n{{ problem }}\n{{ hint }}\n")
    teacher = CannedTeacher()
    with pytest.raises(PromptError, match=r"math_cot.jinja:3: undefined variable 'hint'"):
        run(project, teacher)
    assert teacher.seen == []


def test_resolved_config_is_saved_with_the_run_without_secrets(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    run(project, CannedTeacher())
    saved = list((project / ".factory" / "runs").glob("*.yaml"))
    assert len(saved) == 1
    text = saved[0].read_text()
    assert "samples_per_seed: 3" in text and "OPENAI_API_KEY" in text and "sk-secret-value" not in text
    raw = (project / ".factory" / "factory.duckdb").read_bytes()
    assert b"sk-secret-value" not in raw


def test_bad_rows_are_counted_and_the_rest_is_built(project):
    rows = (project / "data" / "gsm8k_train_sample.jsonl").read_bytes().splitlines()[:5]
    bad = [b'{"question": "x"}', b'{"answer": "#### 4"}', b'\xff\xfe not utf8', b'{"question": 5, "answer": "#### 1"}',
           b'{"question": "  ", "answer": "#### 1"}', b'[1, 2]', b'{"question": "q", "answer": "no marker"}', b"{oops"]
    (project / "data" / "mixed.jsonl").write_bytes(b"\n".join(rows[:2] + bad + rows[2:]) + b"\n")
    (project / "factory.yaml").write_text(
        "sources:\n  - {name: mixed, path: data/mixed.jsonl, preset: gsm8k}\n"
        "teachers:\n  - {name: canned, backend: openai, model: canned-model}\n")
    summary = run(project, CannedTeacher())
    assert summary.seeds_loaded == 5
    assert sum(summary.seeds_rejected.values()) == 8
    assert summary.requests_ok == 10


# -- sources that stop the build before any teacher call ----------------------------------------

def write_source(project: Path, name: str, content, **source) -> None:
    """A data file (bytes, text, or rows for a .json / .parquet) and a config that reads it."""
    path = project / "data" / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(content), path)
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    spec = {"name": name.split(".")[0], "path": f"data/{name}", **source}
    (project / "factory.yaml").write_text(yaml.safe_dump({
        "sources": [spec], "teachers": [{"name": "canned", "backend": "openai", "model": "canned-model"}],
        "generation": {"samples_per_seed": 1}, "filter": {"benchmarks": {}}}))


def plan_ids(project: Path) -> set[str]:
    import duckdb

    with duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT request_id FROM plan").fetchall()}


def test_a_source_with_no_seeds_stops_before_any_call_and_keeps_the_last_plan(project):
    run(project, CannedTeacher())
    before = plan_ids(project)
    assert len(before) == 30
    gsm8k = "  - {name: gsm8k, path: data/gsm8k_train_sample.jsonl, preset: gsm8k, limit: 10}\n"
    for name, content, message in [
        ("empty.jsonl", "", r"source 'empty': no seeds from \S+empty.jsonl: it has no rows"),
        ("bad.jsonl", '{"question": 5, "answer": "#### 1"}\n{"answer": "#### 2"}\n',
         r"source 'bad': no seeds from \S+bad.jsonl: every row is bad, e.g. bad.jsonl:1 field 'question': "
         r"expected a string, got int"),
    ]:
        (project / "data" / name).write_text(content)
        (project / "factory.yaml").write_text(
            f"sources:\n{gsm8k}  - {{name: {name.split('.')[0]}, path: data/{name}, preset: gsm8k}}\n"
            "teachers:\n  - {name: canned, backend: openai, model: canned-model}\n"
            "generation: {samples_per_seed: 3}\n")
        teacher = CannedTeacher()
        with pytest.raises(SourceError, match=message):
            run(project, teacher)
        assert teacher.seen == [] and plan_ids(project) == before  # `factory filter` still sees the last plan


class FakeReferenceCheck:
    """check_references with canned verdicts: references containing 'bad' are unusable."""

    def __init__(self):
        self.asked: list[str] = []
        self.calls = 0  # a call may start a worker pool

    def __call__(self, items, timeout_s=5.0, workers=2, **_):
        from factory.checks.math import Verdict

        self.calls += 1

        for key, ref in items:
            self.asked.append(ref)
            yield key, (Verdict("failed", "unbalanced braces") if "bad" in ref else Verdict("passed", "ok"))


@pytest.fixture
def fake_check(monkeypatch):
    fake = FakeReferenceCheck()
    monkeypatch.setattr("factory.checks.math.check_references", fake)
    return fake


def rows_with_references(good: int, bad: int) -> list[dict]:
    refs = [f"\\frac{{{i}}}{{7}}" for i in range(good)] + [f"{i} bad}}" for i in range(bad)]
    return [{"q": f"problem {i}?", "a": ref} for i, ref in enumerate(refs)]


def test_references_are_checked_once_and_counted_per_source(project, fake_check):
    rows = rows_with_references(39, 1) + [{"q": "plain?", "a": "12"}, {"q": "again?", "a": "\\frac{0}{7}"}]
    write_source(project, "refs.json", rows, fields={"problem": "q", "answer": "a"})
    summary = run(project, CannedTeacher())
    # a plain number needs no verifier; a repeated reference is asked about once
    assert sorted(fake_check.asked) == sorted({r["a"] for r in rows} - {"12"})
    refs = summary.references["refs"]
    assert refs["seeds"] == 42 and refs["usable"] == 41  # 1/42 = 2.4% unusable: under the 5% bound
    assert refs["unusable"] == [{"row": 40, "reference": "0 bad}", "reason": "unbalanced braces"}]
    assert summary.requests_planned == 42  # a seed with an unusable reference is still planned
    fake_check.asked.clear()
    run(project, CannedTeacher())
    assert fake_check.calls == 1  # verdicts are cached in the store: a rebuild starts no worker pool
    rows.append({"q": "new?", "a": "\\sqrt{2}"})
    write_source(project, "refs.json", rows, fields={"problem": "q", "answer": "a"})
    run(project, CannedTeacher())
    assert fake_check.asked == ["\\sqrt{2}"]  # only the new reference is asked about


def test_too_many_unusable_references_stop_the_build_naming_examples_and_keys(project, fake_check):
    write_source(project, "refs.json", rows_with_references(90, 10), fields={"problem": "q", "answer": "a"})
    teacher = CannedTeacher()
    with pytest.raises(SourceError) as err:
        run(project, teacher)
    message = str(err.value)
    assert teacher.seen == [] and "\n" not in message
    assert message.startswith("source 'refs': 10 of 100 references (10.0%) cannot be verified against "
                              "(bound: sources.0.max_unusable_references = 5%), e.g. row 91 '0 bad}' "
                              "(unbalanced braces); row 92 '1 bad}' (unbalanced braces); row 93 '2 bad}'")
    assert all(key in message for key in ("answer_boxed", "answer_regex", "strip_units"))
    summary = run(project, CannedTeacher(), "sources.0.max_unusable_references=0.1")
    assert summary.references["refs"]["usable"] == 90 and summary.requests_sent == 100


def test_the_whole_row_reaches_the_prompt_template(project):
    rows = [{"Body": "Jack had 8 pens.", "Question": "He lost 3. How many now?", "Answer": 5.0, "Level": "easy"}]
    write_source(project, "svamp.json", rows, fields={"problem": "{{ Body }} {{ Question }}", "answer": "Answer"},
                 template="row.jinja")
    (project / "prompts" / "row.jinja").write_text("[{{ row.Level }}] {{ problem }} (row {{ meta.row }})")
    teacher = CannedTeacher()
    run(project, teacher)
    import duckdb

    with duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True) as con:
        messages, answer = con.execute("SELECT messages, answer FROM requests JOIN seeds USING (seed_id)").fetchone()
    assert json.loads(messages)[0]["content"] == "[easy] Jack had 8 pens. He lost 3. How many now? (row 1)"
    assert answer == "5"


# -- the same through the command line: one line, no traceback, non-zero exit ------------------

def cli(project: Path, monkeypatch, *args: str):
    from typer.testing import CliRunner

    from factory.cli import app

    monkeypatch.setattr("factory.teachers.make_teacher", lambda tcfg: CannedTeacher())
    return CliRunner().invoke(app, ["build", "dataset", "-c", str(project / "factory.yaml"), *args])


def assert_one_line_error(result, pattern: str) -> None:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    assert re.search(pattern, lines[0]), lines[0]


ROWS = [{"Body": "Tom had 3 apples.", "Question": "He got 4 more. How many?", "Answer": "7"},
        {"Body": "A box holds 6 eggs.", "Question": "How many in 2 boxes?", "Answer": "12"}]
SPLIT = {"problem": "{{ Body }} {{ Question }}", "answer": "Answer"}


@pytest.mark.parametrize("name,content,source,pattern", [
    ("empty.jsonl", "", {"preset": "gsm8k"}, r"^error: source 'empty': no seeds from .*empty.jsonl: it has no rows$"),
    ("scalar.json", "3", {"preset": "gsm8k"}, r"^error: source 'scalar': scalar.json: expected an array of rows"),
    ("other.parquet", ROWS, {"preset": "gsm8k"},
     r"^error: source 'other': fields.problem: no column 'question' in other.parquet "
     r"\(columns: Body, Question, Answer\)$"),
    ("svamp.json", ROWS, {"fields": {"problem": "Body", "answer": "Answr"}},
     r"^error: source 'svamp': fields.answer: no column 'Answr' in svamp.json"),
    ("svamp.json", ROWS, {"fields": {"problem": "{{ Body }} {{ Qestion }}"}},
     r"^error: source 'svamp': fields.problem: '\{\{ Body \}\} \{\{ Qestion \}\}' reads column 'Qestion'"),
    ("svamp.json", ROWS, {"fields": {"problem": "{{ Body }} {{ Question }"}},
     r"^error: source 'svamp': fields.problem: jinja syntax error in '\{\{ Body \}\} \{\{ Question \}': "
     r"unexpected '\}'$"),
    ("svamp.json", ROWS, {"fields": SPLIT, "answer_boxed": True, "answer_after": "####"},
     r"^error: .*choose one of answer_after / answer_boxed"),
])
def test_bad_sources_are_one_line_errors_through_the_cli(project, monkeypatch, name, content, source, pattern):
    write_source(project, name, content, **source)
    assert_one_line_error(cli(project, monkeypatch), pattern)


def test_too_many_unusable_references_through_the_cli(project, monkeypatch):
    # MATH-style worked solutions mapped straight to `answer`: the verifier cannot read them
    rows = [{"problem": f"Find x{i}.", "solution": f"We get $x = {i}$, so the answer is $\\boxed{{{i}}}$."}
            for i in range(20)]
    write_source(project, "math.json", rows, fields={"problem": "problem", "answer": "solution"})
    result = cli(project, monkeypatch)
    assert_one_line_error(result, r"^error: source 'math': 20 of 20 references \(100.0%\) cannot be verified against "
                                  r"\(bound: sources.0.max_unusable_references = 5%\), e.g. row 1 .*answer_boxed")
    assert not (project / ".factory" / "export").exists()


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_a_json_array_with_split_columns_builds_through_the_cli(project, monkeypatch):
    write_source(project, "svamp.json", ROWS, fields=SPLIT)
    result = cli(project, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "references  svamp: 2 of 2 usable" in result.output and "exported version 1" in result.output


def test_off_a_terminal_progress_is_a_plain_line_every_interval(tmp_path):
    """Under cron / CI / nohup the bar becomes a log line every build.progress_interval_s, and a last one."""
    import io
    import time as _time

    from factory.progress import WorkProgress

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with WorkProgress(console, "t (openai:m)", total=6, interval_s=0.05) as p:
        for i in range(6):
            p.advance(ok=i != 3, tokens=10)
            _time.sleep(0.03)
    lines = [ln for ln in out.getvalue().splitlines() if ln]
    assert 2 <= len(lines) <= 5, lines
    assert lines[-1].startswith("t (openai:m): 6/6 requests (100%)") and "1 failed" in lines[-1]
    assert "ETA" in lines[0] and "tok/s" in lines[0]
