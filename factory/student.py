"""Problems sized to the student: keep a seed only if the student's pass rate on it lies in a band.

`select.student: {teacher: <name>, samples: k, pass_rate: [lo, hi], before_generation: true}` (off by
default). A problem the student already solves teaches it nothing; one far beyond it yields traces it
cannot learn from. The student (a teacher entry with `generate: false`, any backend) answers each seed
of the plan k times. Its answers are requests like any other: ids hash the student model, the rendered
prompt, the sampling params and the sample index, they live in `requests` / `responses`, and only
those without a successful response are asked, so a rerun asks nothing new. They are never part of
`plan`, so they never become traces.

When: with `before_generation: true` (the default) the band is decided right after the plan and
before any teacher generates (filter.student_gate, build_dataset's `gate`): the student answers, its
answers are parsed and verified, and the teacher requests of a seed outside the band are never sent,
so the expensive teachers answer only seeds in the band or undecided ones. With `false` the teachers
answer every seed first (a later band change then needs no teacher call) and only the filter stage
decides. Either way the filter stage decides again, from the same cached verdicts (nothing is asked
twice), and drops every trace of a seed outside the band: traces generated before the band was decided.

The answers are parsed and verified like any trace (parse, math-verify, the code sandbox, the judge
when one is set: rows in `parsed` / `checks`), and filters/student_pass.sql turns them into a pass
rate per seed: passed / answered samples (a verifier timeout is no verdict and is not counted). A seed
below lo is `too_hard`, above hi `too_easy` (bounds included in the band); filters/student.sql rejects
every trace of such a seed at stage `student`. A seed the student never answered (its endpoint failed:
the errors are stored and asked again next run) or that nothing can verify (no reference, no tests) is
not decided: its teachers are asked, its traces go on through the funnel, and the count is shown.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
from rich.console import Console

from factory.config import Config
from factory.errors import FactoryError
from factory.progress import WorkProgress
from factory.prompts import Prompts
from factory.records import Request, Seed
from factory.store import ResponseWriter, Store
from factory.teachers.base import Teacher

STUDENT_PLAN = "student_plan"  # temp table (request_id, seed_id) of this run's student requests; student_pass.sql reads it


def student_params(cfg: Config) -> dict[str, Any]:
    """The build's sampling params with the student's own settings over them; no logprobs."""
    s = cfg.select.student
    own = {k: getattr(s, k) for k in ("temperature", "top_p", "max_tokens") if getattr(s, k) is not None}
    return {**cfg.generation.params(), "logprobs": 0, **own}


def student_requests(store: Store, cfg: Config, prompts: Prompts) -> list[Request]:
    """k requests per seed of the plan: the seed's prompt as the teachers saw it (select.student.template:
    rendered with that template instead), samples of one prompt adjacent."""
    s = cfg.select.student
    tcfg = next(t for t in cfg.teachers if t.name == s.teacher)
    params = student_params(cfg)
    if s.template:
        rows = store.sql("""SELECT d.seed_id, d.source, d.problem, d.domain, d.answer, d.tests, d.entry_point, d.meta
                            FROM seeds d WHERE seed_id IN (SELECT q.seed_id FROM plan JOIN requests q USING (request_id))
                            ORDER BY seed_id""")
        prompts.load(s.template)  # a syntax error surfaces before any seed is rendered
        prompt_of = [(seed_id, s.template, prompts.render(s.template, Seed(
            source, problem, domain, answer, tests, entry, json.loads(meta) if meta else {})))
            for seed_id, source, problem, domain, answer, tests, entry, meta in rows]
    else:
        rows = store.sql("""SELECT q.seed_id, arg_min(q.template, q.request_id), arg_min(q.messages, q.request_id)
                            FROM plan JOIN requests q USING (request_id) GROUP BY q.seed_id ORDER BY q.seed_id""")
        prompt_of = [(seed_id, template, tuple(json.loads(messages))) for seed_id, template, messages in rows]
    return [Request(seed_id, tcfg.name, tcfg.model, template, messages, params, i)
            for seed_id, template, messages in prompt_of for i in range(s.samples)]


def ask_student(store: Store, cfg: Config, prompts: Prompts, teacher: Teacher | None = None,
                console: Console | None = None, ask: bool = True) -> Counter:
    """Store the student's requests, ask it for those without a successful answer (`teacher` overrides
    the configured backend: tests pass a fake one) and leave this run's requests in STUDENT_PLAN.
    A student that fails (an error per request, or a backend that cannot start) is warned about and
    loses nothing: what it answered is stored, the rest is asked again on the next run. With `ask`
    False (this run asked it already, before generation) nothing is asked: `unanswered` counts the rest."""
    console = console or Console(stderr=True)
    stats: Counter = Counter()
    s = cfg.select.student
    if s is None:
        return stats
    requests = student_requests(store, cfg, prompts)
    ids = [r.request_id for r in requests]  # a hash of the messages each: computed once
    store.con.register("_student", pa.table({"request_id": pa.array(ids, pa.string()),
                                             "seed_id": pa.array([r.seed_id for r in requests], pa.string())}))
    try:
        store.sql(f"CREATE OR REPLACE TEMP TABLE {STUDENT_PLAN} AS SELECT request_id, seed_id FROM _student")
    finally:
        store.con.unregister("_student")
    answered = store.answered(ids)
    todo = [r for r, rid in zip(requests, ids) if rid not in answered]
    if not ask:
        stats["cached"], stats["unanswered"] = len(requests) - len(todo), len(todo)
        return stats
    store.add_requests(todo)  # an answered request is stored already
    stats["cached"], stats["asked"] = len(requests) - len(todo), len(todo)
    if not todo:
        return stats  # nothing to ask: the student is never loaded
    tcfg = next(t for t in cfg.teachers if t.name == s.teacher)
    if s.samples > 1 and todo[0].params.get("temperature") == 0:
        console.print(f"[yellow]note[/] select.student: temperature 0 (greedy): the {s.samples} samples of a seed are "
                      "the same, so every pass rate is 0 or 1; set select.student.temperature > 0", highlight=False)
    writer = ResponseWriter(store)
    try:
        if teacher is None:
            from factory.teachers import make_teacher

            teacher = make_teacher(tcfg)
        if hasattr(teacher, "on_attempt"):  # a mark per call: a kill keeps the attempts in flight
            teacher.on_attempt = writer.put
        label = f"student {tcfg.name} ({tcfg.backend}:{tcfg.model})"
        with WorkProgress(console, label, len(todo), cfg.build.progress_interval_s) as progress:
            for response in teacher.generate(iter(todo)):
                writer.put(response)
                stats["ok" if response.ok else "failed"] += 1
                progress.advance(response.ok, response.completion_tokens or 0)
    except (FactoryError, ImportError, OSError) as err:
        stats["error"] += 1
        why = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        console.print(f"[yellow]warning[/] select.student: {tcfg.name}: {why}; its seeds without an answer "
                      "are not decided this run", highlight=False)
    finally:
        try:
            close = getattr(teacher, "close", None)
            if close:
                close()
        finally:
            writer.close()
    if stats["failed"]:
        console.print(f"[yellow]warning[/] select.student: {stats['failed']} of {len(todo)} requests to {tcfg.name} "
                      "failed (stored; asked again on the next run)", highlight=False)
    return stats


def band_counts(store: Store) -> Counter:
    """Seeds per decision of filters/student_pass.sql (in_band, too_easy, too_hard, undecided)."""
    return Counter(dict(store.sql("SELECT decision, count(*) FROM student_pass GROUP BY decision")))


def band_line(cfg: Config, stats: Counter) -> str:
    """One line: how many seeds the student's band kept and dropped, and why some were not decided."""
    s = cfg.select.student
    lo, hi = s.pass_rate
    return (f"student {s.teacher}: pass rate over {s.samples} samples in [{lo:g}, {hi:g}] for "
            f"{stats['in_band']} seeds; {stats['too_easy']} too easy, {stats['too_hard']} too hard, "
            f"{stats['undecided']} not decided (no answer, or nothing to verify against)")
