"""An optional LLM judge for the pairs the symbolic verifier cannot decide.

`filter.math.judge: <teacher name>` turns it on (off by default). The verifier's verdicts whose
rule says it could not read one side (`unparseable_answer`, `unparseable_reference`) or that
compared two texts that may differ only in form (`text_unequal`) are put to that teacher through
`prompts/judge.jinja`; the judge's reply ends with `VERDICT: SAME` or `VERDICT: DIFFERENT`.

- A judge never overrides a symbolic "equal": it only ever sees verdicts that failed.
- Each question is a request like any other, so its id hashes the judge model, the rendered
  prompt and the sampling params: the same (problem, answer, reference) is asked once, ever, and
  the answer is cached in the `judgments` table (a changed template or judge re-asks).
- The verdict of each trace is a `judge` row in `checks` (judge_equal / judge_unequal /
  judge_error); filters/traces.sql turns a judged-equal trace into a verified one, and the funnel
  names the judge's rejections.

Pick a judge teacher with `generate: false` so it writes no traces of its own.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa

from factory.config import Config
from factory.prompts import Prompts
from factory.records import Request
from factory.store import Store
from factory.teachers.base import Teacher

UNDECIDED_RULES = ("unparseable_answer", "unparseable_reference", "text_unequal")
JUDGE_PARAMS_BASE = {"temperature": 0.0, "top_p": 1.0, "logprobs": 0}
_VERDICT_RE = re.compile(r"(?i)verdict\W{0,6}(same|different|equal|not\s+equal|equivalent|not\s+equivalent)\b")


def read_verdict(text: str | None) -> bool | None:
    """The judge's last `VERDICT: SAME|DIFFERENT` (None: it did not say)."""
    found = _VERDICT_RE.findall(text or "")
    if not found:
        return None
    word = found[-1].lower()
    return not word.startswith(("different", "not"))


def _undecided(store: Store) -> list[tuple]:
    rules = " OR ".join(f"v.detail LIKE '{r}%'" for r in UNDECIDED_RULES)
    return store.sql(f"""
        SELECT v.request_id, q.seed_id, d.problem, p.answer, d.answer
        FROM checks v JOIN parsed p USING (request_id) JOIN requests q USING (request_id)
        JOIN seeds d USING (seed_id)
        WHERE v."check" = 'verify' AND v.passed = FALSE AND d.domain = 'math' AND d.answer IS NOT NULL
          AND p.answer IS NOT NULL AND ({rules})
          AND NOT EXISTS (SELECT 1 FROM checks j WHERE j.request_id = v.request_id AND j."check" = 'judge')
        ORDER BY v.request_id""")


def judge_undecided(store: Store, cfg: Config, prompts: Prompts, teacher: Teacher | None = None) -> Counter:
    """Ask the judge about every undecided verdict not judged yet; write `judge` check rows.
    `teacher` overrides the configured backend (tests pass a scripted one)."""
    qcfg = cfg.filter.math
    stats: Counter = Counter()
    if not qcfg.judge:
        return stats
    rows = _undecided(store)
    if not rows:
        return stats
    tcfg = next(t for t in cfg.teachers if t.name == qcfg.judge)
    params = {**JUDGE_PARAMS_BASE, "max_tokens": qcfg.judge_max_tokens}
    question_of: dict[str, Request] = {}  # judge request id -> request (pairs repeat across samples)
    trace_question: list[tuple[str, str]] = []
    for request_id, seed_id, problem, answer, reference in rows:
        messages = prompts.render_context(qcfg.judge_template, {
            "problem": problem, "answer": answer, "reference": reference})
        q = Request(seed_id, tcfg.name, tcfg.model, qcfg.judge_template, messages, params, 0)
        question_of.setdefault(q.request_id, q)
        trace_question.append((request_id, q.request_id))
    cached = dict(store.sql("SELECT judge_id, passed FROM judgments WHERE judge_id IN (SELECT unnest(?))",
                            [list(question_of)]))
    todo = [q for qid, q in question_of.items() if qid not in cached]
    stats["asked"] = len(todo)
    stats["cached"] = len(question_of) - len(todo)
    if todo:
        answers = [row for row in _ask(teacher, tcfg, todo) if row["passed"] is not None]
        if answers:
            store._insert("judgments", pa.Table.from_pylist(answers))
        cached.update((row["judge_id"], row["passed"]) for row in answers)
    out = []
    for request_id, qid in trace_question:
        passed = cached.get(qid)
        if passed is None:  # an error, or a reply without a verdict: asked again next run
            stats["error"] += 1
            continue
        reason = "judge_equal" if passed else "judge_unequal"
        stats["equal" if passed else "unequal"] += 1
        out.append({"request_id": request_id, "check": "judge", "passed": passed, "reason": reason, "detail": qid})
    if out:
        store._insert("checks", pa.Table.from_pylist(out))
    return stats


def _ask(teacher: Teacher | None, tcfg, todo: list[Request]) -> Iterator[dict]:
    from factory.teachers import make_teacher

    teacher = teacher or make_teacher(tcfg)
    try:
        for r in teacher.generate(iter(todo)):
            yield {"judge_id": r.request_id, "passed": read_verdict(r.text) if r.ok else None,
                   "text": (r.text or r.error or "")[-2000:], "model": r.model}
    finally:
        close = getattr(teacher, "close", None)
        if close:
            close()
