"""`factory refresh` end to end: the fake OpenAI-compatible server is the teacher, the real build,
filter, store and lock run; the Hub is the fake Hub server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from support.fake_openai import FakeOpenAI, messages_hash
from rich.console import Console

from factory.config import load_config
from factory.refresh import (EXIT_ERROR, EXIT_GATES_FAILED, EXIT_LOCKED, EXIT_NOTHING_NEW, EXIT_PUBLISHED,
                             project_lock, run_refresh)

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [json.loads(line)["question"] for line in (ROOT / "data" / "gsm8k_train_sample.jsonl").open()]
KEY = "sk-refresh-test-secret-0123456789"


def diverse(question: str) -> str:
    """A trace that restates its own problem: traces of different problems share few n-grams."""
    return (f"<think>We are told: {question} Taking these quantities one at a time and combining them "
            f"gives the total.</think>\n\nThe answer is \\boxed{{{len(question)}}}.")


def templated(question: str) -> str:
    """A collapsing teacher: one template for every problem, only the problem's numbers filled in."""
    numbers = ", ".join(re.findall(r"\d+", question)) or "none"
    return (f"<think>First I read the numbers in the problem: {numbers}. Then I combine them in the usual way and "
            f"the result is {len(question)}. So the result is {len(question)}.</think>\n\n"
            f"The answer is \\boxed{{{len(question)}}}.")


def collapsed(question: str) -> str:
    """A collapsed teacher: the same text for every problem, modulo a number."""
    return ("<think>This one is simple and the answer follows at once from the numbers given, so there is no "
            f"need to work through it in detail. The result is {len(question)}.</think>\n\n"
            f"The answer is \\boxed{{{len(question)}}}.")


@pytest.fixture
def server():
    srv = FakeOpenAI().start()
    yield srv
    srv.stop()


def write_config(project: Path, base_url: str, publish: bool = False) -> None:
    (project / "factory.yaml").write_text(f"""
sources: [{{name: gsm8k, path: data/seeds.jsonl, fields: {{problem: question}}, domain: math}}]
teachers: [{{name: fake, backend: openai, model: fake, base_url: "{base_url}", api_key_env: FACTORY_TEST_KEY}}]
generation: {{samples_per_seed: 1}}
filter: {{verify_workers: 1}}
refresh: {{publish: {str(publish).lower()}}}
publish: {{repo_id: {"tester/traces" if publish else "null"}}}
""")


@pytest.fixture
def project(tmp_path: Path, server: FakeOpenAI, monkeypatch) -> Path:
    monkeypatch.setenv("FACTORY_TEST_KEY", KEY)
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "data").mkdir()
    write_config(tmp_path, server.base_url)
    return tmp_path


def write_seeds(project: Path, server: FakeOpenAI, questions: list[str], reply=diverse) -> None:
    """The source file holds exactly `questions`; the server answers the new ones with `reply`."""
    with open(project / "data" / "seeds.jsonl", "w") as f:
        f.writelines(json.dumps({"question": q}) + "\n" for q in questions)
    replies = dict(server.settings.replies)
    for q in questions:
        replies.setdefault(q[:60], [reply(q)])
    server.configure(replies=replies)


def refresh(project: Path, *overrides: str, console: Console | None = None):
    return run_refresh(load_config(project / "factory.yaml", list(overrides)), console=console or Console(quiet=True))


def store(project: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True)


def test_unchanged_sources_cost_nothing_and_only_new_seeds_are_asked(project, server):
    write_seeds(project, server, QUESTIONS[:6])
    first = refresh(project)
    assert first.exit_code == EXIT_PUBLISHED and first.outcome == "passed", first.message
    assert first.version == 1 and first.teacher_calls == 6 and len(server.records) == 6
    assert "refresh.publish is false" in first.message

    again = refresh(project)  # unchanged sources: every answer is cached, the corpus is the same
    assert again.exit_code == EXIT_NOTHING_NEW and again.outcome == "nothing_new", again.message
    assert len(server.records) == 6 and again.teacher_calls == 0

    server.reset()
    write_seeds(project, server, QUESTIONS[1:9])  # the first question leaves the source, three arrive
    third = refresh(project, "refresh.gates.max_diversity_drop=0.5")
    assert third.exit_code == EXIT_PUBLISHED and third.version == 2, third.message
    with store(project) as con:
        rows = con.execute("SELECT d.problem, q.messages, d.seed_id FROM requests q JOIN seeds d USING (seed_id)").fetchall()
        assert con.execute("SELECT max(version) FROM versions").fetchone()[0] == 2
        refreshes = con.execute("SELECT version, compared_with, outcome, exit_code FROM refreshes ORDER BY started_at")
        assert refreshes.fetchall() == [(1, None, "passed", 0), (1, None, "nothing_new", 3), (2, 1, "passed", 0)]
    new = {messages_hash(json.loads(m)) for p, m, _ in rows if p in QUESTIONS[6:9]}
    assert len(new) == 3 and {r[1] for r in server.records} == new and third.teacher_calls == 3
    gone = next(s for p, _, s in rows if p == QUESTIONS[0])
    c = third.comparison
    assert c["sources"] == {"seeds": 8, "added": 3, "removed": 1, "removed_ids": [gone]}
    assert c["old"] == 1 and c["seeds"] == {"old": 6, "new": 8, "added": 3, "removed": 1}
    assert c["traces"]["added"] == 3 and c["traces"]["removed"] == 1
    assert {g.name for g in third.gates} >= {"min_size", "max_contamination", "diversity_drop:distinct_2",
                                              "diversity_drop:unique_trace_share"}


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_a_collapsing_teacher_fails_the_diversity_gate_and_nothing_is_pushed(project, server, fake_hub, monkeypatch):
    token = "hf_refresh_test_token_0123456789"
    monkeypatch.setenv("HF_TOKEN", token)
    write_config(project, server.base_url, publish=True)
    write_seeds(project, server, QUESTIONS[:6])
    log = io.StringIO()
    console = Console(file=log, width=200)
    fake_hub.fail("POST", r"/commit/", 403, f"token {token} may not write here")
    failed = refresh(project, console=console)  # the Hub refuses: an error, nothing recorded as published
    assert failed.exit_code == EXIT_ERROR and "403" in failed.message and token not in failed.message
    assert fake_hub.commits("tester/traces") == []

    first = refresh(project, console=console)  # the same version, undecided: the next run publishes it
    assert first.exit_code == EXIT_PUBLISHED and first.outcome == "published", first.message
    assert first.teacher_calls == 0 and first.version == 1
    [commit] = fake_hub.commits("tester/traces")
    assert fake_hub.repos["tester/traces"].tags == {"v1": commit.oid} and "sft/train-00000.parquet" in commit.tree
    commit_calls = len(fake_hub.calls_to("POST", r"/commit/"))

    # the teacher starts to collapse: sixty new seeds answered from one template (they pass dedup) ...
    write_seeds(project, server, QUESTIONS[:66], reply=templated)
    second = refresh(project, console=console)
    assert second.exit_code == EXIT_GATES_FAILED and second.outcome == "gates_failed", second.message
    assert second.version == 2 and second.compared_with == 1 and second.teacher_calls == 60
    failed_gates = {g.name for g in second.failed_gates}
    assert failed_gates & {f"diversity_drop:{k}" for k in ("distinct_1", "distinct_2", "distinct_3",
                                                           "compression_ratio")}, second.gates
    assert all(name.startswith("diversity_drop:") for name in failed_gates)
    assert second.message.startswith("gates failed for version 2: diversity_drop:")
    assert second.message in " ".join(log.getvalue().split())

    # ... then thirty more with one text modulo a number (near-duplicates): compared with v1 still
    write_seeds(project, server, QUESTIONS[:96], reply=collapsed)
    third = refresh(project, console=console)
    assert third.exit_code == EXIT_GATES_FAILED and third.version == 3 and third.compared_with == 1
    assert "diversity_drop:unique_trace_share" in {g.name for g in third.failed_gates}, third.gates
    assert len(fake_hub.calls_to("POST", r"/commit/")) == commit_calls and len(fake_hub.commits("tester/traces")) == 1
    assert set(fake_hub.repos["tester/traces"].tags) == {"v1"}

    with store(project) as con:
        gates, comparison, message = con.execute(
            "SELECT gates, comparison, message FROM refreshes WHERE version = 3").fetchone()
        assert message == third.message
        stored = {g["name"]: g for g in json.loads(gates)}
        assert stored["diversity_drop:unique_trace_share"] == {
            "name": "diversity_drop:unique_trace_share", "value": json.loads(comparison)["diversity_gate"][
                "unique_trace_share"]["drop"], "threshold": 0.1, "passed": False}
        published = con.execute("SELECT version, published_revision FROM versions ORDER BY version").fetchall()
        assert published == [(1, commit.oid), (2, None), (3, None)]
        texts = " ".join(str(v) for table in ("refreshes", "runs", "responses") for row in
                         con.execute(f"SELECT * FROM {table}").fetchall() for v in row)
    # secrets come from the environment only: never in the store, the log or the exported files
    exported = b"".join(p.read_bytes() for p in (project / ".factory").rglob("*") if p.is_file())
    for secret in (token, KEY):
        assert secret not in texts and secret not in log.getvalue() and secret.encode() not in exported


class HeldServer(FakeOpenAI):
    """Holds every answer until `release` is set: a refresh stays inside generation, lock held."""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.release = threading.Event()

    def _completion_body(self, *args):
        self.release.wait(120)
        return super()._completion_body(*args)


def cli_refresh(project: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "factory.cli", "refresh", "-c", str(project / "factory.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"COLUMNS": "200"},
                            **popen)


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_two_refreshes_at_once_one_exits_locked_and_the_store_is_intact(project):
    held = HeldServer().start()
    try:
        write_config(project, held.base_url)
        write_seeds(project, held, QUESTIONS[:6])
        first = cli_refresh(project)
        while not held.records:  # the first refresh is generating: it holds the lock
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = cli_refresh(project)
        _, err = second.communicate(timeout=120)
        assert second.returncode == EXIT_LOCKED, err
        lock = project / ".factory" / "refresh.lock"
        assert f"locked: another refresh (pid {first.pid}, since " in err and str(lock) in " ".join(err.split())
        held.release.set()
        _, err = first.communicate(timeout=120)
        assert first.returncode == EXIT_PUBLISHED, err
    finally:
        held.release.set()
        held.stop()
    with store(project) as con:
        assert con.execute("SELECT count(*) FROM responses WHERE error IS NULL").fetchone()[0] == 6
        assert con.execute("SELECT count(*) FROM versions").fetchone()[0] == 1
        assert con.execute("SELECT outcome, exit_code FROM refreshes").fetchall() == [("passed", 0)]
    with project_lock(project / ".factory" / "refresh.lock"):
        pass  # released


def test_a_held_lock_stops_refresh_before_it_touches_the_store(project, server):
    lock = project / ".factory" / "refresh.lock"
    with project_lock(lock):
        result = refresh(project)
    assert result.exit_code == EXIT_LOCKED and result.outcome == "locked"
    assert result.message.startswith(f"locked: another refresh (pid {os.getpid()}, since ")
    assert not (project / ".factory" / "factory.duckdb").exists() and not server.records


def test_errors_exit_1_with_one_line_record_it_and_release_the_lock(project, server, capsys):
    result = run_refresh(load_config(project / "factory.yaml"), console=Console(stderr=True, width=300))
    assert result.exit_code == EXIT_ERROR and result.outcome == "error"
    assert result.message == "source 'gsm8k': data/seeds.jsonl: no such file"
    err = capsys.readouterr().err
    assert result.message in err and "Traceback" not in err
    write_seeds(project, server, QUESTIONS[:3])
    write_config(project, "http://127.0.0.1:1/v1")  # the teacher is unreachable: every request fails
    result = refresh(project, "teachers.0.max_retries=0")
    assert result.exit_code == EXIT_ERROR and "100.0% of requests failed" in result.message
    with store(project) as con:
        rows = con.execute("SELECT outcome, exit_code, message FROM refreshes ORDER BY started_at").fetchall()
        assert con.execute("SELECT count(*) FROM versions").fetchone()[0] == 0
    assert [r[:2] for r in rows] == [("error", 1), ("error", 1)] and rows[1][2] == result.message
    assert rows[0][2].startswith("source 'gsm8k': ")
    with project_lock(project / ".factory" / "refresh.lock"):
        pass  # free again


def unanswered(question: str) -> str:
    """A broken teacher (or a field mapped to the wrong column): no reasoning, no answer."""
    return "I cannot help with that."


@pytest.mark.slow
def test_an_empty_or_shrunken_version_fails_its_gate_and_nothing_is_pushed(project, server, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_refresh_test_token_0123456789")
    write_config(project, server.base_url, publish=True)
    write_seeds(project, server, QUESTIONS[:6])
    first = refresh(project)
    assert first.exit_code == EXIT_PUBLISHED and first.outcome == "published", first.message
    files = dict(fake_hub.repos["tester/traces"].files)

    # every new answer is unusable: version 2 keeps nothing; its gate fails and the Hub is untouched
    write_seeds(project, server, QUESTIONS[10:16], reply=unanswered)
    empty = refresh(project)
    assert empty.exit_code == EXIT_GATES_FAILED and empty.outcome == "gates_failed", empty.message
    assert empty.version == 2 and {"not_empty", "min_size"} <= {g.name for g in empty.failed_gates}
    assert "not_empty 0 < 1" in empty.message and "v2 keeps 0 traces" in empty.message
    assert "last published version v1 keeps 6" in empty.message and "--force" in empty.message
    assert fake_hub.repos["tester/traces"].files == files and set(fake_hub.repos["tester/traces"].tags) == {"v1"}

    # a third of the seeds come back: 2 of 6 traces is a 67 % shrink against v1, beyond publish.max_shrink
    write_seeds(project, server, QUESTIONS[:2])
    shrunk = refresh(project, "refresh.gates.max_diversity_drop=null")
    assert shrunk.exit_code == EXIT_GATES_FAILED and [g.name for g in shrunk.failed_gates] == ["max_shrink"]
    assert shrunk.failed_gates[0].value == 0.6667 and "v3 keeps 2 traces, 67% fewer" in shrunk.message
    assert set(fake_hub.repos["tester/traces"].tags) == {"v1"}

    assert f"`factory publish --version {shrunk.version} --force`" in shrunk.message  # v3 is decided now

    # refresh --force lifts the size guard (only) for the next version: it is published
    write_seeds(project, server, QUESTIONS[1:3])
    forced = run_refresh(load_config(project / "factory.yaml", ["refresh.gates.max_diversity_drop=null"]),
                         console=Console(quiet=True), force=True)
    assert forced.exit_code == EXIT_PUBLISHED and forced.outcome == "published", forced.message
    assert not {"not_empty", "max_shrink"} & {g.name for g in forced.gates}
    assert set(fake_hub.repos["tester/traces"].tags) == {"v1", "v4"}


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_the_baseline_is_the_last_accepted_version_else_the_one_before_and_the_card_agrees(project, server):
    write_seeds(project, server, QUESTIONS[:4])
    failed = refresh(project, "refresh.gates.min_size=100")  # nothing accepted yet, nothing before: no baseline
    assert failed.exit_code == EXIT_GATES_FAILED and failed.version == 1 and failed.compared_with is None
    assert not any(g.name.startswith("diversity_drop:") for g in failed.gates)

    write_seeds(project, server, QUESTIONS[:6])  # still nothing accepted: the version right before, failed or not
    second = refresh(project, "refresh.gates.max_diversity_drop=0.5")
    assert second.exit_code == EXIT_PUBLISHED and second.version == 2 and second.compared_with == 1, second.message
    assert any(g.name.startswith("diversity_drop:") for g in second.gates)

    write_seeds(project, server, QUESTIONS[:8])
    third = refresh(project, "refresh.gates.min_size=100")  # v2 passed: the baseline from now on
    assert third.exit_code == EXIT_GATES_FAILED and third.version == 3 and third.compared_with == 2
    write_seeds(project, server, QUESTIONS[:9])
    fourth = refresh(project, "refresh.gates.max_diversity_drop=0.5")
    assert fourth.version == 4 and fourth.compared_with == 2, fourth.message  # never v3, which failed

    from factory.export import export_version

    card = (export_version(load_config(project / "factory.yaml"), 4).path / "README.md").read_text()
    assert "## Changes since v2 (the last version that passed the refresh gates)" in card
    assert re.search(r"\| distinct_2, [\d,]+ words of each \| ", card), card
