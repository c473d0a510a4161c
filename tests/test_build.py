"""The build pipeline with a canned teacher: plan, generate, resume, re-ask only what changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console

from factory.build import build_dataset
from factory.config import load_config
from factory.prompts import PromptError
from factory.records import Response

ROOT = Path(__file__).resolve().parent.parent


class CannedTeacher:
    """Answers every request with a fixed text; fails the ones whose sample index is in `fail`."""

    def __init__(self, name="canned", fail=()):
        self.name, self.model, self.fail = name, "canned-model", set(fail)
        self.seen: list[str] = []

    def generate(self, requests):
        for r in requests:
            self.seen.append(r.request_id)
            if r.sample_index in self.fail:
                yield Response(r.request_id, r.teacher, r.model, error="http_500", attempts=3)
            else:
                yield Response(r.request_id, r.teacher, r.model, text=f"<think>ok</think> \\boxed{{{r.sample_index}}}",
                               finish_reason="stop", prompt_tokens=10, completion_tokens=5, latency_s=0.01)


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
