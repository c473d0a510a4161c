"""`factory report`: what the store holds, read with SQL; a text summary and a one-file HTML page.

Both read the same numbers (`gather`) and show the same tables; the page adds plots (matplotlib,
embedded as base64 PNG) so it can be mailed or archived as one file with no external requests.
Nothing from the environment enters either: only the store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from factory.config import Config
from factory.errors import FilterError, StoreError
from factory.store import Store
from factory.versions import MORE_DIVERSE_WHEN_HIGHER, STAGES, TEXT_FIGURES, collapse_drop

if TYPE_CHECKING:  # the results printed here; only their fields are read
    from factory.build import BuildSummary
    from factory.export import ExportResult
    from factory.filter import FilterSummary

# (key in versions.diversity, label); which way is more diverse: versions.MORE_DIVERSE_WHEN_HIGHER
DIVERSITY_FIGURES = (
    ("kept", "kept traces"),
    ("distinct_1", "distinct-1"),
    ("distinct_2", "distinct-2"),
    ("distinct_3", "distinct-3"),
    ("compression_ratio", "compression ratio"),
    ("answer_spread", "answer spread"),
    ("near_dup_clusters", "near-dup clusters"),
    ("mean_reasoning_words", "mean reasoning words"),
)
DROP = " ▼"  # marks a diversity figure that moved the collapsing way by more than the refresh gate allows
LENGTHS = (("reasoning_words", "reasoning words"), ("answer_words", "answer words"),
           ("completion_tokens", "completion tokens"))
HISTOGRAMS = ("reasoning_words", "completion_tokens")  # measures plotted kept vs dropped

# The candidate traces of version $1 (kept or dropped at some stage) with what the report needs.
_CANDIDATES = """
WITH cand AS (
  SELECT request_id, TRUE AS is_kept, NULL AS stage, NULL AS reason FROM kept WHERE version = $1
  UNION ALL
  SELECT request_id, FALSE, stage, reason FROM funnel WHERE version = $1
), t AS (
  SELECT c.request_id, c.is_kept, c.stage, c.reason, d.source, q.teacher,
         coalesce(v.passed, FALSE) AS verified,
         p.reasoning_words::BIGINT AS reasoning_words,
         CASE WHEN trim(p.answer) <> '' THEN len(string_split_regex(trim(p.answer), '\\s+')) END::BIGINT AS answer_words,
         s.prompt_tokens, s.completion_tokens::BIGINT AS completion_tokens, s.cost
  FROM cand c JOIN requests q USING (request_id) JOIN seeds d USING (seed_id) JOIN responses s USING (request_id)
  LEFT JOIN parsed p USING (request_id)
  LEFT JOIN checks v ON v.request_id = c.request_id AND v."check" = 'verify'
)
"""


@dataclass
class ReportTable:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    note: str = ""


@dataclass
class ReportData:
    """Everything the report shows; `version` is None when the store has no (such) version."""

    seeds: list[tuple]
    # teacher, model, requests, ok, failed, unanswered, tokens in, tokens out, cost, latency, reasoning tokens (of out)
    teachers: list[tuple]
    errors: list[tuple]  # teacher, reason, requests, attempts, an example message
    versions: list[dict]  # version, created_at, counts, funnel, diversity (oldest first)
    version: dict | None = None
    groups: list[tuple] = field(default_factory=list)  # by, name, traces, verified, kept, tokens in, out, cost
    lengths: dict = field(default_factory=dict)  # (measure, "kept"|"all") -> (n, mean, [p10, p50, p90], max)
    samples: dict = field(default_factory=dict)  # measure -> {"kept": [...], "dropped": [...]} for histograms
    max_drop: float | None = None  # refresh.gates.max_diversity_drop


def _open(cfg: Config) -> Store:
    if not cfg.store_path.exists():
        raise StoreError(f"{cfg.store_path}: no store yet (run `factory build dataset` first)")
    return Store(cfg.store_path, read_only=True)


def gather(cfg: Config, version: int | None = None, samples: bool = False) -> ReportData:
    """The report's numbers, all from SQL; `samples` also fetches per-trace lengths for histograms."""
    with _open(cfg) as store:
        data = ReportData(
            seeds=store.sql("SELECT source, domain, count(*) FROM seeds GROUP BY ALL ORDER BY ALL"),
            teachers=store.sql("""
                SELECT q.teacher, q.model, count(*), count(s.request_id) FILTER (s.error IS NULL),
                       count(s.request_id) FILTER (s.error IS NOT NULL), count(*) - count(s.request_id),
                       coalesce(sum(s.prompt_tokens), 0), coalesce(sum(s.completion_tokens), 0), sum(s.cost),
                       avg(s.latency_s) FILTER (s.error IS NULL), coalesce(sum(s.reasoning_tokens), 0)
                FROM requests q LEFT JOIN responses s USING (request_id) GROUP BY ALL ORDER BY ALL"""),
            errors=store.sql("""SELECT teacher, split_part(error, ':', 1) AS reason, count(*), sum(attempts),
                                       left(min(error), 120)
                                FROM responses WHERE error IS NOT NULL GROUP BY ALL ORDER BY 3 DESC, 1, 2"""),
            versions=[{"version": v, "created_at": t, "counts": json.loads(c), "funnel": json.loads(f),
                       "diversity": json.loads(d)}
                      for v, t, c, f, d in store.sql(
                          "SELECT version, created_at, counts, funnel, diversity FROM versions ORDER BY version")],
            max_drop=cfg.refresh.gates.max_diversity_drop)
        if version is None and data.versions:
            version = data.versions[-1]["version"]
        data.version = next((v for v in data.versions if v["version"] == version), None)
        if data.version is None:
            return data
        data.groups = store.sql(_CANDIDATES + """
            SELECT CASE WHEN grouping(source) = 0 THEN 'source' ELSE 'teacher' END AS by,
                   coalesce(source, teacher), count(*), count(*) FILTER (verified), count(*) FILTER (is_kept),
                   sum(prompt_tokens), sum(completion_tokens), sum(cost)
            FROM t GROUP BY GROUPING SETS ((source), (teacher)) ORDER BY 1, 2""", [version])
        rows = store.sql(_CANDIDATES + """
            SELECT measure, is_kept, count(v), avg(v), quantile_cont(v, [0.1, 0.5, 0.9]), max(v)
            FROM (UNPIVOT (SELECT is_kept, reasoning_words, answer_words, completion_tokens FROM t)
                  ON reasoning_words, answer_words, completion_tokens INTO NAME measure VALUE v)
            GROUP BY GROUPING SETS ((measure, is_kept), (measure)) HAVING grouping(is_kept) = 1 OR is_kept""",
                         [version])
        data.lengths = {(m, "all" if kept is None else "kept"): rest for m, kept, *rest in rows}
        if samples:
            rows = store.sql(_CANDIDATES + f"SELECT is_kept, {', '.join(HISTOGRAMS)} FROM t", [version])
            for i, measure in enumerate(HISTOGRAMS, start=1):
                data.samples[measure] = {which: [r[i] for r in rows if r[0] == (which == "kept") and r[i] is not None]
                                         for which in ("kept", "dropped")}
    return data


# -- tables: the same rows in the terminal and on the page ---------------------------------------

def _num(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _money(x) -> str:
    return "–" if x is None else f"{x:,.4f}" if x < 1 else f"{x:,.2f}"


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def funnel_rows(candidates: int, kept: int, funnel: dict) -> list[tuple[str, ...]]:
    """Stage by stage: traces in, dropped, and why (then the kept count)."""
    rows, alive = [], candidates
    for stage in (s for s in STAGES if s in funnel):  # a stage that did not run (no student) is not listed
        reasons = funnel.get(stage, {})
        dropped = sum(reasons.values())
        rows.append((stage, _num(alive), _num(dropped), ", ".join(f"{r}: {n}" for r, n in reasons.items())))
        alive -= dropped
    rows.append(("kept", _num(kept), "", ""))
    return rows


def trend_rows(versions: list[dict], max_drop: float | None) -> list[tuple[str, ...]]:
    """One row per version; a figure that moved the collapsing way by more than `max_drop`
    (relative; any amount when None) since the version before is marked with DROP."""
    rows, prev = [], {}
    for v in versions:
        d, cells = v["diversity"], [str(v["version"])]
        for key, _ in DIVERSITY_FIGURES:
            drop = _collapsing(key, prev.get(key), d.get(key), max_drop)
            cells.append(_num(d.get(key)) + (DROP if drop else ""))
        rows.append(tuple(cells))
        prev = d
    return rows


def _collapsing(key: str, before, after, max_drop: float | None) -> bool:
    """Did a figure move the less-diverse way by more than `max_drop` (relative)?"""
    drop = collapse_drop(key, before, after)
    return drop is not None and drop > (max_drop or 0.0)


def report_tables(data: ReportData) -> dict[str, ReportTable]:
    """The report's tables by section name; version sections only when there is a version."""
    tables = {
        "seeds": ReportTable("seeds", ("source", "domain", "seeds"), [tuple(map(_num, r)) for r in data.seeds]),
        "teachers": ReportTable(
            "requests per teacher (all ever planned)",
            ("teacher", "model", "requests", "ok", "failed", "unanswered", "tokens in", "tokens out",
             "reasoning", "answer", "cost $", "latency s"),
            [(t, m, *map(_num, (n, ok, bad, left, tin, tout, think, tout - think)), _money(cost), _num(lat, 3))
             for t, m, n, ok, bad, left, tin, tout, cost, lat, think in data.teachers]),
    }
    if data.errors:
        tables["errors"] = ReportTable("errors", ("teacher", "reason", "requests", "attempts", "example"),
                                       [tuple(map(_num, r)) for r in data.errors])
    v = data.version
    if v is None:
        return tables
    counts, n = v["counts"], v["version"]
    tables["funnel"] = ReportTable(
        f"filter funnel, version {n}", ("stage", "in", "dropped", "why"),
        funnel_rows(counts["candidates"], counts["kept"], v["funnel"]),
        note=f"verified kept: {counts['verified']} of {counts['kept']}")
    tables["verified"] = ReportTable(
        f"verified rate by source and teacher, version {n}",
        ("by", "name", "traces", "verified", "rate", "kept", "tokens out", "cost $", "$ per kept"),
        [(by, name, _num(total), _num(ver), _pct(ver, total), _num(kept), _num(tout), _money(cost),
          _money(cost / kept) if cost is not None and kept else "–")
         for by, name, total, ver, kept, _, tout, cost in data.groups],
        note="traces: the version's candidates (answered requests of its build); verified: passed verification")
    rows = []
    for measure, label in LENGTHS:
        for which in ("kept", "all"):
            cnt, mean, pcts, top = data.lengths.get((measure, which), (0, None, None, None))
            if cnt:
                rows.append((label, which, _num(cnt), _num(mean, 3), *(_num(p, 3) for p in pcts), _num(top)))
    tables["lengths"] = ReportTable(f"lengths, version {n}", ("measure", "traces", "n", "mean", "p10", "p50", "p90",
                                                              "max"), rows)
    drop = "any amount" if not data.max_drop else f"more than {data.max_drop:.0%}"
    tables["trend"] = ReportTable(
        "diversity across versions (a falling line is a collapsing corpus)",
        ("version", *(label for _, label in DIVERSITY_FIGURES)), trend_rows(data.versions, data.max_drop),
        note=f"{DROP.strip()}: moved towards collapse by {drop} (refresh.gates.max_diversity_drop) since the version "
             "before. Raw figures: distinct-n also falls as a corpus grows; the refresh gate compares size-matched "
             "samples.")
    return tables


_NUMERIC = re.compile(r"[-\d.,%–▼ ]*")


def _rich(table: ReportTable) -> Table:
    out = Table(title=table.title, caption=table.note or None, caption_justify="left")
    for i, col in enumerate(table.columns):
        numeric = table.rows and all(_NUMERIC.fullmatch(row[i]) for row in table.rows)
        out.add_column(col, overflow="fold", justify="right" if numeric else "left")
    for row in table.rows:
        out.add_row(*(Text(c, style="red" if c.endswith(DROP) else "bold" if c == "kept" else "") for c in row))
    return out


def text_report(cfg: Config, console: Console, version: int | None = None) -> None:
    data = gather(cfg, version)
    tables = report_tables(data)
    for name in ("seeds", "teachers", "errors", "funnel", "verified", "lengths"):
        if name in tables:
            console.print(_rich(tables[name]))
    if data.version is None:
        which = "no filtered version yet (run `factory filter`)" if not data.versions else \
            f"no version {version} (versions: {', '.join(str(v['version']) for v in data.versions)})"
        console.print(which, style="yellow", highlight=False)
        return
    console.print(diversity_line(data.version["diversity"]), highlight=False)
    console.print(_rich(tables["trend"]))


def funnel_table(version: int, candidates: int, kept: int, funnel: dict, note: str = "") -> Table:
    """The funnel of a filter run, for the terminal."""
    return _rich(ReportTable(f"filter funnel, version {version}" + (f" ({note})" if note else ""),
                             ("stage", "in", "dropped", "why"), funnel_rows(candidates, kept, funnel)))


def figure(v) -> str:
    """A figure for people: n/a for none, at most 4 significant digits, lists as a/b/c, maps as k v."""
    if v is None or (isinstance(v, (list, tuple, dict)) and not v):
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)):
        return "/".join(figure(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {figure(x)}" for k, x in v.items())
    return str(v)


def diversity_line(d: dict) -> str:
    f = {k: figure(d.get(k)) for k in ("distinct_1", "distinct_2", "distinct_3", "compression_ratio", "near_dup_clusters",
                                       "answer_spread", "mean_reasoning_words", "reasoning_words_p10_p50_p90",
                                       "per_source", "per_teacher")}
    if not d.get("kept"):
        return "diversity: n/a (no traces kept)"
    return (f"diversity: distinct-1/2/3 {f['distinct_1']}/{f['distinct_2']}/{f['distinct_3']}, "
            f"compression ratio {f['compression_ratio']}, near-dup clusters {f['near_dup_clusters']}, "
            f"answer spread {f['answer_spread']}, reasoning words mean {f['mean_reasoning_words']} "
            f"(p10/p50/p90 {f['reasoning_words_p10_p50_p90']}), per source {f['per_source']}, "
            f"per teacher {f['per_teacher']}")


# -- what the commands print as they run: build, filter, export, the pipeline, refresh --------------

def _short(text: str, width: int = 40) -> str:
    """A value as it fits in a one-line message: newlines shown as \\n, long ones cut."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _seconds(s: float) -> str:
    return f"{s:,.1f} s"


def student_gate_line(summary: BuildSummary) -> str:
    """`40 seeds in band, 12 too easy, 9 too hard, 2 undecided; teachers skip 21 seeds (42 requests)`: the
    student's band decided before generation (select.student.before_generation)."""
    s = summary.student
    return (f"{s['in_band']} seeds in band, {s['too_easy']} too easy, {s['too_hard']} too hard, "
            f"{s['undecided']} undecided; teachers skip {s['too_easy'] + s['too_hard']} seeds "
            f"({summary.requests_skipped} requests)" + (f", decided in {_seconds(summary.student_s)}"
                                                         if summary.student_s >= 0.05 else ""))


def print_build_summary(summary: BuildSummary, console: Console) -> None:
    """Plan and generate: seeds, references, requests, tokens, cost, and the time they took."""
    table = Table(title="build summary", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rejected = sum(summary.seeds_rejected.values())
    reasons = ", ".join(f"{r}: {n}" for r, n in summary.seeds_rejected.most_common())
    table.add_row("seeds", f"{summary.seeds_loaded} loaded, {rejected} rejected" + (f" ({reasons})" if reasons else "")
                  + (f", {summary.seeds_duplicate} duplicates skipped" if summary.seeds_duplicate else ""))
    for source, refs in summary.references.items():
        shown = "; ".join(f"row {u['row']} '{_short(u['reference'])}': {_short(u['reason'], 80)}"
                          for u in refs["unusable"])
        table.add_row("references", f"{source}: {refs['usable']} of {refs['seeds']} usable"
                      + (f" (not: {shown})" if shown else ""))
    failed = sum(summary.requests_failed.values())
    reasons = ", ".join(f"{r}: {n}" for r, n in summary.requests_failed.most_common())
    table.add_row("requests", f"{summary.requests_planned} planned, {summary.requests_cached} cached, "
                  f"{summary.requests_sent} sent, {summary.requests_ok} ok, {failed} failed"
                  + (f" ({reasons})" if reasons else ""))
    student = getattr(summary, "student", None)
    if student:  # select.student decided before generation: what the teachers were spared
        table.add_row("student", student_gate_line(summary))
    think = getattr(summary, "tokens_reasoning", 0)
    table.add_row("tokens", f"{summary.tokens_in:,} in, {summary.tokens_out:,} out"
                  + (f" ({think:,} reasoning, {summary.tokens_out - think:,} answer)" if think else ""))
    table.add_row("cost", f"${summary.cost:,.4f}" if summary.priced else "n/a (no price configured)")
    if summary.priced and getattr(summary, "batched", False):  # mode: batch: next to what online would cost
        table.add_row("cost online", f"${summary.cost_online:,.4f} (batch saves ${summary.cost_online - summary.cost:,.4f})")
    # the whole run's wall time (filter and export too) is the pipeline's last line
    speed = getattr(summary, "generate_s", 0.0)
    table.add_row("generation", _seconds(summary.wall_s) + " plan + generate"
                  + (f" (teachers starting {_seconds(summary.startup_s)}, generating {_seconds(speed)}"
                     f" at {summary.tokens_per_s:,.1f} tokens/s)" if speed and summary.tokens_out else "")
                  + (" (interrupted)" if summary.interrupted else ""))
    table.add_row("store", summary.store_path)
    console.print(table)


def print_filter_summary(summary: FilterSummary, console: Console) -> None:
    """The funnel of a filter run and the kept corpus's diversity."""
    console.print(funnel_table(summary.version, summary.candidates, summary.kept, summary.funnel,
                               note="" if summary.new_version else "unchanged"))
    console.print(diversity_line(summary.diversity), highlight=False)


def print_export(result: ExportResult, console: Console) -> None:
    console.print(f"exported version {result.version}: " + ", ".join(f"{k} {v}" for k, v in result.counts.items())
                  + f" rows -> {result.path}", highlight=False)


def print_wall_time(stages: dict[str, float], console: Console) -> None:
    """`wall time 12.3 s (plan + generate 10.1 s, filter 2.0 s, export 0.2 s)`: every stage that ran."""
    parts = ", ".join(f"{name} {_seconds(s)}" for name, s in stages.items())
    console.print(f"wall time {_seconds(sum(stages.values()))}" + (f" ({parts})" if parts else ""), highlight=False)


def print_comparison(comparison: dict, gates: list, console: Console) -> None:
    """A refresh's view: sources added / removed, the new version against its baseline
    (factory.versions.compare_versions), and every gate with its value and verdict."""
    c = comparison
    src = c.get("sources", {})
    if src:
        removed = ", ".join(src["removed_ids"]) + (" …" if src["removed"] > len(src["removed_ids"]) else "")
        console.print(f"sources: {src['seeds']} seeds, {src['added']} new, {src['removed']} removed"
                      + (f" ({removed})" if removed else ""), highlight=False)
    old = c.get("old")
    table = Table(title=f"version {c['new']} vs " + (f"version {old}" if old else "nothing (no earlier version)"))
    for col in ("", f"v{old}" if old else "-", f"v{c['new']}", "change"):
        table.add_column(col)
    figs_new, figs_old = c["figures"]["new"], c["figures"]["old"] or {}

    def before(x) -> str:  # no baseline: an empty cell, not "n/a"
        return figure(x) if figs_old else ""

    for what in ("seeds", "traces"):
        d = c.get(what)
        if d:
            table.add_row(what, figure(d["old"]), figure(d["new"]), f"+{d['added']} / -{d['removed']}")
    for k in ("verified_rate", "contamination", "contamination_dropped", "near_dup_clusters"):
        table.add_row(k, before(figs_old.get(k)), figure(figs_new[k]), "")

    def lengths(ln: dict) -> str:
        if ln["mean"] is None:
            return "n/a"
        return (f"{figure(ln['mean'])} ± {figure(ln['std'])} "
                f"(p10/p50/p90 {figure([ln['p10'], ln['p50'], ln['p90']])})")

    table.add_row("reasoning words", lengths(figs_old["length"]) if figs_old else "", lengths(figs_new["length"]), "")
    for k, d in c.get("diversity_gate", {}).items():
        moved = "" if d["drop"] is None else f"drop {d['drop']:.1%}" if d["drop"] > 0 else "no drop"
        table.add_row(k + (f" ({c['diversity_gate_words']:,} words)" if k in TEXT_FIGURES else ""), figure(d["old"]),
                      figure(d["new"]), moved)
    console.print(table)
    out = Table(title="gates")
    for col in ("gate", "value", "threshold", "passed"):
        out.add_column(col)
    for g in gates:
        out.add_row(g.name, figure(g.value), figure(g.threshold), "[green]yes[/]" if g.passed else "[red]NO[/]")
    console.print(out)


_OUTCOME_STYLE = {"published": "green", "passed": "green", "nothing_new": "cyan", "gates_failed": "red",
                  "locked": "yellow"}


def print_outcome(outcome: str, message: str, exit_code: int, console: Console) -> None:
    """A refresh's last line: what happened and its exit code."""
    label = "error: " if outcome == "error" else ""
    console.print(f"[{_OUTCOME_STYLE.get(outcome, 'red')}]refresh[/] {label}{message} (exit {exit_code})",
                  highlight=False)


# -- the HTML page --------------------------------------------------------------------------------

def html_report(cfg: Config, version: int | None = None, path: Path | None = None) -> Path:
    """Write the one-file HTML report of a version (default: the latest) and return its path."""
    import jinja2

    data = gather(cfg, version, samples=True)
    if data.version is None:
        if not data.versions:
            raise FilterError(f"{cfg.store_path}: no filtered version yet (run `factory filter` first)")
        raise FilterError(f"{cfg.store_path}: no version {version} "
                           f"(versions: {', '.join(str(v['version']) for v in data.versions)})")
    n = data.version["version"]
    path = Path(path) if path else cfg.path(cfg.workdir) / "report" / f"v{n}.html"
    tables = report_tables(data)
    counts = data.version["counts"]
    cost = [t[8] for t in data.teachers if t[8] is not None]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string((Path(__file__).parent / "report.html.jinja").read_text(encoding="utf-8"))
    page = template.render(
        version=n, created_at=str(data.version["created_at"])[:19], store=cfg.store_path.name,
        versions=len(data.versions), tables=tables, plots=_plots(data), drop=DROP,
        cards=[("candidates", _num(counts["candidates"])), ("kept", _num(counts["kept"])),
               ("verified kept", f"{_num(counts['verified'])} ({_pct(counts['verified'], counts['kept'])})"),
               ("seeds kept", _num(counts.get("seeds"))), ("versions", _num(len(data.versions))),
               ("cost (all requests)", f"${_money(sum(cost))}" if cost else "–")])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


_STYLE = {"axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
          "axes.titlesize": 11, "axes.titleweight": "bold", "font.size": 9, "axes.prop_cycle":
          "cycler(color=['#3b6fb6', '#e07b39', '#4a9c5d', '#c44e52', '#8172b3', '#937860'])"}
KEPT, DROPPED = "#3b6fb6", "#c9a227"


def _png(fig) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # constrained layout already fits the labels
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(data: ReportData) -> dict[str, str]:
    """Section name -> base64 PNG. Figure() without pyplot: no global state, the Agg canvas."""
    import matplotlib
    from matplotlib.figure import Figure

    plots = {}
    with matplotlib.rc_context(_STYLE):
        plots["funnel"] = _funnel_plot(Figure(figsize=(10, 3.6), layout="constrained"), data)
        plots["verified"] = _verified_plot(Figure(figsize=(10, 2.8), layout="constrained"), data)
        plots["lengths"] = _lengths_plot(Figure(figsize=(10, 3), layout="constrained"), data)
        plots["trend"] = _trend_plot(Figure(figsize=(10, 5), layout="constrained"), data)
        plots["teachers"] = _teachers_plot(Figure(figsize=(10, 2.8), layout="constrained"), data)
    return plots


def _funnel_plot(fig, data: ReportData) -> str:
    counts, funnel = data.version["counts"], data.version["funnel"]
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    names, alive = ["candidates"], [counts["candidates"]]
    for stage in (s for s in STAGES if s in funnel):
        names.append(f"after {stage}")
        alive.append(alive[-1] - sum(funnel.get(stage, {}).values()))
    bars = left.barh(names[::-1], alive[::-1], color=KEPT)
    left.bar_label(bars, padding=3)
    left.set_title("traces left after each stage")
    reasons = [(f"{s}: {r}", k) for s in STAGES for r, k in funnel.get(s, {}).items()]
    if reasons:
        bars = right.barh([r for r, _ in reasons][::-1], [k for _, k in reasons][::-1], color=DROPPED)
        right.bar_label(bars, padding=3)
    else:
        right.text(0.5, 0.5, "nothing dropped", ha="center", va="center", transform=right.transAxes)
    right.set_title("dropped, by stage and reason")
    return _png(fig)


def _verified_plot(fig, data: ReportData) -> str:
    axes = fig.subplots(1, 2)
    for ax, by in zip(axes, ("source", "teacher")):
        rows = [r for r in data.groups if r[0] == by]
        names = [r[1] for r in rows][::-1]
        rates = [100 * r[3] / r[2] if r[2] else 0 for r in rows][::-1]
        bars = ax.barh(names, rates, color=KEPT if by == "source" else "#4a9c5d")
        ax.bar_label(bars, labels=[f"{r[3]}/{r[2]}" for r in rows][::-1], padding=3)
        ax.set_xlim(0, 115)
        ax.set_xlabel("verified, % of traces")
        ax.set_title(f"verified rate by {by}")
    return _png(fig)


def _lengths_plot(fig, data: ReportData) -> str:
    import numpy as np

    shown = [(m, label) for m, label in LENGTHS if m in HISTOGRAMS and any(data.samples[m].values())]
    if not shown:
        fig.text(0.5, 0.5, "no lengths recorded", ha="center")
        return _png(fig)
    for ax, (measure, label) in zip(np.atleast_1d(fig.subplots(1, len(shown))), shown):
        s = data.samples[measure]
        every = s["kept"] + s["dropped"]
        bins = np.histogram_bin_edges(every, bins=min(30, max(5, len(set(every)))))
        for which, color in (("dropped", DROPPED), ("kept", KEPT)):
            if s[which]:
                ax.hist(s[which], bins=bins, color=color, alpha=0.6, label=f"{which} ({len(s[which])})")
        ax.set_title(label)
        ax.set_ylabel("traces")
        ax.legend(frameon=False)
    return _png(fig)


def _trend_plot(fig, data: ReportData) -> str:
    from matplotlib.ticker import MaxNLocator

    xs = [v["version"] for v in data.versions]
    axes = fig.subplots(2, 4).ravel()
    for ax, (key, label) in zip(axes, DIVERSITY_FIGURES):
        higher = MORE_DIVERSE_WHEN_HIGHER.get(key)
        ys = [v["diversity"].get(key) for v in data.versions]
        ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", color=KEPT)
        drops = [(x, y) for x, before, y in zip(xs[1:], ys, ys[1:]) if _collapsing(key, before, y, data.max_drop)]
        if drops:  # the same versions the table marks
            ax.plot(*zip(*drops), "v", color="#c44e52", markersize=9, label="towards collapse")
        ax.set_title(label + ("" if higher is None else "\n(higher: more diverse)" if higher else "\n(lower: more diverse)"),
                     fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("version")
        ax.axvline(data.version["version"], color="#999", lw=0.8, ls=":")
    return _png(fig)


def _teachers_plot(fig, data: ReportData) -> str:
    tokens, cost = fig.subplots(1, 2)
    rows = data.teachers[::-1]  # barh draws bottom-up: the table's order, top to bottom
    names = [t[0] for t in rows]
    tin, tout = [t[6] for t in rows], [t[7] for t in rows]
    tokens.barh(names, tin, color=KEPT, label="prompt")
    tokens.barh(names, tout, left=tin, color=DROPPED, label="completion")
    tokens.set_title("tokens per teacher")
    tokens.legend(frameon=False)
    if any(t[8] for t in rows):
        bars = cost.barh(names, [t[8] or 0 for t in rows], color="#4a9c5d")
        cost.bar_label(bars, labels=[_money(t[8]) for t in rows], padding=3)
        cost.set_xlabel("USD")
    else:
        cost.text(0.5, 0.5, "no prices configured\n(teachers[].price_in_per_mtok / price_out_per_mtok)",
                  ha="center", va="center", transform=cost.transAxes)
    cost.set_title("cost per teacher")
    return _png(fig)
