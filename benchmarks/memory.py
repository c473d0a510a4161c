"""Peak RSS of `factory build dataset` over 100,000 seeds against a zero-latency fake server.

Seeds stream from the file, requests stream out of the store, responses are committed in
small groups: nothing holds the whole run in memory. Target: peak RSS < 2 GiB.

    python benchmarks/memory.py [--seeds 100000] [--samples 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=128)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="factory-mem-"))
    problems = [json.loads(line) for line in open(ROOT / "data" / "gsm8k_train.jsonl")]
    with open(tmp / "seeds.jsonl", "w") as f:
        for i in range(args.seeds):
            p = problems[i % len(problems)]
            f.write(json.dumps({"question": f"{p['question']} (variant {i})", "answer": p["answer"]}) + "\n")
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "fake_openai.py"), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().split()[1]
    (tmp / "factory.yaml").write_text(f"""
prompts_dir: {ROOT / 'prompts'}
sources: [{{name: synth, path: seeds.jsonl, preset: gsm8k}}]
teachers: [{{name: api, backend: openai, base_url: "http://127.0.0.1:{port}/v1", model: fake,
            max_concurrency: {args.concurrency}}}]
generation: {{samples_per_seed: {args.samples}}}
""")
    started = time.monotonic()
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench"}
    rc = subprocess.call([sys.executable, "-m", "factory.cli", "build", "dataset"], cwd=tmp, env=env,
                         stdout=subprocess.DEVNULL)
    wall = time.monotonic() - started
    server.kill()
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child: the build
    requests = args.seeds * args.samples
    print(f"seeds {args.seeds:,}  requests {requests:,}  exit {rc}  wall {wall:,.0f} s  "
          f"({requests / wall:,.0f} req/s incl. planning)")
    print(f"peak RSS of the build: {peak_mib:,.0f} MiB  (target < 2048 MiB: {'PASS' if peak_mib < 2048 else 'FAIL'})")


if __name__ == "__main__":
    main()
