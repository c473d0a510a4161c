"""Fidelity of `verified` and `kept`: does the factory keep every correct trace and no wrong one?

For each real-shaped source (tests/support/shapes.py) the oracle teacher (tests/support/oracle.py)
answers through the real `openai` teacher with a known mix of right, wrong, truncated and hedged
chains of thought, logging the truth of each completion. The library builds and filters
(`load_config(data=...)`, `build_dataset`, `run_filter`; `filter.benchmarks: {}` so that
decontamination keeps MATH-500 items; `filter.per_seed` = samples so that `kept` can keep every
good trace), then the store (responses, parsed, checks, kept, funnel) is joined with the truth:
precision and recall of `verified` and of `kept`, per shape and per answer format, once with the
references and once by majority vote (references dropped). The misses are printed by category
with examples: the trace's ending, the stored reference, the truth, the verdict's detail.

    .venv/bin/python benchmarks/fidelity.py                      # 300 seeds per shape (MATH shapes 250), both modes (~1 min)
    .venv/bin/python benchmarks/fidelity.py --n 300 --shapes gsm8k,mixed --modes reference
    .venv/bin/python benchmarks/fidelity.py --json out.json --examples 5
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.oracle import DEFAULT_MIX, Oracle, TruthSeed, decimal_of, sha256  # noqa: E402
from support.shapes import BUILDERS, Shape, build_shapes  # noqa: E402

MODES = ("reference", "majority")


@dataclass
class Trace:
    """One stored completion joined with its truth."""

    shape: str
    seed_id: str
    text: str
    finish_reason: str | None
    reference: str | None  # as the factory stored it
    parsed: str | None
    parse_error: str | None
    passed: bool | None
    reason: str | None
    detail: str | None
    kept: bool
    stage: str | None  # where the filter dropped it
    drop_reason: str | None
    truth: dict

    @property
    def accepted(self) -> bool:
        """Verified against the reference, or (no reference) agreeing with the seed's majority vote."""
        return self.passed is True or self.reason == "majority"

    @property
    def right(self) -> bool:
        return self.truth.get("label") == "right"


@dataclass
class ShapeRun:
    shape: str
    mode: str
    error: str | None = None  # the shape could not be configured or read
    seeds_expected: int = 0
    seeds_loaded: int = 0
    bad_rows: Counter = field(default_factory=Counter)
    ref_mismatch: list = field(default_factory=list)  # (problem head, stored reference, truth)
    traces: list[Trace] = field(default_factory=list)


def pr(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
    return (tp / (tp + fp) if tp + fp else None, tp / (tp + fn) if tp + fn else None)


def counts(traces: list[Trace], attr: str) -> tuple[int, int, int]:
    tp = sum(1 for t in traces if t.right and getattr(t, attr))
    fp = sum(1 for t in traces if not t.right and getattr(t, attr))
    fn = sum(1 for t in traces if t.right and not getattr(t, attr))
    return tp, fp, fn


def _same_reference(stored: str | None, truth: str) -> bool:
    if stored is None:
        return False
    if stored.strip() == truth.strip():
        return True
    bare = [re.sub(r"\\?[$%,]", "", x) for x in (stored, truth)]  # \$18.50 is 18.50, 16\% is 16
    a, b = decimal_of(bare[0]), decimal_of(bare[1])
    return a is not None and a == b


def _config(sources: list[dict], base_url: str, workdir: Path, samples: int) -> dict:
    return {"workdir": str(workdir), "prompts_dir": str(ROOT / "prompts"), "sources": sources,
            "teachers": [{"name": "oracle", "backend": "openai", "model": "oracle", "base_url": base_url,
                          "api_key_env": None, "max_concurrency": 16, "max_retries": 2, "timeout_s": 60}],
            "generation": {"samples_per_seed": samples, "max_tokens": 4096},
            "filter": {"benchmarks": {}, "per_seed": samples}}


def _check_source(src: dict, base_url: str, workdir: Path, samples: int, run: ShapeRun) -> bool:
    """Config and rows of one source, alone: a shape the factory cannot read yet is reported, and the
    other shapes still run."""
    from factory.config import load_config
    from factory.sources import BadRow, plan_source, read_seeds

    try:
        cfg = load_config(data=_config([src], base_url, workdir, samples))
        plan = plan_source(cfg.sources[0], cfg.base_dir)
        for item in read_seeds(plan):
            if isinstance(item, BadRow):
                run.bad_rows[item.reason.split(":")[0][:80]] += 1
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        run.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return False
    return True


QUERY = """
SELECT d.source, q.seed_id, s.text, s.finish_reason, d.answer, d.problem,
       p.answer, p.error, c.passed, c.reason, c.detail,
       k.request_id IS NOT NULL, f.stage, f.reason
FROM plan JOIN requests q USING (request_id) JOIN responses s USING (request_id) JOIN seeds d USING (seed_id)
LEFT JOIN parsed p USING (request_id)
LEFT JOIN checks c ON c.request_id = q.request_id AND c."check" = 'verify'
LEFT JOIN kept k ON k.request_id = q.request_id AND k.version = (SELECT max(version) FROM versions)
LEFT JOIN funnel f ON f.request_id = q.request_id AND f.version = (SELECT max(version) FROM versions)
WHERE s.error IS NULL"""


def run_mode(shapes: list[Shape], mode: str, workdir: Path, samples: int, mix: dict[str, float],
             seed: int = 0, quiet: bool = True) -> dict[str, ShapeRun]:
    """Build and filter every shape's source in one project; the store joined with the truth."""
    from rich.console import Console

    from factory.build import build_dataset
    from factory.config import load_config
    from factory.filter import run_filter
    from factory.store import Store

    truth_seeds: dict[str, TruthSeed] = {f"{s.name}:{i}": t for s in shapes for i, t in enumerate(s.seeds)}
    runs = {s.name: ShapeRun(s.name, mode, seeds_expected=len(s.seeds)) for s in shapes}
    console = Console(quiet=quiet, stderr=True)
    with Oracle(truth_seeds, mix=mix, seed=seed) as srv:
        sources = []
        for s in shapes:
            src = s.source if mode == "reference" else s.unlabelled
            if _check_source(src, srv.base_url, workdir / f"check-{s.name}", samples, runs[s.name]):
                sources.append(src)
        if not sources:
            return runs
        cfg = load_config(data=_config(sources, srv.base_url, workdir / "project", samples))
        build_dataset(cfg, console=console)
        run_filter(cfg, console=console)
        truth = dict(srv.truth)
    by_problem = {(name, " ".join(t.problem.split()).lower()): t for name, s in ((s.name, s) for s in shapes)
                  for t in s.seeds}
    with Store(cfg.store_path, read_only=True) as store:
        rows = store.sql(QUERY)
        seeds = store.sql("SELECT source, problem, answer FROM seeds")
    for source, problem, answer in seeds:
        run = runs[source]
        run.seeds_loaded += 1
        t = by_problem.get((source, " ".join(problem.split()).lower()))
        if mode == "reference" and t is not None and not _same_reference(answer, t.reference):
            run.ref_mismatch.append((problem[:60], answer, t.reference))
    for (source, seed_id, text, finish, ref, _problem, parsed, perr, passed, reason, detail, kept, stage,
         why) in rows:
        runs[source].traces.append(Trace(source, seed_id, text or "", finish, ref, parsed, perr, passed, reason,
                                         detail, bool(kept), stage, why, truth.get(sha256(text or ""), {})))
    return runs


# -- reporting -----------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def shape_table(runs: dict[str, ShapeRun]) -> list[str]:
    out = ["| shape | mode | seeds | traces | right | verified P* | verified R* | kept P | kept R | refs != truth | note |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    allt: dict[str, list[Trace]] = defaultdict(list)
    for r in runs.values():
        if r.error:
            out.append(f"| {r.shape} | {r.mode} | 0/{r.seeds_expected} | - | - | - | - | - | - | - | "
                       f"not read: {r.error.replace('|', '/')} |")
            continue
        allt[r.mode] += r.traces
        vp, vr = pr(*counts(r.traces, "accepted"))
        kp, kr = pr(*counts(r.traces, "kept"))
        bad = ", ".join(f"{k}: {v}" for k, v in r.bad_rows.most_common(2))
        out.append(f"| {r.shape} | {r.mode} | {r.seeds_loaded}/{r.seeds_expected} | {len(r.traces)} | "
                   f"{sum(t.right for t in r.traces)} | {_pct(vp)} | {_pct(vr)} | {_pct(kp)} | {_pct(kr)} | "
                   f"{len(r.ref_mismatch) if r.mode == 'reference' else '-'} | {('bad rows ' + bad) if bad else ''} |")
    for mode, ts in allt.items():
        vp, vr = pr(*counts(ts, "accepted"))
        kp, kr = pr(*counts(ts, "kept"))
        out.append(f"| **all** | {mode} | | {len(ts)} | {sum(t.right for t in ts)} | **{_pct(vp)}** | **{_pct(vr)}** | "
                   f"{_pct(kp)} | {_pct(kr)} | | |")
    return out


def breakdown(traces: list[Trace], key: str, title: str) -> list[str]:
    """Recall of verified per value of truth[key] over right traces; false positives over the rest."""
    groups: dict[str, list[Trace]] = defaultdict(list)
    for t in traces:
        groups[str(t.truth.get(key))].append(t)
    out = [f"| {title} | right | verified R | R when parsed | wrong/hedged/cut | verified (FP) |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, ts in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        right = [t for t in ts if t.right]
        parsed = [t for t in right if t.parsed is not None and t.parse_error is None]
        other = [t for t in ts if not t.right]
        rec = sum(1 for t in right if t.accepted) / len(right) if right else None
        rec_parsed = sum(1 for t in parsed if t.accepted) / len(parsed) if parsed else None
        fp = sum(1 for t in other if t.accepted)
        out.append(f"| {name} | {len(right)} | {_pct(rec)} | {_pct(rec_parsed)} | {len(other)} | {fp} |")
    return out


def _tail(text: str, n: int = 110) -> str:
    t = text.strip().replace("\n", "\\n")
    return ("…" + t[-n:]) if len(t) > n else t


def right_vote_share(traces: list[Trace]) -> dict[str, tuple[int, int]]:
    """Per seed: (votes whose truth is right, votes), a vote being a parsed answer as majority_vote counts it."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in traces:
        if t.parsed is not None and t.parse_error is None and t.parsed.strip():
            out[t.seed_id][1] += 1
            out[t.seed_id][0] += t.right
    return {k: (v[0], v[1]) for k, v in out.items()}


def miss_category(t: Trace, shares: dict[str, tuple[int, int]] | None = None) -> str:
    if t.right and t.reason == "no_majority" and shares:
        right, votes = shares.get(t.seed_id, (0, 0))
        # the oracle's mix decides most of these; a seed whose right votes alone reach the threshold
        # but got no label means equivalent answers were not grouped
        return ("FN no_majority: right answers are >= 80% of >= 3 votes (equivalents not grouped?)"
                if votes >= 3 and right / votes >= 0.8 - 1e-9 else "FN no_majority: right answers < 80% of votes (the mix)")
    if t.right:  # a false negative
        if t.parse_error:
            return f"FN parse:{t.parse_error}"
        if t.stage in ("parse", "quality") and t.passed is None:
            return f"FN {t.stage}:{t.drop_reason}"
        if t.passed is None:
            return f"FN verify:{t.reason or 'no verdict'}" + ("" if t.reference else " (no reference stored)")
        return f"FN verify:{t.reason}"
    return f"FP {t.truth.get('label')}"


def misses(runs: dict[str, ShapeRun], examples: int = 3) -> list[str]:
    groups: dict[tuple[str, str], list[Trace]] = defaultdict(list)
    for r in runs.values():
        shares = right_vote_share(r.traces) if r.mode == "majority" else None
        for t in r.traces:
            if t.right != t.accepted:
                sub = t.truth.get("form") if t.right else (t.truth.get("strategy") or t.truth.get("format"))
                groups[(f"{r.mode} {miss_category(t, shares)}", f"{t.truth.get('format')}/{sub}")].append(t)
    out = []
    by_cat: dict[str, list[tuple[str, list[Trace]]]] = defaultdict(list)
    for (cat, sub), ts in groups.items():
        by_cat[cat].append((sub, ts))
    for cat, subs in sorted(by_cat.items(), key=lambda kv: -sum(len(ts) for _, ts in kv[1])):
        total = sum(len(ts) for _, ts in subs)
        shapes = Counter(t.shape for _, ts in subs for t in ts)
        out.append(f"\n### {cat}: {total}  (" + ", ".join(f"{k} {v}" for k, v in shapes.most_common()) + ")")
        for sub, ts in sorted(subs, key=lambda x: -len(x[1]))[:8]:
            out.append(f"- format/form {sub}: {len(ts)}")
            for t in ts[:examples]:
                detail = (t.detail or "").replace("\n", " ")[:140]
                out.append(f"    - [{t.shape}] `{_tail(t.text)}` | ref stored `{t.reference}` truth "
                           f"`{t.truth.get('reference')}` | parsed `{t.parsed}` | {t.reason or t.parse_error or t.drop_reason}"
                           + (f" {detail}" if detail else ""))
    return out


def reference_mismatches(runs: dict[str, ShapeRun], examples: int = 3) -> list[str]:
    out = []
    for r in runs.values():
        if r.mode == "reference" and r.ref_mismatch:
            out.append(f"- {r.shape}: {len(r.ref_mismatch)} stored references differ from the truth (as text), e.g. "
                       + "; ".join(f"`{s}` vs `{t}`" for _, s, t in r.ref_mismatch[:examples]))
    return out


def report(all_runs: dict[str, dict[str, ShapeRun]], examples: int) -> str:
    lines = ["## precision / recall (%) per shape",
             "verified* = checks.passed against the reference; in majority mode, agreeing with the seed's "
             "majority vote (reason `majority`, a pseudo-label). kept = in the latest version (filter.per_seed = "
             "samples, other filter settings default).", "", *shape_table({f"{m}:{k}": v for m, rs in all_runs.items()
                                                              for k, v in rs.items()})]
    for mode, runs in all_runs.items():
        ts = [t for r in runs.values() for t in r.traces]
        if not ts:
            continue
        lines += ["", f"## {mode}: by answer format", *breakdown(ts, "format", "format"),
                  "", f"## {mode}: by value form (right answers)", *breakdown([t for t in ts if t.right], "form", "form"),
                  "", f"## {mode}: by wrapper", *breakdown(ts, "wrapper", "wrapper"),
                  "", f"## {mode}: wrong answers by strategy", *breakdown([t for t in ts if not t.right], "strategy", "strategy")]
    mism = reference_mismatches(all_runs.get("reference", {}), examples)
    if mism:
        lines += ["", "## stored references that differ from the truth", *mism]
    lines += ["", "## misses (FN: right but not verified; FP: verified but not right)"]
    for runs in all_runs.values():
        lines += misses(runs, examples)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="seeds per shape (math500 shapes: at most 250)")
    p.add_argument("--shapes", default=",".join(BUILDERS), help="comma-separated: " + ",".join(BUILDERS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--samples", type=int, default=4, help="samples per seed with references")
    p.add_argument("--majority-samples", type=int, default=5)
    p.add_argument("--mix", default=json.dumps(DEFAULT_MIX), help="label shares as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--examples", type=int, default=3, help="examples per miss category")
    p.add_argument("--workdir", default=None, help="keep the projects here (default: a temp dir)")
    p.add_argument("--json", default=None, help="write per-shape numbers here")
    a = p.parse_args(argv)
    mix = json.loads(a.mix)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp:
        work = Path(a.workdir or tmp)
        shapes = build_shapes(work / "data", a.n, [s for s in a.shapes.split(",") if s])
        all_runs = {}
        for mode in [m for m in a.modes.split(",") if m]:
            t0 = time.monotonic()
            all_runs[mode] = run_mode(shapes, mode, work / mode, a.samples if mode == "reference" else a.majority_samples,
                                      mix, a.seed)
            print(f"[{mode}: {time.monotonic() - t0:.1f} s]", file=sys.stderr)
        print(report(all_runs, a.examples))
    print(f"\n[wall {time.monotonic() - started:.1f} s; n={a.n} per shape; mix {mix}]")
    if a.json:
        out = {}
        for mode, runs in all_runs.items():
            for name, r in runs.items():
                vp, vr = pr(*counts(r.traces, "accepted"))
                kp, kr = pr(*counts(r.traces, "kept"))
                out[f"{mode}:{name}"] = {"error": r.error, "seeds": r.seeds_loaded, "traces": len(r.traces),
                                         "verified_precision": vp, "verified_recall": vr, "kept_precision": kp,
                                         "kept_recall": kr, "ref_mismatch": len(r.ref_mismatch)}
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
