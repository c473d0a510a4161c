"""Verdicts on final answers, shared by the filter stage and `factory eval`.

Each verifier takes (key, ...) items and yields (key, passed, reason, detail) as each verdict
comes, in any order. They take their settings (timeouts, worker counts, the sandbox's wall
time) as plain values: no store, no config object.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

Verdict = tuple[Hashable, bool, str, str]  # (key, passed, reason, detail)


def check_math(items: Iterable[tuple[Hashable, str, str]], timeout_s: float, workers: int) -> Iterator[Verdict]:
    """(key, final answer, reference) -> (key, passed, reason, detail): math-verify in worker processes
    with hard timeouts; a wrong answer's reason is `wrong_answer`, else math-verify's status."""
    from factory.checks.math import verify_many

    # one pool for the whole stream (a pool starts in ~2-3 s)
    for key, v in verify_many(items, timeout_s=timeout_s, workers=workers):
        yield key, v.status == "passed", "wrong_answer" if v.status == "failed" else v.status, v.detail


def check_code(items: Iterable[tuple[Hashable, str, str, str, str | None]], wall_s: float, workers: int,
               allow_weak: bool = False, max_cases: int | None = None) -> Iterator[Verdict]:
    """(key, problem, code answer, tests, entry_point) -> (key, passed, reason, detail): the tests run in
    the sandbox with a `wall_s` wall-clock limit; `allow_weak` lets it run without kernel isolation.
    Input/output cases (APPS, CodeContests, LiveCodeBench, Codeforces, MBPP: checks/io_tests.py) run
    the first `max_cases` (default io_tests.MAX_CASES), each case with `wall_s` of its own."""
    from factory.checks.code import Limits, run_many
    from factory.checks.io_tests import CASE_TIMEOUT, MAX_CASES, IOTestsError, prepare

    limits = Limits(wall_s=wall_s)
    unusable: list[Verdict] = []

    def runs():
        for key, problem, answer, tests, entry in items:
            try:
                # HumanEval: the seed's prompt goes first (as HumanEval scores prompt + completion), so
                # helpers it defines stay defined when the answer restates only the function
                run = prepare(problem, answer, tests, entry, wall_s, max_cases or MAX_CASES)
            except IOTestsError as e:
                unusable.append((key, False, "tests_unusable", str(e)))
                continue
            own = Limits(wall_s=run.wall_s, cpu_s=max(Limits.cpu_s, run.cpu_s)) if run.cases else limits
            yield key, run.code, run.tests, run.entry_point, own

    for key, res in run_many(runs(), limits, workers=workers, allow_weak=allow_weak):
        yield from _drain(unusable)
        status = "timeout" if res.status == "failed" and res.reason.startswith(CASE_TIMEOUT) else res.status
        yield key, res.status == "passed", "tests_" + status, (res.reason + "\n" + res.stderr_tail)[-2000:]
    yield from _drain(unusable)


def _drain(verdicts: list[Verdict]) -> Iterator[Verdict]:
    while verdicts:
        yield verdicts.pop()
