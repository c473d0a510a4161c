"""`factory eval`: pass@1 / pass@k on benchmark sets, with counts known by construction (the fake
OpenAI server answers right or wrong per item) and with the embedded model (counted here, from
the report's raw outputs, independently of factory.parse and math-verify)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import yaml
from support.fake_openai import FakeOpenAI
from rich.console import Console
from typer.testing import CliRunner

from factory.cli import app
from factory.config import load_config, shipped_root
from factory.train.eval import EvalError, evaluate, model_slug, pass_at_k, print_eval_table

ROOT = shipped_root()
GSM8K = ROOT / "data" / "benchmarks" / "gsm8k_test.jsonl"
HUMANEVAL = ROOT / "data" / "benchmarks" / "humaneval.jsonl.gz"
# few-shot: the embedded 135M model then answers in a few tokens, so its answers reach math-verify
SHORT_TEMPLATE = """Answer each question with one short sentence: "The answer is NUMBER."

Question: Tom has 3 apples and buys 2 more. How many apples does he have?
Answer: The answer is 5.

Question: {{ problem }}
Answer:
"""


def gsm8k_items(n: int) -> list[tuple[str, str]]:
    """(question, reference) of the first n GSM8K test items, read here without factory.sources."""
    rows = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()[:n]]
    return [(r["question"], r["answer"].rsplit("####", 1)[1].strip().replace(",", "")) for r in rows]


def make_cfg(tmp_path: Path, **eval_section):
    data = {"workdir": str(tmp_path / "work"), "prompts_dir": str(ROOT / "prompts"),
            "sources": [{"name": "unused", "path": "unused.jsonl"}], "eval": eval_section}
    cfg = load_config(data=data)
    cfg.base_dir = ROOT
    return cfg


def capture() -> Console:
    return Console(record=True, width=120, force_terminal=False)


@pytest.fixture
def server():
    with FakeOpenAI(latency=0) as srv:
        yield srv


def test_pass_at_k_estimator_matches_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c / n
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(5, 4, 2) == 1.0  # fewer wrong samples than k: a right one is always drawn
    assert pass_at_k(3, 0, 3) == 0.0
    assert pass_at_k(1, 1, 1) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_model_slug_is_a_short_safe_file_name():
    assert model_slug("embedded") == "embedded"
    assert model_slug("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB-SmolLM2-135M-Instruct"
    assert model_slug("/tmp/x/work/models/sft-v1/") == "models-sft-v1"
    assert model_slug("gpt 4o:mini") == "gpt-4o-mini"


def test_gsm8k_counts_known_by_construction_with_k3(tmp_path, server):
    items = gsm8k_items(5)

    def reply(n: int) -> str:
        return f"<think>\nstep by step\n</think>\nThe answer is \\boxed{{{n}}}."

    # correct samples of 3 per item: 3, 1, 0, 2, 0 (the last never states an answer)
    plans = [[1, 1, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1], None]
    replies = {}
    for (question, ref), plan in zip(items, plans):
        replies[question[:40]] = (["I am not sure about this one."] if plan is None else
                                  [reply(int(ref) if ok else int(ref) + 1) for ok in plan])
    server.configure(replies=replies)
    cfg = make_cfg(tmp_path, teacher={"backend": "openai", "base_url": server.base_url}, limit=5, samples=3,
                   generation={"temperature": 0.7})
    console = capture()
    [report] = evaluate(cfg, ["fake-model"], console=console)

    assert [it.correct for it in report.items] == [3, 1, 0, 2, 0]
    assert report.n_items == 5 and report.k == 3 and report.correct_samples == 6
    assert report.pass_at_1 == pytest.approx(6 / 15)
    # unbiased estimator by hand: item c=1 -> 1 - C(2,2)/C(3,2) = 2/3; c=2 and c=3 -> 1; c=0 -> 0
    assert report.pass_at[2] == pytest.approx((1 + 2 / 3 + 0 + 1 + 0) / 5, abs=1e-6)
    assert report.pass_at_k == pytest.approx(3 / 5)
    assert report.items[1].answers == [items[1][1], str(int(items[1][1]) + 1), str(int(items[1][1]) + 1)]
    assert report.items[1].reasons == ["passed", "wrong_answer", "wrong_answer"]
    assert report.items[4].reasons == ["no_answer"] * 3 and report.items[4].answers == [None] * 3
    assert report.items[0].id == "gsm8k_test/1" and report.items[0].reference == items[0][1]
    assert report.generation_errors == 0 and report.completion_tokens > 0

    # the JSON report: where the config says, with what the issue asks for
    path = Path(report.report_path)
    assert path.parent == tmp_path / "work" / "eval" and path.name.startswith("gsm8k_test-fake-model-")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["pass@1"] == pytest.approx(0.4) and data["pass@k"] == pytest.approx(0.6)
    assert data["model"] == "fake-model" and data["backend"] == "openai" and data["n_items"] == 5 and data["k"] == 3
    assert set(data["pass_at"]) == {"1", "2", "3"} and data["tokens"]["completion"] == report.completion_tokens
    assert data["sampling"] == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 512}  # eval.generation
    assert [it["correct"] for it in data["items"]] == [3, 1, 0, 2, 0] and data["wall_s"] > 0
    assert not (tmp_path / "work" / "factory.duckdb").exists()  # eval never touches the store
    print_eval_table([report], console)
    out = console.export_text()
    assert "5 items, k=3" in out and "pass@3" in out and "0.400" in out and "0.600" in out


def test_api_key_never_reaches_the_report_or_the_console(tmp_path, server, monkeypatch):
    secret = "sk-test-NEVER-STORE-7f3a9c"
    monkeypatch.setenv("FACTORY_EVAL_TEST_KEY", secret)
    bench = tmp_path / "mini.jsonl"
    # the second item makes the server answer 401 with the Authorization header in its message
    bench.write_text(json.dumps({"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}) + "\n"
                     + json.dumps({"question": "[[echo_auth]] What is 3+3?", "answer": "#### 6"}) + "\n")
    server.configure(replies={"What is 2+2?": ["The answer is \\boxed{4}."]})
    cfg = make_cfg(tmp_path, teacher={"backend": "openai", "base_url": server.base_url,
                                      "api_key_env": "FACTORY_EVAL_TEST_KEY"}, path=str(bench))
    console = capture()
    [report] = evaluate(cfg, ["fake-model"], console=console)
    print_eval_table([report], console)
    assert report.pass_at_1 == 0.5 and report.generation_errors == 1
    assert report.items[1].reasons == ["generation_error"] and "http_401" in report.items[1].details[0]
    text = Path(report.report_path).read_text(encoding="utf-8")
    assert secret not in text and secret not in console.export_text()
    assert "FACTORY_EVAL_TEST_KEY" not in text


def test_humaneval_canonical_and_broken_solutions_scored_by_the_sandbox(tmp_path, server):
    rows = [json.loads(line) for line in gzip.decompress(HUMANEVAL.read_bytes()).decode().splitlines()[:2]]

    def solution(code: str) -> str:
        return f"<think>\nplan the loops\n</think>\n```python\n{code}```"

    canonical = [solution(r["prompt"] + r["canonical_solution"]) for r in rows]
    broken = [solution(f"def {r['entry_point']}(*args):\n    return None\n") for r in rows]
    server.configure(replies={f"def {rows[0]['entry_point']}(": [canonical[0], broken[0]],
                              f"def {rows[1]['entry_point']}(": [broken[1], canonical[1]]})
    cfg = make_cfg(tmp_path, benchmark="humaneval", teacher={"backend": "openai", "base_url": server.base_url},
                   limit=2, samples=2, generation={"temperature": 0.8})
    [report] = evaluate(cfg, ["fake-coder"], console=capture())
    assert [it.id for it in report.items] == ["HumanEval/0", "HumanEval/1"]
    assert report.items[0].reasons == ["tests_passed", "tests_failed"]
    assert report.items[1].reasons == ["tests_failed", "tests_passed"]
    assert report.pass_at_1 == 0.5 and report.pass_at_k == 1.0
    assert report.items[0].reference is None and report.template == "code_cot.jinja"


def test_two_models_print_a_before_after_table_with_the_delta_via_the_cli(tmp_path, server):
    # "after-model" answers 18 to everything: right on the first item only; "before-model" never answers
    server.configure(replies={"after-model": ["<think>16 - 3 - 4 = 9, 9 * 2 = 18</think>\nThe answer is \\boxed{18}."]})
    config = tmp_path / "factory.yaml"
    config.write_text(yaml.safe_dump({
        "workdir": "work", "prompts_dir": str(ROOT / "prompts"), "sources": [{"name": "unused", "path": "x.jsonl"}],
        "filter": {"benchmarks": {"gsm8k_test": str(GSM8K)}},
        "eval": {"teacher": {"backend": "openai"}, "limit": 5}}))
    # the rest of the teacher through --set, as the README shows it
    result = CliRunner().invoke(app, ["eval", "-c", str(config), "--set", f"eval.teacher.base_url={server.base_url}",
                                      "--set", "eval.teacher.max_concurrency=4", "-m", "before-model", "-m", "after-model"])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("before", "after", "delta", "before-model", "after-model", "0.000", "0.200", "+0.200", "report ->"):
        assert text in out, text
    reports = sorted((tmp_path / "work" / "eval").glob("*.json"))
    assert [json.loads(p.read_text())["pass@1"] for p in reports] == [0.2, 0.0]  # after-model sorts first
    assert {json.loads(p.read_text())["model"] for p in reports} == {"before-model", "after-model"}


def test_bad_input_is_a_one_line_eval_error(tmp_path):
    cases = []
    cfg = make_cfg(tmp_path, path=str(tmp_path / "missing.jsonl"))
    cases.append((cfg, "eval.path: .*missing.jsonl: no such file"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    cases.append((make_cfg(tmp_path, path=str(empty)), "no usable items"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no answer here", "answer": "no marker"}\n{not json\n')
    cases.append((make_cfg(tmp_path, path=str(bad)), r"no usable items \(2 bad rows; first: bad.jsonl:1 field 'answer'"))
    cfg = make_cfg(tmp_path, benchmark="math500")
    cfg.filter.benchmarks.pop("math500")
    cases.append((cfg, "eval.path: no file for benchmark 'math500'"))
    # a remote endpoint without its key: said before any request goes out
    cases.append((make_cfg(tmp_path, teacher={"backend": "openai", "base_url": "https://api.example.invalid/v1",
                                              "api_key_env": "FACTORY_EVAL_UNSET_KEY"}, limit=1),
                  "environment variable FACTORY_EVAL_UNSET_KEY is not set"))
    cases.append((make_cfg(tmp_path), "no model to evaluate"))
    for cfg, pattern in cases:
        with pytest.raises(EvalError, match=pattern) as err:
            evaluate(cfg, [] if pattern.startswith("no model") else ["m"], console=capture())
        assert "\n" not in str(err.value)
    assert not (tmp_path / "work" / "eval").exists()  # nothing written for a failed run


def test_a_local_model_that_cannot_load_is_one_line(tmp_path):
    cfg = make_cfg(tmp_path, limit=2)
    with pytest.raises(EvalError, match=r"model .*no-such-model \(local\): model folder .*does not exist") as err:
        evaluate(cfg, [str(tmp_path / "no-such-model")], console=capture())
    assert "\n" not in str(err.value)


def final_number(output: str | None) -> str | None:
    """The test's own reading of a completion: the number after the last "answer is" (or in the
    last \\boxed{}), commas dropped."""
    if not output:
        return None
    found = re.findall(r"\\boxed\{\s*(-?[\d,]*\.?\d+)\s*\}", output) or re.findall(r"answer is\s*(-?[\d,]*\.?\d+)", output)
    return found[-1].replace(",", "") if found else None


@pytest.mark.slow
def test_embedded_model_pass_at_1_matches_a_count_made_here(tmp_path, embedded_model):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "short.jinja").write_text(SHORT_TEMPLATE, encoding="utf-8")
    cfg = make_cfg(tmp_path, limit=5, generation={"max_tokens": 24}, template="short.jinja")
    cfg.prompts_dir = str(prompts)
    cfg.filter.verify_workers = 1  # five answers: one math-verify worker is enough (and starts faster)
    [report] = evaluate(cfg, ["embedded"], console=capture())
    refs = [ref for _, ref in gsm8k_items(5)]
    outputs = [it.outputs[0] for it in report.items]
    assert all(outputs) and report.generation_errors == 0
    mine = [final_number(o) for o in outputs]
    count = sum(a is not None and float(a) == float(ref) for a, ref in zip(mine, refs))
    assert report.correct_samples == count and report.pass_at_1 == pytest.approx(count / 5)
    assert [it.correct for it in report.items] == [int(a is not None and float(a) == float(r)) for a, r in zip(mine, refs)]

    # once through the CLI: the same first items, written report, printed table
    config = tmp_path / "factory.yaml"
    config.write_text(yaml.safe_dump({"workdir": "cli", "prompts_dir": str(prompts), "sources": [{"name": "u", "path": "u"}],
                                      "filter": {"benchmarks": {"gsm8k_test": str(GSM8K)}, "verify_workers": 1},
                                      "eval": {"limit": 2, "generation": {"max_tokens": 12},
                                               "template": "short.jinja"}}))
    result = CliRunner().invoke(app, ["eval", "-c", str(config)])  # the model: train.model, "embedded"
    assert result.exit_code == 0, result.output
    assert "embedded" in result.output and "pass@1" in result.output
    [path] = (tmp_path / "cli" / "eval").glob("gsm8k_test-embedded-*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    mine = [final_number(it["outputs"][0]) for it in data["items"]]
    count = sum(a is not None and float(a) == float(ref) for a, ref in zip(mine, refs[:2]))
    assert data["n_items"] == 2 and data["pass@1"] == pytest.approx(count / 2)
