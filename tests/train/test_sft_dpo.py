"""`factory train sft | dpo` end to end on CPU: a tiny random Llama with the embedded model's tokenizer
trains through the library entry points and the CLI, saves, and reloads with plain transformers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from factory.config import load_config
from factory.train.common import TrainError, load_split, push_model, run_dir
from factory.train.dpo import train_dpo
from factory.train.sft import build_trainer, prompt_completion, train_sft

SYSTEM = {"role": "system", "content": "Think step by step inside <think></think>, then give the answer."}
SECRET = "hf_secret_token_that_must_not_leak"


def conversation(a: int, b: int, answer: int | None = None) -> list[dict]:
    answer = a + b if answer is None else answer
    return [SYSTEM, {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"<think>\n{a} plus {b} makes {answer}.\n</think>\n\n"
                                             f"The final answer is $\\boxed{{{answer}}}$."}]


def write_export(folder: Path, sft: list[dict] | None, dpo: list[dict] | None) -> Path:
    """An export folder in the layout factory.export writes (<dir>/sft/train-00000.parquet, dpo/...)."""
    import datasets

    for name, rows in (("sft", sft), ("dpo", dpo)):
        if rows:
            (folder / name).mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows).to_parquet(str(folder / name / "train-00000.parquet"))
    return folder


PAIRS = [(2, 3), (4, 1), (7, 5), (6, 6)]
SFT_ROWS = [{"messages": conversation(a, b), "seed_id": f"s{a}{b}", "verified": True} for a, b in PAIRS]
DPO_ROWS = [{"prompt": conversation(a, b)[:2], "chosen": conversation(a, b)[2:],
             "rejected": conversation(a, b, a + b + 1)[2:], "seed_id": f"s{a}{b}"} for a, b in PAIRS]


@pytest.fixture(scope="module")
def tiny_model(embedded_model, tmp_path_factory) -> Path:
    """A random Llama of ~0.8M parameters (almost all of it the tied 49k x 16 embedding) with the embedded
    SmolLM2 tokenizer and chat template."""
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


@pytest.fixture
def export(tmp_path) -> Path:
    return write_export(tmp_path / "export" / "v1", SFT_ROWS, DPO_ROWS)


def config(tmp_path: Path, model: Path, data: Path | None, **train) -> object:
    train = {"model": str(model), "max_steps": 1, "batch_size": 4, "learning_rate": 1e-2, "lr_scheduler": "constant",
             "warmup_ratio": 0.0, "logging_steps": 1, "max_length": 256, **train}
    if data is not None:
        train["data"] = str(data)
    return load_config(data={"workdir": str(tmp_path / "work"), "sources": [], "train": train})


def state(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def reload_and_generate(folder: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tok.apply_chat_template(conversation(2, 3)[:2], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_sft_overfits_saves_and_reloads(tiny_model, export, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    cfg = config(tmp_path, tiny_model, export, max_steps=8, batch_size=2, learning_rate=3e-2)
    before = state(tiny_model)
    console = io.StringIO()
    summary = train_sft(cfg, console=Console(file=console))

    out = run_dir(cfg, "sft", 1)
    assert summary.output_dir == out and out.name == "sft-v1" and summary.version == 1
    assert summary.steps == 8 and summary.method == "sft" and summary.device == "cpu"
    assert summary.tokens == 8 * 2 * 69  # 2 conversations of 69 tokens per step (padding not counted)
    assert summary.tokens_per_s > 0 and summary.runtime_s > 0
    assert summary.extra["rows"] == 4
    # parameters changed and the loss on this tiny set fell from ~ln(49152) = 10.8
    after = state(out)
    assert any(not (before[k] == after[k]).all() for k in before)
    first = json.loads((out / "summary.json").read_text())
    assert first["steps"] == 8 and first["final_loss"] == summary.final_loss and len(summary.losses) == 8
    assert summary.losses[0] > 10 and summary.final_loss < summary.losses[0] - 2
    assert reload_and_generate(out)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train.yaml",
                 "summary.json"):
        assert (out / name).exists(), name
    assert load_config(data=yaml.safe_load((out / "train.yaml").read_text())).train.max_steps == 8
    # TRL's own log lines carry the loss; the secret reaches no file and no output
    printed = capsys.readouterr()
    assert "'loss'" in printed.out + printed.err
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert "sft: " in console.getvalue() and SECRET not in printed.out + printed.err + console.getvalue()


def test_sft_puts_no_loss_on_prompt_tokens(tiny_model, export, tmp_path):
    """Every label over the prompt (system + user + the assistant header) is -100; the assistant's reply and
    its end-of-turn token are trained."""
    from transformers import AutoTokenizer

    cfg = config(tmp_path, tiny_model, export)
    rows, data, _ = load_split(cfg, "sft")
    trainer = build_trainer(cfg, prompt_completion(rows, data), run_dir(cfg, "sft", 1))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    examples = [trainer.train_dataset[i] for i in range(len(SFT_ROWS))]
    batch = trainer.data_collator(examples)
    assert batch["labels"].shape == batch["input_ids"].shape
    for i, row in enumerate(SFT_ROWS):
        prompt_len = len(tok.apply_chat_template(row["messages"][:-1], add_generation_prompt=True,
                                                 return_dict=True)["input_ids"])
        length = int(batch["attention_mask"][i].sum())
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        assert (labels[:prompt_len] == -100).all()
        assert (labels[prompt_len:length] == ids[prompt_len:length]).all()
        assert (labels[length:] == -100).all()  # padding
        trained = tok.decode(labels[prompt_len:length])
        assert trained.startswith(row["messages"][-1]["content"]) and "<|im_end|>" in trained
        assert "What is" not in trained and "system" not in trained


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_sft_lora_saves_adapter_and_a_merged_model(tiny_model, export, tmp_path):
    cfg = config(tmp_path, tiny_model, export, max_steps=3,
                 lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0})
    summary = train_sft(cfg, console=Console(quiet=True))
    out = summary.output_dir
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and (out / "adapter" / "adapter_model.safetensors").exists()
    merged, base = state(out), state(tiny_model)
    assert set(merged) == set(base)  # plain weights, no lora_A / lora_B left
    assert any(not (base[k] == merged[k]).all() for k in base)  # the adapter was merged in
    assert reload_and_generate(out)


@pytest.mark.slow
def test_dpo_prefers_the_verified_trace_and_reloads(tiny_model, export, tmp_path):
    cfg = config(tmp_path, tiny_model, export, max_steps=5, batch_size=2, learning_rate=2e-2, dpo={"beta": 0.5})
    summary = train_dpo(cfg, console=Console(quiet=True))
    out = run_dir(cfg, "dpo", 1)
    assert summary.output_dir == out and summary.steps == 5 and summary.extra["pairs"] == 4
    assert 5 * 2 * 2 * 60 < summary.tokens < 5 * 2 * 2 * 80  # prompt + chosen, prompt + rejected: 2 pairs a step
    before, after = state(tiny_model), state(out)
    assert any(not (before[k] == after[k]).all() for k in before)
    # DPO's loss starts at ln 2 (policy == reference) and falls as the chosen trace wins
    assert summary.losses[0] == pytest.approx(0.6931, abs=1e-3) and summary.final_loss < 0.5
    assert reload_and_generate(out)


@pytest.mark.slow
def test_dpo_with_an_explicit_reference_model_and_lora(tiny_model, export, tmp_path):
    cfg = config(tmp_path, tiny_model, export, max_steps=2, lora={"enabled": True, "r": 2},
                 dpo={"ref_model": str(tiny_model), "loss_type": "sigmoid,sft"})
    summary = train_dpo(cfg, console=Console(quiet=True))
    assert summary.extra["ref_model"] == str(tiny_model) and (summary.output_dir / "adapter").is_dir()
    assert reload_and_generate(summary.output_dir)


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_bad_input_is_a_one_line_error(tiny_model, tmp_path):
    only_sft = write_export(tmp_path / "export" / "v3", SFT_ROWS, None)
    with pytest.raises(TrainError, match=r"no dpo rows in v3 .*needs seeds with both a verified and a failed trace"):
        train_dpo(config(tmp_path, tiny_model, only_sft))
    bad = write_export(tmp_path / "bad", [{"messages": conversation(1, 1)[:2]}], None)
    with pytest.raises(TrainError, match=r"bad/sft row 0: messages: .*final assistant message"):
        train_sft(config(tmp_path, tiny_model, bad))
    with pytest.raises(TrainError, match="train.data: .* is not a folder"):
        train_sft(config(tmp_path, tiny_model, tmp_path / "nowhere"))
    with pytest.raises(TrainError, match=r"cannot load model '.*/no-model': model folder .* does not exist"):
        train_sft(config(tmp_path, tmp_path / "no-model", only_sft))
    with pytest.raises(TrainError, match="no store yet"):
        train_sft(config(tmp_path, tiny_model, None))
    with pytest.raises(TrainError, match="train.padding_free needs train.packing"):
        train_sft(config(tmp_path, tiny_model, only_sft, padding_free=True))
    with pytest.raises(TrainError, match="train.dpo.loss_type: Unknown loss type: nonsense"):
        train_dpo(config(tmp_path, tiny_model, write_export(tmp_path / "d", None, DPO_ROWS),
                         dpo={"loss_type": "nonsense"}))


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_sft_packing_is_padding_free(tiny_model, export, tmp_path):
    cfg = config(tmp_path, tiny_model, export, packing=True, max_length=128)
    rows, data, _ = load_split(cfg, "sft")
    trainer = build_trainer(cfg, prompt_completion(rows, data), run_dir(cfg, "sft", 1))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # one flat sequence
    assert (batch["position_ids"] == 0).sum() == len(SFT_ROWS)  # four conversations, positions restart
    summary = train_sft(cfg, console=Console(quiet=True))
    assert summary.steps == 1 and summary.extra["packing"]


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_chat_template_file_overrides_the_tokenizers(tiny_model, export, tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}### {{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                        "{% if add_generation_prompt %}### assistant\n{% endif %}")
    cfg = config(tmp_path, tiny_model, export, chat_template=str(template))
    summary = train_sft(cfg, console=Console(quiet=True))
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(summary.output_dir)
    assert saved.chat_template == template.read_text()  # the saved model carries the template it learnt
    rendered = saved.apply_chat_template(conversation(1, 2)[:2], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("### assistant\n")


class ScriptedTeacher:
    """Sample 0 of each seed answers right, sample 1 wrong: one verified and one failed trace per seed."""

    name, model = "scripted", "scripted-model"

    def generate(self, requests):
        from factory.records import Response

        for r in requests:
            a, b = (int(w) for w in r.messages[-1]["content"].split("What is ")[1].split("?")[0].split(" plus "))
            answer = a + b + r.sample_index
            text = (f"<think>First I take {a}, then I add {b} to it, which gives {answer} in total "
                    f"(sample {r.sample_index}).</think>\n\nThe answer is \\boxed{{{answer}}}.")
            yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason="stop", completion_tokens=30)


@pytest.mark.slow
def test_trains_the_latest_version_exporting_it_first(tiny_model, tmp_path):
    """No train.data: the latest version of a real store (build + filter) is exported, then trained on."""
    from factory.build import build_dataset
    from factory.filter import run_filter

    root = Path(__file__).resolve().parents[2]
    import shutil

    shutil.copytree(root / "prompts", tmp_path / "prompts")
    shutil.copytree(root / "filters", tmp_path / "filters")
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps({"question": f"What is {a} plus {b}?",
                                                              "answer": f"#### {a + b}"}) + "\n" for a, b in PAIRS))
    cfg = load_config(data={"sources": [{"name": "sums", "path": str(tmp_path / "seeds.jsonl"), "preset": "gsm8k"}],
                            "teachers": [{"name": "scripted", "backend": "openai", "model": "scripted-model"}],
                            "workdir": str(tmp_path / "work"), "prompts_dir": str(tmp_path / "prompts"),
                            "filter": {"benchmarks": {}},
                            "train": {"model": str(tiny_model), "max_steps": 2, "batch_size": 2, "max_length": 256}})
    build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": ScriptedTeacher()})
    version = run_filter(cfg, console=Console(quiet=True)).version
    export = tmp_path / "work" / "export" / f"v{version}"
    assert not export.exists()
    sft = train_sft(cfg, console=Console(quiet=True))
    assert export.is_dir() and sft.version == version and sft.data == str(export) and sft.extra["rows"] == 4
    dpo = train_dpo(cfg, console=Console(quiet=True))
    assert dpo.extra["pairs"] == 4 and dpo.output_dir.name == f"dpo-v{version}"
    with pytest.raises(TrainError, match="train.version: no version 9"):
        train_sft(load_config(data={**cfg.model_dump(mode="json"), "train": {"version": 9}}))


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_cli_trains_prints_the_summary_and_pushes(tiny_model, export, tmp_path, monkeypatch, fake_hub):
    from factory.cli import app
    from factory.train.common import TrainSummary

    monkeypatch.setenv("HF_TOKEN", SECRET)
    fake_hub.tokens = {SECRET}
    (tmp_path / "factory.yaml").write_text(f"sources: []\nworkdir: work\ntrain:\n  model: {tiny_model}\n"
                                           f"  data: {export}\n  batch_size: 2\n  max_length: 256\n")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "sft", "-c", str(tmp_path / "factory.yaml"), "--set", "train.max_steps=2",
                                 "--set", "train.hub_repo_id=tester/tiny-sft", "--push-to-hub"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "work" / "models" / "sft-v1"
    for text in ("train sft", "steps", "tokens/s", "final loss", f"saved -> {out}",
                 f"pushed -> {fake_hub.url}/tester/tiny-sft"):
        assert text in result.output, text
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    # one commit with the model, tokenizer, config and summary; private; the token only in the Authorization header
    repo = fake_hub.repos["tester/tiny-sft"]
    assert repo.private and len(fake_hub.commits("tester/tiny-sft")) == 1
    assert {"config.json", "model.safetensors", "tokenizer.json", "train.yaml", "summary.json"} <= set(repo.files)
    assert repo.files["model.safetensors"] == (out / "model.safetensors").read_bytes()
    writes = [c for c in fake_hub.calls if c.method == "POST"]
    assert writes and all(c.token == SECRET for c in writes)
    assert SECRET not in result.output and not any(SECRET.encode() in data for data in repo.files.values())

    fake_hub.fail("POST", "/preupload/", 403, "no write access")
    summary = TrainSummary(**{**json.loads((out / "summary.json").read_text()), "output_dir": out})
    with pytest.raises(TrainError, match=r"^push to tester/tiny-sft failed: .*403") as err:
        push_model(load_config(tmp_path / "factory.yaml", ["train.hub_repo_id=tester/tiny-sft"]), summary)
    assert "\n" not in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(TrainError, match="--push-to-hub needs train.hub_repo_id"):
        push_model(load_config(tmp_path / "factory.yaml"), summary)

    bad = runner.invoke(app, ["train", "dpo", "-c", str(tmp_path / "factory.yaml"), "--set", "train.bogus=1"])
    # one line (rich wraps it at CliRunner's 80 columns)
    assert bad.exit_code == 2 and bad.output.replace("\n", "").endswith("unknown key 'train.bogus'")
    only_sft = write_export(tmp_path / "v7", SFT_ROWS, None)
    empty = runner.invoke(app, ["train", "dpo", "-c", str(tmp_path / "factory.yaml"), "--set", f"train.data={only_sft}"])
    assert empty.exit_code == 2 and "no dpo rows in v7" in empty.output.replace("\n", "")


@pytest.mark.slow
def test_sft_of_the_embedded_smollm2_on_a_demo_corpus(embedded_model, tmp_path):
    """The real 135M student: two steps on two conversations lower its loss on them (1.99 -> 0.75)."""
    rows = [{"messages": conversation(a, b)} for a, b in [(12, 30), (7, 8)]]
    data = write_export(tmp_path / "export" / "v1", rows, None)
    cfg = config(tmp_path, "embedded", data, max_steps=2, batch_size=2, learning_rate=1e-4, max_length=128)
    summary = train_sft(cfg, console=Console(quiet=True))
    assert summary.steps == 2 and summary.tokens == 2 * 144  # two conversations of 72 tokens a step
    assert summary.losses[-1] < summary.losses[0]
    assert reload_and_generate(summary.output_dir)
