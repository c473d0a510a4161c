"""Bad inputs a new user meets, each through the real CLI: a one-line error naming the thing, a
documented exit code, no traceback, and nothing already stored lost. A bad row never stops a build.

Every case starts from a copy of one small project whose store already holds answers (from the fake
OpenAI server), breaks one thing, runs one command, and checks what came out and what is left.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAI
from factory.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@dataclass
class Case:
    name: str
    args: list[str]
    code: int
    says: str  # the error line (or, for exit 0, the output) contains this
    setup: Callable[[Path], None] = lambda p: None


def _cfg(p: Path) -> dict:
    return yaml.safe_load((p / "factory.yaml").read_text())


def _write_cfg(p: Path, data: dict) -> None:
    (p / "factory.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(p: Path) -> None:
        data = _cfg(p)
        fn(data)
        _write_cfg(p, data)
    return setup


def _source(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    return _edit(lambda d: fn(d["sources"][0]))


def _file(rel: str, content: bytes | str, **source) -> Callable[[Path], None]:
    def setup(p: Path) -> None:
        path = p / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        data = _cfg(p)
        data["sources"][0] = {"name": "gsm8k_train", "path": rel, **source}
        _write_cfg(p, data)
    return setup


def _rows(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD = {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "#### 7"}
BUILD = ["build", "dataset"]


def _parquet(rel: str, columns: dict) -> Callable[[Path], None]:
    def setup(p: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        (p / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), p / rel)
        data = _cfg(p)
        data["sources"][0] = {"name": "gsm8k_train", "path": rel, "preset": "gsm8k"}
        _write_cfg(p, data)
    return setup


def _template(text: str) -> Callable[[Path], None]:
    def setup(p: Path) -> None:
        (p / "prompts" / "broken.jinja").write_text(text)
        _source(lambda s: s.update(template="broken.jinja"))(p)
    return setup


def _store_file(content: bytes) -> Callable[[Path], None]:
    def setup(p: Path) -> None:
        store = p / ".factory" / "factory.duckdb"
        for extra in store.parent.glob("factory.duckdb*"):
            extra.unlink()
        store.write_bytes(content)
    return setup


def _workdir_is_a_file(p: Path) -> None:
    _edit(lambda d: d.update(workdir="not_a_dir"))(p)
    (p / "not_a_dir").write_text("a file, not a folder")


CASES = [
    # the config file and --set
    Case("config missing", BUILD + ["-c", "nope.yaml"], 2, "nope.yaml: no such config file"),
    Case("invalid yaml", BUILD, 2, "invalid YAML", lambda p: (p / "factory.yaml").write_text("sources: [\n  - name: x\n")),
    Case("top-level not a mapping", BUILD, 2, "expected a mapping", lambda p: (p / "factory.yaml").write_text("- a\n- b\n")),
    Case("unknown key", BUILD + ["--set", "generation.bogus=1"], 2, "unknown key 'generation.bogus'"),
    Case("wrong type", BUILD + ["--set", "generation.max_tokens=lots"], 2, "generation.max_tokens"),
    Case("--set without =", BUILD + ["--set", "generation.max_tokens"], 2, "expected KEY=VALUE"),
    Case("--set past the list", BUILD + ["--set", "teachers.5.model=x"], 2, "teachers has no item 5"),
    Case("unknown backend", BUILD + ["--set", "teachers.0.backend=ollama"], 2, "teachers.0"),
    Case("out of range", BUILD + ["--set", "sources.0.limit=0"], 2, "sources.0.limit"),
    Case("duplicate teacher names", BUILD, 2, "teacher names must be unique",
         _edit(lambda d: d["teachers"].append(dict(d["teachers"][0])))),
    Case("two answer extractions", BUILD, 2, "choose one of",
         _source(lambda s: s.update(answer_boxed=True, answer_after="####"))),
    Case("a regex that does not compile", BUILD + ["--set", "sources.0.answer_regex=(unclosed"], 2,
         "not a regular expression"),
    Case("a judge that is no teacher", BUILD + ["--set", "filter.math.judge=nobody"], 2,
         "filter.math.judge: no teacher named 'nobody'"),
    # sources
    Case("source file missing", BUILD + ["--set", "sources.0.path=data/none.jsonl"], 2, "none.jsonl"),
    Case("source path is a folder of no data", BUILD + ["--set", "sources.0.path=prompts"], 2, "prompts"),
    Case("empty source file", BUILD, 2, "no seeds", _file("data/empty.jsonl", "", preset="gsm8k")),
    Case("a .json scalar", BUILD, 2, "scalar.json", _file("data/scalar.json", "42", preset="gsm8k")),
    Case("every row is bad JSON", BUILD, 2, "no seeds", _file("data/bad.jsonl", "{not json\n{nor this\n", preset="gsm8k")),
    Case("a column that does not exist", BUILD, 2, "'question'",
         _file("data/other.jsonl", _rows({"q": "What is 1+1?", "a": "2"}), preset="gsm8k")),
    Case("a jinja field naming a missing column", BUILD, 2, "Body",
         _file("data/split.jsonl", _rows({"Question": "What is 1+1?", "Answer": 2}),
               fields={"problem": "{{ Body }} {{ Question }}", "answer": "Answer"})),
    Case("a jinja syntax error in a field", BUILD, 2, "problem",
         _file("data/split.jsonl", _rows({"Question": "What is 1+1?", "Answer": 2}),
               fields={"problem": "{{ Question ", "answer": "Answer"})),
    Case("a corrupt parquet file", BUILD, 2, "broken.parquet",
         lambda p: _file("data/broken.parquet", b"PAR1 this is not parquet at all", preset="gsm8k")(p)),
    Case("parquet with another schema", BUILD, 2, "'question'",
         _parquet("data/other.parquet", {"text": ["What is 1+1?"], "label": ["2"]})),
    Case("unusable references", BUILD, 2, "unusable",
         _file("data/units.jsonl", _rows(*({"q": f"Problem {i}: how many apples?", "a": f"{i} (apples)"}
                                            for i in range(20))), fields={"problem": "q", "answer": "a"})),
    Case("a Hub dataset offline", BUILD + ["--set", "sources.0.path=no-such-user/no-such-set",
                                           "--set", "sources.0.format=hf"], 2, "no-such-user/no-such-set"),
    # templates
    Case("template not found", BUILD + ["--set", "sources.0.template=missing.jinja"], 2, "missing.jinja: template not found"),
    Case("template syntax error", BUILD, 2, "broken.jinja:1: syntax error", _template("{% if %}\n")),
    Case("template undefined variable", BUILD, 2, "undefined variable 'nope'", _template("{{ nope }}\n")),
    # teachers
    Case("api key variable unset", BUILD + ["--set", "teachers.0.api_key_env=FACTORY_NO_SUCH_KEY",
                                            "--set", "teachers.0.base_url=https://api.example.com/v1",
                                            "--set", "generation.samples_per_seed=3"], 2,
         "FACTORY_NO_SUCH_KEY"),
    Case("a model folder that does not exist", BUILD, 2, "/nowhere/model",
         _edit(lambda d: d.update(teachers=[{"name": "local", "backend": "local", "model": "/nowhere/model"}]))),
    Case("every request refused", BUILD + ["--set", "teachers.0.base_url=http://127.0.0.1:9/v1",
                                           "--set", "teachers.0.max_retries=0", "--set", "generation.samples_per_seed=3"],
         1, "of requests failed"),
    # the store and the project folder
    Case("workdir is a file", BUILD, 2, "not_a_dir", _workdir_is_a_file),
    Case("store is not a database", ["report"], 2, "cannot open the store", _store_file(b"garbage" * 500)),
    Case("store is a folder", BUILD, 2, "cannot open the store",
         lambda p: (shutil.rmtree(p / ".factory"), (p / ".factory" / "factory.duckdb").mkdir(parents=True))),
    Case("report before any build", ["report"], 2, "no store yet", lambda p: shutil.rmtree(p / ".factory")),
    Case("filter before any build", ["filter"], 2, "no build plan yet", lambda p: shutil.rmtree(p / ".factory")),
    Case("report of a version that does not exist", ["report", "--version", "7"], 2, "no version 7"),
    Case("export of a version that does not exist", ["export", "--version", "7"], 2, "7"),
    Case("publish without a repo", ["publish", "--dry-run"], 2, "publish.repo_id"),
    Case("init over a project", ["init", "."], 2, "already exists"),
    Case("eval on a benchmark file that is not there", ["eval", "--set", "eval.path=data/none.jsonl"], 2, "none.jsonl"),
    # a bad row never stops a build
    Case("a lone surrogate in one row", BUILD, 0, "skipped",
         _file("data/surrogate.jsonl", _rows(GOOD) + '{"question": "Bad \\ud83d row", "answer": "#### 1"}\n',
               preset="gsm8k")),
    Case("invalid UTF-8 in one row", BUILD, 0, "invalid UTF-8",
         _file("data/latin1.jsonl", _rows(GOOD).encode() + b'{"question": "caf\xe9 au lait?", "answer": "#### 2"}\n',
               preset="gsm8k")),
    Case("a gzip file that is cut off", BUILD, 2, "cut.jsonl.gz",
         _file("data/cut.jsonl.gz", gzip.compress(_rows(GOOD).encode() * 50)[:60], preset="gsm8k")),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A project whose store already holds answers: 3 GSM8K seeds x 2 samples from the fake server."""
    srv = FakeOpenAI(latency=0).start()
    os.environ["FACTORY_TEST_KEY"] = "sk-test"
    proj = tmp_path_factory.mktemp("base") / "proj"
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    data = _cfg(proj)
    data["sources"][0]["limit"] = 3
    data["teachers"] = [{"name": "api", "backend": "openai", "model": "fake", "base_url": srv.base_url,
                         "api_key_env": "FACTORY_TEST_KEY", "max_retries": 1}]
    data["generation"]["max_tokens"] = 64
    _write_cfg(proj, data)
    cwd = os.getcwd()
    os.chdir(proj)
    try:
        built = runner.invoke(app, BUILD)
    finally:
        os.chdir(cwd)
    assert built.exit_code == 0, built.output
    yield proj
    srv.stop()


def _answers(proj: Path) -> int:
    store = proj / ".factory" / "factory.duckdb"
    if not store.is_file():
        return -1
    try:
        con = duckdb.connect(str(store), read_only=True)
    except duckdb.Error:
        return -1
    try:
        return con.execute("SELECT count(*) FROM responses WHERE error IS NULL").fetchone()[0]
    finally:
        con.close()


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if "Hub" in c.name else c for c in CASES],
                         ids=[c.name for c in CASES])  # the Hub case waits out huggingface_hub's retries (~25 s)
def test_bad_input_is_one_line_with_its_exit_code(case: Case, base: Path, tmp_path: Path):
    proj = tmp_path / "proj"
    shutil.copytree(base, proj)
    case.setup(proj)
    before = _answers(proj)
    cwd = os.getcwd()
    os.chdir(proj)
    try:
        result = runner.invoke(app, case.args)
    finally:
        os.chdir(cwd)
    out = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{case.name}: {type(result.exception).__name__}: {result.exception}\n{out}")
    assert "Traceback" not in out, out
    assert result.exit_code == case.code, f"{case.name}: exit {result.exit_code}\n{out}"
    if case.code != 0:
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, f"{case.name}: want one error line\n{out}"
        assert case.says in errors[0], f"{case.name}: {errors[0]!r} does not name {case.says!r}"
    else:
        assert case.says in out, out
    after = _answers(proj)
    if before >= 0 and after >= 0:
        assert after >= before, f"{case.name}: stored answers went from {before} to {after}"


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_a_store_held_by_another_process_names_the_holder_and_can_be_waited_for(base: Path, tmp_path: Path):
    proj = tmp_path / "proj"
    shutil.copytree(base, proj)
    store = proj / ".factory" / "factory.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, duckdb; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.readline()", str(store)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (BUILD, ["report"], ["export"], ["filter"]):
            done = subprocess.run([sys.executable, "-m", "factory.cli", *args], cwd=proj, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 5, (args, done.stderr[-2000:])
            assert "Traceback" not in done.stderr and f"in use by pid {holder.pid}" in done.stderr, done.stderr
        # --wait: the command waits for the holder to let go, then runs
        waiting = subprocess.Popen([sys.executable, "-m", "factory.cli", "--wait", "60", "report"], cwd=proj,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        holder.stdin.write("\n")
        holder.stdin.flush()
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err[-2000:]
    finally:
        holder.kill()
    assert _answers(proj) == _answers(base)
