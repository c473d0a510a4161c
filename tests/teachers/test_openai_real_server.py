"""The `openai` teacher end to end against a real OpenAI-compatible server: `transformers serve`
(transformers' own CLI, FastAPI + uvicorn) serving the embedded model folder on 127.0.0.1.

`transformers serve` ignores `n` (one choice per call), so with use_n the teacher has to ask
again for the samples it did not get. The server runs offline (HF_HUB_OFFLINE=1) in its own
process group, which is killed whatever the test's outcome.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from factory.config import teacher_config
from factory.records import Request

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _die_with_parent() -> None:
    """In the child: SIGKILL it if the test process dies without tearing down (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@pytest.fixture(scope="module")
def server(embedded_model, tmp_path_factory):
    for module in ("fastapi", "uvicorn", "accelerate"):  # `transformers serve` needs all three
        pytest.importorskip(module, reason=f"`transformers serve` needs {module} (pip install {module})")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",  # a local folder; nothing from the Hub
        "HF_HUB_CACHE": str(tmp_path_factory.mktemp("hf-cache")),
        "OMP_NUM_THREADS": "1",  # predictable on busy cores (see ThreadTuner in teachers/local.py)
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    }
    cmd = [
        sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
        "serve", str(embedded_model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
        "--log-level", "info",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(f"http://127.0.0.1:{port}/health"):
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready in {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": str(embedded_model), "log": log_path}
    finally:
        _stop(proc)


def test_server_answers_a_plain_chat_completion(server):
    """The server itself, without our teacher: what the teacher will be talking to."""
    body = {"model": server["model"], "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 12}
    req = urllib.request.Request(
        server["base_url"] + "/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        data = json.load(r)
    assert data["choices"][0]["message"]["content"].strip()
    assert data["usage"]["completion_tokens"] > 0


def test_openai_teacher_against_transformers_serve(server):
    openai_teacher = pytest.importorskip("factory.teachers.openai")
    cfg = teacher_config(
        name="served",
        backend="openai",
        model=server["model"],  # transformers serve is pinned to this model name
        base_url=server["base_url"],
        api_key_env=None,
        use_n=True,  # ignored by transformers serve: the teacher re-asks the missing samples
        max_concurrency=2,
        timeout_s=120,
        max_retries=2,
    )
    params = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 16, "logprobs": 0}
    reqs = [
        Request(
            seed_id=f"s{i}", teacher="served", model=server["model"], template="t",
            messages=({"role": "user", "content": q},), params=params, sample_index=k,
        )
        for i, q in enumerate(["What is 2+3?", "Name a primary colour."])
        for k in range(2)
    ]
    calls_before = _chat_calls(server)
    teacher = openai_teacher.OpenAITeacher(cfg)
    try:
        out = list(teacher.generate(reqs))
    finally:
        teacher.close()
    assert sorted(r.request_id for r in out) == sorted(r.request_id for r in reqs)  # one each
    for r in out:
        assert r.ok, f"{r.error}\n{server['log'].read_text()[-2000:]}"
        assert r.text and r.text.strip()
        assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= 16
        assert r.finish_reason in ("stop", "length")
        assert r.teacher == "served"
    # n=2 was ignored (one choice per call): the missing sample of each prompt was asked again
    assert _chat_calls(server) - calls_before >= 4


def _chat_calls(server) -> int:
    return server["log"].read_text(errors="replace").count("POST /v1/chat/completions")
