"""`factory build dataset`: sources -> render -> generate, every answer stored as it arrives.

Stage 1 (plan) streams the seeds, renders every request and writes both to the store, so a
template error, a source that yields no seeds or one whose references the verifier cannot read
stops the run before any teacher call (and leaves the last plan as it was). Between them, an
optional gate (select.student.before_generation: pipeline.py passes filter.student_gate) decides
which seeds are worth a teacher call: the requests of a seed it finds too easy or too hard stay in
the plan (the filter's band, and refresh, see every seed) but are never sent, so they never become
traces. Stage 2 (generate) asks each teacher only for the planned requests that have no successful
response yet: a killed run resumes where it stopped, and an edited template or parameter re-asks
only what it changed.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import yaml
from rich.console import Console

from factory.config import Config, TeacherConfig
from factory.progress import WorkProgress
from factory.prompts import Prompts
from factory.records import Request, Seed
from factory.sources import BadRow, SourceError, plan_source, read_seeds
from factory.store import ResponseWriter, Store
from factory.teachers.base import Teacher, start

DEFAULT_TEMPLATES = {"math": "math_cot.jinja", "code": "code_cot.jinja"}
PLAN_BATCH = 2000  # seeds rendered and written per store round-trip
SHOW_BAD_ROWS = 10  # bad rows printed one per line; the rest are counted
SHOW_UNUSABLE = 3  # unusable references shown per source (summary and error)
OUT_OF_BAND = ("too_easy", "too_hard")  # a gate's decisions whose seeds get no teacher call
SKIPPED = "gate_skipped"  # temp table (seed_id): the seeds whose teacher requests this run does not send
# a gate: store (its `plan` just written) -> seed id -> decision (in_band, too_easy, too_hard, undecided)
Gate = Callable[[Store], Mapping[str, str]]


@dataclass
class BuildSummary:
    store_path: str
    run_id: str
    seeds_loaded: int = 0
    seeds_duplicate: int = 0
    seeds_rejected: Counter = field(default_factory=Counter)  # reason -> count
    # source -> {seeds (with a math reference), usable, unusable: first few {row, reference, reason}}
    references: dict = field(default_factory=dict)
    requests_planned: int = 0
    requests_cached: int = 0
    requests_sent: int = 0
    requests_ok: int = 0
    requests_failed: Counter = field(default_factory=Counter)  # error -> count
    # select.student decided before generation (the gate): decision -> seeds; empty when no gate ran
    student: Counter = field(default_factory=Counter)
    requests_skipped: int = 0  # planned teacher requests without an answer, of seeds the gate left out: not sent
    student_s: float = 0.0  # the gate: asking the student and verifying its answers
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_reasoning: int = 0  # of tokens_out, reasoning (where the API reports it)
    cost: float = 0.0
    priced: bool = False
    cost_online: float = 0.0  # what the same answers cost through the online path (differs for mode: batch)
    batched: bool = False  # some teacher ran in mode: batch
    requests_in_batches: int = 0  # submitted to a Batch API and not collected yet (--no-wait)
    startup_s: float = 0.0  # teachers loading (models, a cluster's replicas) before their first request
    generate_s: float = 0.0  # generating and storing, start-up excluded
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of generation (start-up excluded)."""
        return self.tokens_out / self.generate_s if self.generate_s > 0 else 0.0

    @property
    def failure_rate(self) -> float:
        return sum(self.requests_failed.values()) / self.requests_sent if self.requests_sent else 0.0

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d["failure_rate"] = self.failure_rate
        d["tokens_per_s"] = round(self.tokens_per_s, 2)
        return d


def _request_table(requests: list[Request]) -> pa.Table:
    return pa.table({"request_id": [r.request_id for r in requests]})


def _plan(cfg: Config, store: Store, prompts: Prompts, summary: BuildSummary, console: Console) -> None:
    """Stage 1: stream seeds, render requests for every teacher and sample, fill the `plan` table.

    The new plan is staged and replaces `plan` only when every source loaded: a build stopped by
    a bad source leaves the last good plan (which `factory filter` and `refresh` read) as it was."""
    params = cfg.generation.params()
    samples = cfg.generation.samples_per_seed
    store.sql("CREATE OR REPLACE TEMP TABLE plan_next (request_id VARCHAR)")
    seen: set[str] = set()
    for index, source in enumerate(cfg.sources):
        plan = plan_source(source, cfg.base_dir)
        gym_source = source.kind == "reasoning_gym"
        if gym_source:  # with the fresh draws earlier refreshes recorded (refresh.fresh_seeds)
            from factory import gym

            plan = gym.with_recorded_draws(store, plan)
        template = source.template or (gym.GYM_TEMPLATE if gym_source else DEFAULT_TEMPLATES[plan.domain])
        prompts.load(template)  # syntax errors surface before any row is read
        seeds: list[Seed] = []
        requests: list[Request] = []
        references: dict[str, list[int]] = {}  # math reference -> [first row, seeds holding it]
        good = 0
        first_bad: BadRow | None = None

        def flush() -> None:
            store.add_seeds(seeds)
            store.add_requests(requests)
            table = _request_table(requests)
            store.con.register("_planned", table)
            store.sql("INSERT INTO plan_next SELECT request_id FROM _planned")
            store.con.unregister("_planned")
            seeds.clear()
            requests.clear()

        for item in read_seeds(plan):
            if isinstance(item, BadRow):
                first_bad = first_bad or item
                summary.seeds_rejected[item.reason.split(":")[0]] += 1
                if sum(summary.seeds_rejected.values()) <= SHOW_BAD_ROWS:
                    console.print(f"[yellow]skipped[/] {item}", highlight=False)
                continue
            good += 1
            if item.seed_id in seen:
                summary.seeds_duplicate += 1
                continue
            seen.add(item.seed_id)
            summary.seeds_loaded += 1
            if item.domain == "math" and item.answer is not None and not gym_source:  # gym: the task's scorer
                references.setdefault(item.answer, [item.meta["row"], 0])[1] += 1
            messages = prompts.render(template, item)
            seeds.append(item)
            for teacher in (t for t in cfg.teachers if t.generate):  # judges and students write no traces
                for i in range(samples):
                    requests.append(Request(item.seed_id, teacher.name, teacher.model, template, messages, params, i))
            if len(seeds) >= PLAN_BATCH:
                flush()
        flush()
        if good == 0:
            why = f"every row is bad, e.g. {first_bad}" if first_bad else "it has no rows"
            raise SourceError(f"source '{source.name}': no seeds from {plan.path}: {why}")
        if references:
            _check_references(cfg, index, store, references, summary)
    store.sql("CREATE OR REPLACE TABLE plan AS SELECT request_id FROM plan_next")  # one statement: atomic
    store.sql("DROP TABLE plan_next")
    summary.requests_planned = store.scalar("SELECT count(*) FROM plan")


_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def _reference_verdicts(cfg: Config, store: Store, references: list[str]) -> dict[str, tuple[bool, str]]:
    """(usable, reason) per distinct reference. Verdicts are kept in `reference_checks`, so a
    rebuild asks the verifier only about new references (and starts no workers when none are).
    A plain number is usable without asking; a timeout is not kept (a busy machine is no verdict)."""
    from factory.checks import math as math_checks

    verdicts: dict[str, tuple[bool, str]] = {}
    ask = []
    for ref in references:
        if _PLAIN_NUMBER.fullmatch(ref.strip()):
            verdicts[ref] = (True, "a number")
        elif not ref.strip():
            verdicts[ref] = (False, "empty reference")
        else:
            ask.append(ref)
    if ask:
        store.con.register("_refs", pa.table({"reference": ask}))
        try:
            rows = store.sql("SELECT reference, usable, detail FROM reference_checks JOIN _refs USING (reference)")
        finally:
            store.con.unregister("_refs")
        verdicts.update({ref: (usable, detail or "") for ref, usable, detail in rows})
        new = [ref for ref in ask if ref not in verdicts]
        checked = []
        verified = math_checks.check_references(((r, r) for r in new), timeout_s=cfg.filter.verify_timeout_s,
                                                workers=cfg.filter.verify_workers) if new else ()
        for ref, v in verified:
            verdicts[ref] = (v.status == "passed", v.detail or v.status)
            if v.status != math_checks.TIMEOUT:
                checked.append({"reference": ref, "usable": v.status == "passed", "status": v.status,
                                "detail": v.detail})
        if checked:
            store.con.register("_checked", pa.Table.from_pylist(checked))
            try:
                store.sql("INSERT INTO reference_checks (reference, usable, status, detail) "
                          "SELECT reference, usable, status, detail FROM _checked ON CONFLICT DO NOTHING")
            finally:
                store.con.unregister("_checked")
    return verdicts


def _short(text: str, width: int = 40) -> str:
    """A reference as it fits in a one-line message: newlines shown as \\n, long ones cut."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _check_references(cfg: Config, index: int, store: Store, references: dict[str, list[int]],
                      summary: BuildSummary) -> None:
    """Count a source's usable references into the summary; SourceError above its bound."""
    source = cfg.sources[index]
    verdicts = _reference_verdicts(cfg, store, list(references))
    for ref in references.keys() - verdicts.keys():  # the verifier answers every item; be safe anyway
        verdicts[ref] = (False, "no verdict")
    total = sum(count for _, count in references.values())
    bad = sorted((row, ref, verdicts[ref][1], count) for ref, (row, count) in references.items()
                 if not verdicts[ref][0])
    unusable = sum(count for *_, count in bad)
    summary.references[source.name] = {
        "seeds": total, "usable": total - unusable,
        "unusable": [{"row": row, "reference": ref, "reason": why} for row, ref, why, _ in bad[:SHOW_UNUSABLE]]}
    if unusable > source.max_unusable_references * total:
        examples = "; ".join(f"row {row} '{_short(ref)}' ({_short(why, 80)})"
                             for row, ref, why, _ in bad[:SHOW_UNUSABLE])
        raise SourceError(
            f"source '{source.name}': {unusable} of {total} references ({unusable / total:.1%}) cannot be verified "
            f"against (bound: sources.{index}.max_unusable_references = {source.max_unusable_references:.0%}), "
            f"e.g. {examples}; cut the value out with answer_boxed, answer_regex or answer_after, "
            f"add strip_units, or raise the bound")


def _apply_gate(store: Store, gate: Gate | None, summary: BuildSummary) -> None:
    """Fill SKIPPED with the seeds the gate finds out of band (none without a gate) and count its decisions
    and the requests it saves into the summary."""
    store.sql(f"CREATE OR REPLACE TEMP TABLE {SKIPPED} (seed_id VARCHAR PRIMARY KEY)")
    if gate is None:
        return
    begin = time.monotonic()
    decisions = gate(store)
    summary.student_s = time.monotonic() - begin
    summary.student = Counter({"in_band": 0, "too_easy": 0, "too_hard": 0, "undecided": 0})
    summary.student.update(decisions.values())
    skip = [seed_id for seed_id, decision in decisions.items() if decision in OUT_OF_BAND]
    if skip:
        store.con.register("_skip", pa.table({"seed_id": pa.array(skip, pa.string())}))
        try:
            store.sql(f"INSERT INTO {SKIPPED} SELECT DISTINCT seed_id FROM _skip")
        finally:
            store.con.unregister("_skip")
    summary.requests_skipped = store.scalar(f"""
        SELECT count(*) FROM plan JOIN requests q USING (request_id) JOIN {SKIPPED} USING (seed_id)
        WHERE NOT EXISTS (SELECT 1 FROM responses s WHERE s.request_id = q.request_id AND s.error IS NULL)""")


def _pending(store: Store, teacher: str) -> tuple[int, int, Iterator[Request]]:
    """(planned, pending, stream): a teacher's planned requests without a successful response, samples
    of one prompt adjacent; the requests of seeds the gate left out (SKIPPED) are neither pending nor cached."""
    query = f"""
        SELECT q.seed_id, q.teacher, q.model, q.template, q.messages, q.params, q.sample_index
        FROM plan JOIN requests q USING (request_id)
        WHERE q.teacher = ? AND NOT EXISTS (
            SELECT 1 FROM responses s WHERE s.request_id = q.request_id AND s.error IS NULL)
          AND q.seed_id NOT IN (SELECT seed_id FROM {SKIPPED})
        ORDER BY q.prompt_id, q.sample_index"""
    count = store.scalar(f"SELECT count(*) FROM ({query})", [teacher])
    planned = store.scalar(f"""SELECT count(*) FROM plan JOIN requests q USING (request_id) WHERE q.teacher = ?
                               AND NOT (q.seed_id IN (SELECT seed_id FROM {SKIPPED}) AND NOT EXISTS (
                                   SELECT 1 FROM responses s WHERE s.request_id = q.request_id AND s.error IS NULL))""",
                           [teacher])

    def stream() -> Iterator[Request]:
        reader = store.con.sql(query, params=[teacher]).to_arrow_reader(4096)  # streams: memory stays flat
        for batch in reader:
            for seed_id, name, model, template, messages, params, idx in zip(*batch.to_pydict().values()):
                yield Request(seed_id, name, model, template, tuple(json.loads(messages)), json.loads(params), idx)

    return planned, count, stream()


def _generate(tcfg: TeacherConfig, teacher: Teacher, requests: Iterator[Request], total: int,
              writer: ResponseWriter, summary: BuildSummary, console: Console, interval_s: float = 30.0) -> None:
    with WorkProgress(console, f"{tcfg.name} ({tcfg.backend}:{tcfg.model})", total, interval_s) as progress:
        watch = getattr(teacher, "watch_progress", None)  # a RayTeacher shows its replicas alive
        if watch:
            watch(progress)
        stores = getattr(teacher, "stores_responses", False)  # batch mode commits its answers itself
        if not stores and hasattr(teacher, "on_attempt"):  # a mark per call: a kill keeps the attempts in flight
            teacher.on_attempt = writer.put
        online_cost = getattr(teacher, "online_cost", None)
        for response in teacher.generate(requests):
            if not stores:
                writer.put(response)
            summary.requests_sent += 1
            if response.ok:
                summary.requests_ok += 1
            else:
                summary.requests_failed[response.error.split(":")[0]] += 1
            summary.tokens_in += response.prompt_tokens or 0
            summary.tokens_out += response.completion_tokens or 0
            summary.tokens_reasoning += response.reasoning_tokens or 0
            if response.cost is not None:
                summary.cost += response.cost
                summary.priced = True
                summary.cost_online += (online_cost(response) or 0.0) if online_cost else response.cost
            progress.advance(response.ok, response.completion_tokens or 0)


def _record_run(cfg: Config, store: Store, run_id: str) -> None:
    """The resolved config goes into the store and next to it; secrets are never part of it."""
    resolved = cfg.resolved()
    run_dir = cfg.path(cfg.workdir) / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{run_id}.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    store.sql("INSERT INTO runs (run_id, command, started_at, config, config_hash) VALUES (?, ?, ?, ?, ?)",
              [run_id, "build dataset", datetime.now(timezone.utc), json.dumps(resolved), cfg.config_hash()])


def _make_teacher(cfg: Config, tcfg: TeacherConfig, console: Console) -> Teacher:
    """The teacher of `tcfg` in this process, or its replicas on Ray (build.executor: ray)."""
    from factory.teachers import make_teacher

    if cfg.build.executor != "ray":
        return make_teacher(tcfg)
    from factory.distributed import RayTeacher, needs_cluster

    if not needs_cluster(tcfg):
        console.print(f"teacher '{tcfg.name}' ({tcfg.backend}) needs no cluster: it runs in this process", highlight=False)
        return make_teacher(tcfg)
    if tcfg.backend == "vllm" and cfg.build.ray.vllm_data:
        from factory.ray_llm import RayDataVLLMTeacher

        return RayDataVLLMTeacher(tcfg, cfg.build.ray)
    return RayTeacher(tcfg, cfg.build.ray)


def _batch_teacher(tcfg: TeacherConfig, store: Store, wait: bool, console: Console) -> Teacher | None:
    """The openai teacher in mode: batch (it needs the store: its batches live there), else None."""
    if getattr(tcfg, "mode", "online") != "batch":
        return None
    from factory.teachers.openai_batch import OpenAIBatchTeacher

    return OpenAIBatchTeacher(tcfg, store, wait=wait, on_event=lambda msg: console.print(msg, highlight=False))


def build_dataset(cfg: Config, console: Console | None = None, teachers: dict[str, Teacher] | None = None,
                  wait_batches: bool = True, gate: Gate | None = None) -> BuildSummary:
    """Run the build; `teachers` overrides backends by name (tests pass canned teachers). With
    `wait_batches` False, teachers in mode: batch submit and return (`factory build dataset --no-wait`).
    `gate` (store -> seed id -> decision) runs after the plan: no teacher is asked about a seed it
    decides `too_easy` or `too_hard` (pipeline.py passes filter.student_gate)."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    prompts = Prompts(cfg.path(cfg.prompts_dir))
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    with Store(cfg.store_path) as store:
        summary = BuildSummary(store_path=str(cfg.store_path), run_id=run_id)
        _record_run(cfg, store, run_id)
        _plan(cfg, store, prompts, summary, console)
        writer = None
        try:
            _apply_gate(store, gate, summary)  # a Ctrl-C while the student answers: what it answered is stored
            writer = ResponseWriter(store)
            for tcfg in cfg.teachers:
                planned, total, pending = _pending(store, tcfg.name)
                summary.requests_cached += planned - total
                if total == 0:
                    continue  # nothing to ask: the model is never loaded
                teacher = ((teachers or {}).get(tcfg.name) or _batch_teacher(tcfg, store, wait_batches, console)
                           or _make_teacher(cfg, tcfg, console))
                try:
                    begin = time.monotonic()
                    start(teacher)
                    summary.startup_s += time.monotonic() - begin
                    begin = time.monotonic()
                    try:
                        _generate(tcfg, teacher, pending, total, writer, summary, console,
                                  cfg.build.progress_interval_s)
                    finally:
                        summary.generate_s += time.monotonic() - begin
                    stats = getattr(teacher, "stats", None)
                    if getattr(teacher, "stores_responses", False) and stats is not None:
                        summary.batched = True
                        summary.requests_in_batches += stats.in_flight
                finally:
                    close = getattr(teacher, "close", None)
                    if close:
                        close()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            if writer is not None:
                writer.close()
            summary.wall_s = time.monotonic() - started
            with store.con.cursor() as con:  # the main connection may hold an unfinished stream
                con.execute("UPDATE runs SET finished_at = ?, summary = ? WHERE run_id = ?",
                            [datetime.now(timezone.utc), json.dumps(summary.to_json()), run_id])
    return summary
