"""`factory build dataset`: sources -> render -> generate, every answer stored as it arrives.

Stage 1 (plan) streams the seeds, renders every request and writes both to the store, so a
template error stops the run before any teacher call. Stage 2 (generate) asks each teacher
only for the planned requests that have no successful response yet: a killed run resumes
where it stopped, and an edited template or parameter re-asks only what it changed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from factory.config import Config, TeacherConfig
from factory.prompts import Prompts
from factory.records import Request, Seed
from factory.sources import BadRow, plan_source, read_seeds
from factory.store import ResponseWriter, Store
from factory.teachers.base import Teacher

DEFAULT_TEMPLATES = {"math": "math_cot.jinja", "code": "code_cot.jinja"}
PLAN_BATCH = 2000  # seeds rendered and written per store round-trip
SHOW_BAD_ROWS = 10  # bad rows printed one per line; the rest are counted


@dataclass
class BuildSummary:
    store_path: str
    run_id: str
    seeds_loaded: int = 0
    seeds_duplicate: int = 0
    seeds_rejected: Counter = field(default_factory=Counter)  # reason -> count
    requests_planned: int = 0
    requests_cached: int = 0
    requests_sent: int = 0
    requests_ok: int = 0
    requests_failed: Counter = field(default_factory=Counter)  # error -> count
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    priced: bool = False
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def failure_rate(self) -> float:
        return sum(self.requests_failed.values()) / self.requests_sent if self.requests_sent else 0.0

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d["failure_rate"] = self.failure_rate
        return d


def _request_table(requests: list[Request]) -> pa.Table:
    return pa.table({"request_id": [r.request_id for r in requests]})


def _plan(cfg: Config, store: Store, prompts: Prompts, summary: BuildSummary, console: Console) -> None:
    """Stage 1: stream seeds, render requests for every teacher and sample, fill the `plan` table."""
    params = cfg.generation.params()
    samples = cfg.generation.samples_per_seed
    store.sql("CREATE OR REPLACE TABLE plan (request_id VARCHAR)")  # kept: the filter stage reads it
    seen: set[str] = set()
    for source in cfg.sources:
        plan = plan_source(source, cfg.base_dir)
        template = source.template or DEFAULT_TEMPLATES[plan.domain]
        prompts.load(template)  # syntax errors surface before any row is read
        seeds: list[Seed] = []
        requests: list[Request] = []

        def flush() -> None:
            store.add_seeds(seeds)
            store.add_requests(requests)
            table = _request_table(requests)
            store.con.register("_planned", table)
            store.sql("INSERT INTO plan SELECT request_id FROM _planned")
            store.con.unregister("_planned")
            seeds.clear()
            requests.clear()

        for item in read_seeds(plan):
            if isinstance(item, BadRow):
                summary.seeds_rejected[item.reason.split(":")[0]] += 1
                if sum(summary.seeds_rejected.values()) <= SHOW_BAD_ROWS:
                    console.print(f"[yellow]skipped[/] {item}", highlight=False)
                continue
            if item.seed_id in seen:
                summary.seeds_duplicate += 1
                continue
            seen.add(item.seed_id)
            summary.seeds_loaded += 1
            messages = prompts.render(template, item)
            seeds.append(item)
            for teacher in cfg.teachers:
                for i in range(samples):
                    requests.append(Request(item.seed_id, teacher.name, teacher.model, template, messages, params, i))
            if len(seeds) >= PLAN_BATCH:
                flush()
        flush()
    summary.requests_planned = store.scalar("SELECT count(*) FROM plan")


def _pending(store: Store, teacher: str) -> tuple[int, int, Iterator[Request]]:
    """(planned, pending, stream): a teacher's planned requests without a successful response,
    samples of one prompt adjacent."""
    query = """
        SELECT q.seed_id, q.teacher, q.model, q.template, q.messages, q.params, q.sample_index
        FROM plan JOIN requests q USING (request_id)
        WHERE q.teacher = ? AND NOT EXISTS (
            SELECT 1 FROM responses s WHERE s.request_id = q.request_id AND s.error IS NULL)
        ORDER BY q.prompt_id, q.sample_index"""
    count = store.scalar(f"SELECT count(*) FROM ({query})", [teacher])
    planned = store.scalar("SELECT count(*) FROM plan JOIN requests USING (request_id) WHERE teacher = ?", [teacher])

    def stream() -> Iterator[Request]:
        reader = store.con.sql(query, params=[teacher]).to_arrow_reader(4096)  # streams: memory stays flat
        for batch in reader:
            for seed_id, name, model, template, messages, params, idx in zip(*batch.to_pydict().values()):
                yield Request(seed_id, name, model, template, tuple(json.loads(messages)), json.loads(params), idx)

    return planned, count, stream()


def _generate(tcfg: TeacherConfig, teacher: Teacher, requests: Iterator[Request], total: int,
              writer: ResponseWriter, summary: BuildSummary, console: Console) -> None:
    columns = (TextColumn(f"[bold]{tcfg.name}[/] ({tcfg.backend}:{tcfg.model})"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("generate", total=total, status="")
        ok = failed = tokens = 0
        started = time.monotonic()
        for response in teacher.generate(requests):
            writer.put(response)
            summary.requests_sent += 1
            if response.ok:
                ok += 1
                summary.requests_ok += 1
            else:
                failed += 1
                summary.requests_failed[response.error.split(":")[0]] += 1
            summary.tokens_in += response.prompt_tokens or 0
            summary.tokens_out += response.completion_tokens or 0
            tokens += response.completion_tokens or 0
            if response.cost is not None:
                summary.cost += response.cost
                summary.priced = True
            rate = tokens / max(time.monotonic() - started, 1e-9)
            progress.update(task, advance=1, status=f"ok {ok} err {failed} | {rate:,.0f} tok/s")


def _record_run(cfg: Config, store: Store, run_id: str) -> None:
    """The resolved config goes into the store and next to it; secrets are never part of it."""
    resolved = cfg.resolved()
    run_dir = cfg.path(cfg.workdir) / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{run_id}.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    store.sql("INSERT INTO runs (run_id, command, started_at, config, config_hash) VALUES (?, ?, ?, ?, ?)",
              [run_id, "build dataset", datetime.now(timezone.utc), json.dumps(resolved), cfg.config_hash()])


def build_dataset(cfg: Config, console: Console | None = None,
                  teachers: dict[str, Teacher] | None = None) -> BuildSummary:
    """Run the build; `teachers` overrides backends by name (tests pass canned teachers)."""
    from factory.teachers import make_teacher

    console = console or Console(stderr=True)
    started = time.monotonic()
    prompts = Prompts(cfg.path(cfg.prompts_dir))
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    with Store(cfg.store_path) as store:
        summary = BuildSummary(store_path=str(cfg.store_path), run_id=run_id)
        _record_run(cfg, store, run_id)
        _plan(cfg, store, prompts, summary, console)
        writer = ResponseWriter(store)
        try:
            for tcfg in cfg.teachers:
                planned, total, pending = _pending(store, tcfg.name)
                summary.requests_cached += planned - total
                if total == 0:
                    continue  # nothing to ask: the model is never loaded
                teacher = (teachers or {}).get(tcfg.name) or make_teacher(tcfg)
                try:
                    _generate(tcfg, teacher, pending, total, writer, summary, console)
                finally:
                    close = getattr(teacher, "close", None)
                    if close:
                        close()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            writer.close()
            summary.wall_s = time.monotonic() - started
            with store.con.cursor() as con:  # the main connection may hold an unfinished stream
                con.execute("UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?",
                            [datetime.now(timezone.utc), json.dumps(summary.to_json()), run_id])
    return summary


def print_summary(summary: BuildSummary, console: Console) -> None:
    table = Table(title="build summary", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rejected = sum(summary.seeds_rejected.values())
    reasons = ", ".join(f"{r}: {n}" for r, n in summary.seeds_rejected.most_common())
    table.add_row("seeds", f"{summary.seeds_loaded} loaded, {rejected} rejected" + (f" ({reasons})" if reasons else "")
                  + (f", {summary.seeds_duplicate} duplicates skipped" if summary.seeds_duplicate else ""))
    failed = sum(summary.requests_failed.values())
    reasons = ", ".join(f"{r}: {n}" for r, n in summary.requests_failed.most_common())
    table.add_row("requests", f"{summary.requests_planned} planned, {summary.requests_cached} cached, "
                  f"{summary.requests_sent} sent, {summary.requests_ok} ok, {failed} failed"
                  + (f" ({reasons})" if reasons else ""))
    table.add_row("tokens", f"{summary.tokens_in:,} in, {summary.tokens_out:,} out")
    table.add_row("cost", f"${summary.cost:,.4f}" if summary.priced else "n/a (no price configured)")
    table.add_row("wall time", f"{summary.wall_s:,.1f} s" + (" (interrupted)" if summary.interrupted else ""))
    table.add_row("store", summary.store_path)
    console.print(table)
