"""What `build.executor: ray` costs on one machine, and what bounds the single writer.

Not a test. Two measurements:

1. The same build (GSM8K seeds x the embedded teacher, greedy) locally and through Ray on the
   same cores: completion tokens per second of the build (plan and model load included in both),
   with Ray's start-up (ray.init of a local cluster) reported apart.
2. The store writer alone: synthetic responses (a ~`--text-chars` trace each) through the
   ResponseWriter into a fresh store, rows committed per second. That is the driver's ceiling: the
   cluster cannot store faster than one process writes.

    .venv/bin/python benchmarks/ray_overhead.py --seeds 16 --max-tokens 64 --replicas 1    # a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def project(root: Path, seeds: int, max_tokens: int, batch: int) -> Path:
    shutil.copytree(ROOT / "prompts", root / "prompts")
    (root / "data").mkdir()
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", root / "data")
    (root / "factory.yaml").write_text(
        f"sources:\n  - {{name: gsm8k, path: data/gsm8k_train_sample.jsonl, preset: gsm8k, limit: {seeds}}}\n"
        f"teachers:\n  - {{name: smollm2, backend: local, model: embedded, batch_size: {batch}}}\n"
        f"generation: {{samples_per_seed: 1, temperature: 0, max_tokens: {max_tokens}}}\n")
    return root / "factory.yaml"


def build(config: Path, overrides: list[str]) -> dict:
    from rich.console import Console

    from factory.build import build_dataset
    from factory.config import load_config

    s = build_dataset(load_config(config, overrides), console=Console(quiet=True))
    return {"wall_s": round(s.wall_s, 2), "startup_s": round(s.startup_s, 2), "generate_s": round(s.generate_s, 2),
            "tokens": s.tokens_out, "ok": s.requests_ok, "tok_s": round(s.tokens_per_s, 1),
            "tok_s_with_startup": round(s.tokens_out / s.wall_s, 1)}


def writer_rate(rows: int, text_chars: int) -> dict:
    from factory.records import Response
    from factory.store import ResponseWriter, Store

    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "w.duckdb") as store:
        text = ("step " * (text_chars // 5))[:text_chars]
        responses = [Response(request_id=f"{i:032x}", teacher="t", model="m", text=text, finish_reason="stop",
                              prompt_tokens=100, completion_tokens=text_chars // 4, latency_s=1.0)
                     for i in range(rows)]
        started = time.perf_counter()
        writer = ResponseWriter(store)
        for r in responses:
            writer.put(r)
        writer.close()
        wall = time.perf_counter() - started
        assert store.scalar("SELECT count(*) FROM responses") == rows
    return {"rows": rows, "text_chars": text_chars, "wall_s": round(wall, 2), "rows_s": round(rows / wall)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writer-rows", type=int, default=20000)
    ap.add_argument("--text-chars", type=int, default=4000)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    out = {"cores": cores, "load_avg": os.getloadavg()[0]}
    out["writer"] = writer_rate(args.writer_rows, args.text_chars)
    import ray

    cpus = max(1, cores // args.replicas)
    runs = []
    # local and ray alternate (the cluster is shut down during local runs), so drift in the machine's
    # load hits both alike; the ratio is the median of the per-round ratios
    for round_no in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            local = build(project(Path(d) / "local", args.seeds, args.max_tokens, args.batch_size), [])
            started = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            ray_startup_s = round(time.perf_counter() - started, 2)
            on_ray = build(project(Path(d) / "ray", args.seeds, args.max_tokens, args.batch_size),
                           ["build.executor=ray", f"build.ray.replicas={args.replicas}",
                            f"build.ray.cpus_per_replica={cpus}", f"build.ray.shard_size={args.shard_size}"])
            ray.shutdown()
        runs.append({"round": round_no, "local": local, "ray_startup_s": ray_startup_s, "ray": on_ray,
                     # generation tokens/s (teachers' start-up apart, as the issue asks), and with everything
                     "ray_vs_local": round(on_ray["tok_s"] / local["tok_s"], 3),
                     "ray_vs_local_with_startup": round(on_ray["tok_s_with_startup"] / local["tok_s_with_startup"], 3)})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    out["runs"] = runs
    out["ray_vs_local"] = statistics.median(r["ray_vs_local"] for r in runs)
    out["ray_vs_local_with_startup"] = statistics.median(r["ray_vs_local_with_startup"] for r in runs)
    out["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
