"""What `factory train sft` costs over a plain TRL script: tokens per second of each, same data, model
and settings, in one run.

Not a test. Two runners train the same model on the same GSM8K conversations:
  factory   factory.train.sft.train_sft(cfg): the library entry point `factory train sft` calls
  plain     the script a TRL user writes (trl/scripts/sft.py's shape): load the tokenizer, the model and
            the parquet split, split each conversation into prompt / completion (loss on the answer only,
            as factory does), SFTConfig, SFTTrainer, train, save_model
Each run is a fresh subprocess (same imports, cold caches alike); the runners alternate, factory first
on even repeats, after one unmeasured warm-up run of each. Both count non-padding tokens with the Trainer's own counter and time the training
loop from on_train_begin to on_train_end; the wall time of the whole run (load, prepare, train, save)
and the process's CPU time are printed too. Equal final losses show the two trained the same thing.

    .venv/bin/python benchmarks/train_overhead.py                  # CPU, a small random Llama, 24 steps x 3
    .venv/bin/python benchmarks/train_overhead.py --model embedded --steps 12 --repeats 2
    .venv/bin/python benchmarks/train_overhead.py --device cuda --model embedded --steps 50 --batch-size 8

--model small is a random 4-layer Llama (~16M parameters, 12.6M of them the tied embedding) with the
embedded SmolLM2 tokenizer: the wrapper's overhead is the same, the steps are ~8x cheaper than the
135M model's on CPU. On busy cores (other jobs), compare tok per CPU-second too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "data" / "gsm8k_train_sample.jsonl"
SYSTEM = "Think step by step inside <think></think>, then give the final answer in \\boxed{}."


def write_corpus(folder: Path, n: int) -> Path:
    """GSM8K training problems as an export's sft/ split: the worked solution as the reasoning."""
    import datasets

    rows = []
    for line in DATA.read_text(encoding="utf-8").splitlines()[:n]:
        item = json.loads(line)
        steps, answer = item["answer"].split("####")
        content = f"<think>\n{steps.strip()}\n</think>\n\nThe final answer is $\\boxed{{{answer.strip()}}}$."
        rows.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": item["question"]},
                                  {"role": "assistant", "content": content}]})
    (folder / "sft").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(folder / "sft" / "train-00000.parquet"))
    return folder


def small_model(folder: Path) -> Path:
    """A random Llama with the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from factory.embedded import embedded_model_path

    tok = AutoTokenizer.from_pretrained(embedded_model_path())
    config = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# -- the two runners (each in its own subprocess) ------------------------------------------------

def run_factory(a) -> dict:
    from rich.console import Console

    from factory.config import load_config
    from factory.train.sft import train_sft

    cfg = load_config(data={"sources": [], "workdir": a.out, "train": {
        "model": a.model, "data": a.data, "max_steps": a.steps, "batch_size": a.batch_size,
        "max_length": a.max_length, "learning_rate": a.lr, "logging_steps": a.steps}})
    s = train_sft(cfg, console=Console(quiet=True))
    return {"tokens": s.tokens, "loop_s": s.runtime_s, "final_loss": s.final_loss}


def run_plain(a) -> dict:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16 if bf16 else torch.float32)
    dataset = load_dataset("parquet", data_files=f"{a.data}/sft/*.parquet", split="train")
    dataset = dataset.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                          remove_columns=dataset.column_names)
    args = SFTConfig(output_dir=f"{a.out}/plain", max_steps=a.steps, per_device_train_batch_size=a.batch_size,
                     learning_rate=a.lr, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=a.steps,
                     logging_first_step=True, save_strategy="no", report_to="none", seed=42, bf16=bf16, fp16=False,
                     use_cpu=not cuda, gradient_checkpointing=False, max_length=a.max_length,
                     completion_only_loss=True, include_num_input_tokens_seen="non_padding",
                     dataloader_pin_memory=cuda)

    class LoopTimer(TrainerCallback):  # measured exactly as factory's TokenCounter measures
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.start

    timer = LoopTimer()
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    trainer.save_model(f"{a.out}/plain")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": trainer.state.num_input_tokens_seen, "loop_s": timer.seconds, "final_loss": losses[-1]}


def runner_main(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    started, cpu = time.perf_counter(), time.process_time()
    result = {"factory": run_factory, "plain": run_plain}[a.runner](a)
    result.update(wall_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu)
    print("RESULT " + json.dumps(result), flush=True)


# -- the driver ------------------------------------------------------------------------------------

def run_once(name: str, a, data: Path, model: str) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if a.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--runner", name, "--data", str(data), "--model", model, "--out", out,
               "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--max-length", str(a.max_length),
               "--lr", str(a.lr), "--threads", str(a.threads)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{name} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", default=None, help="small (random Llama), embedded, or a folder / Hub name "
                                                 "(default: small on CPU, embedded on CUDA)")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--rows", type=int, default=200, help="GSM8K conversations in the corpus")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup-steps", type=int, default=4, help="one unmeasured run of each runner first (0: none)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    # internal: one run in a subprocess
    p.add_argument("--runner", choices=["factory", "plain"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.runner:
        return runner_main(a)

    with tempfile.TemporaryDirectory(prefix="train-overhead-") as tmp:
        compare(a, Path(tmp))


def compare(a, work: Path) -> None:
    from factory.embedded import embedded_model_path

    data = write_corpus(work / "export", a.rows)
    name = a.model or ("embedded" if a.device == "cuda" else "small")
    model = str(small_model(work / "small") if name == "small" else embedded_model_path() if name == "embedded"
                else name)
    print(f"model {name}, device {a.device}, {a.steps} steps x batch {a.batch_size}, max_length {a.max_length}, "
          f"{a.threads} threads, load {os.getloadavg()[0]:.1f}", flush=True)
    if a.warmup_steps:  # the first runs after the model is written pay for cold caches: discard one of each
        warm = argparse.Namespace(**{**vars(a), "steps": a.warmup_steps})
        for runner in ("factory", "plain"):
            run_once(runner, warm, data, model)
    runs: dict[str, list[dict]] = {"factory": [], "plain": []}
    for r in range(a.repeats):
        for runner in (("factory", "plain") if r % 2 == 0 else ("plain", "factory")):
            res = run_once(runner, a, data, model)
            runs[runner].append(res)
            print(f"  repeat {r + 1} {runner:8s} {res['tokens']:>7,} tokens  loop {res['loop_s']:7.1f} s  "
                  f"{res['tokens'] / res['loop_s']:8.1f} tok/s  wall {res['wall_s']:6.1f} s  cpu {res['cpu_s']:6.1f} s"
                  f"  final loss {res['final_loss']:.4f}  (load {os.getloadavg()[0]:.1f})", flush=True)

    def total(name: str, key: str) -> float:
        return sum(x[key] for x in runs[name])

    print("\n| runner | tokens | loop tok/s | whole-run tok/s (wall) | tok per CPU-second (whole run) |\n"
          "| --- | --- | --- | --- | --- |")
    rates = {}
    for n in ("factory", "plain"):
        tokens = total(n, "tokens")
        rates[n] = (tokens / total(n, "loop_s"), tokens / total(n, "wall_s"), tokens / total(n, "cpu_s"))
        print(f"| {n} | {tokens:,} | {rates[n][0]:.1f} | {rates[n][1]:.1f} | {rates[n][2]:.1f} |")
    ratio = [f / p for f, p in zip(rates["factory"], rates["plain"])]
    print(f"\nfactory / plain: loop tok/s {ratio[0]:.3f}, whole run {ratio[1]:.3f}, per CPU-second {ratio[2]:.3f} "
          f"(target >= 0.97)")
    pairs = [(f["tokens"] / f["loop_s"]) / (p["tokens"] / p["loop_s"]) for f, p in zip(runs["factory"], runs["plain"])]
    print("per repeat (loop tok/s): " + ", ".join(f"{x:.3f}" for x in pairs))
    print(f"final losses: factory {[round(x['final_loss'], 4) for x in runs['factory']]}, "
          f"plain {[round(x['final_loss'], 4) for x in runs['plain']]}")


if __name__ == "__main__":
    main()
