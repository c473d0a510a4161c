"""The one store: a DuckDB file per project. Schema changes are a plain list of migrations."""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from factory.errors import StoreBusy, StoreError
from factory.records import IN_FLIGHT, Request, Response, Seed

# Applied in order, each once; the store remembers how many ran. Append, never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE seeds (
        seed_id VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, domain VARCHAR NOT NULL,
        problem VARCHAR NOT NULL, answer VARCHAR, tests VARCHAR, entry_point VARCHAR,
        meta JSON, created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE requests (
        request_id VARCHAR PRIMARY KEY, prompt_id VARCHAR NOT NULL, seed_id VARCHAR NOT NULL,
        teacher VARCHAR NOT NULL, model VARCHAR NOT NULL, template VARCHAR NOT NULL,
        messages JSON NOT NULL, params JSON NOT NULL, sample_index INTEGER NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE responses (
        request_id VARCHAR PRIMARY KEY, teacher VARCHAR, model VARCHAR, text VARCHAR,
        reasoning VARCHAR, finish_reason VARCHAR, prompt_tokens INTEGER, completion_tokens INTEGER,
        logprobs JSON, latency_s DOUBLE, cost DOUBLE, error VARCHAR, attempts INTEGER,
        created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, command VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
        config JSON, config_hash VARCHAR, summary JSON);
    """,
    # the filter stage: Python checks write rows, SQL in filters/ decides
    """
    CREATE TABLE parsed (
        request_id VARCHAR PRIMARY KEY, reasoning VARCHAR, answer VARCHAR, answer_source VARCHAR,
        think_closed BOOLEAN, truncated BOOLEAN, reasoning_words INTEGER, repetition DOUBLE, error VARCHAR);
    CREATE TABLE checks (
        request_id VARCHAR NOT NULL, "check" VARCHAR NOT NULL, passed BOOLEAN, reason VARCHAR, detail VARCHAR,
        PRIMARY KEY (request_id, "check"));
    CREATE TABLE signatures (id VARCHAR NOT NULL, params VARCHAR NOT NULL, sig BLOB NOT NULL,
        PRIMARY KEY (id, params));
    CREATE TABLE contamination (id VARCHAR NOT NULL, kind VARCHAR NOT NULL, params VARCHAR NOT NULL,
        benchmark VARCHAR, item_id VARCHAR, match VARCHAR, score DOUBLE);
    CREATE TABLE contamination_done (id VARCHAR NOT NULL, params VARCHAR NOT NULL, PRIMARY KEY (id, params));
    CREATE TABLE versions (
        version INTEGER PRIMARY KEY, created_at TIMESTAMP DEFAULT current_timestamp, config_hash VARCHAR,
        kept_hash VARCHAR, counts JSON, funnel JSON, diversity JSON, published_revision VARCHAR);
    CREATE TABLE kept (version INTEGER NOT NULL, request_id VARCHAR NOT NULL, seed_id VARCHAR NOT NULL,
        verified BOOLEAN, PRIMARY KEY (version, request_id));
    CREATE TABLE funnel (version INTEGER NOT NULL, request_id VARCHAR NOT NULL, stage VARCHAR NOT NULL,
        reason VARCHAR NOT NULL, PRIMARY KEY (version, request_id));
    """,
    # `factory refresh`: one row per scheduled run that got the lock, with its gates and comparison
    """
    CREATE TABLE refreshes (
        refresh_id VARCHAR PRIMARY KEY, started_at TIMESTAMP, finished_at TIMESTAMP, version INTEGER,
        compared_with INTEGER, outcome VARCHAR, exit_code INTEGER, gates JSON, comparison JSON, message VARCHAR);
    """,
    # the LLM judge's answers (filter.math.judge), one per judge request: asked once, ever
    """
    CREATE TABLE judgments (judge_id VARCHAR PRIMARY KEY, passed BOOLEAN NOT NULL, text VARCHAR, model VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp);
    """,
    # the build's reference check: one verdict per distinct reference string, so a rebuild checks only new ones
    """
    CREATE TABLE reference_checks (reference VARCHAR PRIMARY KEY, usable BOOLEAN NOT NULL, status VARCHAR,
        detail VARCHAR, checked_at TIMESTAMP DEFAULT current_timestamp);
    """,
    # reasoning models: usage.completion_tokens_details.reasoning_tokens (part of completion_tokens)
    """
    ALTER TABLE responses ADD COLUMN reasoning_tokens INTEGER;
    """,
    # mode: batch (teachers/openai_batch.py): one row per batch file, written before it is submitted, so a
    # killed build resumes polling what it submitted and never submits a request twice while its batch lives
    """
    CREATE TABLE batches (
        batch_id VARCHAR PRIMARY KEY, provider_batch_id VARCHAR, teacher VARCHAR NOT NULL, status VARCHAR NOT NULL,
        input_file_id VARCHAR, output_file_id VARCHAR, error_file_id VARCHAR, request_count INTEGER,
        counts JSON, message VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp, submitted_at TIMESTAMP,
        finished_at TIMESTAMP, collected_at TIMESTAMP);
    CREATE TABLE batch_requests (batch_id VARCHAR NOT NULL, request_id VARCHAR NOT NULL,
        PRIMARY KEY (batch_id, request_id));
    """,
    # reasoning_gym sources (factory/gym.py): the fresh draws a refresh took (refresh.fresh_seeds), so every
    # later build plans them again; a draw is a generator seed and size, and the indices 0..count-1 of it
    """
    CREATE TABLE gym_draws (source VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, draw INTEGER NOT NULL,
        gen_seed BIGINT NOT NULL, size INTEGER NOT NULL, count INTEGER NOT NULL, new_seeds INTEGER,
        drawn_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (source, fingerprint, draw));
    """,
    # reasoning_gym sources: what each index of a draw gave (a seed id, or why it is no seed), written when a
    # draw has been generated whole, so a later build reads it back instead of running the generator again
    """
    CREATE TABLE gym_seeds (source VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, gen_seed BIGINT NOT NULL,
        size INTEGER NOT NULL, idx INTEGER NOT NULL, seed_id VARCHAR, bad VARCHAR,
        PRIMARY KEY (source, fingerprint, gen_seed, size, idx));
    """,
]

_SEED_SCHEMA = pa.schema([(n, pa.string()) for n in
                          ("seed_id", "source", "domain", "problem", "answer", "tests", "entry_point", "meta")])
_REQUEST_SCHEMA = pa.schema([(n, pa.string()) for n in
                             ("request_id", "prompt_id", "seed_id", "teacher", "model", "template", "messages", "params")]
                            + [("sample_index", pa.int32())])
_RESPONSE_COLUMNS = ("request_id", "teacher", "model", "text", "reasoning", "finish_reason", "prompt_tokens",
                     "completion_tokens", "reasoning_tokens", "logprobs", "latency_s", "cost", "error", "attempts")
_RESPONSE_SCHEMA = pa.schema(
    [(n, pa.string()) for n in _RESPONSE_COLUMNS[:6]]
    + [("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()), ("reasoning_tokens", pa.int32()),
       ("logprobs", pa.string()), ("latency_s", pa.float64()), ("cost", pa.float64()), ("error", pa.string()),
       ("attempts", pa.int32())])


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _holder(message: str) -> str:
    """'pid 123 (factory build dataset, since 10:02:03)' from DuckDB's lock error, as far as /proc tells."""
    m = re.search(r"\(PID (\d+)\)", message)
    if not m:
        return "another process"
    pid = int(m.group(1))
    what = f"pid {pid}"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        words = [(Path(a.decode(errors="replace")).name if i == 0 else a.decode(errors="replace"))[:40]
                 for i, a in enumerate(argv) if a][:6]
        since = datetime.fromtimestamp(Path(f"/proc/{pid}").stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        what += f" ({' '.join(words)}, since {since})"
    except OSError:
        pass
    return what


def connect(path: Path, read_only: bool, wait_s: float = 0.0) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection; while another process holds the file, retry for `wait_s` seconds, then
    StoreBusy naming the holder."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as e:
            if not isinstance(e, duckdb.IOException) or "could not set lock" not in str(e).lower():
                raise StoreError(f"{path}: cannot open the store: {str(e).splitlines()[0]}") from None
            if time.monotonic() >= deadline:
                hint = f"waited {wait_s:g} s; " if wait_s else ""
                raise StoreBusy(f"{path}: the store is in use by {_holder(str(e))}; {hint}"
                                "wait for it, or pass --wait SECONDS") from None
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


class Store:
    def __init__(self, path: str | Path, read_only: bool = False, wait_s: float | None = None):
        self.path = Path(path)
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # the workdir (or a folder above it) is a file, or not writable
                raise StoreError(f"{self.path.parent}: cannot make the store's folder: {e.strerror}") from None
        wait = float(os.environ.get("FACTORY_STORE_WAIT_S") or 0) if wait_s is None else wait_s
        self.con = connect(self.path, read_only, wait)
        self._lock = threading.Lock()  # one writer at a time on this connection
        if not read_only:
            self.migrate()

    # -- schema -------------------------------------------------------------------------
    def migrate(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (n INTEGER PRIMARY KEY)")
        done = self.scalar("SELECT coalesce(max(n), 0) FROM schema_migrations")
        for n, sql in enumerate(MIGRATIONS[done:], start=done + 1):
            self.con.execute("BEGIN")
            self.con.execute(sql)
            self.con.execute("INSERT INTO schema_migrations VALUES (?)", [n])
            self.con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        """Run a statement and fetch all of its rows (DuckDB wants results finished before the next)."""
        return self.con.execute(query, params or []).fetchall()

    def scalar(self, query: str, params: list | None = None):
        return self.sql(query, params)[0][0]

    # -- writes: each call is one statement, committed when it returns --------------------
    def _insert(self, table: str, rows: pa.Table, conflict: str | None = "DO NOTHING",
                con: duckdb.DuckDBPyConnection | None = None) -> None:
        # Arrow in, one INSERT ... SELECT: ~5x cheaper than executemany for a batch.
        if rows.num_rows == 0:
            return
        con = con or self.con
        cols = ", ".join(f'"{c}"' for c in rows.column_names)
        with self._lock:
            con.register("_rows", rows)
            try:
                on_conflict = f" ON CONFLICT {conflict}" if conflict else ""
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _rows{on_conflict}")
            finally:
                con.unregister("_rows")

    def add_seeds(self, seeds: Iterable[Seed]) -> None:
        rows = [(s.seed_id, s.source, s.domain, s.problem, s.answer, s.tests, s.entry_point, _json(s.meta))
                for s in seeds]
        self._insert("seeds", pa.Table.from_pylist(
            [dict(zip(_SEED_SCHEMA.names, r)) for r in rows], schema=_SEED_SCHEMA))

    def add_requests(self, requests: Iterable[Request]) -> None:
        rows = [{"request_id": r.request_id, "prompt_id": r.prompt_id, "seed_id": r.seed_id, "teacher": r.teacher,
                 "model": r.model, "template": r.template, "messages": _json(list(r.messages)),
                 "params": _json(r.params), "sample_index": r.sample_index} for r in requests]
        self._insert("requests", pa.Table.from_pylist(rows, schema=_REQUEST_SCHEMA))

    def add_responses(self, responses: Iterable[Response], con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Store responses. A success is final; an error row is replaced by a later success or
        error of the same request, and attempts add up across runs.

        An IN_FLIGHT mark (written before a call) stores its attempt at once, so a run killed
        during the call keeps it; the answer then adds only the attempts no mark stored. A mark
        and the answer of the same request in one group make one row (no extra row written)."""
        rows: dict[str, dict] = {}
        for r in responses:
            row = rows.get(r.request_id)
            if r.error == IN_FLIGHT:
                if row is None:
                    rows[r.request_id] = {"request_id": r.request_id, "teacher": r.teacher, "model": r.model,
                                          "error": IN_FLIGHT, "attempts": r.attempts}
                else:
                    row["attempts"] += r.attempts
                continue
            new = {c: getattr(r, c) for c in _RESPONSE_COLUMNS}
            new["logprobs"] = _json(r.logprobs)
            new["attempts"] = r.attempts - r.attempts_noted
            if row is not None:  # marks (or an earlier answer) of this group not stored yet
                new["attempts"] += row["attempts"]
            rows[r.request_id] = new
        rows = list(rows.values())
        sets = ", ".join(f"{c} = excluded.{c}" for c in _RESPONSE_COLUMNS[1:-1])
        self._insert("responses", pa.Table.from_pylist(rows, schema=_RESPONSE_SCHEMA),
                     conflict=f"(request_id) DO UPDATE SET {sets}, attempts = responses.attempts + excluded.attempts, "
                              f"created_at = now() WHERE responses.error IS NOT NULL", con=con)

    # -- reads ----------------------------------------------------------------------------
    def answered(self, request_ids: list[str], con: duckdb.DuckDBPyConnection | None = None) -> set[str]:
        """The ids among `request_ids` that already have a successful response (`con`: a cursor of the
        caller's, when the main connection holds an open stream)."""
        if not request_ids:
            return set()
        rows = self.rows_for_ids(request_ids, "SELECT request_id FROM responses JOIN _ids USING (request_id) "
                                         "WHERE error IS NULL", con)
        return {r[0] for r in rows}

    def requests_by_id(self, request_ids: list[str], con: duckdb.DuckDBPyConnection | None = None) -> Iterator[Request]:
        rows = self.rows_for_ids(request_ids, "SELECT seed_id, teacher, model, template, messages, params, sample_index "
                                         "FROM requests JOIN _ids USING (request_id) ORDER BY prompt_id, sample_index",
                            con)
        for seed_id, teacher, model, template, messages, params, idx in rows:
            yield Request(seed_id, teacher, model, template, tuple(json.loads(messages)), json.loads(params), idx)

    def rows_for_ids(self, request_ids: list[str], query: str, con: duckdb.DuckDBPyConnection | None) -> list[tuple]:
        """`query` joined with the table `_ids` (request_id) of `request_ids`."""
        ids = pa.table({"request_id": pa.array(list(request_ids), pa.string())})
        con = con or self.con
        with self._lock:
            con.register("_ids", ids)
            try:
                return con.execute(query).fetchall()
            finally:
                con.unregister("_ids")


class ResponseWriter:
    """Commits responses from a background thread as they arrive, in small groups.

    A DuckDB commit costs a few ms of CPU whatever its size, so responses that arrive
    together are committed together: at most `interval_s` after arrival (or at once when
    `max_rows` are waiting). A killed run loses at most that window, like requests in flight.
    """

    def __init__(self, store: Store, interval_s: float = 0.1, max_rows: int = 512):
        self.store, self.interval_s, self.max_rows = store, interval_s, max_rows
        self._queue: queue.SimpleQueue[Response | None] = queue.SimpleQueue()
        self._con = store.con.cursor()  # its own connection: reads on the main one stay open
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="factory-writer", daemon=True)
        self._thread.start()

    def put(self, response: Response) -> None:
        if self._error is not None:
            raise RuntimeError(f"store writer failed: {self._error}") from self._error
        self._queue.put(response)

    def _run(self) -> None:
        done = False
        while not done:
            batch: list[Response] = []
            deadline = None
            while len(batch) < self.max_rows:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                batch.append(item)
                deadline = deadline or time.monotonic() + self.interval_s
            if batch:
                try:
                    self.store.add_responses(batch, con=self._con)
                except BaseException as e:  # surface on the next put/close, never lose silently
                    self._error = e
                    return

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._con.close()
        if self._error is not None:
            raise RuntimeError(f"store writer failed: {self._error}") from self._error
