"""`factory publish` against the fake Hub (tests/support/fake_hub.py) with the real huggingface_hub client:
one commit per version (Parquet through the LFS batch + PUT path, the card as a regular file), a
tag v<N>, the revision in the store, a no-op on re-publishing, dry runs that call nothing, errors
on one line with the token redacted, and files that `load_dataset(folder, "sft")` reads back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from support.teachers import GSM8K, ScriptedTeacher

from factory.build import build_dataset
from factory.config import load_config
from factory.export import export_version
from factory.filter import run_filter
from factory.hub import HubError, publish_version
from factory.store import Store
from factory.versions import compare_versions

ROOT = Path(__file__).resolve().parent.parent
REPO = "tester/reasoning"
TOKEN = "hf_FactoryTestToken0123456789"
QUIET = Console(quiet=True)


def _seeds(project: Path, n: int) -> None:
    with open(project / "data" / "seeds.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in GSM8K[:n])


def _version(cfg) -> int:
    build_dataset(cfg, console=QUIET, teachers={"scripted": ScriptedTeacher()})
    return run_filter(cfg, console=QUIET).version


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A project with two versions in its store: v1 (3 seeds, exported in 1-row shards) and v2 (a 4th seed)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "prompts", project / "prompts")
    shutil.copytree(ROOT / "filters", project / "filters")
    shutil.copytree(ROOT / "data" / "benchmarks", project / "data" / "benchmarks")
    (project / "factory.yaml").write_text("""
sources: [{name: gsm8k, path: data/seeds.jsonl, preset: gsm8k}]
teachers: [{name: scripted, backend: openai, model: scripted-model}]
generation: {samples_per_seed: 2}
filter: {benchmarks: {gsm8k_test: data/benchmarks/gsm8k_test.jsonl}}
""")
    cfg = load_config(project / "factory.yaml")
    _seeds(project, 3)
    assert _version(cfg) == 1
    export_version(load_config(project / "factory.yaml", ["export.shard_rows=1"]), 1)
    _seeds(project, 4)
    assert _version(cfg) == 2
    return project


@pytest.fixture
def project(built, tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return Path(shutil.copytree(built, tmp_path / "p"))


def config(project: Path, *overrides: str):
    return load_config(project / "factory.yaml", [f"publish.repo_id={REPO}", *overrides])


def _published(cfg, version: int) -> str | None:
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    try:
        return con.execute("SELECT published_revision FROM versions WHERE version = ?", [version]).fetchone()[0]
    finally:
        con.close()


def _download(hub, revision: str, dest: Path) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(REPO, repo_type="dataset", revision=revision, local_dir=dest, token=TOKEN))


def test_publish_is_one_tagged_commit_that_load_dataset_reads_back(project, fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = config(project)
    export = cfg.path(cfg.workdir) / "export" / "v1"
    result = publish_version(cfg, 1, console=QUIET)

    repo = fake_hub.repos[REPO]
    assert repo.type == "dataset" and repo.private  # private by default
    assert len(fake_hub.commits(REPO)) == 1 and repo.tags == {"v1": result.revision}
    assert result.revision == repo.branches["main"] and not result.noop and result.tag == "v1"
    assert _published(cfg, 1) == result.revision
    files = sorted(p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file())
    assert result.files == files and "sft/train-00002.parquet" in files  # 3 one-row shards
    assert {p: d for p, d in repo.files.items() if p != ".gitattributes"} == {f: (export / f).read_bytes()
                                                                               for f in files}
    # the real client's calls: one repo creation, one commit (card inline, Parquet via LFS), one tag
    assert [c.body["visibility"] for c in fake_hub.calls_to("POST", "/api/repos/create")] == ["private"]
    (commit,) = fake_hub.calls_to("POST", f"/api/datasets/{REPO}/commit/main")
    kinds = {line["value"]["path"]: line["key"] for line in commit.body if line["key"] != "header"}
    assert kinds == {f: "file" if f == "README.md" else "lfsFile" for f in files}
    assert len(fake_hub.calls_to("PUT", "/lfs-upload/")) == sum(f.endswith(".parquet") for f in files)
    (tag,) = fake_hub.calls_to("POST", f"/api/datasets/{REPO}/tag/")
    assert tag.path.endswith(result.revision) and tag.body["tag"] == "v1"
    assert all(c.token == TOKEN for c in fake_hub.calls if not c.path.startswith(("/lfs-upload", "/api/agent")))

    # the card's configs make `load_dataset(<downloaded repo>, "sft")` work
    import datasets

    folder = _download(fake_hub, "v1", tmp_path / "dl")
    sft = datasets.load_dataset(str(folder), "sft", split="train", cache_dir=str(tmp_path / "cache"))
    dpo = datasets.load_dataset(str(folder), "dpo", split="train", cache_dir=str(tmp_path / "cache"))
    assert len(sft) == 3 and len(dpo) == 3  # every seed: a verified and a wrong trace
    assert sft[0]["messages"][-1]["content"].startswith("<think>\n") and dpo[0]["chosen"] != dpo[0]["rejected"]
    card = (folder / "README.md").read_text()
    assert "config_name: sft" in card and "config_name: dpo" in card and "First version." in card


def test_publishing_the_same_version_twice_is_a_noop(project, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = config(project)
    first = publish_version(cfg, 1, console=QUIET)
    second = publish_version(cfg, 1, console=QUIET)
    assert second.noop and second.revision == first.revision
    assert len(fake_hub.commits(REPO)) == 1 and len(fake_hub.calls_to("POST", "/commit/")) == 1
    assert len(fake_hub.calls_to("POST", "/tag/")) == 1

    # a store that forgot the publication: the tag's files are compared with the export instead
    with Store(cfg.store_path) as store:
        store.sql("UPDATE versions SET published_revision = NULL")
    third = publish_version(cfg, 1, console=QUIET)
    assert third.noop and third.revision == first.revision and _published(cfg, 1) == first.revision
    assert len(fake_hub.calls_to("POST", "/commit/")) == 1

    # ... and a tag that holds other files is an error, never a second v1
    with Store(cfg.store_path) as store:
        store.sql("UPDATE versions SET published_revision = NULL")
    card = cfg.path(cfg.workdir) / "export" / "v1" / "README.md"
    card.write_text(card.read_text() + "\nedited\n")
    with pytest.raises(HubError, match="tag v1 already exists .* with other files"):
        publish_version(cfg, 1, console=QUIET)
    assert len(fake_hub.calls_to("POST", "/commit/")) == 1


def test_a_publish_cut_off_before_its_tag_is_finished_without_a_second_commit(project, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = config(project)
    fake_hub.fail("POST", "/tag/", 503, "service unavailable")
    with pytest.raises(HubError, match="503 from POST"):
        publish_version(cfg, 1, console=QUIET)
    assert len(fake_hub.commits(REPO)) == 1 and _published(cfg, 1) is None
    result = publish_version(cfg, 1, console=QUIET)  # the client skips unchanged files: nothing to commit
    assert len(fake_hub.commits(REPO)) == 1 and fake_hub.repos[REPO].tags == {"v1": result.revision}
    assert _published(cfg, 1) == result.revision == fake_hub.commits(REPO)[0].oid


def test_next_version_replaces_stale_shards_and_its_card_shows_the_changes(project, fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = config(project, "publish.private=false")
    publish_version(cfg, 1, console=QUIET)  # 1-row shards: sft/train-00000..00002
    export_version(cfg, 2)  # after v1 is published: its card compares with v1
    result = publish_version(cfg, 2, console=QUIET)

    repo = fake_hub.repos[REPO]
    assert not repo.private and len(fake_hub.commits(REPO)) == 2 and set(repo.tags) == {"v1", "v2"}
    assert result.deleted == ["dpo/train-00001.parquet", "dpo/train-00002.parquet",
                              "sft/train-00001.parquet", "sft/train-00002.parquet"]
    assert sorted(p for p in repo.files if p.startswith("sft/")) == ["sft/train-00000.parquet"]
    assert repo.files_at("v1") != repo.files_at("v2") and "sft/train-00002.parquet" in repo.files_at("v1")

    import datasets

    folder = _download(fake_hub, "v2", tmp_path / "dl")
    assert len(datasets.load_dataset(str(folder), "sft", split="train", cache_dir=str(tmp_path / "cache"))) == 4
    card = (folder / "README.md").read_text()
    assert "## Changes since v1 (the last published version)" in card and f'load_dataset("{REPO}", "sft"' in card
    assert "| seeds | 3 | 4 | +1 added, -0 removed |" in card
    assert "| verified rate | 100.0% | 100.0% | +0.0 pts |" in card


def test_publish_to_another_branch_leaves_main_alone(project, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = publish_version(config(project, "publish.branch=release"), 1, console=QUIET)
    repo = fake_hub.repos[REPO]
    assert repo.branches["release"] == result.revision == repo.tags["v1"]
    assert set(repo.files) == {".gitattributes"} and "README.md" in repo.files_at("release")


def test_compare_versions(project):
    cfg = config(project)
    with Store(cfg.store_path) as store:
        diff = compare_versions(store, 1, 2)
        d1, d2 = (json.loads(store.scalar("SELECT diversity FROM versions WHERE version = ?", [v])) for v in (1, 2))
    assert diff["seeds"] == {"old": 3, "new": 4, "added": 1, "removed": 0}
    assert diff["traces"] == {"old": 3, "new": 4, "added": 1, "removed": 0}
    assert diff["verified_rate"] == {"old": 1.0, "new": 1.0, "change": 0.0}
    assert diff["diversity"]["distinct_2"]["change"] == round(d2["distinct_2"] - d1["distinct_2"], 4)
    assert "per_source" not in diff["diversity"]  # maps are not figures
    with Store(cfg.store_path) as store:
        back = compare_versions(store, 2, 1)
    assert back["seeds"]["removed"] == 1 and back["seeds"]["added"] == 0


def test_dry_run_writes_the_upload_and_its_plan_and_calls_nothing(project, fake_hub):
    cfg = config(project)  # no token needed
    result = publish_version(cfg, 1, dry_run=True, console=QUIET)
    assert fake_hub.calls == [] and result.dry_run and result.revision is None and _published(cfg, 1) is None
    out = cfg.path(cfg.workdir) / "publish" / "v1"
    export = cfg.path(cfg.workdir) / "export" / "v1"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(result.files + ["commit_plan.json"]) and result.plan_path == out / "commit_plan.json"
    plan = json.loads(result.plan_path.read_text())
    assert {k: plan[k] for k in ("repo_id", "repo_type", "private", "branch", "tag")} == {
        "repo_id": REPO, "repo_type": "dataset", "private": True, "branch": "main", "tag": "v1"}
    assert plan["commit_message"].startswith("factory v1: 3 traces from 3 seeds")
    for op in plan["operations"]:
        data = (export / op["path"]).read_bytes()
        assert (out / op["path"]).read_bytes() == data
        assert op["size"] == len(data) and op["sha256"] == hashlib.sha256(data).hexdigest()


def test_errors_are_one_line_and_never_carry_the_token(project, fake_hub, monkeypatch):
    with pytest.raises(HubError, match="publish.repo_id is not set"):
        publish_version(load_config(project / "factory.yaml"), 1)
    export2 = project / ".factory" / "export" / "v2"
    shutil.rmtree(export2, ignore_errors=True)  # not exported yet: publishing exports it first
    plan = publish_version(config(project), 2, dry_run=True, console=QUIET)
    assert (export2 / "README.md").is_file() and plan.files and fake_hub.calls == []
    with pytest.raises(HubError, match="no Hugging Face token: set HF_TOKEN"):
        publish_version(config(project), 1, console=QUIET)
    assert fake_hub.calls == []

    monkeypatch.setenv("MY_HF", TOKEN)
    cfg = config(project, "publish.token_env=MY_HF")
    fake_hub.fail("POST", "/commit/", 403, f"token {TOKEN} cannot write to {REPO}")
    with pytest.raises(HubError) as err:
        publish_version(cfg, 1, console=QUIET)
    message = str(err.value)
    assert "\n" not in message and TOKEN not in message
    assert f"403 from POST /api/datasets/{REPO}/commit/main: token <redacted> cannot write to {REPO}" in message
    assert _published(cfg, 1) is None and fake_hub.repos[REPO].tags == {}
    assert publish_version(cfg, 1, console=QUIET).revision == fake_hub.repos[REPO].tags["v1"]  # a retry succeeds


@pytest.mark.slow
def test_cli_publish_keeps_the_token_out_of_output_store_and_files(project, fake_hub):
    """`factory publish` in a subprocess: huggingface_hub itself reads HF_ENDPOINT and HF_TOKEN."""
    cmd = [sys.executable, "-m", "factory.cli", "publish", "-c", str(project / "factory.yaml"),
           "--set", f"publish.repo_id={REPO}", "--version", "1"]
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": fake_hub.url, "HF_HUB_DISABLE_XET": "1"}
    runs = [subprocess.run(cmd + extra, env=env, capture_output=True, text=True, timeout=120,
                           check=False)
            for extra in (["--dry-run"], [], [])]
    assert [r.returncode for r in runs] == [0, 0, 0], runs[-1].stderr
    assert "nothing uploaded" in runs[0].stderr and "published v1" in runs[1].stderr
    assert "already published" in runs[2].stderr
    fake_hub.fail("GET", "/refs", 403, f"Invalid token {TOKEN}")
    failed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 2 and "error: publishing v1" in failed.stderr and "<redacted>" in failed.stderr

    calls = [c for c in fake_hub.calls if not c.path.startswith(("/lfs-upload", "/api/agent"))]
    assert calls and all(c.token == TOKEN for c in calls)  # the Hub got it as a Bearer token ...
    secret = TOKEN.encode()
    for r in runs + [failed]:  # ... and nothing else did
        assert TOKEN not in r.stdout + r.stderr
    for path in project.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    for repo_file in fake_hub.repos[REPO].files.values():
        assert secret not in repo_file
    for c in fake_hub.calls:
        assert TOKEN not in json.dumps(c.body)


# -- never ship emptiness: the size guard (publish.max_shrink, --force) ---------------------------

def _empty_version(project: Path) -> int:
    """A version that keeps nothing, as a broken source or field mapping makes one: every trace rejected."""
    cfg = load_config(project / "factory.yaml", ["filter.math.min_reasoning_words=100000"])
    summary = run_filter(cfg, console=QUIET)
    assert summary.kept == 0 and summary.new_version
    return summary.version


def _repo_files(hub) -> dict[str, bytes]:
    return dict(hub.repos[REPO].files)


def test_an_empty_version_is_refused_and_the_hub_keeps_its_files(project, fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = config(project)
    publish_version(cfg, 1, console=QUIET)
    before, commits = _repo_files(fake_hub), len(fake_hub.calls_to("POST", "/commit/"))
    empty = _empty_version(project)
    for dry_run in (True, False):
        with pytest.raises(HubError) as err:
            publish_version(cfg, empty, dry_run=dry_run, console=QUIET)
        message = str(err.value)
        assert "\n" not in message and f"v{empty} keeps 0 traces" in message
        assert "the last published version v1 keeps 3" in message and "--force" in message
    assert _repo_files(fake_hub) == before and len(fake_hub.calls_to("POST", "/commit/")) == commits
    assert set(fake_hub.repos[REPO].tags) == {"v1"} and _published(cfg, empty) is None

    # the export is still well formed: both splits as 0-row Parquet with their schema, and a card
    import pyarrow.parquet as pq

    from factory.export import dpo_features, sft_features

    out = export_version(cfg, empty).path
    for split, features in (("sft", sft_features()), ("dpo", dpo_features())):
        table = pq.read_table(out / split)
        assert table.num_rows == 0 and table.schema.equals(features.arrow_schema), split
    assert "This version keeps no traces" in (out / "README.md").read_text()

    # --force publishes it anyway: the Hub's branch then holds the empty splits, v1 stays tagged
    result = publish_version(cfg, empty, force=True, console=QUIET)
    repo = fake_hub.repos[REPO]
    assert repo.tags[f"v{empty}"] == result.revision and "sft/train-00002.parquet" in repo.files_at("v1")
    assert sorted(p for p in repo.files if p.endswith(".parquet")) == ["dpo/train-00000.parquet",
                                                                      "sft/train-00000.parquet"]
    card = repo.files["README.md"].decode()
    assert "config_name: sft" in card and "config_name: dpo" in card


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_a_shrink_beyond_max_shrink_is_refused_unless_forced(project, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = config(project)
    publish_version(cfg, 2, console=QUIET)  # 4 traces
    _seeds(project, 1)
    small = _version(cfg)  # 1 trace: 75 % fewer
    with pytest.raises(HubError, match=rf"refusing to publish: v{small} keeps 1 traces, 75% fewer than the last "
                                       r"published version v2 keeps 4 \(publish.max_shrink = 0.5\).*--force"):
        publish_version(cfg, small, console=QUIET)
    assert set(fake_hub.repos[REPO].tags) == {"v2"}
    publish_version(cfg, 1, console=QUIET)  # 3 of 4 traces: a 25 % shrink is within the bound
    assert publish_version(config(project, "publish.max_shrink=0.8"), small, console=QUIET).tag == f"v{small}"


def test_cli_force_publishes_what_the_guard_refuses(project, fake_hub, monkeypatch):
    from typer.testing import CliRunner

    from factory.cli import app

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    publish_version(config(project), 1, console=QUIET)
    empty = _empty_version(project)
    args = ["publish", "-c", str(project / "factory.yaml"), "--set", f"publish.repo_id={REPO}", "--version", str(empty)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and f"refusing to publish: v{empty} keeps 0 traces" in refused.output
    assert set(fake_hub.repos[REPO].tags) == {"v1"}
    forced = CliRunner().invoke(app, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert set(fake_hub.repos[REPO].tags) == {"v1", f"v{empty}"}
