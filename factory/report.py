"""`factory report`: what the store holds, read with SQL."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from factory.config import Config
from factory.store import Store


def text_report(cfg: Config, console: Console, version: int | None = None) -> None:
    with Store(cfg.store_path, read_only=True) as store:
        seeds = store.sql("SELECT source, domain, count(*) FROM seeds GROUP BY ALL ORDER BY ALL")
        table = Table(title="seeds")
        for col in ("source", "domain", "seeds"):
            table.add_column(col)
        for row in seeds:
            table.add_row(*map(str, row))
        console.print(table)
        rows = store.sql("""
            SELECT q.teacher, q.model, count(*) AS requests, count(s.request_id) FILTER (s.error IS NULL) AS ok,
                   count(s.request_id) FILTER (s.error IS NOT NULL) AS failed,
                   count(*) - count(s.request_id) AS unanswered,
                   coalesce(sum(s.prompt_tokens), 0) AS tokens_in, coalesce(sum(s.completion_tokens), 0) AS tokens_out,
                   round(coalesce(sum(s.cost), 0), 4) AS cost
            FROM requests q LEFT JOIN responses s USING (request_id) GROUP BY ALL ORDER BY ALL""")
        table = Table(title="requests per teacher (all ever planned)")
        for col in ("teacher", "model", "requests", "ok", "failed", "unanswered", "tokens in", "tokens out", "cost $"):
            table.add_column(col)
        for row in rows:
            table.add_row(*map(str, row))
        console.print(table)
        errors = store.sql("""SELECT teacher, split_part(error, ':', 1) AS reason, count(*), sum(attempts)
                              FROM responses WHERE error IS NOT NULL GROUP BY ALL ORDER BY 3 DESC""")
        if errors:
            table = Table(title="errors")
            for col in ("teacher", "reason", "requests", "attempts"):
                table.add_column(col)
            for row in errors:
                table.add_row(*map(str, row))
            console.print(table)
        versions = store.sql("SELECT version, created_at, counts, funnel, diversity FROM versions ORDER BY version")
        if not versions:
            console.print("no filtered version yet (run `factory filter`)")
            return
        chosen = next((v for v in versions if v[0] == version), versions[-1]) if version else versions[-1]
        version, _, counts, funnel, diversity = chosen
        counts = json.loads(counts)
        console.print(funnel_table(version, counts["candidates"], counts["kept"], json.loads(funnel),
                                   note=f"verified kept: {counts['verified']}"))
        console.print(diversity_line(json.loads(diversity)), highlight=False)
        trend = Table(title="diversity across versions (a falling line is a collapsing corpus)")
        keys = ("kept", "distinct_1", "distinct_2", "distinct_3", "compression_ratio", "near_dup_clusters",
                "answer_spread", "mean_reasoning_words")
        trend.add_column("version")
        for k in keys:
            trend.add_column(k)
        for v in versions:
            d = json.loads(v[4])
            trend.add_row(str(v[0]), *(str(d.get(k)) for k in keys))
        console.print(trend)


def funnel_table(version: int, candidates: int, kept: int, funnel: dict, note: str = "") -> Table:
    """Stage by stage: traces in, dropped, and why."""
    from factory.filter import STAGES

    table = Table(title=f"filter funnel, version {version}" + (f" ({note})" if note else ""))
    for col in ("stage", "in", "dropped", "why"):
        table.add_column(col)
    alive = candidates
    for stage in STAGES:
        reasons = funnel.get(stage, {})
        dropped = sum(reasons.values())
        table.add_row(stage, str(alive), str(dropped), ", ".join(f"{r}: {n}" for r, n in reasons.items()))
        alive -= dropped
    table.add_row("[bold]kept[/]", str(kept), "", "")
    return table


def diversity_line(d: dict) -> str:
    return (f"diversity: distinct-1/2/3 {d.get('distinct_1')}/{d.get('distinct_2')}/{d.get('distinct_3')}, "
            f"compression ratio {d.get('compression_ratio')}, near-dup clusters {d.get('near_dup_clusters')}, "
            f"answer spread {d.get('answer_spread')}, reasoning words mean {d.get('mean_reasoning_words')} "
            f"(p10/p50/p90 {d.get('reasoning_words_p10_p50_p90')}), per source {d.get('per_source')}, "
            f"per teacher {d.get('per_teacher')}")
