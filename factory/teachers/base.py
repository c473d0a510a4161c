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


def by_prompt(requests: Iterable[Request]) -> Iterator[list[Request]]:
    """Group adjacent requests that share a prompt (the samples of one seed)."""
    for _, group in groupby(requests, key=lambda r: r.prompt_id):
        yield list(group)
