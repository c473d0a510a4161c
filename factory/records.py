"""Small typed records that flow between stages. IDs are content hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


def content_hash(*parts: Any) -> str:
    """Stable 128-bit hex id of JSON-serialisable parts (key order and spacing normalised)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class BadRow:
    """A source row that gives no seed: where it is and why (one line when printed)."""

    file: str
    row: int  # 1-based line (JSONL), item (JSON array) or row number (Parquet / datasets)
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" + (f" field '{self.field}'" if self.field else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Seed:
    """One problem from a source. `answer` is the reference (may be None); `tests` for code."""

    source: str
    problem: str
    domain: str = "math"
    answer: str | None = None
    tests: str | None = None
    entry_point: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seed_id(self) -> str:
        return content_hash("seed", self.source, self.problem)


@dataclass(frozen=True)
class Request:
    """One sample to ask a teacher for.

    `prompt_id` hashes what the teacher sees (model, messages, sampling params); samples of
    the same prompt share it, so a backend can ask for them in one call with n=k.
    `request_id` adds the sample index: the same input always lands on the same row.
    """

    seed_id: str
    teacher: str  # the teacher's name in the config
    model: str
    template: str
    messages: tuple[dict[str, str], ...]
    params: dict[str, Any]  # temperature, top_p, max_tokens, logprobs (top-k, 0 = off)
    sample_index: int = 0

    @property
    def prompt_id(self) -> str:
        return content_hash("prompt", self.model, list(self.messages), self.params)

    @property
    def request_id(self) -> str:
        return content_hash("request", self.prompt_id, self.sample_index)


# the error of a mark stored before a call (attempts=1): a run killed during the call keeps the attempt
IN_FLIGHT = "in_flight"


@dataclass
class Response:
    """What a teacher answered for one request, or the error it ended with.

    `logprobs`, when kept, is one entry per generated token:
    {"token": str, "logprob": float, "top": [[token, logprob], ...]} (top-k alternatives).
    """

    request_id: str
    teacher: str
    model: str
    text: str | None = None
    reasoning: str | None = None  # the reasoning, kept apart from the answer in `text`
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # reasoning tokens included (as APIs bill them)
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens, when reported
    logprobs: list[dict[str, Any]] | None = None
    latency_s: float | None = None
    cost: float | None = None
    error: str | None = None  # short reason, e.g. "http_500", "timeout", "bad_json: ..."
    # calls made for this request, counted once per call: the samples asked together (n=k) count
    # the call on the first of them only, so attempts summed over requests = calls made
    attempts: int = 1
    # of `attempts`, how many were already stored by an IN_FLIGHT mark (ResponseWriter adds the rest)
    attempts_noted: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None
