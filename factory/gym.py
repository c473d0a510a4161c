"""Seeds from reasoning-gym's procedural generators (`kind: reasoning_gym` sources).

    sources: [{name: arith, kind: reasoning_gym, task: basic_arithmetic, size: 5000, seed: 1, config: {...}}]
    sources: [{name: mix, kind: reasoning_gym, tasks: {basic_arithmetic: 2, word_sorting: 1}, size: 3000,
               config: {word_sorting: {max_words: 8}}}]

A source is a list of *draws*: a draw is a generator seed and a size, and yields the problems at
indices 0..count-1 of `create_dataset(task, seed=…, size=…, **config)` (a weighted mix: reasoning-gym's
`composite` dataset). The first draw is the config's own (seed, size); `refresh.fresh_seeds: N` adds a
draw of N problems nobody has seen, recorded in the store's `gym_draws`, so every later build plans
all recorded draws again (the corpus keeps them). Entries are generated one at a time as the plan
reads them (a dataset is indexable): nothing is built up front; a draw generated whole is recorded
in the store's `gym_seeds` (index -> seed id), and later builds read it back instead of generating.

Why a fresh draw does not take seed + 1: most generators seed item i with Random(seed + i), so the
dataset of seed s + 1 is the dataset of seed s shifted by one. A new draw starts past the end of every
draw before it (seed + size + tasks + 1), so no index space is shared.

A seed: problem = the entry's question, answer = its answer as text (None where the task has no single
answer and only its scorer can tell), domain math (filter.math quality rules apply), and
meta.gym = {task, config, seed, index, entry}: the whole entry (metadata included, encoded by
checks.gym.encode_entry), so the filter scores an answer with the task's own `score_answer` from the
seeds table alone. Only this module and checks/gym.py import reasoning_gym.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from factory.checks.gym import encode_entry
from factory.config import SourceConfig
from factory.errors import SourceError
from factory.records import BadRow, Seed, content_hash

GYM_TEMPLATE = "gym_cot.jinja"
LICENCE = "Apache-2.0 (open-thought/reasoning-gym)"
SEED_LIMIT = 2**32  # numpy's RandomState, which some generators use, takes seeds below 2^32


@dataclass(frozen=True)
class Draw:
    seed: int  # the generator's seed
    size: int  # the generator's size (a few generators build that many problems up front)
    count: int  # problems taken: indices 0..count-1


@dataclass(frozen=True)
class GymPlan:
    """A `kind: reasoning_gym` source, checked against the installed reasoning-gym."""

    name: str
    tasks: dict[str, float]  # task -> weight (one task: weight 1)
    config: dict[str, dict[str, Any]]  # task -> its settings
    seed: int
    size: int
    domain: str
    licence: str
    mix: bool  # `tasks:` (reasoning-gym's composite dataset) rather than one `task:`
    draws: tuple[Draw, ...] = field(default=())  # recorded fresh draws, oldest first
    store: Any = field(default=None, compare=False, repr=False)  # drawn seeds are read back from it and recorded

    @property
    def path(self) -> str:
        """Where the seeds come from, as messages name it."""
        return "reasoning_gym:" + "+".join(self.tasks)

    @property
    def fingerprint(self) -> str:
        """What recorded draws belong to: another task, mix, settings or seed is another stream."""
        return content_hash("gym", self.tasks, self.config, self.seed, self.mix)[:16]

    def all_draws(self) -> tuple[Draw, ...]:
        return (Draw(self.seed, self.size, self.size),) + self.draws

    def next_seed(self) -> int:
        """The first generator seed past every draw's index space (see the module's docstring)."""
        seed = max(d.seed + d.size for d in self.all_draws()) + len(self.tasks) + 1
        if seed + len(self.tasks) >= SEED_LIMIT:
            raise SourceError(f"source '{self.name}': no generator seeds left below 2^32 for a fresh draw")
        return seed


def _gym():
    try:
        import reasoning_gym
    except ImportError:
        raise SourceError("kind: reasoning_gym needs the reasoning-gym package (pip install reasoning-gym)") from None
    return reasoning_gym


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def plan_gym(cfg: SourceConfig) -> GymPlan:
    """The source's tasks and settings, each checked by building its dataset once: an unknown task or a
    setting the task does not take is a SourceError naming the source and the field."""
    _gym()  # first: a clear error when reasoning-gym is missing
    from reasoning_gym.factory import DATASETS

    tasks = dict(cfg.tasks) if cfg.tasks else {cfg.task: 1.0}
    where = "tasks" if cfg.tasks else "task"
    known = sorted(n for n in DATASETS if n != "composite")
    for name in tasks:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=3)
            hint = (f" (did you mean {', '.join(close)}?)" if close
                    else f" ({len(known)} tasks; e.g. {', '.join(known[:5])})")
            raise SourceError(f"source '{cfg.name}': {where}: unknown reasoning-gym task '{name}'{hint}")
    if cfg.tasks:
        extra = sorted(set(cfg.config) - set(tasks))
        if extra:
            raise SourceError(f"source '{cfg.name}': config.{extra[0]}: not one of the source's tasks "
                              f"({', '.join(tasks)}); a mix's config is {{task: settings}}")
        config = {name: dict(cfg.config.get(name) or {}) for name in tasks}
    else:
        config = {cfg.task: dict(cfg.config)}
    for name, settings in config.items():
        at = f"config.{name}" if cfg.tasks else "config"
        if not isinstance(settings, dict):
            raise SourceError(f"source '{cfg.name}': {at}: expected a mapping of settings, got {settings!r}")
        for key in ("seed", "size"):
            if key in settings:
                raise SourceError(f"source '{cfg.name}': {at}.{key}: set {key} on the source, not in its config")
        try:
            _gym().create_dataset(name, **settings, seed=cfg.seed, size=1)[0]
        except Exception as e:  # noqa: BLE001 - an unknown setting (TypeError), a failed validate (AssertionError)
            raise SourceError(f"source '{cfg.name}': {at}: task '{name}' refuses these settings: "
                              f"{_first_line(e)}") from None
    return GymPlan(cfg.name, tasks, config, cfg.seed, cfg.size, cfg.domain or "math", cfg.licence or LICENCE,
                   bool(cfg.tasks))


def _dataset(plan: GymPlan, draw: Draw):
    gym = _gym()
    if not plan.mix:
        (task, settings), = plan.config.items()
        return gym.create_dataset(task, **settings, seed=draw.seed, size=draw.size)
    from reasoning_gym.composite import DatasetSpec

    specs = [DatasetSpec(name=t, weight=w, config=dict(plan.config[t])) for t, w in plan.tasks.items()]
    return gym.create_dataset("composite", seed=draw.seed, size=draw.size, datasets=specs)


def _seed(plan: GymPlan, draw: Draw, index: int, entry: Any, row: int) -> Seed | str:
    """The Seed of one entry, or why the entry cannot be one."""
    if not isinstance(entry, dict):
        return f"expected an entry (a dict), got {type(entry).__name__}"
    question = entry.get("question")
    if not isinstance(question, str) or not question.strip():
        return "no question"
    answer = entry.get("answer")
    metadata = entry.get("metadata") if isinstance(entry.get("metadata"), dict) else {}
    task = metadata.get("source_dataset") if plan.mix else next(iter(plan.tasks))
    if task not in plan.tasks:
        return f"the mix gave an entry of task {task!r}, not one of its own"
    meta = {"row": row, "gym": {"task": task, "config": plan.config[task], "seed": draw.seed, "index": index,
                                "entry": encode_entry(entry)}}
    return Seed(source=plan.name, problem=question, domain=plan.domain,
                answer=None if answer is None else str(answer), meta=meta)


def read_gym_seeds(plan: GymPlan) -> Iterator[Any]:
    """Stream the seeds of every draw, one entry generated at a time; an entry the generator fails on
    becomes a BadRow (draw's seed, index), never the end of the source. With a store (`plan.store`, set
    by with_recorded_draws) a draw generated whole before is read back from it (`gym_seeds` and `seeds`:
    zebra_puzzles makes 13 problems a second) and a draw generated now is recorded there."""
    row = 0
    for draw in plan.all_draws():
        where = f"{plan.path} seed {draw.seed}"
        stored = _stored_draw(plan, draw) if plan.store is not None else None
        made: list[tuple[int, str | None, str | None]] = []  # (index, seed id, why no seed)
        dataset = _dataset(plan, draw) if stored is None else None
        for index in range(draw.count):
            row += 1
            if stored is not None:
                item = stored[index]
                if isinstance(item, Seed):
                    item = replace(item, meta={**item.meta, "row": row})
            else:
                try:
                    item = _seed(plan, draw, index, dataset[index], row)
                except Exception as e:  # noqa: BLE001 - a generator's bug on one index
                    item = f"generator failed: {_first_line(e)}"
                made.append((index, None, item) if isinstance(item, str) else (index, item.seed_id, None))
            yield item if not isinstance(item, str) else BadRow(where, index, None, item)
        if made and plan.store is not None:
            _record_draw(plan, draw, made)


def _stored_draw(plan: GymPlan, draw: Draw) -> list[Seed | str] | None:
    """A draw's items as an earlier build generated them (a Seed, or why the index is none), or None when
    the store does not hold every index of it with its seed (a build killed before storing them)."""
    rows = plan.store.sql(
        """SELECT g.idx, g.bad, d.problem, d.domain, d.answer, d.tests, d.entry_point, d.meta
           FROM gym_seeds g LEFT JOIN seeds d ON d.seed_id = g.seed_id
           WHERE g.source = ? AND g.fingerprint = ? AND g.gen_seed = ? AND g.size = ? AND g.idx < ?
           ORDER BY g.idx""", [plan.name, plan.fingerprint, draw.seed, draw.size, draw.count])
    if len(rows) != draw.count:
        return None
    items: list[Seed | str] = []
    for index, bad, problem, domain, answer, tests, entry, meta in rows:
        if bad is None and problem is None:
            return None
        items.append(bad if bad is not None else Seed(plan.name, problem, domain, answer, tests, entry,
                                                      json.loads(meta) if meta else {}))
    return items


def _record_draw(plan: GymPlan, draw: Draw, made: list[tuple[int, str | None, str | None]]) -> None:
    import pyarrow as pa

    table = pa.table({"idx": [i for i, _, _ in made], "seed_id": [s for _, s, _ in made],
                      "bad": [b for _, _, b in made]})
    plan.store.con.register("_gym_made", table)
    try:
        plan.store.sql("INSERT INTO gym_seeds SELECT ?, ?, ?, ?, idx, seed_id, bad FROM _gym_made ON CONFLICT DO NOTHING",
                       [plan.name, plan.fingerprint, draw.seed, draw.size])
    finally:
        plan.store.con.unregister("_gym_made")


# -- fresh draws (refresh.fresh_seeds) and the store's record of them -------------------------------

def with_recorded_draws(store: Any, plan: GymPlan) -> GymPlan:
    """The plan with the fresh draws the store recorded for this source (same fingerprint), oldest first,
    reading drawn seeds back from the store (read_gym_seeds)."""
    rows = store.sql("SELECT gen_seed, size, count FROM gym_draws WHERE source = ? AND fingerprint = ? "
                     "ORDER BY draw", [plan.name, plan.fingerprint])
    return replace(plan, draws=tuple(Draw(int(s), int(n), int(c)) for s, n, c in rows), store=store)


def draw_fresh(plan: GymPlan, n: int, known: set[str]) -> tuple[Draw, int]:
    """The next draw: up to `n` problems whose seed id is not in `known` (added to it), from the next
    generator seed. Returns the draw (count = indices read) and how many new seeds it holds; a task whose
    space is nearly exhausted reads at most max(4n, n + 64) indices and may give fewer than n."""
    seed, cap = plan.next_seed(), max(4 * n, n + 64)
    draw = Draw(seed, cap, cap)
    dataset = _dataset(plan, draw)
    new = taken = 0
    for index in range(cap):
        taken = index + 1
        try:
            item = _seed(plan, draw, index, dataset[index], 0)
        except Exception:  # noqa: BLE001 - the plan will report it as a bad row
            continue
        if isinstance(item, Seed) and item.seed_id not in known:
            known.add(item.seed_id)
            new += 1
            if new >= n:
                break
    return Draw(seed, cap, taken), new


def draw_fresh_seeds(store: Any, sources: list[SourceConfig], n: int) -> dict[str, dict[str, Any]]:
    """For each reasoning_gym source, record a draw of `n` seeds never stored before (refresh.fresh_seeds).
    Returns {source: {"asked", "new", "seed", "indices"}}."""
    out: dict[str, dict[str, Any]] = {}
    for cfg in sources:
        if cfg.kind != "reasoning_gym" or n <= 0:
            continue
        plan = with_recorded_draws(store, plan_gym(cfg))
        known = {r[0] for r in store.sql("SELECT seed_id FROM seeds WHERE source = ?", [plan.name])}
        if not known:  # never built: the recorded draws' own seeds are not new either
            known = {s.seed_id for s in read_gym_seeds(plan) if isinstance(s, Seed)}
        draw, new = draw_fresh(plan, n, known)
        if new:
            number = store.scalar("SELECT coalesce(max(draw), 0) + 1 FROM gym_draws WHERE source = ? "
                                  "AND fingerprint = ?", [plan.name, plan.fingerprint])
            store.sql("INSERT INTO gym_draws (source, fingerprint, draw, gen_seed, size, count, new_seeds) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [plan.name, plan.fingerprint, number, draw.seed, draw.size, draw.count, new])
        out[plan.name] = {"asked": n, "new": new, "seed": draw.seed, "indices": draw.count}
    return out
