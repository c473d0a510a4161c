"""`factory train <method> --num-processes N`: the launch command, the CLI's re-launch, and a real
2-process data-parallel run on CPU (gloo) that must train exactly what one process trains on the same
global batch, with rank 0 alone writing the model and the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from factory.cli import app
from factory.config import load_config
from factory.train import launch
from factory.train.common import run_dir
from factory.train.launch import accelerate_command, is_main_process, world_size

SYSTEM = {"role": "system", "content": "Think step by step inside <think></think>, then give the answer."}


def conversation(a: int, b: int, answer: int | None = None) -> list[dict]:
    answer = a + b if answer is None else answer
    return [SYSTEM, {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"<think>\n{a} plus {b} makes {answer}.\n</think>\n\n"
                                             f"The final answer is $\\boxed{{{answer}}}$."}]


# lengths differ per row, so each process pads its half of the batch differently from one process
PAIRS = [(2, 3), (41, 1), (7, 5), (1234, 98765)]


def write_export(folder: Path) -> Path:
    import datasets

    (folder / "sft").mkdir(parents=True)
    datasets.Dataset.from_list([{"messages": conversation(a, b)} for a, b in PAIRS]).to_parquet(
        str(folder / "sft" / "train-00000.parquet"))
    (folder / "dpo").mkdir(parents=True)
    datasets.Dataset.from_list([{"prompt": conversation(a, b)[:2], "chosen": conversation(a, b)[2:],
                                 "rejected": conversation(a, b, a + b + 1)[2:]} for a, b in PAIRS]).to_parquet(
        str(folder / "dpo" / "train-00000.parquet"))
    return folder


def write_config(path: Path, workdir: Path, model: Path | str, data: Path | None, **train) -> Path:
    train = {"model": str(model), "max_steps": 4, "batch_size": 4, "learning_rate": 3e-2, "lr_scheduler": "constant",
             "warmup_ratio": 0.0, "logging_steps": 1, "max_length": 256, **train}
    if data is not None:
        train["data"] = str(data)
    path.write_text(yaml.safe_dump({"workdir": str(workdir), "sources": [], "train": train}), encoding="utf-8")
    return path


# -- the launch command and the process's rank (fast) -------------------------------------------------


def test_rank_and_world_size_come_from_the_launchers_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world_size() == 1 and is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert world_size() == 4 and not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_accelerate_command_without_a_config_is_ddp_on_one_machine():
    cmd = accelerate_command(["train", "sft", "-c", "my project.yaml"], 8)
    assert cmd[:4] == [sys.executable, "-m", "accelerate.commands.launch", "--quiet"]
    assert cmd[cmd.index("--num_processes") + 1] == "8" and "--multi_gpu" in cmd and "--config_file" not in cmd
    assert 1024 <= int(cmd[cmd.index("--main_process_port") + 1]) <= 65535  # a free port, not 29500 for all
    assert cmd[-6:] == ["-m", "factory.cli", "train", "sft", "-c", "my project.yaml"]  # one argument, spaces kept


def test_accelerate_command_with_a_config_file_leaves_the_setup_to_it(tmp_path):
    cmd = accelerate_command(["train", "dpo"], 2, tmp_path / "zero3.yaml")
    assert cmd[cmd.index("--config_file") + 1] == str(tmp_path / "zero3.yaml")
    assert "--multi_gpu" not in cmd and "--main_process_port" not in cmd and cmd[-4:] == ["-m", "factory.cli",
                                                                                          "train", "dpo"]


@pytest.mark.parametrize("name", ["zero2.yaml", "zero3.yaml", "fsdp.yaml"])
def test_shipped_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / name
    config = load_config_from_file(str(path))
    assert config.distributed_type.value in ("DEEPSPEED", "FSDP") and config.num_processes >= 2


@pytest.fixture
def relaunched(monkeypatch):
    calls = []

    def fake(args, num_processes, config_file=None):
        calls.append((args, num_processes, config_file))
        return 0

    monkeypatch.setattr(launch, "relaunch", fake)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return calls


def test_cli_relaunches_itself_with_the_same_command(relaunched, tmp_path):
    data = write_export(tmp_path / "export" / "v3")
    cfg = write_config(tmp_path / "p.yaml", tmp_path / "work", "embedded", data)
    result = CliRunner().invoke(app, ["train", "sft", "-c", str(cfg), "--set", "train.max_steps=2", "--set",
                                      "train.seed=7", "--num-processes", "2", "--push-to-hub"])
    assert result.exit_code == 0, result.output
    assert relaunched == [(["train", "sft", "-c", str(cfg), "--set", "train.max_steps=2", "--set", "train.seed=7",
                            "--push-to-hub"], 2, None)]


def test_cli_exit_status_is_the_launchers(relaunched, monkeypatch, tmp_path):
    monkeypatch.setattr(launch, "relaunch", lambda *a, **k: 1)
    cfg = write_config(tmp_path / "p.yaml", tmp_path / "work", "embedded", write_export(tmp_path / "e"))
    result = CliRunner().invoke(app, ["train", "dpo", "-c", str(cfg), "--num-processes", "2"])
    assert result.exit_code == 1


@pytest.mark.parametrize("case", ["missing_accelerate_config", "no_store", "zero_processes"])
def test_cli_refuses_before_launching_in_one_line(relaunched, tmp_path, case):
    cfg = write_config(tmp_path / "p.yaml", tmp_path / "work", "embedded",
                       None if case == "no_store" else write_export(tmp_path / "e"))
    extra = {"missing_accelerate_config": ["--accelerate-config", str(tmp_path / "nope.yaml")],
             "no_store": ["--num-processes", "2"], "zero_processes": ["--num-processes", "0"]}[case]
    result = CliRunner().invoke(app, ["train", "sft", "-c", str(cfg), *extra])
    assert result.exit_code == 2 and not relaunched
    if case != "zero_processes":  # (typer's own usage error)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
        assert ("nope.yaml" if case == "missing_accelerate_config" else "no store yet") in lines[0]


def test_cli_inside_a_launcher_does_not_launch_again(relaunched, monkeypatch, tmp_path):
    """`accelerate launch -m factory.cli train sft --num-processes 2`: already launched, so it trains here."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    import factory.train.sft as sft

    monkeypatch.setattr(sft, "train_sft", lambda cfg, console: (console.print("rank 1 says hi"), "summary")[1])
    cfg = write_config(tmp_path / "p.yaml", tmp_path / "work", "embedded", write_export(tmp_path / "e"))
    result = CliRunner().invoke(app, ["train", "sft", "-c", str(cfg), "--num-processes", "2", "--push-to-hub"])
    # rank 1 neither relaunches nor prints (its console is quiet) nor pushes (no hub_repo_id: would fail)
    assert result.exit_code == 0 and not relaunched and "rank 1" not in result.output, result.output


# -- a real 2-process run on CPU (slow) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(embedded_model, tmp_path_factory) -> Path:
    """A random 2-layer Llama with the embedded SmolLM2 tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(embedded_model)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return subprocess.run([sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_two_cpu_processes_train_what_one_process_trains(tiny_model, tmp_path):
    """2 processes x 2 rows = 1 process x 4 rows: the same global batch (all 4 rows every step), so the
    logged losses and the saved weights match; the loss falls; rank 0 alone prints and writes."""
    import torch
    from transformers import AutoModelForCausalLM

    from factory.train.sft import train_sft

    data = write_export(tmp_path / "export" / "v1")
    one_cfg = load_config(write_config(tmp_path / "one.yaml", tmp_path / "one", tiny_model, data))
    one = train_sft(one_cfg)

    two_yaml = write_config(tmp_path / "two.yaml", tmp_path / "two", tiny_model, data)
    result = run_cli("train", "sft", "-c", str(two_yaml), "--num-processes", "2", "--set", "train.batch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    out = run_dir(load_config(two_yaml), "sft", 1)
    two = json.loads((out / "summary.json").read_text())

    assert two["processes"] == 2 and two["steps"] == one.steps == 4
    assert two["tokens"] == one.tokens  # counted over both processes
    assert all(torch.isfinite(torch.tensor(two["losses"])))
    assert two["losses"] == pytest.approx(one.losses, rel=1e-4)
    assert two["losses"][-1] < two["losses"][0] - 1
    a, b = weights(one.output_dir), weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    model = AutoModelForCausalLM.from_pretrained(out)  # loads with plain transformers
    assert model.config.num_hidden_layers == 2
    assert result.stderr.count("train sft") == 1 and result.stderr.count("sft: ") == 1  # rank 0 prints, once
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("checkpoint")) == sorted(
        p.name for p in one.output_dir.iterdir() if not p.name.startswith("checkpoint"))


@pytest.mark.slow
def test_two_cpu_processes_dpo_saves_one_model(tiny_model, tmp_path):
    data = write_export(tmp_path / "export" / "v2")
    cfg = write_config(tmp_path / "dpo.yaml", tmp_path / "work", tiny_model, data, max_steps=2, batch_size=2)
    result = run_cli("train", "dpo", "-c", str(cfg), "--num-processes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    out = run_dir(load_config(cfg), "dpo", 2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2 and summary["extra"]["pairs"] == 4
    assert len(summary["losses"]) == 2 and all(x == x and abs(x) < 1e3 for x in summary["losses"])
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)
    assert result.stderr.count("train dpo") == 1


@pytest.mark.slow
def test_a_data_error_in_the_processes_is_their_one_line_error(tmp_path):
    """No dpo split: each process says so in one line and the launcher exits 1, with no Python traceback
    (rank 0 fails inside main_process_first but still releases the others from the barrier)."""
    import datasets

    (tmp_path / "e" / "sft").mkdir(parents=True)
    datasets.Dataset.from_list([{"messages": conversation(1, 2)}]).to_parquet(
        str(tmp_path / "e" / "sft" / "train-00000.parquet"))
    cfg = write_config(tmp_path / "p.yaml", tmp_path / "work", "embedded", tmp_path / "e")
    result = run_cli("train", "dpo", "-c", str(cfg), "--num-processes", "2", timeout=300)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and all("no dpo rows" in line for line in errors), result.stderr[-3000:]
    assert "Traceback (most recent call last)" not in result.stderr and "Connection closed" not in result.stderr


# -- who writes: finish() with fake trainers (fast) ------------------------------------------------------


class FakeAccelerator:
    def __init__(self, processes: int, main: bool, kind: str = "MULTI_GPU"):
        from accelerate.utils import DistributedType

        self.num_processes, self.is_main_process = processes, main
        self.distributed_type = DistributedType(kind)
        self.barriers = 0

    def wait_for_everyone(self):
        self.barriers += 1

    def unwrap_model(self, model):
        return model


class FakeModel:
    def save_pretrained(self, folder, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_text("weights")


class FakeTrainer:
    def __init__(self, accelerator):
        from types import SimpleNamespace

        self.accelerator, self.model, self.saved = accelerator, FakeModel(), []
        self.processing_class = FakeModel()
        self.state = SimpleNamespace(global_step=3, log_history=[{"loss": 2.0}, {"loss": 1.0}, {"train_loss": 1.5}])

    def save_model(self, folder):  # the Trainer's own: gathers shards, writes on the main process
        self.saved.append(folder)
        if self.accelerator.is_main_process:
            self.model.save_pretrained(folder)


@pytest.mark.parametrize("main", [True, False])
@pytest.mark.parametrize("kind", ["MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED"])
def test_only_the_main_process_writes_and_everyone_waits(tmp_path, main, kind):
    from types import SimpleNamespace

    from factory.train.common import finish

    cfg = load_config(data={"workdir": str(tmp_path), "sources": []})
    trainer = FakeTrainer(FakeAccelerator(2, main, kind))
    out = tmp_path / "sft-v1"
    summary = finish(trainer, cfg, "sft", "m", "d", 1, out, SimpleNamespace(tokens=10, runtime_s=1.0, tokens_per_s=10.0))
    assert summary.processes == 2 and summary.losses == [2.0, 1.0] and trainer.accelerator.barriers == 1
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert written == (["model.safetensors", "summary.json", "train.yaml"] if main else [])
    # sharded weights are gathered by every process through the Trainer; DDP needs no collective
    assert trainer.saved == ([str(out)] if kind in ("FSDP", "DEEPSPEED") else [])
    if main:
        assert json.loads((out / "summary.json").read_text())["processes"] == 2


def test_one_process_fsdp_still_saves_through_the_trainer(tmp_path):
    from types import SimpleNamespace

    from factory.train.common import finish

    cfg = load_config(data={"workdir": str(tmp_path), "sources": []})
    trainer = FakeTrainer(FakeAccelerator(1, True, "FSDP"))
    finish(trainer, cfg, "sft", "m", "d", 1, tmp_path / "o", SimpleNamespace(tokens=1, runtime_s=1.0, tokens_per_s=1.0))
    assert trainer.saved == [str(tmp_path / "o")] and (tmp_path / "o" / "summary.json").exists()
