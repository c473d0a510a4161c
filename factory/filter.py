"""The filter stage: Python checks write rows to the store; the SQL in filters/ decides.

Order: parse -> quality -> verify -> dedup -> decontaminate -> select, then diversity and a
version. Every check is computed once per trace (rows in parsed / checks / signatures /
contamination); re-running the stage only computes what is new, then re-decides in SQL,
so editing a threshold costs a few queries. Every rejected trace keeps its stage and reason.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

import jinja2
import numpy as np
import pyarrow as pa
from rich.console import Console

from factory.checks.verify import check_code, check_math
from factory.config import Config, project_file, shipped_root
from factory.errors import FilterError
from factory.judge import judge_undecided
from factory.prompts import Prompts
from factory.store import Store
from factory.student import ask_student, band_counts, band_line
from factory.versions import STAGES, record_version

SIG_DTYPE = np.uint32  # what checks.minhash.minhash_signatures returns
_WORD = re.compile(r"\w+")


@dataclass
class FilterSummary:
    version: int
    new_version: bool
    candidates: int
    kept: int
    funnel: dict[str, dict[str, int]]  # stage -> reason -> traces
    diversity: dict
    checks_run: Counter = field(default_factory=Counter)
    wall_s: float = 0.0


def _sql_env(cfg: Config) -> jinja2.Environment:
    """The project's filters/ first (edit any file there), then the SQL that ships with factory."""
    dirs = [cfg.path("filters")] + ([shipped_root() / "filters"] if shipped_root() else [])
    return jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
                              undefined=jinja2.StrictUndefined, autoescape=False)


def _run_sql(store: Store, env: jinja2.Environment, name: str, **params):
    """Render filters/<name> with the config's values and run it; returns the last statement's rows."""
    sql = env.get_template(name).render(**params)
    sql = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    result = None
    for statement in sql.split(";"):
        if statement.strip():
            result = store.con.execute(statement).fetchall()
    return result


# -- checks that need Python -----------------------------------------------------------------

def _batches(store: Store, query: str, size: int = 2048) -> Iterator[list[dict]]:
    """Stream a query's rows on a separate connection so the main one can write meanwhile."""
    cur = store.con.cursor()
    try:
        for batch in cur.sql(query).to_arrow_reader(size):
            yield batch.to_pylist()
    finally:
        cur.close()


def repetition(words: list[str], n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for fresh text, ~1 for a loop."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def parse_new(store: Store) -> int:
    from factory.parse import parse

    query = """SELECT s.request_id, s.text, s.reasoning, s.finish_reason, d.domain
               FROM responses s JOIN requests q USING (request_id) JOIN seeds d USING (seed_id)
               WHERE s.error IS NULL AND NOT EXISTS (SELECT 1 FROM parsed p WHERE p.request_id = s.request_id)"""
    done = 0
    for rows in _batches(store, query):
        out = []
        for r in rows:
            p = parse(r["text"], r["reasoning"], r["domain"], r["finish_reason"])
            reasoning = p.reasoning
            if reasoning is None and p.error is None and r["text"]:
                reasoning = r["text"]  # plain chain of thought (no <think>): the text is the reasoning
            words = _WORD.findall(reasoning.lower()) if reasoning else []
            out.append({"request_id": r["request_id"], "reasoning": reasoning, "answer": p.answer,
                        "answer_source": p.answer_source, "think_closed": p.think_closed, "truncated": p.truncated,
                        "reasoning_words": len(words), "repetition": repetition(words), "error": p.error})
        store._insert("parsed", pa.Table.from_pylist(out))
        done += len(out)
    return done


def _write_checks(store: Store, rows: list[dict], replace: bool = False) -> None:
    if rows:
        conflict = ('("request_id", "check") DO UPDATE SET passed = excluded.passed, reason = excluded.reason, '
                    'detail = excluded.detail') if replace else "DO NOTHING"
        store._insert("checks", pa.Table.from_pylist(rows), conflict=conflict)


def _write_checks_streaming(store: Store, rows: Iterator[dict], every: int) -> int:
    """Write check rows as a checker yields them, `every` rows per commit; returns how many."""
    done, out = 0, []
    for row in rows:
        out.append(row)
        if len(out) >= every:
            _write_checks(store, out)
            done, out = done + len(out), []
    _write_checks(store, out)
    return done + len(out)


def _verify_rows(verdicts: Iterator[tuple[Hashable, bool, str, str]]) -> Iterator[dict]:
    for key, passed, reason, detail in verdicts:
        yield {"request_id": key, "check": "verify", "passed": passed, "reason": reason, "detail": detail}


def verify_math(store: Store, cfg: Config) -> int:
    """math-verify of the final answer against the reference; results are written as they come.
    A truncated trace is never verified: what it says last is not its final answer. The seed's problem goes
    along: a bare choice reference (C) also accepts the value of option C written in it (checks.math.verify_many)."""
    query = """SELECT p.request_id, p.answer, d.answer AS reference, d.problem
               FROM parsed p JOIN requests q USING (request_id) JOIN seeds d USING (seed_id)
               WHERE d.domain = 'math' AND d.answer IS NOT NULL AND p.error IS NULL AND p.answer IS NOT NULL
                 AND NOT coalesce(p.truncated, FALSE) AND json_extract(d.meta, '$.gym') IS NULL
                 AND NOT EXISTS (SELECT 1 FROM checks c WHERE c.request_id = p.request_id AND c."check" = 'verify')"""
    items = ((r["request_id"], r["answer"], r["reference"], r["problem"])
             for rows in _batches(store, query) for r in rows)
    if cfg.build.executor == "ray":  # batches as Ray tasks; the verdicts are written here as locally
        from factory import distributed

        verdicts = distributed.check_math(items, timeout_s=cfg.filter.verify_timeout_s,
                                          batch_size=cfg.build.ray.check_batch)
    else:
        verdicts = check_math(items, timeout_s=cfg.filter.verify_timeout_s, workers=cfg.filter.verify_workers)
    return _write_checks_streaming(store, _verify_rows(verdicts), every=1000)


def verify_gym(store: Store, cfg: Config) -> int:
    """reasoning_gym seeds (factory/gym.py): the task's own score_answer on the final answer, in worker processes
    with filter.verify_timeout_s; verified when the score reaches filter.gym_min_score. The parser decides whether
    a trace has a final answer (not truncated, not hedged); the scorer reads it as reasoning-gym's own harness
    would: the raw content of the last <answer> tag ("Smith, completing the sentence." keeps its full stop, "-61."
    keeps its full stop too), else (a teacher that boxed its answer instead) the parser's answer."""
    from factory.checks.gym import answer_tag_text, score_many

    query = """SELECT p.request_id, p.answer, s.text, s.reasoning, d.meta->'$.gym' AS gym
               FROM parsed p JOIN requests q USING (request_id) JOIN seeds d USING (seed_id)
               JOIN responses s USING (request_id)
               WHERE json_extract(d.meta, '$.gym') IS NOT NULL AND p.error IS NULL AND p.answer IS NOT NULL
                 AND NOT coalesce(p.truncated, FALSE)
                 AND NOT EXISTS (SELECT 1 FROM checks c WHERE c.request_id = p.request_id AND c."check" = 'verify')"""

    def items():
        for rows in _batches(store, query):
            for r in rows:
                gym = json.loads(r["gym"])
                tag = answer_tag_text(r["text"], r["reasoning"])
                yield (r["request_id"], gym["task"], gym["config"], gym["entry"],
                       {"answer_tag": tag} if tag is not None else {"parsed": r["answer"]})

    verdicts = score_many(items(), timeout_s=cfg.filter.verify_timeout_s, workers=cfg.filter.verify_workers,
                          min_score=cfg.filter.gym_min_score)
    return _write_checks_streaming(store, _verify_rows(verdicts), every=1000)


def verify_code(store: Store, cfg: Config) -> int:
    """Run the seed's tests against the extracted code in the sandbox."""
    query = """SELECT p.request_id, d.problem, p.answer, d.tests, d.entry_point
               FROM parsed p JOIN requests q USING (request_id) JOIN seeds d USING (seed_id)
               WHERE d.domain = 'code' AND d.tests IS NOT NULL AND p.error IS NULL AND p.answer IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM checks c WHERE c.request_id = p.request_id AND c."check" = 'verify')"""
    items = ((r["request_id"], r["problem"], r["answer"], r["tests"], r["entry_point"])
             for rows in _batches(store, query) for r in rows)
    if cfg.build.executor == "ray":
        from factory import distributed

        verdicts = distributed.check_code(items, wall_s=cfg.filter.sandbox_wall_s,
                                          allow_weak=cfg.filter.code.allow_weak_sandbox,
                                          max_cases=cfg.filter.code.max_cases,
                                          batch_size=max(1, cfg.build.ray.check_batch // 8))  # a test run costs more
    else:
        verdicts = check_code(items, wall_s=cfg.filter.sandbox_wall_s, workers=cfg.filter.verify_workers,
                              allow_weak=cfg.filter.code.allow_weak_sandbox, max_cases=cfg.filter.code.max_cases)
    return _write_checks_streaming(store, _verify_rows(verdicts), every=100)


def majority_vote(store: Store, cfg: Config) -> int:
    """Seeds without a reference: the most common equivalent answer among a seed's samples becomes a
    pseudo-label when at least filter.majority_min_samples samples gave an answer, its vote share reaches
    filter.majority_min_share and no other answer ties it. A pseudo-label is not a verification: agreeing
    traces get passed = NULL with reason `majority` (the label and share in `detail`), the others
    passed = FALSE (`majority_minority`); a seed that voted without a label marks its traces `no_consensus`,
    one with fewer answers than filter.majority_min_samples `no_majority`."""
    from factory.checks.math import verify_many

    f = cfg.filter
    rows = store.sql("""SELECT q.seed_id, p.request_id, p.answer FROM plan JOIN parsed p USING (request_id)
                        JOIN requests q USING (request_id) JOIN seeds d USING (seed_id)
                        WHERE d.domain = 'math' AND d.answer IS NULL AND p.error IS NULL AND p.answer IS NOT NULL
                          AND trim(p.answer) <> '' AND NOT coalesce(p.truncated, FALSE)
                          AND json_extract(d.meta, '$.gym') IS NULL
                        ORDER BY q.seed_id, p.request_id""")
    by_seed: dict[str, list[tuple[str, str]]] = {}
    for seed_id, request_id, answer in rows:
        by_seed.setdefault(seed_id, []).append((request_id, answer.strip()))
    # equivalence between distinct answers of a seed, checked pairwise by math-verify
    pairs = []
    for seed_id, votes in by_seed.items():
        distinct = sorted({a for _, a in votes})
        pairs += [((seed_id, a, b), a, b) for i, a in enumerate(distinct) for b in distinct[i + 1:]]
    same = {key for key, v in verify_many(pairs, timeout_s=f.verify_timeout_s,
                                          workers=f.verify_workers) if v.status == "passed"} if pairs else set()
    out = []
    for seed_id, votes in by_seed.items():
        group_of: dict[str, str] = {}
        for a in sorted({a for _, a in votes}):  # each answer joins the first earlier equivalent group
            group_of[a] = next((group_of[b] for b in group_of if (seed_id, b, a) in same), a)
        ranked = Counter(group_of[a] for _, a in votes).most_common()
        top, n = ranked[0]
        share = n / len(votes)
        # the label is the group's most common written form (ties: the first in sorted order)
        forms = Counter(a for _, a in votes if group_of[a] == top)
        label = min(forms, key=lambda a: (-forms[a], a))
        if len(votes) < f.majority_min_samples:
            why = f"{len(votes)} samples gave an answer < filter.majority_min_samples {f.majority_min_samples}"
        elif len(ranked) > 1 and ranked[1][1] == n:
            why = f"a tie: {n} votes each for two answers"
        elif share < f.majority_min_share - 1e-9:
            why = f"top share {share:.3f} < filter.majority_min_share {f.majority_min_share}"
        else:
            why = None
        detail = {"label": label, "share": round(share, 3), "votes": len(votes), "agree": n}
        # a seed that voted without agreeing is doubtful (most samples are wrong there): `no_consensus`
        # traces are dropped; one with too few answers to vote (`no_majority`) is only unverified
        unlabelled = "no_majority" if len(votes) < f.majority_min_samples else "no_consensus"
        for request_id, a in votes:
            if why:
                passed, reason, d = None, unlabelled, {**detail, "label": None, "top": label, "why": why}
            elif group_of[a] == top:
                passed, reason, d = None, "majority", detail  # pseudo-labelled: agrees, is not verified
            else:
                passed, reason, d = False, "majority_minority", {**detail, "answer": a}
            out.append({"request_id": request_id, "check": "verify", "passed": passed, "reason": reason,
                        "detail": json.dumps(d)})
    _write_checks(store, out, replace=True)  # votes change as samples arrive
    return len(out)


def _sig_params(cfg: Config) -> str:
    f = cfg.filter
    from factory.checks.minhash import SIGNATURE_VERSION

    return f"minhash-fast-v{SIGNATURE_VERSION}:{f.minhash_perm}:{f.minhash_ngram}:seed1"


def signatures_for(store: Store, cfg: Config, ids: list[str], texts: list[str]) -> np.ndarray:
    """MinHash signatures, computed once per text and kept in the `signatures` table."""
    from factory.checks.minhash import minhash_signatures

    params = _sig_params(cfg)
    if not ids:
        return np.zeros((0, cfg.filter.minhash_perm), dtype=np.uint64)
    store.con.register("_ids", pa.table({"id": ids}))
    try:
        have = dict(store.sql("SELECT id, sig FROM signatures JOIN _ids USING (id) WHERE params = ?", [params]))
    finally:
        store.con.unregister("_ids")
    missing = [i for i, id_ in enumerate(ids) if id_ not in have]
    if missing:
        if cfg.build.executor == "ray":
            from factory import distributed

            sigs = distributed.minhash_signatures([texts[i] for i in missing], num_perm=cfg.filter.minhash_perm,
                                                  ngram=cfg.filter.minhash_ngram,
                                                  batch_size=8 * cfg.build.ray.check_batch)
        else:
            sigs = minhash_signatures([texts[i] for i in missing], num_perm=cfg.filter.minhash_perm,
                                      ngram=cfg.filter.minhash_ngram)
        rows = [{"id": ids[i], "params": params, "sig": sigs[j].astype(SIG_DTYPE).tobytes()} for j, i in enumerate(missing)]
        store._insert("signatures", pa.Table.from_pylist(rows))
        for j, i in enumerate(missing):
            have[ids[i]] = sigs[j].astype(SIG_DTYPE).tobytes()
    return np.stack([np.frombuffer(have[i], dtype=SIG_DTYPE) for i in ids])


def near_duplicates(store: Store, cfg: Config) -> dict[str, int]:
    """MinHash + LSH clusters over the problems and over the surviving traces (band join in DuckDB)."""
    from factory.checks.minhash import near_duplicate_clusters

    f = cfg.filter
    stats = {}
    for table, query, rank in (
            ("seed_near", """SELECT DISTINCT seed_id AS id, problem AS text, 0 AS rank FROM traces
                             WHERE request_id NOT IN (SELECT request_id FROM rejects) ORDER BY id""", False),
            ("trace_near", """SELECT request_id AS id, coalesce(reasoning, text) AS text,
                                     CASE WHEN verified THEN 0 ELSE 1 END AS rank
                              FROM traces WHERE request_id NOT IN (SELECT request_id FROM rejects) ORDER BY id""", True)):
        rows = store.sql(query)
        ids = [r[0] for r in rows]
        mapping = {}
        if ids:
            texts = [r[1] or "" for r in rows]
            sigs = signatures_for(store, cfg, ids, texts)
            # with the texts, pairs whose estimate is near the threshold are decided by exact Jaccard
            mapping = near_duplicate_clusters(store.con, ids, texts, signatures=sigs, threshold=f.minhash_threshold,
                                              rank=[r[2] for r in rows] if rank else None)
        store.con.register("_near", pa.table({"id": list(mapping), "rep": list(mapping.values())}))
        store.sql(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _near")
        store.con.unregister("_near")
        stats[table] = len(set(mapping.values())) if mapping else 0
        stats[table + "_clusters"] = sum(1 for c in Counter(mapping.values()).values() if c > 1)
    return stats


def load_benchmarks(cfg: Config) -> dict[str, list[tuple[str, str]]]:
    """Benchmark items (id, text) for decontamination: question / problem / prompt of each row."""
    out = {}
    for name, path in cfg.filter.benchmarks.items():
        p = project_file(cfg, path)
        if not p.exists():
            raise FilterError(f"filter.benchmarks.{name}: {p}: no such file")
        opener = gzip.open if p.suffix == ".gz" else open
        items = []
        with opener(p, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    row = json.loads(line)
                    text = row.get("question") or row.get("problem") or row.get("prompt")
                    if text:
                        items.append((str(row.get("task_id") or row.get("unique_id") or n), text))
        out[name] = items
    return out


def decontaminate(store: Store, cfg: Config) -> int:
    """n-gram overlap of problems and traces against the benchmark sets; hits are stored with the item."""
    from factory.checks.ngrams import RULES_VERSION, Decontaminator

    bench = load_benchmarks(cfg)
    params = hashlib.sha1(json.dumps([RULES_VERSION, cfg.filter.decontam_ngram, sorted(bench), sum(len(v) for v in bench.values())])
                          .encode()).hexdigest()[:12]
    todo = store.sql(f"""
        SELECT id, kind, text FROM (
          SELECT DISTINCT seed_id AS id, 'seed' AS kind, problem AS text FROM traces
          UNION ALL SELECT request_id, 'trace', coalesce(reasoning, text) FROM traces)
        WHERE NOT EXISTS (SELECT 1 FROM contamination_done c WHERE c.id = id AND c.params = '{params}')""")
    if todo:
        finder = Decontaminator(bench, n=cfg.filter.decontam_ngram)
        hits = finder.find([(f"{kind}\t{id_}", text or "") for id_, kind, text in todo])
        rows = [{"id": h.key.split("\t", 1)[1], "kind": h.key.split("\t", 1)[0], "params": params,
                 "benchmark": h.benchmark, "item_id": str(h.item_id), "match": h.kind, "score": float(h.score)}
                for h in hits]
        if rows:
            store._insert("contamination", pa.Table.from_pylist(rows), conflict=None)
        store._insert("contamination_done", pa.Table.from_pylist([{"id": id_, "params": params} for id_, _, _ in todo]))
    return len(todo), params


# -- diversity ---------------------------------------------------------------------------------

def _diverse_rank(store: Store, cfg: Config) -> None:
    """Per seed, a greedy order: each next trace is the one least similar to those before it."""
    from factory.checks.minhash import estimated_jaccard

    rows = store.sql("""SELECT seed_id, request_id, coalesce(reasoning, text), coalesce(verified, FALSE)
                        FROM traces WHERE request_id NOT IN (SELECT request_id FROM rejects)
                        ORDER BY seed_id, coalesce(verified, FALSE) DESC, reasoning_words, request_id""")
    sigs = signatures_for(store, cfg, [r[1] for r in rows], [r[2] or "" for r in rows]) if rows else None
    ranks, start = [], 0
    while start < len(rows):
        end = start
        while end < len(rows) and rows[end][0] == rows[start][0]:
            end += 1
        order, left = [start], list(range(start + 1, end))
        while left:
            best = min(left, key=lambda i: (not rows[i][3], max(float(estimated_jaccard(sigs[i], sigs[j])) for j in order)))
            order.append(best)
            left.remove(best)
        ranks += [{"request_id": rows[i][1], "rank": k} for k, i in enumerate(order)]
        start = end
    store.con.register("_rank", pa.Table.from_pylist(ranks) if ranks else pa.table({"request_id": [], "rank": []}))
    store.sql("CREATE OR REPLACE TEMP TABLE diverse_rank AS SELECT * FROM _rank")
    store.con.unregister("_rank")


# -- the stage ----------------------------------------------------------------------------------

def _check_new(store: Store, cfg: Config, status, judges: dict | None, label: str) -> Counter:
    """Parse and verify every answer not done yet (teachers' and the student's alike): math-verify, the
    reasoning-gym scorers, the judge (filter.math.judge) on what the verifier could not read, the code sandbox."""
    checks: Counter = Counter()
    status.update(f"{label}: parsing")
    checks["parsed"] = parse_new(store)
    status.update(f"{label}: verifying math (math-verify, worker processes)")
    checks["verify_math"] = verify_math(store, cfg)
    status.update(f"{label}: scoring reasoning-gym answers (the tasks' own scorers, worker processes)")
    checks["verify_gym"] = verify_gym(store, cfg)
    if cfg.filter.math.judge:
        status.update(f"{label}: asking the judge ({cfg.filter.math.judge}) about undecided answers")
        checks.update({f"judge_{k}": v for k, v in judge_undecided(store, cfg, Prompts(cfg.path(cfg.prompts_dir)),
                                                                   (judges or {}).get(cfg.filter.math.judge)).items()})
    status.update(f"{label}: running code tests in the sandbox")
    checks["verify_code"] = verify_code(store, cfg)
    return checks


def student_gate(store: Store, cfg: Config, console: Console | None = None,
                 judges: dict | None = None) -> dict[str, str]:
    """select.student decided before any teacher generates (select.student.before_generation; pipeline.py
    passes this as build_dataset's `gate`, right after the plan): the student answers each seed of the plan
    (factory.student.ask_student: what is answered is never asked again), its answers go through the stage's
    own checks (the rows land in parsed / checks, so the stage finds them done), and filters/student_pass.sql,
    the SQL the stage's band runs, decides. Returns seed id -> in_band | too_easy | too_hard | undecided for
    every seed of the plan; `judges` overrides backends by name, as in run_filter (tests)."""
    student = cfg.select.student
    if student is None:
        return {}
    console = console or Console(stderr=True)
    ask_student(store, cfg, Prompts(cfg.path(cfg.prompts_dir)), (judges or {}).get(student.teacher), console)
    with console.status("student: parsing") as status:
        _check_new(store, cfg, status, judges, "student")
        status.update("student: deciding (SQL)")
        _run_sql(store, _sql_env(cfg), "student_pass.sql", lo=student.pass_rate[0], hi=student.pass_rate[1])
    return dict(store.sql("SELECT seed_id, decision FROM student_pass"))


def run_filter(cfg: Config, console: Console | None = None, judges: dict | None = None,
               student_asked: bool = False) -> FilterSummary:
    """Run the stage over the store; `judges` overrides by name the backends the stage asks: the judge
    (filter.math.judge) and the student (select.student.teacher) (tests). `student_asked`: this run asked
    the student already (student_gate, before generation): its stored answers are read, it is not asked again."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    env = _sql_env(cfg)
    with Store(cfg.store_path) as store:
        if not store.sql("SELECT 1 FROM information_schema.tables WHERE table_name = 'plan'"):
            raise FilterError(f"{cfg.store_path}: no build plan yet (run `factory build dataset` first)")
        checks = Counter()
        student = cfg.select.student
        if student:  # first: its answers are then parsed and verified like any trace (never part of `plan`)
            checks.update({f"student_{k}": v for k, v in ask_student(
                store, cfg, Prompts(cfg.path(cfg.prompts_dir)), (judges or {}).get(student.teacher), console,
                ask=not student_asked).items()})
        with console.status("filter: parsing") as status:
            checks.update(_check_new(store, cfg, status, judges, "filter"))
            status.update("filter: majority vote for seeds without a reference")
            checks["majority"] = majority_vote(store, cfg)
            status.update("filter: deciding (SQL)")
            _run_sql(store, env, "traces.sql")
            if student:  # a seed outside the student's band: all of its traces, before any other stage
                _run_sql(store, env, "student.sql", lo=student.pass_rate[0], hi=student.pass_rate[1])
                band = band_counts(store)
                checks.update({f"student_{k}": v for k, v in band.items()})
                console.print(band_line(cfg, band), highlight=False)
            _run_sql(store, env, "quality.sql", quality={"math": cfg.filter.math, "code": cfg.filter.code})
            _run_sql(store, env, "verify.sql", require_verified=cfg.filter.require_verified)
            status.update("filter: near-duplicates (MinHash + LSH)")
            near = near_duplicates(store, cfg)
            _run_sql(store, env, "dedup.sql")
            status.update("filter: decontamination (n-gram overlap)")
            checks["decontam"], params = decontaminate(store, cfg)
            _run_sql(store, env, "decontam.sql", params=params)
            if cfg.filter.prefer == "diverse":
                _diverse_rank(store, cfg)
            _run_sql(store, env, "select.sql", per_seed=cfg.filter.per_seed, prefer=cfg.filter.prefer)
        summary = _record_version(store, cfg, env, near)
        summary.checks_run = checks
        summary.wall_s = time.monotonic() - started
    return summary


def _record_version(store: Store, cfg: Config, env: jinja2.Environment, near: dict) -> FilterSummary:
    """The decision as a version (factory.versions): the SQL-answered figures from filters/diversity.sql,
    then the near-duplicate cluster counts of this run."""
    row = _run_sql(store, env, "diversity.sql")[0]
    names = ("kept", "seeds", "mean_reasoning_words", "std_reasoning_words", "reasoning_words_p10_p50_p90",
             "distinct_answers_per_seed", "answer_spread", "per_source", "per_teacher")
    clusters = {"near_dup_clusters": near.get("trace_near_clusters", 0),
                "near_dup_problem_clusters": near.get("seed_near_clusters", 0)}
    stages = STAGES if cfg.select.student else tuple(s for s in STAGES if s != "student")
    v = record_version(store, cfg.config_hash(), dict(zip(names, row)), clusters, stages)
    return FilterSummary(version=v.version, new_version=v.new, candidates=v.counts["candidates"],
                         kept=v.counts["kept"], funnel=v.funnel, diversity=v.diversity)
