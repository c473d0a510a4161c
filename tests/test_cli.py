import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from factory.cli import app

runner = CliRunner()


def test_help_is_fast_and_lists_commands():
    # heavy imports (torch, transformers) happen only inside the commands that need them
    out = subprocess.run([sys.executable, "-c", "import sys, factory.cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "build" in result.output and "init" in result.output


def test_init_scaffolds_a_project_that_validates(tmp_path: Path):
    result = runner.invoke(app, ["init", str(tmp_path / "proj")])
    assert result.exit_code == 0, result.output
    proj = tmp_path / "proj"
    for rel in ("factory.yaml", "prompts/math_cot.jinja", "prompts/code_cot.jinja", "filters",
                "data/gsm8k_train_sample.jsonl", "data/LICENSES.md", "data/benchmarks/gsm8k_test.jsonl",
                "filters/quality.sql", "configs/accelerate/zero3.yaml"):
        assert (proj / rel).exists(), rel
    from factory.config import load_config

    cfg = load_config(proj / "factory.yaml")
    assert cfg.teachers[0].backend == "local" and cfg.sources[0].preset == "gsm8k"
    again = runner.invoke(app, ["init", str(proj)])
    assert again.exit_code != 0 and "already exists" in again.output


def test_config_errors_exit_2_with_one_line(tmp_path: Path):
    runner.invoke(app, ["init", str(tmp_path)])
    result = runner.invoke(app, ["build", "dataset", "-c", str(tmp_path / "factory.yaml"), "--set", "generation.bogus=1"])
    assert result.exit_code == 2
    assert "unknown key 'generation.bogus'" in result.output


def test_filter_before_any_build_is_one_line_exit_2(tmp_path: Path):
    runner.invoke(app, ["init", str(tmp_path)])
    result = runner.invoke(app, ["filter", "-c", str(tmp_path / "factory.yaml")])
    assert result.exit_code == 2, result.output
    assert "no build plan yet (run `factory build dataset` first)" in " ".join(result.output.split())
    assert "Traceback" not in result.output
