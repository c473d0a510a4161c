"""`factory report`: what the store holds, read with SQL."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from factory.config import Config
from factory.store import Store


def text_report(cfg: Config, console: Console) -> None:
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
