"""The one pipeline: plan [-> the student's band] + generate -> failure-rate check -> filter -> export.

`factory build dataset` and `factory refresh` both run it. Each stage prints its summary (through
factory.report) as it ends, so a long run shows where it is; the last line is the wall time of
every stage that ran. A run that stops after generation (interrupted, or more requests failed
than build.max_failure_rate) returns with `stopped` and its exit code instead of filtering a
partial corpus; errors of input (sources, prompts, teachers, the filter's files) propagate.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

from rich.console import Console

from factory.build import BuildSummary, build_dataset
from factory.config import Config
from factory.export import ExportResult, export_version
from factory.filter import FilterSummary, run_filter, student_gate
from factory.report import print_build_summary, print_export, print_filter_summary, print_wall_time

EXIT_INTERRUPTED = 130  # Ctrl-C during generation: the answers so far are stored
EXIT_TOO_MANY_FAILURES = 1  # more requests failed than build.max_failure_rate


@dataclass
class PipelineResult:
    build: BuildSummary
    filtered: FilterSummary | None = None  # None: stopped after generation
    exported: ExportResult | None = None  # None: stopped, or run without export
    stopped: str | None = None  # why the run stopped after generation: one line
    exit_code: int = 0
    stages_s: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds, in order

    @property
    def wall_s(self) -> float:
        """The whole run: plan + generate, filter and export."""
        return sum(self.stages_s.values())


def run_pipeline(cfg: Config, console: Console | None = None, teachers: dict | None = None,
                 judges: dict | None = None, export: bool = True, wait_batches: bool = True) -> PipelineResult:
    """Generate what is missing, filter into a version, export it (unless `export` is False: refresh
    exports only what it publishes). `teachers` / `judges` override backends by name (tests)."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    student = cfg.select.student
    # select.student.before_generation: the band decides after the plan, so no teacher answers a seed it drops
    gate = (functools.partial(student_gate, cfg=cfg, console=console, judges=judges)
            if student is not None and student.before_generation else None)
    build = build_dataset(cfg, console=console, teachers=teachers, wait_batches=wait_batches, gate=gate)
    result = PipelineResult(build)
    result.stages_s["plan + generate"] = time.monotonic() - started
    print_build_summary(build, console)
    if build.interrupted:
        result.stopped, result.exit_code = "interrupted during generation; answers so far are stored", EXIT_INTERRUPTED
    elif build.failure_rate > cfg.build.max_failure_rate:
        result.stopped = (f"{build.failure_rate:.1%} of requests failed (bound: build.max_failure_rate = "
                          f"{cfg.build.max_failure_rate:.1%}); failed requests are stored and retried on the next run")
        result.exit_code = EXIT_TOO_MANY_FAILURES
    elif build.requests_in_batches:  # --no-wait: nothing to filter until the batches are collected
        result.stopped = (f"{build.requests_in_batches} requests are in batches in flight (`factory batches` lists "
                          "them); run `factory build dataset` again to collect them")
    if result.stopped:
        return result
    started = time.monotonic()
    result.filtered = run_filter(cfg, console=console, judges=judges, student_asked=gate is not None)
    result.stages_s["filter"] = time.monotonic() - started
    print_filter_summary(result.filtered, console)
    if export:
        started = time.monotonic()
        result.exported = export_version(cfg, result.filtered.version)
        result.stages_s["export"] = time.monotonic() - started
        print_export(result.exported, console)
    print_wall_time(result.stages_s, console)
    return result
