"""Kill a real `factory build dataset` with SIGKILL mid-run, run it again, compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 16
SEEDS = 150


@pytest.fixture
def server():
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "fake_openai.py"), "--port", "0", "--latency", "0.15"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("READY"), line
    yield f"http://127.0.0.1:{line.split()[1]}"
    proc.kill()
    proc.wait()


def stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/stats") as r:
        return json.load(r)


def project(tmp: Path, base: str) -> Path:
    shutil.copytree(ROOT / "prompts", tmp / "prompts")
    (tmp / "data").mkdir()
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", tmp / "data")
    (tmp / "factory.yaml").write_text(f"""
sources: [{{name: gsm8k, path: data/gsm8k_train_sample.jsonl, preset: gsm8k, limit: {SEEDS}}}]
teachers: [{{name: api, backend: openai, base_url: "{base}/v1", model: fake, max_concurrency: {CONCURRENCY}}}]
generation: {{samples_per_seed: 1}}
""")
    return tmp


def build(cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    return subprocess.Popen([sys.executable, "-m", "factory.cli", "build", "dataset"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def stored(cwd: Path) -> dict[str, str]:
    con = duckdb.connect(str(cwd / ".factory" / "factory.duckdb"), read_only=True)
    rows = con.execute("SELECT request_id, text FROM responses WHERE error IS NULL").fetchall()
    con.close()
    return dict(rows)


@pytest.mark.slow
def test_sigkill_mid_build_then_resume_sends_only_what_was_missing(tmp_path, server):
    killed = project(tmp_path / "killed", server)
    proc = build(killed)
    deadline = time.monotonic() + 60
    while stats(server)["count"] < SEEDS // 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = stats(server)["count"]
    assert 0 < before < SEEDS
    assert build(killed).wait() == 0

    seen = Counter(rec[1] for rec in stats(server)["records"])
    assert set(seen) and len(seen) == SEEDS  # every prompt was asked
    assert max(seen.values()) <= 2  # none more than once again
    # only what was in flight (or not yet committed, <= 0.1 s of answers) when killed is asked twice
    assert sum(1 for c in seen.values() if c == 2) <= CONCURRENCY + 16

    clean = project(tmp_path / "clean", server)
    assert build(clean).wait() == 0
    a, b = stored(killed), stored(clean)
    assert len(a) == SEEDS and a == b  # the resumed store equals an uninterrupted run's
