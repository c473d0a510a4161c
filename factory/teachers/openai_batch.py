"""`mode: batch` of the openai teacher: pending requests go through the provider's Batch API.

Requests are written as Batch API JSONL (`custom_id` = request id, `method`, `url`, `body`) to
temporary files, one line at a time and cut at `batch_max_requests` / `batch_max_bytes`, so
memory does not grow with the input. Each file is uploaded (Files API), submitted as a batch,
polled with backoff, and its output and error files are read line by line into Responses.

Never twice: a `batches` row and its `batch_requests` are committed *before* the upload, and the
batch is created with `metadata.factory_batch_id` = that row's id. A run killed between the
create and the store update finds its batch again through `batches.list`; a row whose batch was
never created is dropped and its requests asked again. Requests of a batch that is still alive
are never put into a new one. A finished batch's answers and its `collected_at` are committed in
one transaction, so a kill during collection re-reads it and stores nothing twice.

Retries: per-request errors and the requests of an expired or failed batch go into new batches
until they were in `max_retries` + 1 batches; then their error is stored (and the next build asks
again, as for online errors). A cancelled batch is reported; its unanswered requests are stored
as `batch_cancelled` errors.

Output lines are also what `vllm run-batch` writes, so `import_batch_output` stores such a file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from factory.config import OpenAITeacherConfig
from factory.records import Request, Response
from factory.store import Store
from factory.teachers.openai import request_body, response_from_body

log = logging.getLogger(__name__)

URL = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
COLLECT_CHUNK = 5000  # responses per insert while a batch is stored
ADOPT_SCAN = 1000  # provider batches looked through to find one submitted by a killed run


# -- prices ----------------------------------------------------------------------------------------
def batch_prices(cfg: OpenAITeacherConfig) -> tuple[float | None, float | None]:
    """USD per million tokens in batch mode: the batch prices, else the online ones times batch_discount."""
    def one(batch: float | None, online: float | None) -> float | None:
        if batch is not None:
            return batch
        return None if online is None else online * cfg.batch_discount

    return (one(cfg.price_in_per_mtok_batch, cfg.price_in_per_mtok),
            one(cfg.price_out_per_mtok_batch, cfg.price_out_per_mtok))


def _cost(prompt_tokens: int | None, completion_tokens: int | None,
          price_in: float | None, price_out: float | None) -> float | None:
    if price_in is None and price_out is None:
        return None
    if prompt_tokens is None and completion_tokens is None:
        return None
    return ((prompt_tokens or 0) * (price_in or 0.0) + (completion_tokens or 0) * (price_out or 0.0)) / 1e6


def online_cost(response: Response, cfg: OpenAITeacherConfig) -> float | None:
    """What `response` would have cost through the online path (the summary shows it next to the batch cost)."""
    return _cost(response.prompt_tokens, response.completion_tokens, cfg.price_in_per_mtok, cfg.price_out_per_mtok)


# -- request lines -----------------------------------------------------------------------------------
def batch_line(request: Request, cfg: OpenAITeacherConfig | None) -> bytes:
    """One line of a Batch API input file (also what `vllm run-batch -i` reads)."""
    line = {"custom_id": request.request_id, "method": "POST", "url": URL, "body": request_body(request, cfg)}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def write_batch_files(requests: Iterable[Request], cfg: OpenAITeacherConfig, folder: Path,
                      on_too_large: Callable[[Request, int], None] | None = None
                      ) -> Iterator[tuple[Path, list[str]]]:
    """Stream requests into JSONL files of at most batch_max_requests lines and batch_max_bytes bytes;
    yield each (path, request ids) as soon as it is full. A line over the byte limit on its own is
    handed to `on_too_large` (it can never be sent)."""
    index = 0
    fh, path, ids, size = None, None, [], 0
    try:
        for request in requests:
            line = batch_line(request, cfg)
            if len(line) > cfg.batch_max_bytes:
                if on_too_large:
                    on_too_large(request, len(line))
                continue
            if fh is not None and (len(ids) >= cfg.batch_max_requests or size + len(line) > cfg.batch_max_bytes):
                fh.close()
                yield path, ids
                fh = None
            if fh is None:
                index += 1
                path = folder / f"batch-{index:05d}.jsonl"
                fh, ids, size = open(path, "wb"), [], 0
            fh.write(line)
            ids.append(request.request_id)
            size += len(line)
        if fh is not None:
            fh.close()
            fh = None
            yield path, ids
    finally:
        if fh is not None:
            fh.close()


# -- output lines ------------------------------------------------------------------------------------
def _chat_response(body: dict, request_id: str, teacher: str, model: str, price_in: float | None,
                   price_out: float | None, attempts: int) -> Response:
    """The online teacher's own parsing of a chat-completion body (reasoning fields, <think> tags,
    reasoning tokens, cost), so both modes store the same columns the same way."""
    # top_k=1: logprobs are kept whenever the line has them (only requests that asked for them do)
    return response_from_body(body, request_id=request_id, teacher=teacher, model=model, price_in_per_mtok=price_in,
                              price_out_per_mtok=price_out, attempts=attempts, top_k=1)


def response_from_line(line: dict, teacher: str, model: str, price_in: float | None, price_out: float | None,
                       attempts: int = 1) -> Response:
    """One line of an output or error file (OpenAI's or `vllm run-batch`'s) as a Response; an error line,
    a non-200 status or an unreadable body becomes an error Response."""
    request_id = line["custom_id"]
    resp = line.get("response") or {}
    status = resp.get("status_code")
    body = resp.get("body")
    error = line.get("error")
    if isinstance(error, dict) and isinstance(error.get("error"), dict):  # vllm run-batch: {"error": {...}}
        error = error["error"]
    if error or status not in (None, 200) or not isinstance(body, dict):
        if isinstance(error, dict):
            reason = f"batch_error: {error.get('code') or ''} {error.get('message') or ''}".strip()
        elif status not in (None, 200):
            detail = body.get("error") if isinstance(body, dict) else body
            if isinstance(detail, dict):
                detail = detail.get("message")
            reason = f"http_{status}: {str(detail or '')[:200]}".rstrip(": ")
        elif error:
            reason = f"batch_error: {str(error)[:200]}"
        else:
            reason = "bad_response: no body"
        return Response(request_id=request_id, teacher=teacher, model=model, error=reason[:300], attempts=attempts)
    try:
        return _chat_response(body, request_id, teacher, model, price_in, price_out, attempts)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        return Response(request_id=request_id, teacher=teacher, model=model,
                        error=f"bad_response: {type(e).__name__}: {str(e)[:120]}", attempts=attempts)


# -- the store side ------------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def list_batches(store: Store, teacher: str | None = None) -> list[dict]:
    """The batches table, newest first (what `factory batches` prints)."""
    rows = store.con.execute(
        "SELECT batch_id, provider_batch_id, teacher, status, request_count, counts, message, submitted_at, "
        "finished_at, collected_at FROM batches WHERE ? IS NULL OR teacher = ? ORDER BY created_at DESC",
        [teacher, teacher]).fetchall()
    keys = ("batch_id", "provider_batch_id", "teacher", "status", "request_count", "counts", "message",
            "submitted_at", "finished_at", "collected_at")
    out = []
    for row in rows:
        d = dict(zip(keys, row))
        d["counts"] = json.loads(d["counts"]) if d["counts"] else {}
        out.append(d)
    return out


@dataclass
class BatchStats:
    """What one generate() call did with batches (the summary prints it)."""

    submitted: int = 0  # batches created
    requests_submitted: int = 0
    collected: int = 0  # batches whose answers were stored
    requeued: int = 0  # requests put into a new batch after an error
    cancelled: list[str] = field(default_factory=list)  # provider ids of cancelled batches
    in_flight: int = 0  # requests still in live batches when generate() returned
    adopted: int = 0  # batches a killed run had submitted, found again


class OpenAIBatchTeacher:
    """The openai teacher in batch mode. `generate` stores the answers itself (with the batch rows, in one
    transaction), so the build must not store what it yields again: `stores_responses` says so."""

    stores_responses = True

    def __init__(self, cfg: OpenAITeacherConfig, store: Store, *, wait: bool = True,
                 sleep: Callable[[float], None] = time.sleep, on_event: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.name = cfg.name
        self.model = cfg.model
        self.store = store
        self.wait = wait
        self.sleep = sleep
        self.on_event = on_event or (lambda msg: log.info("%s", msg))
        self.price_in, self.price_out = batch_prices(cfg)
        self.stats = BatchStats()
        self._client_obj = None
        self._con = None

    def online_cost(self, response: Response) -> float | None:
        return online_cost(response, self.cfg)

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def client(self):
        if self._client_obj is None:
            import openai

            from factory.teachers.openai import resolve_api_key

            self._client_obj = openai.OpenAI(api_key=resolve_api_key(self.cfg), base_url=self.cfg.base_url,
                                             max_retries=5, timeout=max(60.0, min(self.cfg.timeout_s, 600.0)))
        return self._client_obj

    @property
    def con(self):
        # its own cursor: the build's pending stream stays open on the main connection meanwhile
        if self._con is None:
            self._con = self.store.con.cursor()
        return self._con

    def _live(self) -> list[tuple[str, str | None]]:
        """(batch_id, provider_batch_id) of this teacher's batches not yet collected."""
        return self.con.execute("SELECT batch_id, provider_batch_id FROM batches WHERE teacher = ? AND "
                                "collected_at IS NULL ORDER BY created_at", [self.name]).fetchall()

    def _busy(self) -> set[str]:
        rows = self.con.execute("SELECT r.request_id FROM batch_requests r JOIN batches b USING (batch_id) "
                                "WHERE b.teacher = ? AND b.collected_at IS NULL", [self.name]).fetchall()
        return {r[0] for r in rows}

    # -- generate ------------------------------------------------------------------------------------
    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        """Collect what earlier runs submitted, submit the rest, poll until every batch is collected
        (or, with wait=False, return once submitted). Yields every Response it stored."""
        self._adopt_unsubmitted()
        busy = self._busy()
        too_large: list[Response] = []

        def refuse(request: Request, size: int) -> None:
            too_large.append(Response(request_id=request.request_id, teacher=self.name, model=request.model,
                                      error=f"too_large: {size} bytes (batch_max_bytes = {self.cfg.batch_max_bytes})"))

        fresh = (r for r in requests if r.request_id not in busy)
        self._submit_all(fresh, refuse)
        if too_large:
            self._store(too_large)
            yield from too_large
        interval = self.cfg.poll_interval_s
        first = True
        while True:
            live = self._live()
            if not live:
                break
            if not first:
                self.sleep(interval)
            first = False
            collected_any = False
            requeue: list[str] = []
            for batch_id, provider_id in live:
                responses, retry, done = self._poll(batch_id, provider_id)
                collected_any |= done
                requeue.extend(retry)
                yield from responses
            if requeue:
                self.stats.requeued += len(requeue)
                self._submit_all(self.store.requests_by_id(requeue, con=self.con), refuse)
            if not self.wait:
                break
            interval = self.cfg.poll_interval_s if collected_any else min(interval * 2, self.cfg.poll_max_interval_s)
        self.stats.in_flight = self.con.execute(
            "SELECT count(*) FROM batch_requests r JOIN batches b USING (batch_id) "
            "WHERE b.teacher = ? AND b.collected_at IS NULL", [self.name]).fetchone()[0]

    # -- submit ----------------------------------------------------------------------------------------
    def _submit_all(self, requests: Iterable[Request], refuse) -> None:
        with tempfile.TemporaryDirectory(prefix="factory-batch-") as folder:
            for path, ids in write_batch_files(requests, self.cfg, Path(folder), refuse):
                self._submit(path, ids)  # each file as soon as it is full: a kill keeps what was submitted
                os.unlink(path)

    def _submit(self, path: Path, ids: list[str]) -> None:
        batch_id = uuid.uuid4().hex
        con = self.con
        con.execute("BEGIN")
        try:
            con.execute("INSERT INTO batches (batch_id, teacher, status, request_count) VALUES (?, ?, 'preparing', ?)",
                        [batch_id, self.name, len(ids)])
            table = pa.table({"batch_id": pa.array([batch_id] * len(ids), pa.string()),
                              "request_id": pa.array(ids, pa.string())})
            con.register("_batch_rows", table)
            con.execute("INSERT INTO batch_requests SELECT batch_id, request_id FROM _batch_rows ON CONFLICT DO NOTHING")
            con.unregister("_batch_rows")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        with open(path, "rb") as fh:
            uploaded = self.client.files.create(file=(path.name, fh), purpose="batch")
        con.execute("UPDATE batches SET input_file_id = ? WHERE batch_id = ?", [uploaded.id, batch_id])
        created = self.client.batches.create(input_file_id=uploaded.id, endpoint=URL,
                                             completion_window=self.cfg.batch_completion_window,
                                             metadata={"factory_batch_id": batch_id, "teacher": self.name})
        con.execute("UPDATE batches SET provider_batch_id = ?, status = ?, submitted_at = ? WHERE batch_id = ?",
                    [created.id, created.status, _now(), batch_id])
        self.stats.submitted += 1
        self.stats.requests_submitted += len(ids)
        self.on_event(f"{self.name}: submitted batch {created.id} ({len(ids)} requests)")

    def _adopt_unsubmitted(self) -> None:
        """Rows a killed run wrote but whose create it never recorded: find the batch by its metadata,
        else drop the row (its batch was never created, so its requests are asked again)."""
        orphans = {b: None for b, p in self._live() if p is None}
        if not orphans:
            return
        seen = 0
        for b in self.client.batches.list(limit=100):
            seen += 1
            mine = (getattr(b, "metadata", None) or {}).get("factory_batch_id")
            if mine in orphans and orphans[mine] is None:
                orphans[mine] = b
            if seen >= ADOPT_SCAN or all(v is not None for v in orphans.values()):
                break
        for batch_id, b in orphans.items():
            if b is not None:
                self.con.execute("UPDATE batches SET provider_batch_id = ?, input_file_id = ?, status = ?, "
                                 "submitted_at = ? WHERE batch_id = ?",
                                 [b.id, b.input_file_id, b.status, _now(), batch_id])
                self.stats.adopted += 1
                self.on_event(f"{self.name}: found batch {b.id} submitted by an interrupted run")
            else:
                self.con.execute("UPDATE batches SET status = 'not_submitted', collected_at = ? WHERE batch_id = ?",
                                 [_now(), batch_id])

    # -- poll and collect ---------------------------------------------------------------------------------
    def _poll(self, batch_id: str, provider_id: str) -> tuple[list[Response], list[str], bool]:
        """Retrieve one batch; when it ended, store its answers: (responses stored, ids to requeue, ended)."""
        b = self.client.batches.retrieve(provider_id)
        counts = b.request_counts.model_dump() if getattr(b, "request_counts", None) is not None else {}
        message = None
        errors = getattr(b, "errors", None)
        if errors is not None and getattr(errors, "data", None):
            message = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
                                for e in errors.data[:3])[:500]
        if b.status not in TERMINAL:
            self.con.execute("UPDATE batches SET status = ?, counts = ? WHERE batch_id = ?",
                             [b.status, json.dumps(counts), batch_id])
            return [], [], False
        return (*self._collect(batch_id, b, counts, message), True)

    def _batch_ids(self, batch_id: str) -> dict[str, tuple[str, int]]:
        """request_id -> (model, batches it has been in) for one batch."""
        rows = self.con.execute(
            "SELECT r.request_id, q.model, (SELECT count(*) FROM batch_requests x JOIN batches y USING (batch_id) "
            "  WHERE x.request_id = r.request_id AND y.status <> 'not_submitted') "
            "FROM batch_requests r JOIN requests q USING (request_id) WHERE r.batch_id = ?", [batch_id]).fetchall()
        return {rid: (model, tries) for rid, model, tries in rows}

    def _read_file(self, file_id: str | None) -> Iterator[dict]:
        if not file_id:
            return
        with self.client.files.with_streaming_response.content(file_id) as raw:
            for line in raw.iter_lines():
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        log.warning("%s: batch file %s has a line that is not JSON; skipped", self.name, file_id)

    def _collect(self, batch_id: str, b, counts: dict, message: str | None) -> tuple[list[Response], list[str]]:
        members = self._batch_ids(batch_id)
        answered = self.store.answered(list(members), con=self.con)
        final: list[Response] = []
        seen: set[str] = set()
        retry: list[str] = []
        for file_id in (getattr(b, "output_file_id", None), getattr(b, "error_file_id", None)):
            for line in self._read_file(file_id):
                rid = line.get("custom_id")
                if rid not in members or rid in seen:
                    continue  # not ours (or a duplicate line): never stored twice
                seen.add(rid)
                if rid in answered:
                    continue
                model, tries = members[rid]
                r = response_from_line(line, self.name, model, self.price_in, self.price_out, attempts=1)
                if r.ok or tries > self.cfg.max_retries:
                    final.append(r)
                else:
                    retry.append(rid)
        missing = [rid for rid in members if rid not in seen and rid not in answered]
        if b.status == "cancelled":
            self.stats.cancelled.append(b.id)
            self.on_event(f"{self.name}: batch {b.id} was cancelled; {len(missing)} of its requests have no answer "
                          "(stored as errors: the next build asks them again)")
            final.extend(Response(request_id=rid, teacher=self.name, model=members[rid][0], error="batch_cancelled")
                         for rid in missing)
        else:
            reason = f"batch_{b.status}" + (f": {message}" if message else "")
            for rid in missing:
                model, tries = members[rid]
                if tries > self.cfg.max_retries:
                    final.append(Response(request_id=rid, teacher=self.name, model=model, error=reason[:300]))
                else:
                    retry.append(rid)
            if b.status in ("failed", "expired"):
                self.on_event(f"{self.name}: batch {b.id} {b.status}"
                              + (f" ({message})" if message else "") + f"; {len(retry)} requests go into a new batch")
        self._store(final, batch_id, b, counts, message)
        self.stats.collected += 1
        return final, retry

    def _store(self, responses: list[Response], batch_id: str | None = None, b=None, counts=None,
               message=None) -> None:
        """Responses and the batch's collected mark in one transaction."""
        con = self.con
        con.execute("BEGIN")
        try:
            for i in range(0, len(responses), COLLECT_CHUNK):
                self.store.add_responses(responses[i:i + COLLECT_CHUNK], con=con)
            if batch_id is not None:
                con.execute("UPDATE batches SET status = ?, counts = ?, message = ?, output_file_id = ?, "
                            "error_file_id = ?, finished_at = ?, collected_at = ? WHERE batch_id = ?",
                            [b.status, json.dumps(counts or {}), message, getattr(b, "output_file_id", None),
                             getattr(b, "error_file_id", None), _now(), _now(), batch_id])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


# -- import -------------------------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    path: str
    lines: int = 0
    stored: int = 0  # new successful answers
    errors: int = 0  # error lines stored (replacing nothing successful)
    already: int = 0  # requests that already had an answer: left as they were
    unknown: list[str] = field(default_factory=list)  # custom_ids that are no planned request (first few)
    unknown_count: int = 0
    bad_lines: list[int] = field(default_factory=list)  # line numbers that are not JSON / have no custom_id


def import_batch_output(store: Store, path: str | Path, teachers: dict[str, Any] | None = None,
                        chunk: int = COLLECT_CHUNK) -> ImportSummary:
    """Store the answers of a Batch API output file (OpenAI's, or `vllm run-batch -o`), matched to the
    planned requests by custom_id. Answers are priced with the teacher's batch price when `teachers`
    (name -> teacher config) has one. Successful answers already stored are kept, not replaced."""
    path = Path(path)
    summary = ImportSummary(str(path))
    con = store.con.cursor()
    try:
        with open(path, encoding="utf-8") as fh:
            pending: list[tuple[int, dict]] = []
            for number, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                summary.lines += 1
                try:
                    line = json.loads(text)
                    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                        raise ValueError
                except ValueError:
                    summary.bad_lines.append(number)
                    continue
                pending.append((number, line))
                if len(pending) >= chunk:
                    _import_chunk(store, con, pending, teachers or {}, summary)
                    pending = []
            _import_chunk(store, con, pending, teachers or {}, summary)
    finally:
        con.close()
    return summary


def _import_chunk(store: Store, con, lines: list[tuple[int, dict]], teachers: dict, summary: ImportSummary) -> None:
    if not lines:
        return
    ids = list(dict.fromkeys(line["custom_id"] for _, line in lines))
    known = {rid: (teacher, model) for rid, teacher, model in store.rows_for_ids(
        ids, "SELECT request_id, teacher, model FROM requests JOIN _ids USING (request_id)", con)}
    answered = store.answered(list(known), con=con)
    out: dict[str, Response] = {}
    for _, line in lines:
        rid = line["custom_id"]
        if rid not in known:
            summary.unknown_count += 1
            if len(summary.unknown) < 5:
                summary.unknown.append(rid)
            continue
        if rid in answered:
            summary.already += 1
            continue
        teacher, model = known[rid]
        tcfg = teachers.get(teacher)
        prices = batch_prices(tcfg) if isinstance(tcfg, OpenAITeacherConfig) else (None, None)
        if rid in out and out[rid].ok:
            continue  # the first answer of a file wins: a later line (error or duplicate) never replaces it
        out[rid] = response_from_line(line, teacher, model, *prices)
    for r in out.values():
        if r.ok:
            summary.stored += 1
        else:
            summary.errors += 1
    store.add_responses(list(out.values()), con=con)
