"""`build.executor: ray` on a multi-node cluster on this machine (ray.cluster_utils.Cluster, CPU only).

The embedded teacher runs as actors on 2 worker nodes; the store must equal a local build's
(request ids, successes, greedy texts), survive a worker node removed and a driver SIGKILLed
mid-build, and the filter's checks run as tasks must give the local verdicts and kept set.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

ray = pytest.importorskip("ray")

from factory import distributed  # noqa: E402
from factory.build import build_dataset  # noqa: E402
from factory.config import load_config  # noqa: E402
from factory.filter import run_filter  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
SEEDS = 8
RAY_SETTINGS = ["build.executor=ray", "build.ray.replicas=2", "build.ray.shard_size=2"]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    c.workers = workers
    yield c
    ray.shutdown()
    c.shutdown()


def make_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "prompts", root / "prompts")
    (root / "data").mkdir()
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", root / "data")
    (root / "factory.yaml").write_text(
        f"sources:\n  - {{name: gsm8k, path: data/gsm8k_train_sample.jsonl, preset: gsm8k, limit: {SEEDS}}}\n"
        "teachers:\n  - {name: smollm2, backend: local, model: embedded, batch_size: 4}\n"
        "generation: {samples_per_seed: 2, temperature: 0, max_tokens: 24}\n"
        "build: {progress_interval_s: 0.05}\n")
    return root


def build(project: Path, *overrides: str):
    cfg = load_config(project / "factory.yaml", list(overrides))
    return build_dataset(cfg, console=Console(quiet=True))


def stored(project: Path) -> dict[str, tuple[bool, str | None]]:
    with duckdb.connect(str(project / ".factory" / "factory.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT request_id, error IS NULL, text FROM responses").fetchall()
        assert con.execute("SELECT count(*) = count(DISTINCT request_id) FROM responses").fetchone()[0]
    return {rid: (ok, text) for rid, ok, text in rows}


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, embedded_model):
    project = make_project(tmp_path_factory.mktemp("local"))
    summary = build(project)
    assert summary.requests_ok == summary.requests_planned == 2 * SEEDS
    return project


def test_a_ray_build_stores_what_a_local_build_stores(cluster, local_store, tmp_path):
    project = make_project(tmp_path / "ray")
    summary = build(project, *RAY_SETTINGS)
    assert summary.requests_ok == summary.requests_planned
    assert stored(project) == stored(local_store)
    assert build(project, *RAY_SETTINGS).requests_sent == 0  # resumes like a local build: nothing left


def test_a_build_started_locally_finishes_on_ray_and_the_reverse(cluster, local_store, tmp_path):
    project = make_project(tmp_path / "mixed")
    build(project, "sources.0.limit=3")  # part of the plan locally
    summary = build(project, *RAY_SETTINGS)
    assert summary.requests_cached == 6 and summary.requests_sent == 2 * SEEDS - 6
    assert stored(project) == stored(local_store)
    back = make_project(tmp_path / "mixed-back")  # and the reverse: started on Ray, finished locally
    build(back, *RAY_SETTINGS, "sources.0.limit=3")
    summary = build(back)
    assert summary.requests_cached == 6 and summary.requests_sent == 2 * SEEDS - 6
    assert stored(back) == stored(local_store)


def test_a_worker_node_removed_mid_build_loses_nothing(cluster, local_store, tmp_path, monkeypatch):
    extra = cluster.add_node(num_cpus=1)  # a third node: its replica is the one lost
    cluster.wait_for_nodes()
    project = make_project(tmp_path / "node")
    seen = {}
    watch = distributed.RayTeacher.watch_progress

    def spy(self, progress):
        seen["progress"], seen["teacher"] = progress, self
        watch(self, progress)

    monkeypatch.setattr(distributed.RayTeacher, "watch_progress", spy)

    def remove_when_started():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            p = seen.get("progress")
            if p is not None and p.done >= 2:
                cluster.remove_node(extra)
                seen["removed_at"] = p.done
                return
            time.sleep(0.05)

    killer = threading.Thread(target=remove_when_started, daemon=True)
    killer.start()
    summary = build(project, "build.executor=ray", "build.ray.replicas=3", "build.ray.shard_size=2")
    killer.join()
    assert "removed_at" in seen and seen["removed_at"] < 2 * SEEDS
    got = stored(project)
    assert summary.requests_ok == 2 * SEEDS, summary.requests_failed
    assert got == stored(local_store)
    assert seen["teacher"].alive <= 3
    assert build(project, *RAY_SETTINGS).requests_sent == 0


# answers long enough that the kill lands mid-build: one continuous batch finishes 24-token rows together
LONGER = ("generation.max_tokens=160",)


def test_a_driver_killed_mid_build_loses_no_stored_response(cluster, local_store, tmp_path):
    project = make_project(tmp_path / "driver")
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    args = [sys.executable, "-m", "factory.cli", "build", "dataset", "-c", str(project / "factory.yaml"),
            *(a for s in (*RAY_SETTINGS, *LONGER) for a in ("--set", s))]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # progress lines "... 3/16 requests ..." off a terminal
        lines.append(line)
        if " requests " in line and not line.split(":")[-1].strip().startswith("0/") and "on ray" in line:
            done = int(line.split("on ray")[1].split(":", 1)[1].split("/")[0].strip().replace(",", ""))
            if 2 <= done < 2 * SEEDS:
                time.sleep(0.25)  # past the writer's 0.1 s commit window (a longer wait can see the build end)
                break
        if time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any("replicas alive" in line for line in lines), "".join(lines)[-2000:]
    before = stored(project)
    assert 0 < sum(ok for ok, _ in before.values()) < 2 * SEEDS  # killed mid-build, something stored
    summary = build(project, *RAY_SETTINGS, *LONGER)
    after = stored(project)
    assert summary.requests_sent == 2 * SEEDS - sum(ok for ok, _ in before.values())  # only what was missing
    assert all(after[rid] == v for rid, v in before.items() if v[0])  # nothing stored was lost or rewritten
    assert len(after) == 2 * SEEDS and all(ok for ok, _ in after.values())  # (ids hash max_tokens: not the local run's)


def test_checks_as_ray_tasks_give_the_local_verdicts(cluster):
    from factory.checks.minhash import minhash_signatures
    from factory.checks.verify import check_code, check_math

    math_items = [(i, a, r) for i, (a, r) in enumerate([
        ("42", "42"), ("\\frac{1}{2}", "0.5"), ("x=3", "3"), ("7", "8"), ("", "1"), ("\\sqrt{2}", "2^{1/2}"),
        ("1,000", "1000"), ("banana", "3"), ("$5", "5"), ("-0", "0")] * 3)]
    local = sorted(check_math(math_items, timeout_s=5, workers=1))
    on_ray = sorted(distributed.check_math(math_items, timeout_s=5, batch_size=4))
    assert on_ray == local
    code_items = [
        ("ok", "def f(x):\n", "def f(x):\n    return x + 1\n", "assert f(1) == 2\n", "f"),
        ("wrong", "def f(x):\n", "def f(x):\n    return x\n", "assert f(1) == 2\n", "f"),
        ("boom", "def f(x):\n", "def f(x):\n    raise ValueError('no')\n", "assert f(1) == 2\n", "f"),
    ]
    local_code = sorted((k, p, r) for k, p, r, _ in check_code(code_items, wall_s=10, workers=1, allow_weak=True))
    ray_code = sorted((k, p, r) for k, p, r, _ in distributed.check_code(code_items, wall_s=10, allow_weak=True,
                                                                         batch_size=2))
    assert ray_code == local_code
    texts = [f"problem {i} " + "word " * (i % 7) + "same tail of the text here" for i in range(50)] + ["", "x"]
    assert (distributed.minhash_signatures(texts, 64, 3, batch_size=7)
            == minhash_signatures(texts, num_perm=64, ngram=3)).all()


def test_the_filter_on_ray_keeps_what_the_local_filter_keeps(cluster, local_store, tmp_path):
    kept = {}
    for executor in ("local", "ray"):
        project = tmp_path / executor
        shutil.copytree(local_store, project)
        cfg = load_config(project / "factory.yaml", [f"build.executor={executor}"])
        run_filter(cfg, console=Console(quiet=True))
        with duckdb.connect(str(cfg.store_path), read_only=True) as con:
            kept[executor] = (con.execute("SELECT request_id FROM kept ORDER BY 1").fetchall(),
                              con.execute('SELECT request_id, "check", passed, reason FROM checks ORDER BY 1, 2').fetchall())
    assert kept["ray"] == kept["local"]
