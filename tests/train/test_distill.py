"""`factory train distill`: the top-k + tail divergence against hand computations and a toy teacher,
soft labels written by the real embedded teacher, both modes end to end on a tiny random Llama that
shares the embedded model's tokenizer, and the refusal of a student with another tokenizer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from factory.config import load_config
from factory.train.common import TrainError
from factory.train.distill import SoftLabelCollator, _StringIds, soft_label_row, topk_divergence, trl_beta

torch = pytest.importorskip("torch")

SECRET = "hf_distill_secret_do_not_leak_42"


# -- the loss --------------------------------------------------------------------------------------------


def buckets(probs: list[float], ids: list[int]) -> list[float]:
    return [probs[i] for i in ids] + [1 - sum(probs[i] for i in ids)]


def temper(p: list[float], t: float) -> list[float]:
    w = [x ** (1 / t) for x in p]
    return [x / sum(w) for x in w]


def kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_divergence_equals_a_hand_computation_on_four_tokens(temperature):
    logits = [2.0, 1.0, 0.0, -1.0]
    student = [math.exp(z) / sum(math.exp(y) for y in logits) for z in logits]
    s = temper(buckets(student, [0, 2]), temperature)  # tokens 0 and 2, then the tail (tokens 1 and 3)
    t = temper([0.5, 0.3, 0.2], temperature)  # the teacher's top-2 and its tail bucket
    m = [(a + b) / 2 for a, b in zip(s, t)]
    want = {0.0: kl(t, s), 1.0: kl(s, t), 0.5: 0.5 * kl(t, m) + 0.5 * kl(s, m)}
    args = torch.tensor([logits]), torch.tensor([[0, 2]]), torch.tensor([[math.log(0.5), math.log(0.3)]])
    for beta, value in want.items():
        got = topk_divergence(*args, beta=beta, temperature=temperature)
        assert got.shape == (1,)
        assert got.item() == pytest.approx(value * temperature**2, rel=1e-5)


def test_loss_names_map_onto_trl_beta():
    from factory.config import DistillSection

    assert trl_beta(DistillSection(loss="forward_kl")) == 0.0
    assert trl_beta(DistillSection(loss="reverse_kl")) == 1.0
    assert trl_beta(DistillSection(loss="jsd", jsd_beta=0.3)) == 0.3


@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_student_moves_towards_a_known_teacher_distribution(beta):
    """A free student over 8 tokens learns the teacher's top-3 + tail; the second row's top-k is padded."""
    teacher = {3: 0.5, 1: 0.25, 6: 0.15}  # the tail holds 0.1
    top_ids = torch.tensor([[3, 1, 6], [3, 1, 3]])  # row 2: top-2 only (a padded slot repeats a real id)
    top_lps = torch.tensor([[math.log(p) for p in teacher.values()], [math.log(0.5), math.log(0.25), -math.inf]])
    logits = torch.zeros(2, 8, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    losses = []
    for _ in range(100):
        loss = topk_divergence(logits, top_ids, top_lps, beta=beta, temperature=1.0).mean()
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(logits.grad).all()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 50 and losses[-1] < 1e-3
    probs = torch.softmax(logits.detach(), -1)
    for token, p in teacher.items():
        assert probs[0, token].item() == pytest.approx(p, abs=0.02)
    assert probs[1, 3].item() == pytest.approx(0.5, abs=0.02) and probs[1, 1].item() == pytest.approx(0.25, abs=0.02)


# -- rows and batches ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(embedded_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


def test_rows_align_completion_ids_after_the_chat_templated_prompt_and_the_collator_pads(tokenizer):
    prompt = [{"role": "user", "content": "What is 2 plus 3?"}]
    ids = tokenizer.encode(" The answer is 5.", add_special_tokens=False)
    tokens = [tokenizer.decode([i]) for i in ids]
    row = {"prompt": prompt, "tokens": tokens, "token_ids": ids, "top_ids": [[i, 0] for i in ids],
           "top_tokens": [[t, "x"] for t in tokens], "top_logprobs": [[-0.1, -3.0] for _ in ids]}
    f = soft_label_row(row, tokenizer, _StringIds(tokenizer), max_length=512)
    n = len(f["input_ids"]) - len(ids)
    assert f["input_ids"][n:] == ids and f["labels"] == [-100] * n + ids
    text = tokenizer.decode(f["input_ids"][:n])
    assert text.endswith("<|im_start|>assistant\n") and "What is 2 plus 3?" in text
    # strings only (the openai backend): mapped to the same ids with the teacher's tokenizer
    strings = soft_label_row({**row, "token_ids": None, "top_ids": None}, tokenizer, _StringIds(tokenizer), 512)
    assert strings["input_ids"] == f["input_ids"] and strings["top_ids"][n:] == [[i, tokenizer.encode("x")[0]]
                                                                                  for i in ids]
    bad = {**row, "token_ids": None, "top_ids": None, "tokens": tokens[:-1] + ["not one token"]}
    assert soft_label_row(bad, tokenizer, _StringIds(tokenizer), 512) == "token_not_in_teacher_vocab"
    assert soft_label_row(row, tokenizer, _StringIds(tokenizer), max_length=n) == "prompt_too_long"
    short = soft_label_row(row, tokenizer, _StringIds(tokenizer), max_length=n + 2)
    assert short["input_ids"][n:] == ids[:2]
    # a completion that stopped: the EOS the teacher emitted (no stored distribution) is a one-hot target
    stopped = soft_label_row({**row, "finish_reason": "stop"}, tokenizer, _StringIds(tokenizer), 512)
    eos = tokenizer.eos_token_id
    assert stopped["labels"][n:] == ids + [eos]
    assert stopped["top_ids"][-1] == [eos] and stopped["top_logprobs"][-1] == [0]

    other = {**row, "token_ids": ids[:2], "top_ids": [[ids[0]], [ids[1], 7, 8]], "top_logprobs": [[-0.2], [-1, -2, -3]]}
    g = soft_label_row(other, tokenizer, _StringIds(tokenizer), 512)
    batch = SoftLabelCollator(tokenizer.pad_token_id)([f, g])
    length = len(f["input_ids"])
    assert batch["input_ids"].shape == (2, length) and batch["top_ids"].shape == (2, length, 3)
    assert batch["attention_mask"][1].sum().item() == len(g["input_ids"])
    assert (batch["labels"][1, len(g["input_ids"]):] == -100).all()
    assert batch["top_ids"][1, n].tolist() == [ids[0]] * 3  # padded slots repeat the real id ...
    assert batch["top_logprobs"][1, n].tolist() == [pytest.approx(-0.2), -math.inf, -math.inf]  # ... with no mass


# -- end to end ------------------------------------------------------------------------------------------


def tiny_llama(folder: Path, tokenizer, seed: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory, embedded_model, tokenizer) -> Path:
    """A tiny project whose 3 answers (greedy, 5 logprobs per token) come from the real embedded teacher,
    built, filtered and exported; plus a tiny random student and teacher with the embedded tokenizer."""
    from factory.build import build_dataset
    from factory.export import export_version
    from factory.filter import run_filter

    root = Path(__file__).resolve().parents[2]
    d = tmp_path_factory.mktemp("distill")
    (d / "prompts").mkdir()
    (d / "prompts" / "short.jinja").write_text('{{ problem }} Reply with one short sentence that starts with '
                                               '"The answer is".\n')
    (d / "seeds.jsonl").write_text("".join(json.dumps({"problem": p}) + "\n" for p in
                                           ("What is 2 plus 3?", "What is 10 minus 4?", "What is 3 times 3?")))
    (d / "factory.yaml").write_text(f"""
sources: [{{name: toy, path: seeds.jsonl, domain: math, template: short.jinja, fields: {{problem: problem}}}}]
teachers: [{{name: smollm2, backend: local, model: embedded}}]
generation: {{samples_per_seed: 1, temperature: 0, max_tokens: 16, logprobs: 5}}
filter:
  math: {{require_reasoning: false, allow_truncated: true, min_reasoning_words: 0}}
  benchmarks: {{gsm8k_test: {root / 'data/benchmarks/gsm8k_test.jsonl'}}}
train: {{batch_size: 3, logging_steps: 1, learning_rate: 0.01, max_length: 256}}
""")
    cfg = load_config(d / "factory.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACTORY_THREADS", "1")  # 3 short answers: no thread tuning (slow on a busy machine)
        build_dataset(cfg, console=Console(quiet=True))
    assert run_filter(cfg, console=Console(quiet=True)).kept == 3
    assert export_version(cfg).counts["soft_labels"] == 3
    tiny_llama(d / "student", tokenizer, seed=0)
    tiny_llama(d / "teacher", tokenizer, seed=1)
    return d


def params(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def reload_and_generate(folder: Path) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return tok.decode(out[0, ids["input_ids"].shape[1]:])


def no_secret_in(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


@pytest.mark.slow
def test_export_keeps_the_embedded_teachers_token_ids(project, tokenizer):
    import datasets

    rows = datasets.load_dataset("parquet", data_files=str(project / ".factory/export/v1/soft_labels/*.parquet"),
                                 split="train")
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    for row in rows:
        assert len(row["token_ids"]) == len(row["top_ids"]) == len(row["top_logprobs"]) > 0
        assert tokenizer.decode(row["token_ids"]) == "".join(row["tokens"])
        for chosen, ids, tokens, lps in zip(row["token_ids"], row["top_ids"], row["top_tokens"], row["top_logprobs"]):
            assert len(ids) == len(lps) == 5 and ids[0] == chosen  # greedy: the chosen token is the top-1
            assert [tokenizer.decode([i]) for i in ids] == tokens
            assert lps == sorted(lps, reverse=True) and sum(math.exp(x) for x in lps) <= 1 + 1e-4


@pytest.mark.slow
def test_soft_label_distillation_trains_saves_and_reloads(project, monkeypatch):
    from factory.train.distill import train_distill

    monkeypatch.setenv("HF_TOKEN", SECRET)
    before = params(project / "student")
    cfg = load_config(project / "factory.yaml", [f"train.model={project / 'student'}", "train.max_steps=8",
                                                 "train.distill.sft_weight=0.5", "train.output_dir=soft"])
    summary = train_distill(cfg, console=Console(quiet=True))
    assert summary.method == "distill" and summary.steps == 8 and summary.version == 1
    assert summary.extra["mode"] == "soft_labels" and summary.extra["rows"] == 3 and summary.extra["dropped"] == "none"
    losses = summary.losses
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 1.0  # the 3 completions overfit
    assert summary.tokens > 0
    after = params(summary.output_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    reload_and_generate(summary.output_dir)
    no_secret_in(summary.output_dir)


@pytest.mark.slow
def test_on_policy_distillation_off_and_on_policy_batches(project):
    from factory.train.distill import train_distill

    base = [f"train.model={project / 'student'}", f"train.distill.teacher_model={project / 'teacher'}",
            "train.distill.mode=on_policy", "train.distill.max_new_tokens=8"]
    # lmbda 0: every batch is the teacher's own completions (fixed), so the loss falls as the student fits them
    fixed = train_distill(load_config(project / "factory.yaml", base + ["train.max_steps=6", "train.distill.lmbda=0",
                                                                        "train.output_dir=fixed"]),
                          console=Console(quiet=True))
    assert fixed.extra["off_policy_batches"] == 6 and fixed.extra["on_policy_batches"] == 0
    assert fixed.losses[-1] < fixed.losses[0]
    # lmbda 1: the student samples every completion; generalised JSD
    sampled = train_distill(load_config(project / "factory.yaml", base + [
        "train.max_steps=2", "train.distill.lmbda=1", "train.distill.loss=jsd", "train.distill.temperature=2",
        "train.output_dir=sampled"]), console=Console(quiet=True))
    assert sampled.extra["on_policy_batches"] == 2 and sampled.extra["off_policy_batches"] == 0
    assert sampled.tokens > 0 and all(math.isfinite(x) for x in sampled.losses)
    before = params(project / "student")
    for run in (fixed, sampled):
        after = params(run.output_dir)
        assert any(not torch.equal(before[k], after[k]) for k in before)
        reload_and_generate(run.output_dir)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["soft_labels", "on_policy"])
def test_a_student_with_another_tokenizer_is_refused(project, tokenizer, mode, tmp_path):
    from transformers import AutoTokenizer

    from factory.train.distill import train_distill

    other = AutoTokenizer.from_pretrained(project / "student")
    other.add_tokens(["<|not_the_teachers|>"])
    student = tiny_llama(tmp_path / "other", other, seed=0)
    cfg = load_config(project / "factory.yaml", [f"train.model={student}", f"train.distill.mode={mode}"])
    with pytest.raises(TrainError) as e:
        train_distill(cfg, console=Console(quiet=True))
    message = str(e.value)
    assert "\n" not in message and str(student) in message and "'embedded'" in message
    assert "different tokenizers" in message
    assert not (project / ".factory" / "models").exists()  # refused before any training


@pytest.mark.slow
def test_on_policy_refuses_fewer_prompts_than_one_generation_batch(project):
    from factory.train.distill import train_distill

    cfg = load_config(project / "factory.yaml", [f"train.model={project / 'student'}", "train.distill.mode=on_policy",
                                                 f"train.distill.teacher_model={project / 'teacher'}",
                                                 "train.batch_size=2", "train.grad_accum=2"])
    with pytest.raises(TrainError, match=r"sft: 3 prompts, fewer than one generation batch of 4 .*train.batch_size"):
        train_distill(cfg, console=Console(quiet=True))


@pytest.mark.slow
def test_soft_labels_from_another_teacher_or_a_missing_teacher_are_refused(project):
    from factory.train.distill import train_distill

    cfg = load_config(project / "factory.yaml", [f"train.model={project / 'student'}",
                                                 f"train.distill.teacher_model={project / 'student'}"])
    with pytest.raises(TrainError, match=r"no rows from teacher model .*the data holds 'embedded'"):
        train_distill(cfg, console=Console(quiet=True))
    cfg = load_config(project / "factory.yaml", [f"train.model={project / 'student'}",
                                                 f"train.distill.teacher_model={project / 'gone'}"])
    with pytest.raises(TrainError, match=r"^train.distill.teacher_model: cannot load .*gone.* does not exist$"):
        train_distill(cfg, console=Console(quiet=True))
