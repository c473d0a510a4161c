"""The one pipeline (plan + generate -> failure-rate check -> filter -> export), as a library call and
through `factory build dataset`: what it prints, where it stops, its exit codes."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from support.teachers import CannedTeacher
from typer.testing import CliRunner

from factory.cli import app
from factory.config import load_config
from factory.pipeline import EXIT_INTERRUPTED, EXIT_TOO_MANY_FAILURES, run_pipeline
from factory.records import Response

ROOT = Path(__file__).resolve().parent.parent


class InterruptedTeacher(CannedTeacher):
    """Answers one request, then the user presses Ctrl-C."""

    def generate(self, requests):
        for i, r in enumerate(requests):
            if i == 1:
                raise KeyboardInterrupt
            yield Response(r.request_id, r.teacher, r.model, text="<think>two and three</think> \\boxed{5}",
                           finish_reason="stop", prompt_tokens=10, completion_tokens=5, latency_s=0.01)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "data").mkdir()
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", tmp_path / "data")
    (tmp_path / "factory.yaml").write_text(
        "sources:\n  - {name: gsm8k, path: data/gsm8k_train_sample.jsonl, preset: gsm8k, limit: 4}\n"
        "teachers:\n  - {name: canned, backend: openai, model: canned-model}\n"
        "generation: {samples_per_seed: 2}\nfilter: {verify_workers: 1, benchmarks: {}}\n")
    return tmp_path


def run(project: Path, teacher, export: bool = True):
    out = io.StringIO()
    result = run_pipeline(load_config(project / "factory.yaml"), console=Console(file=out, width=200),
                          teachers={"canned": teacher}, export=export)
    return result, " ".join(out.getvalue().split())


def versions(project: Path) -> int:
    with duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM versions").fetchone()[0]


def test_every_stage_runs_prints_and_counts_in_the_wall_time(project):
    result, printed = run(project, CannedTeacher())
    assert result.exit_code == 0 and result.stopped is None
    assert list(result.stages_s) == ["plan + generate", "filter", "export"]
    assert result.wall_s == pytest.approx(sum(result.stages_s.values())) and result.wall_s >= result.build.wall_s
    assert result.filtered.version == 1 and result.exported.path.is_dir() and (result.exported.path / "README.md").exists()
    # in order: the build summary, the funnel, the export, then the whole run's wall time, stage by stage
    marks = ["build summary", "s plan + generate", "filter funnel, version 1", "diversity:", "exported version 1",
             "wall time"]
    at = [printed.find(m) for m in marks]
    assert -1 not in at and at == sorted(at), dict(zip(marks, at))
    assert re.search(r"wall time [\d.,]+ s \(plan \+ generate [\d.,]+ s, filter [\d.,]+ s, export [\d.,]+ s\)$", printed)
    assert "None" not in printed

    again, _ = run(project, CannedTeacher(), export=False)  # nothing to ask; refresh's form: no export
    assert again.build.requests_sent == 0 and not again.filtered.new_version and again.exported is None
    assert list(again.stages_s) == ["plan + generate", "filter"]


def test_too_many_failures_stop_before_the_filter_with_exit_1(project):
    result, printed = run(project, CannedTeacher(fail={0, 1}))
    assert result.exit_code == EXIT_TOO_MANY_FAILURES and result.filtered is None and result.exported is None
    assert result.stopped.startswith("100.0% of requests failed (bound: build.max_failure_rate = ")
    assert "retried on the next run" in result.stopped and "build summary" in printed
    assert list(result.stages_s) == ["plan + generate"] and versions(project) == 0


def test_an_interrupted_generation_stops_with_exit_130_and_keeps_answers(project):
    result, printed = run(project, InterruptedTeacher())
    assert result.exit_code == EXIT_INTERRUPTED and result.build.interrupted and result.filtered is None
    assert result.stopped == "interrupted during generation; answers so far are stored"
    assert "(interrupted)" in printed and versions(project) == 0
    with duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM responses WHERE error IS NULL").fetchone()[0] == 1


@pytest.mark.parametrize("teacher, code, says", [
    (CannedTeacher(fail={0, 1}), 1, "error: 100.0% of requests failed"),
    (InterruptedTeacher(), 130, "(interrupted)"),
])
def test_cli_build_dataset_exit_codes(project, monkeypatch, teacher, code, says):
    monkeypatch.setattr("factory.teachers.make_teacher", lambda tcfg: teacher)
    result = CliRunner().invoke(app, ["build", "dataset", "-c", str(project / "factory.yaml")])
    assert result.exit_code == code, result.output
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output
