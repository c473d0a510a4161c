"""Batch mode against the online path: N requests through `factory build dataset`'s generate stage.

Not a test: prints one line per mode and the cost line of each summary. Both modes meet fakes
with instant completion, started as subprocesses on 127.0.0.1: tests/support/fake_openai.py
(latency 0) for online, tests/support/fake_batch.py (steps 0: a batch is done on its first
retrieve) for batch. Each mode runs in its own child process so that its peak RSS (ru_maxrss)
is its own; both include planning and every store write (a fresh store each time).

    .venv/bin/python benchmarks/batch.py                  # 20,000 requests (1,000 seeds x 20 samples)
    .venv/bin/python benchmarks/batch.py --seeds 200       # quicker

The request file is streamed to disk line by line and cut at batch_max_requests (50,000 by
default: one file here), so the batch client's memory does not grow with N.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _server(script: str, *args: str) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / script), "--port", "0", *args],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("READY"):
        p.kill()
        raise RuntimeError(f"{script} did not start: {line!r}")
    return p, int(line.split()[1])


def _project(folder: Path, seeds: int, samples: int, teacher: dict) -> Path:
    shutil.copytree(ROOT / "prompts", folder / "prompts")
    (folder / "data").mkdir()
    with open(folder / "data" / "seeds.jsonl", "w") as fh:
        for i in range(seeds):
            fh.write(json.dumps({"question": f"What is {i} plus {i + 7}? Show your work.",
                                 "answer": f"{i} + {i + 7} = {2 * i + 7}\n#### {2 * i + 7}"}) + "\n")
    (folder / "factory.yaml").write_text(json.dumps({
        "sources": [{"name": "synthetic", "path": "data/seeds.jsonl", "preset": "gsm8k"}],
        "teachers": [teacher], "generation": {"samples_per_seed": samples}}))
    return folder / "factory.yaml"


def child(mode: str, seeds: int, samples: int, port: int) -> None:
    from rich.console import Console

    from factory.build import build_dataset
    from factory.config import load_config

    teacher = {"name": "api", "backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1",
               "api_key_env": None, "mode": mode, "poll_interval_s": 0.2, "price_in_per_mtok": 1.25,
               "price_out_per_mtok": 10.0, "max_concurrency": 64}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(_project(Path(tmp), seeds, samples, teacher))
        t0 = time.perf_counter()
        s = build_dataset(cfg, console=Console(quiet=True))
        wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "requests": s.requests_sent, "ok": s.requests_ok, "wall_s": round(wall, 2),
                      "peak_rss_mib": round(rss, 1), "cost": round(s.cost, 4), "cost_online": round(s.cost_online, 4)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--child", choices=("online", "batch"))
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.seeds, args.samples, args.port)
    print(f"{args.seeds * args.samples} requests ({args.seeds} seeds x {args.samples} samples)")
    for mode, script, extra in (("online", "fake_openai.py", ["--latency", "0"]), ("batch", "fake_batch.py", [])):
        srv, port = _server(script, *extra)
        try:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--seeds", str(args.seeds),
                                  "--samples", str(args.samples), "--port", str(port)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            srv.kill()
            srv.wait()
        print(f"{mode:>6}: {r['ok']}/{r['requests']} ok, {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
              f"cost ${r['cost']:.4f} (online would be ${r['cost_online']:.4f})")


if __name__ == "__main__":
    main()
