"""Seeds from JSONL, JSON, Parquet or HF `datasets` (local folder or Hub name), through a field mapping.

A field maps to a column, or to a jinja expression over the row (`"{{ Body }} {{ Question }}"`,
`{{ row["Question Text"] }}`); the reference answer can then be cut out of a worked solution
(`answer_after`, `answer_boxed`, `answer_regex`) and stripped of units (`strip_units`).

A mapping that names a column the data does not have is a SourceError before any row is read:
a typo must not turn every row into a bad one. A bad row never stops the run: it becomes a BadRow
(file, row, field, reason) that the build counts and reports, and loading goes on.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import SandboxedEnvironment

from factory.checks.io_tests import unusable_tests
from factory.config import SourceConfig
from factory.errors import SourceError  # noqa: F401 - raised here; importable from this module too
from factory.records import BadRow, Seed  # noqa: F401 - BadRow: read_seeds yields it; importable from here

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
SOURCE_ROW = "source_row"  # Seed.meta key of the whole source row (JSON-safe): prompt templates' `row`
SHOW_COLUMNS = 10  # columns named in a missing-column error


@dataclass(frozen=True)
class SourcePlan:
    """A source config with its preset applied and its field expressions compiled."""

    name: str
    path: str
    format: str
    fields: dict[str, str]  # record field -> column name or jinja expression text
    domain: str
    answer_after: str | None
    split: str
    limit: int | None
    licence: str | None
    answer_boxed: bool = False
    answer_regex: str | None = None
    strip_units: bool = False
    max_unusable_references: float = 0.05
    optional_columns: frozenset[str] = frozenset()  # mapped by a preset, may be absent (an `id`)
    expressions: dict[str, jinja2.Template] = field(default_factory=dict, compare=False)


# -- field expressions -------------------------------------------------------------------------

def is_expression(value: str) -> bool:
    """A `fields:` value is a jinja expression when it holds `{{` or `{%`; otherwise a column name."""
    return "{{" in value or "{%" in value


def _cell_text(value: Any) -> Any:
    """How a cell prints inside an expression: null (and NaN, pandas' null) as nothing, 9.0 as 9."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_cell_text)
_DICT_METHODS = {"get", "items", "keys", "values"}
_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")


def _compile(source: str, name: str, text: str) -> jinja2.Template:
    try:
        return _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as e:
        raise SourceError(f"source '{source}': fields.{name}: jinja syntax error in {text!r}: {e.message}") from None


def _expression_columns(text: str) -> set[str]:
    """The columns an expression reads: its free variables (but `row` and jinja's globals), and
    `row["X"]` / `row.X` lookups with a constant name."""
    ast = _ENV.parse(text)
    names = jinja2.meta.find_undeclared_variables(ast) - {"row"} - set(_ENV.globals)
    for node in ast.find_all((jinja2.nodes.Getitem, jinja2.nodes.Getattr)):
        if isinstance(node.node, jinja2.nodes.Name) and node.node.name == "row":
            if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const) \
                    and isinstance(node.arg.value, str):
                names.add(node.arg.value)
            elif isinstance(node, jinja2.nodes.Getattr) and node.attr not in _DICT_METHODS:
                names.add(node.attr)
    return names


# -- planning ------------------------------------------------------------------------------------

def plan_source(cfg: SourceConfig, base_dir: Path = Path(".")) -> SourcePlan:
    """The source's plan; a `kind: reasoning_gym` source's is a factory.gym.GymPlan."""
    if cfg.kind == "reasoning_gym":
        from factory.gym import plan_gym

        return plan_gym(cfg)
    preset = PRESETS.get(cfg.preset or "", {})
    fields = {**preset.get("fields", {}), **cfg.fields}
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise SourceError(f"source '{cfg.name}': unknown field mapping {sorted(unknown)} (allowed: {RECORD_FIELDS})")
    if "problem" not in fields:
        raise SourceError(f"source '{cfg.name}': map the 'problem' field (fields: {{problem: COLUMN}}) or use a preset")
    expressions = {f: _compile(cfg.name, f, text) for f, text in fields.items() if is_expression(text)}
    # the user's extraction replaces the preset's: answer_boxed on a gsm8k-shaped file drops '####'
    own_extraction = cfg.answer_after or cfg.answer_boxed or cfg.answer_regex
    answer_after = cfg.answer_after if own_extraction else preset.get("answer_after")
    path = cfg.path
    fmt = cfg.format
    local = Path(path).expanduser()
    if not local.is_absolute() and (base_dir / local).exists():
        local = base_dir / local
    if fmt is None:
        name = local.name.lower()
        fmt = ("jsonl" if name.endswith((".jsonl", ".jsonl.gz")) else
               "json" if name.endswith((".json", ".json.gz")) else
               "parquet" if name.endswith(".parquet") else
               "csv" if name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")) else "hf")
    if fmt in ("jsonl", "json", "parquet", "csv"):
        if not local.exists():
            raise SourceError(f"source '{cfg.name}': {local}: no such file")
        if local.is_dir():
            raise SourceError(f"source '{cfg.name}': {local}: is a folder (use format: hf for a dataset folder)")
        path = str(local)
    elif local.exists():
        path = str(local)
    optional = frozenset(preset.get("fields", {}).get(f) for f in ("id",) if f not in cfg.fields) - {None}
    return SourcePlan(cfg.name, path, fmt, fields, cfg.domain or preset.get("domain", "math"), answer_after,
                      cfg.split, cfg.limit, cfg.licence or preset.get("licence"), cfg.answer_boxed, cfg.answer_regex,
                      cfg.strip_units, cfg.max_unusable_references, optional, expressions)


# -- reading rows: (row number, parsed object or a BadRow reason string) ------------------------

def _jsonl_rows(path: str) -> Iterator[tuple[int, Any]]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8-sig" if n == 1 else "utf-8")  # a BOM some editors write
                except UnicodeDecodeError as e:
                    yield n, f"invalid UTF-8 at byte {e.start}"
                    continue
                try:
                    yield n, json.loads(text)
                except json.JSONDecodeError as e:
                    yield n, f"invalid JSON: {e.msg} (column {e.colno})"
    except (gzip.BadGzipFile, EOFError) as e:
        raise SourceError(f"{Path(path).name}: not a readable gzip file ({e})") from None


def _json_rows(path: str) -> Iterator[tuple[int, Any]]:
    """A JSON array of rows, or an object holding one list of rows ({"data": [...]}). A `.json`
    file that is really JSON Lines (common on the Hub) is streamed as such."""
    file = Path(path).name
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(f"{file}: invalid UTF-8 at byte {e.start}") from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise SourceError(f"{file}: not a readable gzip file ({e})") from None
    if not text.strip():
        return iter(())
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return _jsonl_rows(path)
        raise SourceError(f"{file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(doc, dict):
        lists = {k: v for k, v in doc.items() if isinstance(v, list)}
        of_rows = {k: v for k, v in lists.items() if v and isinstance(v[0], dict)}
        chosen = of_rows if len(of_rows) == 1 else lists if len(lists) == 1 else {}
        if not chosen:
            keys = ", ".join(list(doc)[:SHOW_COLUMNS]) or "none"
            raise SourceError(f"{file}: expected an array of rows or an object holding one list of rows "
                              f"(e.g. {{\"data\": [...]}}); the top-level object has keys: {keys}")
        doc = next(iter(chosen.values()))
    if not isinstance(doc, list):
        raise SourceError(f"{file}: expected an array of rows or an object holding one list of rows, "
                          f"got a JSON {type(doc).__name__}")
    return enumerate(doc, start=1)


def _parquet_rows(path: str) -> tuple[list[str], Iterator[tuple[int, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise SourceError(f"{Path(path).name}: not a readable Parquet file ({e})") from None

    def rows() -> Iterator[tuple[int, Any]]:
        n = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield n, row

    return pf.schema_arrow.names, rows()


@contextlib.contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """huggingface_hub logs each retry of an unreachable Hub as a warning; the user gets one line instead."""
    import datasets  # noqa: F401 - the libraries set their loggers' levels on import: import them first

    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "datasets", "fsspec")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR + 10)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _hf_rows(path: str, split: str) -> tuple[list[str] | None, Iterator[tuple[int, Any]]]:
    with _quiet_hub_logs():
        return _hf_open(path, split)


def _hf_open(path: str, split: str) -> tuple[list[str] | None, Iterator[tuple[int, Any]]]:
    import datasets

    local = Path(path)
    try:
        if local.is_dir() and ((local / "dataset_info.json").exists() or (local / "state.json").exists()):
            ds = datasets.load_from_disk(str(local))  # a folder written by save_to_disk
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise SourceError(f"{path}: no split '{split}' (splits: {', '.join(ds)})")
                ds = ds[split]
        elif local.is_file():  # one data file with format: hf: its builder by extension ("csv", "json", …)
            builder = {"jsonl": "json", "tsv": "csv", "txt": "text"}.get(local.suffix.lstrip(".").lower(),
                                                                       local.suffix.lstrip(".").lower())
            ds = datasets.load_dataset(builder, data_files=str(local), split="train", streaming=True)
        else:  # a Hub name, or a local folder of data files; streaming keeps memory flat
            ds = datasets.load_dataset(path, split=split, streaming=True)
    except SourceError:
        raise
    except Exception as e:  # not found, no network, unknown split: `datasets` says which, on its first line
        first = (str(e).strip().splitlines() or [""])[0]
        raise SourceError(f"{path}: cannot load the dataset: {type(e).__name__}: {first}") from None
    columns = list(ds.features) if getattr(ds, "features", None) else None  # unknown for some streams
    return columns, _reading(path, enumerate(ds, start=1))


def _reading(path: str, rows: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """A stream that `datasets` reads lazily fails while rows are read (a folder of mixed files, a
    corrupt shard, the network): one line naming the source and how far it got."""
    n = 0
    try:
        for n, row in rows:
            yield n, row
    except SourceError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the reader raises, the user gets one line
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise SourceError(f"{path}: cannot read row {n + 1}: {type(e).__name__}: {first}") from None


def _csv_rows(path: str) -> tuple[list[str] | None, Iterator[tuple[int, Any]]]:
    """A CSV (or TSV) file with a header row; every cell is text, an empty cell is null."""
    import csv

    opener = gzip.open if path.endswith(".gz") else open
    delimiter = "\t" if ".tsv" in Path(path).name.lower() else ","
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=delimiter), None)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{path}: cannot read the header: {e}") from None
    if not header:
        return [], iter(())

    def rows() -> Iterator[tuple[int, Any]]:
        with opener(path, "rt", encoding="utf-8-sig", newline="", errors="replace") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            try:
                for n, row in enumerate(reader, start=2):  # the file's line of each record (1 is the header)
                    if None in row:
                        yield n, f"{len(row[None])} more cells than the header has columns"
                        continue
                    yield n, {k: (v if v != "" else None) for k, v in row.items()}
            except csv.Error as e:
                yield reader.line_num, f"invalid CSV: {e}"
    return header, rows()


def _open_rows(plan: SourcePlan) -> tuple[list[str] | None, Iterator[tuple[int, Any]]]:
    """(the columns, when the format knows them without reading rows; the rows)."""
    if plan.format == "parquet":
        return _parquet_rows(plan.path)
    if plan.format == "hf":
        return _hf_rows(plan.path, plan.split)
    if plan.format == "csv":
        return _csv_rows(plan.path)
    return None, (_json_rows if plan.format == "json" else _jsonl_rows)(plan.path)


def _peek_columns(rows: Iterator[tuple[int, Any]]) -> tuple[list[str] | None, Iterator[tuple[int, Any]]]:
    """The keys of the first row that is an object (None if there is none), and all rows still."""
    seen = []
    for item in rows:
        seen.append(item)
        if isinstance(item[1], dict):
            return list(item[1]), itertools.chain(seen, rows)
    return None, iter(seen)


def _check_columns(plan: SourcePlan, columns: list[str], file: str) -> None:
    have = set(columns)
    shown = ", ".join(columns[:SHOW_COLUMNS]) + (f", ... ({len(columns)} in all)" if len(columns) > SHOW_COLUMNS
                                                 else "")
    for name, text in plan.fields.items():
        if name in plan.expressions:
            missing = sorted(_expression_columns(text) - have)
            if missing:
                raise SourceError(f"source '{plan.name}': fields.{name}: {text!r} reads column '{missing[0]}', "
                                  f"which {file} does not have (columns: {shown or 'none'})")
        elif text not in have and text not in plan.optional_columns:
            raise SourceError(f"source '{plan.name}': fields.{name}: no column '{text}' in {file} "
                              f"(columns: {shown or 'none'})")


# -- one row -------------------------------------------------------------------------------------

def _text(row: dict, field: str, column: str, domain: str) -> tuple[str | None, str | None]:
    """(value, error) of one mapped field. Every mapped column must be present (an `id` may be
    absent); only an answer may be null or a number (answers are often ints, or floats like 9.0)."""
    if column not in row:
        return None, (None if field == "id" else "missing field")
    value = row[column]
    if isinstance(value, float) and math.isnan(value):
        value = None  # pandas writes a missing cell as NaN
    if value is None:
        needed = field == "problem" or (field in ("tests", "entry_point") and domain == "code")
        return None, ("is null" if needed else None)
    if field == "answer":
        value = _single_item(value)
    if isinstance(value, str):
        return value, None
    if field in ("tests", "entry_point") and isinstance(value, (dict, list, tuple)):
        return json.dumps(json_safe(value)), None  # Parquet structs / JSON lists of cases: checks/io_tests.py reads them
    if field in ("answer", "id") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(_cell_text(value)), None
    if field == "answer" and isinstance(value, bool):  # TheoremQA: True / False
        return str(value), None
    if field == "answer" and isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
        return "[" + ", ".join(str(_cell_text(v)) for v in value) + "]", None  # [1, 2], as TheoremQA writes it
    return None, f"expected a string, got {type(value).__name__}"


def _single_item(value):
    """An answer of one item, as a list cell (`["42"]`) or as JSON text of one (Skywork-OR1's
    `ground_truth`: '["2\\\\sqrt{2}"]'), is that item: a reference list of one is its value."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (str, int, float)):
        return value[0]
    if isinstance(value, str) and value.startswith('["') and value.endswith('"]'):
        try:
            items = json.loads(value)
        except ValueError:
            return value
        if isinstance(items, list) and len(items) == 1 and isinstance(items[0], str):
            return items[0]
    return value


def _render(template: jinja2.Template, row: dict, field: str, domain: str) -> tuple[str | None, str | None, str]:
    """(value, error, the column to blame) of a field expression; an empty result is a null."""
    try:
        value = template.render({**row, "row": row}).strip()
    except jinja2.UndefinedError as e:
        m = _UNDEFINED.search(str(e))
        return None, "missing field", (m.group(1) or m.group(2)) if m else field
    except Exception as e:  # a filter on the wrong type, the sandbox: the row is bad, not the source
        return None, f"expression failed: {type(e).__name__}: {e}", field
    if value:
        return value, None, field
    needed = field == "problem" or (field in ("tests", "entry_point") and domain == "code")
    return None, ("is empty" if needed and field != "problem" else None), field


def _extract_reference(plan: SourcePlan, text: str) -> tuple[str | None, str | None]:
    """(reference, error): the configured extraction, then unit stripping."""
    if plan.answer_after:
        head, sep, tail = text.rpartition(plan.answer_after)
        if not sep or not tail.strip():
            return None, f"no answer after '{plan.answer_after}'"
        text = tail.strip().replace(",", "")
    elif plan.answer_boxed:
        from factory.parse import last_boxed

        boxed = last_boxed(text)
        if boxed is None:
            return None, "no non-empty \\boxed{} in the answer"
        text = boxed
    elif plan.answer_regex:
        match = None
        for match in re.finditer(plan.answer_regex, text):
            pass
        if match is None:
            return None, f"answer_regex {plan.answer_regex!r} does not match"
        text = (match.group(1) if match.re.groups and match.group(1) is not None else match.group(0)).strip()
        if not text:
            return None, f"answer_regex {plan.answer_regex!r} matches an empty string"
    if plan.strip_units:
        from factory.checks.math import strip_units

        text = strip_units(text).strip()
        if not text:
            return None, "nothing left after strip_units"
    return text, None


def json_safe(value: Any) -> Any:
    """A cell as JSON: nested lists/objects kept, NaN as null, bytes as a size, anything else as str."""
    if isinstance(value, str):  # an unmapped column's broken emoji: replaced, the row is still good
        return value if _encodable(value) else value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"  # an image or audio cell: kept out of the store
    return str(value)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def read_seeds(plan: SourcePlan) -> Iterator[Seed | BadRow]:
    """Stream the source's rows as Seeds, or BadRows for rows that cannot become one. The mapped
    columns are checked against the data's columns first (SourceError on the first call)."""
    if not isinstance(plan, SourcePlan):  # a reasoning_gym source (factory.gym)
        from factory.gym import read_gym_seeds

        yield from read_gym_seeds(plan)
        return
    file = Path(plan.path).name if plan.format != "hf" else plan.path
    try:
        columns, rows = _open_rows(plan)
        if columns is None:
            columns, rows = _peek_columns(rows)
    except SourceError as e:
        raise SourceError(f"source '{plan.name}': {e}") from None
    if columns is not None:
        _check_columns(plan, columns, file)
    answer_field = plan.fields.get("answer", "answer") if "answer" not in plan.expressions else "answer"
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
        for name, column in plan.fields.items():
            if name in plan.expressions:
                value, err, blame = _render(plan.expressions[name], row, name, plan.domain)
            else:
                (value, err), blame = _text(row, name, column, plan.domain), column
            if err:
                bad = BadRow(file, n, blame, err)
                break
            values[name] = value
        if bad is None and not (values.get("problem") or "").strip():
            problem = plan.fields["problem"]
            bad = BadRow(file, n, "problem" if "problem" in plan.expressions else problem, "empty problem")
        if bad is None and values.get("answer") is not None:
            values["answer"], err = _extract_reference(plan, values["answer"])
            if err:
                bad = BadRow(file, n, answer_field, err)
        if bad is None and plan.domain == "code":
            err = unusable_tests(values.get("tests"), values.get("entry_point"))
            if err:
                bad = BadRow(file, n, "tests" if "tests" in plan.expressions else plan.fields.get("tests", "tests"), err)
        if bad is not None:
            yield bad
            continue
        broken = next((k for k, v in values.items() if isinstance(v, str) and not _encodable(v)), None)
        if broken is not None:  # a JSON-escaped lone surrogate ("\ud83d"): the store keeps UTF-8 only
            yield BadRow(file, n, plan.fields.get(broken, broken), "invalid Unicode: a lone surrogate (a broken emoji?)")
            continue
        good += 1
        meta: dict[str, Any] = {"row": n}
        if values.get("id") is not None:
            meta["id"] = values["id"]
        meta[SOURCE_ROW] = json_safe(row)
        yield Seed(source=plan.name, problem=values["problem"], domain=plan.domain, answer=values.get("answer"),
                   tests=values.get("tests"), entry_point=values.get("entry_point"), meta=meta)
