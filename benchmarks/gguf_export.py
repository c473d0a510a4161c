"""GGUF export of a model (default: the embedded SmolLM2-135M-Instruct): conversion time, file size, and how far
the GGUF's logits are from the source model's (factory.train.gguf's verification), per type. (Not gguf.py: run
as a script, that name would shadow the `gguf` package.)

    .venv/bin/python benchmarks/gguf_export.py             # the embedded model, f16 and q8_0, 3 timed writes each
    .venv/bin/python benchmarks/gguf_export.py --model runs/sft-v3 --types q8_0 --rounds 1

Conversion time is write_gguf alone (the model is loaded once, before): the median of --rounds writes.
The numbers table comes from one export_gguf per type (which also writes the Modelfile and the check JSON).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded", help="a model folder, or 'embedded'")
    ap.add_argument("--types", default="f16,q8_0")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the verification (busy shared cores)")
    a = ap.parse_args()

    import torch

    from factory.embedded import resolve_model
    from factory.train.gguf import check_model_folder, export_gguf, load_source, write_gguf

    torch.set_num_threads(a.threads)
    model_dir = Path(resolve_model(a.model))
    arch = check_model_folder(model_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = load_source(model_dir)
        params = sum(p.numel() for p in model.parameters())
        for gguf_type in a.types.split(","):
            times = []
            for _ in range(a.rounds):
                started = time.perf_counter()
                write_gguf(model, tokenizer, arch, Path(tmp) / "timed.gguf", gguf_type)
                times.append(time.perf_counter() - started)
            result = export_gguf(model_dir, gguf_type, Path(tmp) / gguf_type)
            rows.append((gguf_type, result, statistics.median(times)))
    source_mib = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 2**20
    print(f"\n{model_dir.name}: {params / 1e6:.1f} M parameters, safetensors {source_mib:.1f} MiB; "
          f"torch threads {a.threads}; write time = median of {a.rounds}\n")
    print("| type | size MiB | write s | verify s | max abs Δlogit | mean abs Δlogit | top-1 agree | greedy equal "
          "| layout Δ |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for gguf_type, r, write_s in rows:
        c = r.check
        print(f"| {gguf_type} | {r.size_bytes / 2**20:.1f} | {write_s:.2f} | {c['verify_s']:.1f} | "
              f"{c['max_abs_logit_diff']:.4f} | {c['mean_abs_logit_diff']:.5f} | {c['top1_agreement']:.2%} "
              f"({c['positions']} pos.) | {c['greedy_equal']} × {c['new_tokens']} tok | "
              f"{c['layout_max_abs_logit_diff']:.1g} |")


if __name__ == "__main__":
    main()
