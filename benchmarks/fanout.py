"""Fan-out throughput of the OpenAI teacher, side by side with a bare asyncio loop and curator.

Not a test: prints tables and ratios. Everything runs against one fake OpenAI-compatible
server (tests/support/fake_openai.py) started as a subprocess on 127.0.0.1, reconfigured between
phases, so every contender meets the same server.

    .venv/bin/python benchmarks/fanout.py                 # all phases (~5-6 min on 2 busy cores)
    .venv/bin/python benchmarks/fanout.py --phases a --n 3000 --rounds 5

a) zero-latency server, concurrency 64 and 256, N requests:
   factory OpenAITeacher, its responses written to a DuckDB Store (ResponseWriter), against
   bare asyncio + AsyncOpenAI loops (semaphore + gather, same connection limits), and curator.
   Contenders: bare loops on chat.completions.create (typed) and on client.post (the call the
   teacher makes), with the aiohttp and the default httpx transports; the teacher with store
   writes (the ResponseWriter's 0.1 s commits, and 0.5 s), without, and on httpx; curator.
   Each contender runs once per round, in a rotating order; tables give median req/s, the
   client's CPU time per request, and the median of same-round ratios (neighbours on a shared
   machine move wall-clock rates a lot; CPU per request and paired ratios much less).
b) 1 s latency, concurrency 256: req/s against the bare loop and against the ideal C/latency.
c) 30 % injected faults (429, 500, 503, hangs, bad JSON, truncated bodies), 1000 requests,
   concurrency 256: every request ends with a stored response, no request succeeds twice on
   the server, and the wall time against curator's; 429s carry `Retry-After: 1`, then
   OpenAI-style `retry-after-ms: 200` as well.

curator (bespokelabs-curator) pins openai 2.x and other versions this project does not use,
so it lives in its own venv and runs in a subprocess (`--curator-python`, default
.venv-curator/bin/python; make it with `python -m venv .venv-curator &&
.venv-curator/bin/pip install bespokelabs-curator`). Its tiktoken encodings are stubbed (no
network) and its cache goes to a temp dir. Phases that need it say "skipped" without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
MAX_TOKENS = 100
KEY = "sk-bench-not-a-real-key"


def prompt(i: int) -> str:
    return f"Problem {i}: what is {i} + {i}? Think step by step."


# -- curator worker (runs inside the curator venv; imports nothing from factory) ---------------

def curator_worker(url: str, n: int, c: int, timeout_s: int, max_retries: int, pause_s: int) -> None:
    os.environ.setdefault("TELEMETRY_ENABLED", "false")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("CURATOR_DISABLE_RICH_DISPLAY", "1")
    os.environ["CURATOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="curator-bench-")
    import logging

    import tiktoken

    class _Enc:  # offline: no BPE files to download; ~4 chars per token like our estimate
        def encode(self, text, **_kw):
            return [0] * (len(text) // 4 + 1)

    tiktoken.get_encoding = lambda _name: _Enc()
    tiktoken.encoding_for_model = lambda _name: _Enc()
    from bespokelabs import curator

    logging.getLogger("bespokelabs").setLevel(logging.WARNING)
    logging.getLogger("bespokelabs.curator").setLevel(logging.WARNING)

    class Gen(curator.LLM):
        def prompt(self, row):
            return row["q"]

        def parse(self, row, response):
            return {"q": row["q"], "a": response}

    llm = Gen(model_name="gpt-4o-mini", backend="openai",
              backend_params={"base_url": url, "api_key": KEY, "max_requests_per_minute": 100_000_000,
                              "max_tokens_per_minute": 100_000_000_000, "max_concurrent_requests": c,
                              "max_retries": max_retries, "request_timeout": timeout_s,
                              "seconds_to_pause_on_rate_limit": pause_s, "require_all_responses": False},
              generation_params={"temperature": 0.7, "top_p": 0.95, "max_tokens": MAX_TOKENS})
    rows = [{"q": prompt(i)} for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    out = llm(rows)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ds = getattr(out, "dataset", out)
    print("CURATOR_RESULT " + json.dumps({"wall_s": wall, "cpu_s": cpu, "rows": len(ds)}), flush=True)


# -- contenders -----------------------------------------------------------------------------

def http_client(transport: str, c: int):
    import httpx2
    import openai

    limits = httpx2.Limits(max_connections=c, max_keepalive_connections=c)
    if transport == "aiohttp":
        return openai.DefaultAioHttpClient(limits=limits)
    return openai.DefaultAsyncHttpxClient(limits=limits)


def timed(fn, *args, **kw) -> dict:
    """Run one contender; add the client process's CPU time per request (all its threads).
    On a shared machine wall-clock rates swing with the neighbours' load; CPU per request
    swings much less and is what bounds the rate when the client is CPU-bound."""
    n = args[1]
    c0 = time.process_time()
    r = fn(*args, **kw)
    r["cpu_us"] = (time.process_time() - c0) / n * 1e6
    return r


def bare(base_url: str, n: int, c: int, transport: str, mode: str) -> dict:
    """The baseline: one AsyncOpenAI client, a semaphore of c, gather over n coroutines.
    mode "create": chat.completions.create (typed); "post": client.post + json (what the teacher does)."""
    import asyncio

    import httpx2
    import openai

    async def main() -> int:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0,
                                    http_client=http_client(transport, c))
        sem = asyncio.Semaphore(c)

        async def one(i: int):
            messages = [{"role": "user", "content": prompt(i)}]
            async with sem:
                if mode == "create":
                    r = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0.7,
                                                             top_p=0.95, max_tokens=MAX_TOKENS)
                    return r.choices[0].message.content
                r = await client.post("/chat/completions", cast_to=httpx2.Response, body={
                    "model": MODEL, "messages": messages, "temperature": 0.7, "top_p": 0.95,
                    "max_tokens": MAX_TOKENS})
                return json.loads(r.content)["choices"][0]["message"]["content"]

        try:
            out = await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await client.close()
        return sum(1 for x in out if x)

    t0 = time.perf_counter()
    ok = asyncio.run(main())
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "ok": ok, "rps": n / wall}


def teacher(base_url: str, n: int, c: int, transport: str, timeout_s: float = 60.0, max_retries: int = 6,
            store: bool = True, commit_every_s: float = 0.1, stream: bool = True) -> dict:
    """factory's OpenAITeacher, every response written to a DuckDB Store as the build does."""
    from factory import store as store_mod
    from factory.config import teacher_config
    from factory.records import Request
    from factory.teachers.openai import OpenAITeacher

    cfg = teacher_config(name="bench", backend="openai", model=MODEL, base_url=base_url, api_key_env=None,
                         max_concurrency=c, timeout_s=timeout_s, max_retries=max_retries, stream=stream)
    params = {"temperature": 0.7, "top_p": 0.95, "max_tokens": MAX_TOKENS, "logprobs": 0}
    requests = (Request(f"seed{i}", "bench", MODEL, "bench", ({"role": "user", "content": prompt(i)},), params)
                for i in range(n))
    t = OpenAITeacher(cfg, transport=transport)
    ok = err = 0
    if not store:  # the teacher alone: count what it yields
        t0 = time.perf_counter()
        for r in t.generate(requests):
            if r.error is None:
                ok += 1
            else:
                err += 1
        wall = time.perf_counter() - t0
        return {"wall_s": wall, "ok": ok, "errors": err, "rps": n / wall, "stored": None, "stored_ok": None}
    tmp = tempfile.mkdtemp(prefix="fanout-")
    db = store_mod.Store(Path(tmp) / "bench.duckdb")
    t0 = time.perf_counter()
    writer_cls = getattr(store_mod, "ResponseWriter", None)
    if writer_cls is not None:
        writer = writer_cls(db, interval_s=commit_every_s)
        if hasattr(t, "on_attempt"):  # as the build does: a mark per call, so a kill keeps its attempts
            t.on_attempt = writer.put
        for r in t.generate(requests):
            writer.put(r)
            if r.error is None:
                ok += 1
            else:
                err += 1
        writer.close()
    else:  # batch by hand: whatever accumulated, committed at most every 0.1 s
        batch, last = [], time.monotonic()
        for r in t.generate(requests):
            batch.append(r)
            if r.error is None:
                ok += 1
            else:
                err += 1
            if time.monotonic() - last >= commit_every_s:
                db.add_responses(batch)
                batch, last = [], time.monotonic()
        db.add_responses(batch)
    wall = time.perf_counter() - t0
    stored = db.con.execute("SELECT count(*), count(*) FILTER (WHERE error IS NULL) FROM responses").fetchone()
    db.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"wall_s": wall, "ok": ok, "errors": err, "rps": n / wall, "stored": stored[0], "stored_ok": stored[1]}


def curator(python: str, base_url: str, n: int, c: int, timeout_s: int = 60, max_retries: int = 6,
            pause_s: int = 10) -> dict | None:
    if not Path(python).exists():
        return None
    cmd = [python, __file__, "--curator-worker", base_url, str(n), str(c), str(timeout_s), str(max_retries),
           str(pause_s)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in p.stdout.splitlines():
        if line.startswith("CURATOR_RESULT "):
            r = json.loads(line.split(" ", 1)[1])
            r["rps"] = n / r["wall_s"]
            r["cpu_us"] = r["cpu_s"] / n * 1e6
            return r
    raise RuntimeError(f"curator run failed (rc {p.returncode}): {p.stderr[-2000:]}")


# -- reporting ------------------------------------------------------------------------------

def med(runs: list[dict], key: str = "rps") -> float:
    return statistics.median(r[key] for r in runs)


def table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  " + "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  " + "  ".join("-" * w for w in widths))


def successes_per_prompt(stats: dict) -> tuple[int, int]:
    """(prompts answered, the most successes any one prompt got) from the server's records."""
    count: dict[str, int] = {}
    for _t, h, _n, ok, *_ in stats["records"]:
        if ok:
            count[h] = count.get(h, 0) + 1
    return len(count), max(count.values(), default=0)


def phase_a(srv, n: int, rounds: int, curator_py: str) -> dict:
    print(f"\n== a) zero latency, {n} requests per run ({n // 4} for the httpx ones), {rounds} rounds; "
          f"contenders take turns within a round, in a rotating order ==")
    srv.configure(latency=0.0, fault_rate=0.0)
    results = {}
    main = "factory aiohttp +store"
    contenders = {
        "bare aiohttp create": lambda c: timed(bare, srv.base_url, n, c, "aiohttp", "create"),
        "bare aiohttp post": lambda c: timed(bare, srv.base_url, n, c, "aiohttp", "post"),
        main: lambda c: timed(teacher, srv.base_url, n, c, "aiohttp"),
        "factory aiohttp, no store": lambda c: timed(teacher, srv.base_url, n, c, "aiohttp", store=False),
        "factory aiohttp +store/0.5s": lambda c: timed(teacher, srv.base_url, n, c, "aiohttp", commit_every_s=0.5),
        "factory aiohttp +store, stream: false": lambda c: timed(teacher, srv.base_url, n, c, "aiohttp", stream=False),
        "bare httpx create": lambda c: timed(bare, srv.base_url, n // 4, c, "httpx", "create"),
        "factory httpx +store": lambda c: timed(teacher, srv.base_url, n // 4, c, "httpx"),
    }
    names = list(contenders)
    for c in (64, 256):
        runs: dict[str, list[dict]] = {k: [] for k in names}
        for rnd in range(rounds):
            for k in names[rnd % len(names):] + names[:rnd % len(names)]:
                runs[k].append(contenders[k](c))
        cur = curator(curator_py, srv.base_url, n, c)
        f = med(runs[main])
        rows = [("contender", "req/s median", "req/s per round", "CPU us/req", "factory+store / this",
                 "same-round ratios")]
        for k, v in runs.items():
            per_round = [a["rps"] / b["rps"] for a, b in zip(runs[main], v)]
            rows.append((k, f"{med(v):.0f}", " ".join(f"{r['rps']:.0f}" for r in v), f"{med(v, 'cpu_us'):.0f}",
                         f"{f / med(v):.2f}x", f"median {statistics.median(per_round):.2f}x"
                         if k != main else ""))
        if cur:
            rows.append(("curator", f"{cur['rps']:.0f}", f"{cur['rps']:.0f}", f"{cur['cpu_us']:.0f}",
                         f"{f / cur['rps']:.2f}x", ""))
        else:
            rows.append(("curator", "skipped", "", "", "", ""))
        print(f"\n concurrency {c}:")
        table(rows)
        assert all(r["stored"] == n and r["stored_ok"] == n for r in runs[main]), "lost responses"
        results[c] = {k: med(v) for k, v in runs.items()} | {"curator": cur["rps"] if cur else None}
    return results


def phase_b(srv, rounds: int) -> dict:
    c, latency = 256, 1.0
    n = c * 8
    print(f"\n== b) latency {latency:.0f} s, concurrency {c}, {n} requests (ideal {c / latency:.0f} req/s) ==")
    srv.configure(latency=latency, fault_rate=0.0)
    runs: dict[str, list[dict]] = {"bare aiohttp create": [], "factory aiohttp +store": []}
    for _ in range(rounds):
        runs["factory aiohttp +store"].append(timed(teacher, srv.base_url, n, c, "aiohttp"))
        runs["bare aiohttp create"].append(timed(bare, srv.base_url, n, c, "aiohttp", "create"))
    f = med(runs["factory aiohttp +store"])
    rows = [("contender", "req/s median", "req/s per round", "% of ideal", "CPU us/req", "factory / this")]
    for k, v in runs.items():
        rows.append((k, f"{med(v):.1f}", " ".join(f"{r['rps']:.1f}" for r in v),
                     f"{100 * med(v) / (c / latency):.1f}%", f"{med(v, 'cpu_us'):.0f}", f"{f / med(v):.3f}x"))
    table(rows)
    return {k: med(v) for k, v in runs.items()}


def phase_c(srv, curator_py: str) -> dict:
    n, c, rate, timeout = 1000, 256, 0.3, 2
    print(f"\n== c) {rate:.0%} injected faults (429, 500, 503, hang, bad JSON, truncated body), {n} requests, "
          f"concurrency {c}, timeout {timeout} s, 6 retries ==")
    out = {}
    scenarios = {"Retry-After: 1": {"retry_after": "1", "retry_after_ms": None},
                 "retry-after-ms: 200 + Retry-After: 1 (OpenAI style)": {"retry_after": "1", "retry_after_ms": "200"}}
    for label, headers in scenarios.items():
        srv.configure(latency=0.0, fault_rate=rate, seed=1, **headers)
        r = teacher(srv.base_url, n, c, "aiohttp", timeout_s=timeout, max_retries=6)
        st = srv.stats()
        answered, most = successes_per_prompt(st)
        print(f"  factory, 429s with {label}: {r['wall_s']:.1f} s; {r['ok']} ok + {r['errors']} errors, "
              f"{r['stored']} rows stored; server: {st['count']} calls, {answered} prompts answered, "
              f"most successes for one prompt: {most}; faults {st['faults']}")
        assert r["stored"] == n and most == 1, "a request lost or answered twice"
        out[label] = r["wall_s"]
    # curator reads neither header (it pauses new requests for seconds_to_pause_on_rate_limit,
    # default 10, after an error whose message says "rate limit"), so one run serves both
    srv.configure(latency=0.0, fault_rate=rate, seed=1, **scenarios["Retry-After: 1"])
    cur = curator(curator_py, srv.base_url, n, c, timeout_s=timeout, max_retries=6)
    if cur is None:
        print("  curator: skipped (no curator venv)")
        return out
    answered, most = successes_per_prompt(srv.stats())
    print(f"  curator (defaults, same limits): {cur['wall_s']:.1f} s, {cur['rows']} rows; server: {answered} prompts "
          f"answered, most successes for one prompt: {most}")
    for label, wall in out.items():
        print(f"  factory / curator wall time, {label}: {wall / cur['wall_s']:.2f}x")
    out["curator"] = cur["wall_s"]
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--curator-worker":
        url, n, c, timeout_s, retries, pause = sys.argv[2:8]
        curator_worker(url, int(n), int(c), int(timeout_s), int(retries), int(pause))
        return
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    ap = argparse.ArgumentParser(description="OpenAI teacher fan-out benchmark")
    ap.add_argument("--phases", default="abc")
    ap.add_argument("--n", type=int, default=2000, help="requests per run in phase a")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per contender (median)")
    ap.add_argument("--curator-python", default=str(ROOT / ".venv-curator" / "bin" / "python"))
    a = ap.parse_args()
    import openai

    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, {os.cpu_count()} CPUs "
          f"(the fake server is a separate process on the same CPUs); load average {os.getloadavg()[0]:.1f}")
    t_start = time.perf_counter()
    from support.fake_openai import FakeOpenAIProcess

    srv = FakeOpenAIProcess()
    try:
        if "a" in a.phases:
            phase_a(srv, a.n, a.rounds, a.curator_python)
        if "b" in a.phases:
            phase_b(srv, max(1, a.rounds - 1))
        if "c" in a.phases:
            phase_c(srv, a.curator_python)
    finally:
        srv.close()
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
