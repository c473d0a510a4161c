"""`factory refresh`: the scheduled job. Lock, re-read the sources, generate only what is missing,
re-filter, compare the new version with the last accepted one, and publish it only if every gate holds.

Safe under cron / systemd timers / CI schedules: a second refresh of the same project exits at once
with EXIT_LOCKED (the lock is taken before anything opens the store), and every refresh that got
the lock leaves a row in the `refreshes` table with its gates, comparison and outcome.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from factory.config import Config, GatesConfig
from factory.hub import HubError, compare_versions, size_check
from factory.store import Store

# exit codes (README: Scheduling)
EXIT_PUBLISHED = 0  # a new version passed every gate (and was published when refresh.publish and publish.repo_id)
EXIT_ERROR = 1  # sources, prompts, teachers, store or Hub failed; nothing was published
EXIT_NOTHING_NEW = 3  # no new version since the last refresh decided on one
EXIT_GATES_FAILED = 4  # a new version failed a gate: reasons printed and stored, nothing pushed
EXIT_LOCKED = 5  # another refresh holds the project's lock; nothing was touched

LOCK_NAME = "refresh.lock"
ACCEPTED = ("published", "passed")  # outcomes that make a version the baseline of the next comparison
DECIDED = ACCEPTED + ("gates_failed",)  # outcomes after which a version is not gated again
# the text figures measured on size-matched samples (which way each collapses: filter.collapse_drop)
TEXT_FIGURES = ("distinct_1", "distinct_2", "distinct_3", "compression_ratio")
SAMPLE_WORDS = 200_000  # text diversity figures are measured on at most this many words of each version
SHOW_REMOVED = 5  # removed seeds listed by id; the rest are counted


class Locked(RuntimeError):
    """Another process holds the refresh lock."""


class RefreshError(RuntimeError):
    """A refresh cannot go on (a failed build, an interrupted run): a one-line message."""


@dataclass
class Gate:
    name: str
    value: float | None
    threshold: float
    passed: bool


@dataclass
class RefreshResult:
    outcome: str  # published | passed | nothing_new | gates_failed | locked | error
    exit_code: int
    message: str
    refresh_id: str | None = None
    version: int | None = None
    compared_with: int | None = None
    gates: list[Gate] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)
    teacher_calls: int = 0  # requests sent to teachers by this refresh
    published: Any = None  # hub.PublishResult when a version was pushed

    @property
    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]


# -- the lock -----------------------------------------------------------------------------------

@contextmanager
def project_lock(path: Path) -> Iterator[None]:
    """An exclusive, non-blocking flock on `path`; raises Locked naming the holder (pid, since when).
    The kernel drops the lock when the process ends, so a killed refresh never leaves it held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:  # "a+": a contender must not wipe the holder's note
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "pid unknown"
            raise Locked(f"locked: another refresh ({holder}) holds {path}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
        fh.flush()
        yield  # closing the file releases the lock


# -- reading versions ---------------------------------------------------------------------------

def _planned_seeds(store: Store) -> set[str]:
    """The seeds of the last build's plan (none before the first build)."""
    if not store.sql("SELECT 1 FROM information_schema.tables WHERE table_name = 'plan'"):
        return set()
    return {r[0] for r in store.sql("SELECT DISTINCT seed_id FROM plan JOIN requests USING (request_id)")}


def _seeds_before(cfg: Config) -> set[str]:
    if not cfg.store_path.exists():
        return set()
    with Store(cfg.store_path) as store:  # read-write: an older store gets the `refreshes` migration here
        return _planned_seeds(store)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _decided(store: Store, version: int) -> bool:
    """Published, or already judged by a refresh: a refresh does not judge it again."""
    return bool(store.scalar(f"""
        SELECT (SELECT published_revision IS NOT NULL FROM versions WHERE version = $1)
            OR EXISTS (SELECT 1 FROM refreshes WHERE version = $1 AND outcome IN ({_in(DECIDED)}))""", [version]))


def baseline_version(store: Store, version: int) -> int | None:
    """The last version before `version` that was published, or passed a refresh's gates."""
    return store.scalar(f"""
        SELECT max(version) FROM versions WHERE version < $1 AND (published_revision IS NOT NULL
            OR version IN (SELECT version FROM refreshes WHERE outcome IN ({_in(ACCEPTED)})))""", [version])


def version_figures(store: Store, version: int) -> dict[str, Any]:
    counts, funnel, diversity = (json.loads(x) for x in store.sql(
        "SELECT counts, funnel, diversity FROM versions WHERE version = ?", [version])[0])
    kept = counts["kept"]
    # traces that reached trace dedup, and how many of them were (near-)duplicates of another
    early = sum(sum(funnel.get(s, {}).values()) for s in ("parse", "quality", "verify"))
    dedup = funnel.get("dedup", {})
    reached = counts["candidates"] - early - dedup.get("duplicate_problem", 0) - dedup.get("near_duplicate_problem", 0)
    dups = dedup.get("duplicate_trace", 0) + dedup.get("near_duplicate_trace", 0)
    p10, p50, p90 = (round(x, 1) for x in diversity.get("reasoning_words_p10_p50_p90") or (0, 0, 0))
    return {
        "kept": kept, "seeds": counts["seeds"], "candidates": counts["candidates"],
        "verified_rate": round(counts["verified"] / kept, 4) if kept else 0.0,
        # the gate reads what the version would ship: kept traces whose problem or trace matched a
        # benchmark (the shipped filters drop those, so this is 0 unless a project's filters/ let them
        # through); how many candidates the decontamination step dropped is shown beside it
        "contamination": store.scalar("""SELECT count(*) FROM kept k WHERE k.version = ? AND EXISTS (
            SELECT 1 FROM contamination c WHERE c.id = k.request_id OR c.id = k.seed_id)""", [version]),
        "contamination_dropped": sum(funnel.get("decontam", {}).values()),
        "unique_trace_share": round(1 - dups / reached, 4) if reached > 0 else None,
        "near_dup_clusters": diversity.get("near_dup_clusters"),
        "length": {"mean": round(diversity.get("mean_reasoning_words") or 0, 1),
                   "std": round(diversity.get("std_reasoning_words") or 0, 1), "p10": p10, "p50": p50, "p90": p90},
    }


def _sample(store: Store, version: int, words: int = SAMPLE_WORDS) -> list[list[str]]:
    """A version's kept traces as word lists, until `words` words; request ids are content hashes,
    so their order is a fixed random order."""
    out, total = [], 0
    with store.con.cursor() as cur:
        reader = cur.sql("""SELECT coalesce(p.reasoning, s.text) FROM kept k JOIN parsed p USING (request_id)
                            JOIN responses s USING (request_id) WHERE k.version = ? ORDER BY k.request_id""",
                         params=[version]).to_arrow_reader(1024)
        for batch in reader:
            for text in batch.column(0).to_pylist():
                out.append((text or "").split())
                total += len(out[-1])
                if total >= words:
                    return out
    return out


def _first_words(traces: list[list[str]], budget: int) -> list[str]:
    out = []
    for words in traces:
        if budget <= 0:
            break
        out.append(" ".join(words[:budget]))
        budget -= len(words)
    return out


def compare(store: Store, old: int | None, new: int) -> dict[str, Any]:
    """hub.compare_versions (seeds and traces added / removed, verified rate, the stored diversity
    figures), plus what the gates read: each version's figures (size, verified rate, contamination
    hits, length distribution) and `diversity_gate`, the diversity figures with their relative drop.

    distinct-n and the compression ratio move with the amount of text, so for the gate both versions
    are measured on the same number of words (the smaller version's, at most SAMPLE_WORDS), taken in
    a fixed random order; the unique-trace share is a rate already.
    """
    from factory.filter import collapse_drop, text_diversity

    after = version_figures(store, new)
    if old is None:
        return {"old": None, "new": new, "figures": {"old": None, "new": after}}
    before = version_figures(store, old)
    out = compare_versions(store, old, new)
    out["figures"] = {"old": before, "new": after}
    samples = [_sample(store, v) for v in (old, new)]
    n = min(sum(map(len, t)) for t in samples)
    sized = [text_diversity(_first_words(t, n)) if n else {} for t in samples]
    gate = {k: {"old": sized[0].get(k), "new": sized[1].get(k)} for k in TEXT_FIGURES}
    gate["unique_trace_share"] = {"old": before["unique_trace_share"], "new": after["unique_trace_share"]}
    for k, d in gate.items():
        drop = collapse_drop(k, d["old"], d["new"])
        d["drop"] = None if drop is None else round(drop, 4)
    out["diversity_gate"] = gate
    out["diversity_gate_words"] = n
    return out


# -- gates --------------------------------------------------------------------------------------

def check_gates(gates: GatesConfig, comparison: dict[str, Any], force: bool = False) -> list[Gate]:
    """Every configured gate (None in the config: off) with its value and verdict, and the size guard
    `factory publish` applies too (unless `force`): `not_empty`, and `max_shrink` (publish.max_shrink)
    against the last published version, from comparison["size"]."""
    new = comparison["figures"]["new"]
    out = []
    size = comparison.get("size")
    if size and not force:
        out.append(Gate("not_empty", size["kept"], 1, size["kept"] >= 1))
        if size["max_shrink"] is not None and size["shrink"] is not None:
            out.append(Gate("max_shrink", size["shrink"], size["max_shrink"],
                            size["shrink"] <= size["max_shrink"] + 1e-9))
    if gates.min_size is not None:
        out.append(Gate("min_size", new["kept"], gates.min_size, new["kept"] >= gates.min_size))
    if gates.min_verified_rate is not None:
        out.append(Gate("min_verified_rate", new["verified_rate"], gates.min_verified_rate,
                        new["verified_rate"] >= gates.min_verified_rate))
    if gates.max_contamination is not None:
        out.append(Gate("max_contamination", new["contamination"], gates.max_contamination,
                        new["contamination"] <= gates.max_contamination))
    if gates.max_diversity_drop is not None:
        for name, d in comparison.get("diversity_gate", {}).items():  # none without an earlier accepted version
            if d["drop"] is not None:
                out.append(Gate(f"diversity_drop:{name}", d["drop"], gates.max_diversity_drop,
                                d["drop"] <= gates.max_diversity_drop + 1e-9))
    return out


def describe(gate: Gate) -> str:
    """Why a gate failed, e.g. `diversity_drop:distinct_2 0.41 > 0.1`."""
    below = gate.name.startswith("min_") or gate.name == "not_empty"
    return f"{gate.name} {gate.value} {'<' if below else '>'} {gate.threshold}"


# -- the job ------------------------------------------------------------------------------------

def _secrets(cfg: Config) -> list[str]:
    names = {cfg.publish.token_env, "HF_TOKEN"} | {t.api_key_env for t in cfg.teachers if t.api_key_env}
    return [v for v in (os.environ.get(n) for n in names) if v and len(v) >= 4]


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


def _record(cfg: Config, result: RefreshResult, started: datetime) -> None:
    secrets = _secrets(cfg)
    gates = json.dumps([asdict(g) for g in result.gates])
    with Store(cfg.store_path) as store:
        store.sql("INSERT INTO refreshes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  [result.refresh_id, started, datetime.now(timezone.utc), result.version, result.compared_with,
                   result.outcome, result.exit_code, gates, _scrub(json.dumps(result.comparison), secrets),
                   _scrub(result.message, secrets)])


def _refresh(cfg: Config, console: Console, result: RefreshResult, force: bool = False) -> None:
    from factory.build import build_dataset, print_summary
    from factory.filter import print_filter_summary, run_filter

    before = _seeds_before(cfg)
    build = build_dataset(cfg, console=console)
    print_summary(build, console)
    result.teacher_calls = build.requests_sent
    if build.interrupted:
        raise RefreshError("interrupted during generation; answers so far are stored")
    if build.failure_rate > cfg.build.max_failure_rate:
        raise RefreshError(f"{build.failure_rate:.1%} of requests failed (bound: build.max_failure_rate = "
                           f"{cfg.build.max_failure_rate:.1%}); failed requests are stored and retried next time")
    filtered = run_filter(cfg, console=console)
    print_filter_summary(filtered, console)
    result.version = filtered.version
    with Store(cfg.store_path) as store:
        after = _planned_seeds(store)
        if not filtered.new_version and _decided(store, filtered.version):
            result.outcome, result.exit_code = "nothing_new", EXIT_NOTHING_NEW
            result.message = f"nothing new: version {filtered.version} is unchanged and already decided"
            return
        result.compared_with = baseline_version(store, filtered.version)
        result.comparison = compare(store, result.compared_with, filtered.version)
        sized = size_check(store, filtered.version, cfg.publish.max_shrink)
    result.comparison["size"] = {"kept": sized.kept, "published": sized.baseline, "published_kept": sized.baseline_kept,
                                 "shrink": sized.shrink, "max_shrink": sized.max_shrink}
    removed = sorted(before - after)
    result.comparison["sources"] = {"seeds": len(after), "added": len(after - before),
                                    "removed": len(removed), "removed_ids": removed[:SHOW_REMOVED]}
    result.gates = check_gates(cfg.refresh.gates, result.comparison, force=force)
    print_comparison(result, console)
    if result.failed_gates:
        result.outcome, result.exit_code = "gates_failed", EXIT_GATES_FAILED
        result.message = (f"gates failed for version {result.version}: "
                          + "; ".join(describe(g) for g in result.failed_gates) + " — not published")
        if any(g.name in ("not_empty", "max_shrink") for g in result.failed_gates):
            # this version is now decided (a later refresh does not judge it again): name the way to ship it
            hint = f"`factory publish --version {result.version} --force` to publish it anyway"
            result.message += f" ({sized.reason(hint)})"
        return
    if not (cfg.refresh.publish and cfg.publish.repo_id):
        why = "refresh.publish is false" if not cfg.refresh.publish else "publish.repo_id is not set"
        result.outcome, result.exit_code = "passed", EXIT_PUBLISHED
        result.message = f"version {result.version} passed every gate; not published ({why})"
        return
    from factory.export import export_version
    from factory.hub import print_publish, publish_version

    export_version(cfg, result.version)
    result.published = p = publish_version(cfg, result.version, console=console, force=force)
    print_publish(p, console)
    result.outcome, result.exit_code = "published", EXIT_PUBLISHED
    result.message = (f"published version {result.version} to {p.repo_id} (tag {p.tag}, commit {p.revision[:12]})"
                      + (", already there" if p.noop else ""))


def run_refresh(cfg: Config, console: Console | None = None, force: bool = False) -> RefreshResult:
    """The whole job; never raises for an expected failure: the outcome is in `.exit_code`. `force`
    lifts the size guard (an empty version, or one shrunk by more than publish.max_shrink), not the gates."""
    console = console or Console(stderr=True)
    lock = cfg.path(cfg.workdir) / LOCK_NAME
    started = datetime.now(timezone.utc)
    result = RefreshResult("error", EXIT_ERROR, "", refresh_id=started.strftime("%Y%m%dT%H%M%S") + "-"
                           + uuid.uuid4().hex[:6])
    try:
        with project_lock(lock):
            try:
                _refresh(cfg, console, result, force=force)
            except KeyboardInterrupt:
                result.outcome, result.exit_code, result.message = "error", EXIT_ERROR, "interrupted"
            except Exception as e:  # noqa: BLE001  one line for the log; cron must always get its exit code
                result.outcome, result.exit_code = "error", EXIT_ERROR
                result.message = _one_line(e)
                if not _expected(e):
                    console.print_exception(max_frames=8)
            result.message = _scrub(result.message, _secrets(cfg))
            try:
                _record(cfg, result, started)
            except Exception as e:  # noqa: BLE001  the store itself may be what failed
                console.print(f"[yellow]could not record the refresh:[/] {_one_line(e)}", highlight=False)
    except Locked as e:
        result.outcome, result.exit_code, result.message = "locked", EXIT_LOCKED, str(e)
        result.refresh_id = None
    except OSError as e:  # the lock file itself (read-only workdir, ...)
        result.outcome, result.exit_code, result.message = "error", EXIT_ERROR, f"{lock}: {e.strerror or e}"
    print_outcome(result, console)
    return result


def _expected(e: Exception) -> bool:
    """Errors of input or environment (one line is enough), as opposed to a bug (traceback too)."""
    import duckdb

    from factory.config import ConfigError
    from factory.prompts import PromptError
    from factory.sources import SourceError
    from factory.teachers.base import TeacherError

    return isinstance(e, (RefreshError, HubError, ConfigError, PromptError, SourceError, TeacherError, OSError,
                          RuntimeError, duckdb.Error))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if _expected(e) else f"{type(e).__name__}: {text}"  # type: ignore[arg-type]


# -- printing -----------------------------------------------------------------------------------

def print_comparison(result: RefreshResult, console: Console) -> None:
    c = result.comparison
    src = c.get("sources", {})
    if src:
        removed = ", ".join(src["removed_ids"]) + (" …" if src["removed"] > len(src["removed_ids"]) else "")
        console.print(f"sources: {src['seeds']} seeds, {src['added']} new, {src['removed']} removed"
                      + (f" ({removed})" if removed else ""), highlight=False)
    old = c.get("old")
    table = Table(title=f"version {c['new']} vs " + (f"version {old}" if old else "nothing (no accepted version yet)"))
    for col in ("", f"v{old}" if old else "-", f"v{c['new']}", "change"):
        table.add_column(col)
    figs_new, figs_old = c["figures"]["new"], c["figures"]["old"] or {}
    for what in ("seeds", "traces"):
        d = c.get(what)
        if d:
            table.add_row(what, str(d["old"]), str(d["new"]), f"+{d['added']} / -{d['removed']}")
    for k in ("verified_rate", "contamination", "contamination_dropped", "near_dup_clusters"):
        table.add_row(k, str(figs_old.get(k, "")), str(figs_new[k]), "")
    ln_new, ln_old = figs_new["length"], figs_old.get("length", {})
    fmt = "{mean} ± {std} (p10/p50/p90 {p10}/{p50}/{p90})"
    table.add_row("reasoning words", fmt.format(**ln_old) if ln_old else "", fmt.format(**ln_new), "")
    for k, d in c.get("diversity_gate", {}).items():
        table.add_row(k + (f" ({c['diversity_gate_words']:,} words)" if k in TEXT_FIGURES else ""), str(d["old"]), str(d["new"]),
                      "" if d["drop"] is None else f"drop {d['drop']:.1%}" if d["drop"] > 0 else "no drop")
    console.print(table)
    gates = Table(title="gates")
    for col in ("gate", "value", "threshold", "passed"):
        gates.add_column(col)
    for g in result.gates:
        gates.add_row(g.name, str(g.value), str(g.threshold), "[green]yes[/]" if g.passed else "[red]NO[/]")
    console.print(gates)


def print_outcome(result: RefreshResult, console: Console) -> None:
    style = {EXIT_PUBLISHED: "green", EXIT_NOTHING_NEW: "cyan", EXIT_GATES_FAILED: "red", EXIT_LOCKED: "yellow"}
    label = "error: " if result.exit_code == EXIT_ERROR else ""
    console.print(f"[{style.get(result.exit_code, 'red')}]refresh[/] {label}{result.message} (exit {result.exit_code})",
                  highlight=False)
