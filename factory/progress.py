"""Progress of long work: a rich bar on a terminal, a plain log line every interval elsewhere.

Under cron, CI or `nohup` (the console is not a terminal) a bar writes nothing useful until the
end, so the same updates become one line every `interval_s`: done / total, rate, failures, ETA.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _duration(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class WorkProgress:
    """`with WorkProgress(console, "smollm2 (local:embedded)", total) as p: p.advance(ok=True, tokens=12)`."""

    def __init__(self, console: Console, label: str, total: int, interval_s: float = 30.0, unit: str = "requests"):
        self.console, self.label, self.total, self.interval_s, self.unit = console, label, total, interval_s, unit
        self.done = self.failed = self.tokens = 0
        self.started = self.last_line = time.monotonic()
        self.bar: Progress | None = None

    def __enter__(self) -> WorkProgress:
        if self.console.is_terminal:
            self.bar = Progress(TextColumn(f"[bold]{self.label}[/]"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=self.console, transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("work", total=self.total, status="")
        return self

    def advance(self, ok: bool = True, tokens: int = 0) -> None:
        self.done += 1
        self.failed += not ok
        self.tokens += tokens
        now = time.monotonic()
        if self.bar is not None:
            rate = self.tokens / max(now - self.started, 1e-9)
            self.bar.update(self.task, advance=1,
                            status=f"ok {self.done - self.failed} err {self.failed} | {rate:,.0f} tok/s")
        elif now - self.last_line >= self.interval_s:
            self.last_line = now
            self.console.print(self.line(now), highlight=False, soft_wrap=True)

    def line(self, now: float | None = None) -> str:
        now = now or time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        pct = f" ({self.done / self.total:.0%})" if self.total else ""
        eta = f", ETA {_duration(left)}" if left is not None and self.done < self.total else ""
        toks = f", {self.tokens / elapsed:,.0f} tok/s" if self.tokens else ""
        return (f"{self.label}: {self.done:,}/{self.total:,} {self.unit}{pct}, {rate:,.1f}/s{toks}, "
                f"{self.failed:,} failed, {_duration(now - self.started)} elapsed{eta}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        else:
            self.console.print(self.line(), highlight=False, soft_wrap=True)
