"""`factory eval -m before -m after`: pass@1 and pass@k side by side, and a warning when pass@k falls
while pass@1 rises (the trained model's samples collapsed onto fewer solutions). Counts are known by
construction: the fake OpenAI server answers each model with fixed choices."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from rich.console import Console
from support.fake_openai import FakeOpenAI
from typer.testing import CliRunner

from factory.cli import app
from factory.config import shipped_root
from factory.train.eval import EvalReport, collapse_warnings, comparison, comparison_markdown, print_eval_table

ROOT = shipped_root()
GSM8K = ROOT / "data" / "benchmarks" / "gsm8k_test.jsonl"


def report(model: str, p1: float, pk: float, k: int = 4) -> EvalReport:
    return EvalReport(model=model, backend="openai", benchmark="gsm8k_test", path="x", template="t", n_items=10, k=k,
                      sampling={}, pass_at_1=p1, pass_at_k=pk, pass_at={1: p1, k: pk}, correct_samples=0,
                      generation_errors=0, skipped_rows=0, prompt_tokens=0, completion_tokens=0, wall_s=0.0,
                      created_at="", report_path=f"{model}.json")


@pytest.mark.parametrize("before, after, warns", [
    ((0.25, 1.0), (0.5, 0.5), True),  # the collapse: surer, and right on fewer items
    ((0.25, 0.6), (0.5, 0.7), False),  # both rose: training helped
    ((0.5, 0.8), (0.4, 0.7), False),  # both fell: worse, not a collapse
    ((0.5, 0.8), (0.5, 0.6), False),  # pass@1 unchanged
    ((0.3, 0.8), (0.4, 0.8), False),  # pass@k unchanged
])
def test_collapse_is_pass_at_k_falling_while_pass_at_1_rises(before, after, warns):
    lines = collapse_warnings([report("base", *before), report("sft", *after)])
    assert bool(lines) == warns
    if warns:
        assert lines == ["sft: pass@4 fell 1.000 -> 0.500 while pass@1 rose 0.250 -> 0.500 against base: its samples "
                         "collapsed onto fewer solutions (diversity collapse)"]


def test_every_later_model_is_compared_with_the_first_and_k1_has_nothing_to_compare():
    reports = [report("base", 0.3, 0.9), report("sft", 0.35, 0.92), report("dpo", 0.5, 0.7)]
    assert [w.split(":")[0] for w in collapse_warnings(reports)] == ["dpo"]
    data = comparison(reports)
    assert data["before"] == "base" and [m["model"] for m in data["models"]] == ["base", "sft", "dpo"]
    assert data["models"][2]["delta_pass@1"] == pytest.approx(0.2) and data["models"][2]["delta_pass@k"] == pytest.approx(-0.2)
    md = comparison_markdown(data)
    assert "| dpo | 0.500 | 0.700 | +0.200 | -0.200 |" in md and "> **warning** dpo: pass@4 fell" in md
    assert collapse_warnings([replace(r, k=1) for r in reports]) == []
    console = Console(record=True, width=200)
    print_eval_table([replace(r, k=1, pass_at_k=r.pass_at_1) for r in reports[:2]], console)
    assert "no pass@k to compare" in console.export_text()
    assert collapse_warnings(reports[:1]) == []


def test_two_models_via_the_cli_show_both_figures_and_warn_of_the_collapse(tmp_path):
    items = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()[:2]]
    refs = [int(r["answer"].rsplit("####", 1)[1].strip().replace(",", "")) for r in items]

    def box(n: int) -> str:
        return f"<think>work it out</think>\nThe answer is \\boxed{{{n}}}."

    # before: sample 0 right on item 0, sample 1 right on item 1 -> pass@1 2/8, pass@4 1.0
    # after: always the first item's answer -> item 0 4/4, item 1 0/4 -> pass@1 0.5, pass@4 0.5
    replies = {"before-model": [box(refs[0]), box(refs[1]), box(-1), box(-2)], "after-model": [box(refs[0])]}
    config = tmp_path / "factory.yaml"
    with FakeOpenAI(latency=0) as server:
        server.configure(replies=replies)
        config.write_text(yaml.safe_dump({
            "workdir": "work", "prompts_dir": str(ROOT / "prompts"), "sources": [{"name": "unused", "path": "x.jsonl"}],
            "filter": {"benchmarks": {"gsm8k_test": str(GSM8K)}, "verify_workers": 1},
            "eval": {"teacher": {"backend": "openai", "base_url": server.base_url}, "limit": 2, "samples": 4,
                     "generation": {"temperature": 0.8}}}))
        result = CliRunner().invoke(app, ["eval", "-c", str(config), "-m", "before-model", "-m", "after-model"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    for text in ("pass@1", "pass@4", "0.250", "1.000", "0.500", "+0.250", "-0.500",
                 "warning after-model: pass@4 fell 1.000 -> 0.500 while pass@1 rose 0.250 -> 0.500", "comparison ->"):
        assert text in out, text
    [path] = (tmp_path / "work" / "eval" / "comparisons").glob("*.json")
    data = json.loads(path.read_text())
    assert [(m["model"], m["pass@1"], m["pass@k"]) for m in data["models"]] == [
        ("before-model", 0.25, 1.0), ("after-model", 0.5, 0.5)]
    assert data["k"] == 4 and len(data["warnings"]) == 1
    md = path.with_suffix(".md").read_text()
    assert "| after-model | 0.500 | 0.500 | +0.250 | -0.500 |" in md and "**warning** after-model" in md
    # the per-model reports are where they were, one per model
    assert len(list((tmp_path / "work" / "eval").glob("*.json"))) == 2
