"""`factory refresh`: the scheduled job. Lock, re-read the sources, generate only what is missing,
re-filter (the one pipeline: factory.pipeline), compare the new version with its baseline (the last
accepted one: factory.versions.baseline_version), and publish it only if every gate holds.

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

from factory.config import Config, GatesConfig
from factory.errors import FactoryError, StoreBusy
from factory.export import export_version
from factory.hub import print_publish, publish_version, size_check
from factory.pipeline import run_pipeline
from factory.report import print_comparison, print_outcome
from factory.store import Store
from factory.versions import ACCEPTED, baseline_version, compare_versions

# exit codes (README: Scheduling)
EXIT_PUBLISHED = 0  # a new version passed every gate (and was published when refresh.publish and publish.repo_id)
EXIT_ERROR = 1  # sources, prompts, teachers, store or Hub failed; nothing was published
EXIT_NOTHING_NEW = 3  # no new version since the last refresh decided on one
EXIT_GATES_FAILED = 4  # a new version failed a gate: reasons printed and stored, nothing pushed
EXIT_LOCKED = 5  # another refresh holds the project's lock; nothing was touched

LOCK_NAME = "refresh.lock"
DECIDED = ACCEPTED + ("gates_failed",)  # outcomes after which a version is not gated again
SHOW_REMOVED = 5  # removed seeds listed by id; the rest are counted


class Locked(StoreBusy):
    """Another process holds the refresh lock."""


class RefreshError(FactoryError, RuntimeError):
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


# -- what a refresh reads of the store ----------------------------------------------------------

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
        for name, d in comparison.get("diversity_gate", {}).items():  # none for a first version (no baseline)
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
    names = {cfg.publish.token_env, "HF_TOKEN"} | {t.api_key_env for t in cfg.teachers if getattr(t, "api_key_env", None)}
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


def _draw_fresh(cfg: Config, console: Console) -> dict[str, Any]:
    """refresh.fresh_seeds: each reasoning_gym source records a draw of that many problems never seen before
    (factory/gym.py), which this refresh's build, and every later one, plans."""
    if not cfg.refresh.fresh_seeds or not any(s.kind == "reasoning_gym" for s in cfg.sources):
        return {}
    from factory.gym import draw_fresh_seeds

    with Store(cfg.store_path) as store:
        drawn = draw_fresh_seeds(store, cfg.sources, cfg.refresh.fresh_seeds)
    for name, d in drawn.items():
        console.print(f"fresh seeds: {name}: {d['new']} new of {d['asked']} asked (generator seed {d['seed']}, "
                      f"{d['indices']} drawn)", highlight=False)
    return drawn


def _refresh(cfg: Config, console: Console, result: RefreshResult, force: bool = False) -> None:
    before = _seeds_before(cfg)
    fresh = _draw_fresh(cfg, console)
    run = run_pipeline(cfg, console=console, export=False)  # only a version that is published is exported
    result.teacher_calls = run.build.requests_sent
    if run.stopped:
        raise RefreshError(run.stopped)
    filtered = run.filtered
    result.version = filtered.version
    with Store(cfg.store_path) as store:
        after = _planned_seeds(store)
        if not filtered.new_version and _decided(store, filtered.version):
            result.outcome, result.exit_code = "nothing_new", EXIT_NOTHING_NEW
            result.message = f"nothing new: version {filtered.version} is unchanged and already decided"
            return
        result.compared_with = baseline_version(store, filtered.version)
        result.comparison = compare_versions(store, result.compared_with, filtered.version)
        sized = size_check(store, filtered.version, cfg.publish.max_shrink)
    result.comparison["size"] = {"kept": sized.kept, "published": sized.baseline, "published_kept": sized.baseline_kept,
                                 "shrink": sized.shrink, "max_shrink": sized.max_shrink}
    removed = sorted(before - after)
    result.comparison["sources"] = {"seeds": len(after), "added": len(after - before),
                                    "removed": len(removed), "removed_ids": removed[:SHOW_REMOVED]}
    if fresh:
        result.comparison["sources"]["fresh_seeds"] = fresh
    result.gates = check_gates(cfg.refresh.gates, result.comparison, force=force)
    print_comparison(result.comparison, result.gates, console)
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
    print_outcome(result.outcome, result.message, result.exit_code, console)
    return result


def _expected(e: Exception) -> bool:
    """Errors of input or environment (one line is enough), as opposed to a bug (traceback too)."""
    import duckdb

    return isinstance(e, (FactoryError, OSError, RuntimeError, duckdb.Error))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if _expected(e) else f"{type(e).__name__}: {text}"  # type: ignore[arg-type]
