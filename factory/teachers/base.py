"""The one teacher interface: generate(requests) yields a Response per request, as each completes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Protocol

from factory.errors import TeacherError  # noqa: F401 - raised here; importable from this module too
from factory.records import Request, Response


class Teacher(Protocol):
    name: str
    model: str

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        """Yield exactly one Response (success or error) per request, in any order.

        `requests` may be a lazy stream larger than memory; consume it lazily. Requests of the
        same prompt (same prompt_id) arrive adjacent, so a backend may ask for them at once (n=k).
        """
        ...

    def close(self) -> None: ...

    # optional: `start()` loads the model (or the cluster's replicas) before the first request, so a
    # build can report start-up apart from generation; a teacher without it starts on first use


def start(teacher: object) -> None:
    """Load a teacher now if it can (its optional `start()`); else it loads on first use."""
    begin = getattr(teacher, "start", None)
    if begin is not None:
        begin()


def by_prompt(requests: Iterable[Request]) -> Iterator[list[Request]]:
    """Group adjacent requests that share a prompt (the samples of one seed)."""
    for _, group in groupby(requests, key=lambda r: r.prompt_id):
        yield list(group)
