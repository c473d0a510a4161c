"""Batch API request files without a provider: `factory build dataset --batch-files DIR`.

The build plans as always, then, instead of asking a teacher, writes its pending requests as Batch
API JSONL (the very lines `mode: batch` uploads: openai_batch.batch_line) into DIR/<teacher>/.
Those files run offline through `vllm run-batch -i FILE -o OUT --model ... --served-model-name
<the teacher's model>` (the body's `model` is the teacher's `model`, and vllm answers only to the
names it serves), and `factory import-batch OUT` stores the answers by custom_id (= request id).

The writer stores nothing (`stores_responses`), so the build stores no error for requests it did
not send: a later build or import finds them pending, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from factory.config import OpenAITeacherConfig, TeacherConfig
from factory.records import Request, Response
from factory.teachers.openai_batch import write_batch_files

FILE_GLOB = "batch-*.jsonl"  # what write_batch_files names its files


class BatchFileWriter:
    """A stand-in teacher that writes the requests it is given to DIR/<teacher>/batch-NNNNN.jsonl
    (split at the teacher's batch_max_requests / batch_max_bytes) and yields no Response."""

    stores_responses = True  # the build must store nothing for it

    def __init__(self, tcfg: TeacherConfig, folder: str | Path):
        self.name, self.model = tcfg.name, tcfg.model
        # only openai teachers have batch limits and body settings (reasoning_effort, extra_body);
        # any other backend's requests are plain chat bodies under the default limits
        self.cfg = tcfg if isinstance(tcfg, OpenAITeacherConfig) else OpenAITeacherConfig(name=tcfg.name,
                                                                                           model=tcfg.model)
        self.folder = Path(folder) / tcfg.name
        self.files: list[tuple[Path, int]] = []  # (file, requests in it)
        self.too_large: list[tuple[str, int]] = []  # (request id, bytes): over batch_max_bytes alone, not written

    @property
    def requests_written(self) -> int:
        return sum(n for _, n in self.files)

    def clear(self) -> None:
        """Remove a previous run's files from DIR/<teacher>/ (before the build: a teacher with nothing
        pending is never asked, and its old files must not be run and imported again)."""
        for old in self.folder.glob(FILE_GLOB):
            old.unlink()

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, ids in write_batch_files(requests, self.cfg, self.folder,
                                           lambda r, size: self.too_large.append((r.request_id, size))):
            self.files.append((path, len(ids)))
        yield from ()

    def close(self) -> None:
        pass
