"""Seeds from JSONL, Parquet or HF `datasets` (local folder or Hub name), through a field mapping.

A bad row never stops the run: it becomes a BadRow (file, row, field, reason) that the build
counts and reports, and loading goes on.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.config import SourceConfig
from factory.records import Seed

# Shipped field mappings: record field -> column of the source. `answer_after` splits the
# reference answer off a worked solution (GSM8K's "... #### 72").
PRESETS: dict[str, dict[str, Any]] = {
    "gsm8k": {"fields": {"problem": "question", "answer": "answer"}, "domain": "math", "answer_after": "####",
              "licence": "MIT (openai/grade-school-math)"},
    "math500": {"fields": {"problem": "problem", "answer": "answer", "id": "unique_id"}, "domain": "math",
                "licence": "MIT (openai/prm800k; MATH by Hendrycks et al.)"},
    "humaneval": {"fields": {"problem": "prompt", "tests": "test", "entry_point": "entry_point", "id": "task_id"},
                  "domain": "code", "licence": "MIT (openai/human-eval)"},
}
RECORD_FIELDS = ("problem", "answer", "tests", "entry_point", "id")


class SourceError(ValueError):
    """The source as a whole cannot be read (missing file, unknown format)."""


@dataclass(frozen=True)
class BadRow:
    file: str
    row: int  # 1-based line (JSONL) or row number (Parquet / datasets)
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" + (f" field '{self.field}'" if self.field else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class SourcePlan:
    """A source config with its preset applied."""

    name: str
    path: str
    format: str
    fields: dict[str, str]
    domain: str
    answer_after: str | None
    split: str
    limit: int | None
    licence: str | None


def plan_source(cfg: SourceConfig, base_dir: Path = Path(".")) -> SourcePlan:
    preset = PRESETS.get(cfg.preset or "", {})
    fields = {**preset.get("fields", {}), **cfg.fields}
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise SourceError(f"source '{cfg.name}': unknown field mapping {sorted(unknown)} (allowed: {RECORD_FIELDS})")
    if "problem" not in fields:
        raise SourceError(f"source '{cfg.name}': map the 'problem' field (fields: {{problem: COLUMN}}) or use a preset")
    path = cfg.path
    fmt = cfg.format
    local = Path(path).expanduser()
    if not local.is_absolute() and (base_dir / local).exists():
        local = base_dir / local
    if fmt is None:
        name = local.name.lower()
        fmt = ("jsonl" if name.endswith((".jsonl", ".jsonl.gz", ".json")) else
               "parquet" if name.endswith(".parquet") else "hf")
    if fmt in ("jsonl", "parquet"):
        if not local.exists():
            raise SourceError(f"source '{cfg.name}': {local}: no such file")
        path = str(local)
    elif local.exists():
        path = str(local)
    return SourcePlan(cfg.name, path, fmt, fields, cfg.domain or preset.get("domain", "math"),
                      cfg.answer_after or preset.get("answer_after"), cfg.split, cfg.limit,
                      cfg.licence or preset.get("licence"))


def _jsonl_rows(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or BadRow reason string) for each non-empty line."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield n, f"invalid UTF-8 at byte {e.start}"
                continue
            try:
                yield n, json.loads(text)
            except json.JSONDecodeError as e:
                yield n, f"invalid JSON: {e.msg} (column {e.colno})"


def _parquet_rows(path: str) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _hf_rows(path: str, split: str) -> Iterator[tuple[int, Any]]:
    import datasets

    local = Path(path)
    if local.is_dir() and ((local / "dataset_info.json").exists() or (local / "state.json").exists()):
        ds = datasets.load_from_disk(str(local))  # a folder written by save_to_disk
        ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    else:  # a Hub name, or a local folder of data files; streaming keeps memory flat
        ds = datasets.load_dataset(path, split=split, streaming=True)
    for n, row in enumerate(ds, start=1):
        yield n, row


def _text(row: dict, field: str, column: str, domain: str) -> tuple[str | None, str | None]:
    """(value, error) of one mapped field. Every mapped column must be present (an `id` may be
    absent); only an answer may be null or a number (answers are often ints)."""
    if column not in row:
        return None, (None if field == "id" else "missing field")
    value = row[column]
    if value is None:
        needed = field == "problem" or (field in ("tests", "entry_point") and domain == "code")
        return None, ("is null" if needed else None)
    if isinstance(value, str):
        return value, None
    if field in ("answer", "id") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value), None
    return None, f"expected a string, got {type(value).__name__}"


def read_seeds(plan: SourcePlan) -> Iterator[Seed | BadRow]:
    """Stream the source's rows as Seeds, or BadRows for rows that cannot become one."""
    rows = {"jsonl": lambda: _jsonl_rows(plan.path), "parquet": lambda: _parquet_rows(plan.path),
            "hf": lambda: _hf_rows(plan.path, plan.split)}[plan.format]()
    file = Path(plan.path).name if plan.format != "hf" else plan.path
    good = 0
    for n, row in rows:
        if plan.limit is not None and good >= plan.limit:
            return
        if isinstance(row, str):
            yield BadRow(file, n, None, row)
            continue
        if not isinstance(row, dict):
            yield BadRow(file, n, None, f"expected an object, got {type(row).__name__}")
            continue
        values: dict[str, str | None] = {}
        bad = None
        for field, column in plan.fields.items():
            value, err = _text(row, field, column, plan.domain)
            if err:
                bad = BadRow(file, n, column, err)
                break
            values[field] = value
        if bad is None and not (values.get("problem") or "").strip():
            bad = BadRow(file, n, plan.fields["problem"], "empty problem")
        if bad is None and plan.answer_after and values.get("answer") is not None:
            head, sep, tail = values["answer"].rpartition(plan.answer_after)
            if not sep or not tail.strip():
                bad = BadRow(file, n, plan.fields["answer"], f"no answer after '{plan.answer_after}'")
            else:
                values["answer"] = tail.strip().replace(",", "")
        if bad is not None:
            yield bad
            continue
        good += 1
        meta = {"row": n}
        if values.get("id") is not None:
            meta["id"] = values["id"]
        yield Seed(source=plan.name, problem=values["problem"], domain=plan.domain, answer=values.get("answer"),
                   tests=values.get("tests"), entry_point=values.get("entry_point"), meta=meta)
