"""Rate limits: requests and tokens per sliding window, checked on the server's clock."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest

from support.fake_openai import FakeOpenAIProcess
from factory.config import teacher_config
from factory.records import Request
from factory.teachers.openai import OpenAITeacher
from factory.teachers.ratelimit import RateLimiter, SlidingWindowLog, exhausted_for_s, parse_duration, retry_after_s


def max_in_window(times: list[float], period: float) -> int:
    """The most events in any half-open window [t, t + period)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - period:
            j += 1
        best = max(best, i - j + 1)
    return best


def max_weight_in_window(events: list[tuple[float, float]], period: float) -> float:
    events = sorted(events)
    best, j, total = 0.0, 0, 0.0
    for t, w in events:
        total += w
        while events[j][0] <= t - period:
            total -= events[j][1]
            j += 1
        best = max(best, total)
    return best


# The limits are exact on the client's clock; the checks here are on the server's, and on a
# loaded machine a request (or the server process) can be held up for tens of ms between the
# two. The margin added to each window absorbs that: 0.2 s here (the default is 50 ms + 1 %).
MARGIN = 0.2


def make_requests(n: int, max_tokens: int = 64):
    params = {"temperature": 0.7, "top_p": 0.95, "max_tokens": max_tokens, "logprobs": 0}
    return (Request(f"s{i}", "t", "fake", "tpl", ({"role": "user", "content": f"q{i}"},), params) for i in range(n))


@pytest.fixture(scope="module")
def srv():
    """In a subprocess, so that its clock is not held up by the client's GIL."""
    s = FakeOpenAIProcess()
    yield s
    s.close()


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_rpm_never_exceeded_in_any_window_on_the_server(srv):
    srv.reset()
    limit, period, n = 20, 1.0, 100
    cfg = teacher_config(name="t", backend="openai", model="fake", base_url=srv.base_url, rpm=limit,
                         max_concurrency=50)
    got = list(OpenAITeacher(cfg, limit_period_s=period, limit_margin_s=MARGIN).generate(make_requests(n)))
    assert len(got) == n and all(r.ok for r in got)
    starts = [rec[0] for rec in srv.records()]
    assert len(starts) == n
    assert max_in_window(starts, period) <= limit
    # ...and it is not needlessly slow: 100 starts need 4 more windows after the first
    span = max(starts) - min(starts)
    assert 4 * period <= span < 5 * (period + MARGIN) + 0.5


@pytest.mark.slow  # > 2.5 s: make test stays under 3 minutes; make test-all runs it
def test_rpm_counts_retries_too(srv):
    srv.configure(fault_rate=0.4, faults=["500"], retry_after="0", seed=3)
    limit, period = 10, 0.5
    cfg = teacher_config(name="t", backend="openai", model="fake", base_url=srv.base_url, rpm=limit,
                         max_concurrency=20, max_retries=10)
    got = list(OpenAITeacher(cfg, limit_period_s=period, limit_margin_s=MARGIN, backoff_base_s=0.0).generate(make_requests(40)))
    records = srv.records()
    srv.configure(fault_rate=0.0)
    assert all(r.ok for r in got) and len(records) > 40  # some were retried
    assert max_in_window([rec[0] for rec in records], period) <= limit


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_tpm_never_exceeded_in_any_window_on_the_server(srv):
    srv.reset()
    # each call: estimate = len("qNN")/4 + max_tokens = ~20; the server bills ~13 (prompt 1, answer 12)
    limit, period, n = 200, 1.0, 40
    cfg = teacher_config(name="t", backend="openai", model="fake", base_url=srv.base_url, tpm=limit,
                         max_concurrency=20)
    got = list(OpenAITeacher(cfg, limit_period_s=period, limit_margin_s=MARGIN).generate(make_requests(n, max_tokens=20)))
    assert len(got) == n and all(r.ok for r in got)
    billed = [(rec[0], rec[5]) for rec in srv.records()]
    assert all(tokens > 0 for _, tokens in billed)
    assert max_weight_in_window(billed, period) <= limit
    # corrections with the real usage let more through than the estimates alone would (10/s)
    span = max(t for t, _ in billed) - min(t for t, _ in billed)
    assert span < (n * 20 / limit) * (period + MARGIN)


# -- the limiter on its own (no server) ------------------------------------------------------

def test_sliding_window_log_is_exact():
    w = SlidingWindowLog(3, 1.0)
    for t in (0.0, 0.1, 0.2):
        assert w.wait_s(t) == 0.0
        w.add(t)
    assert w.wait_s(0.5) == pytest.approx(0.5)  # the start at 0.0 leaves the window at 1.0
    assert w.wait_s(1.0) == 0.0
    w.add(1.0)
    assert w.wait_s(1.05) == pytest.approx(0.05)


def test_token_window_waits_for_room_and_takes_corrections():
    w = SlidingWindowLog(100, 1.0)
    e1 = w.add(0.0, 60)
    assert w.wait_s(0.1, 30) == 0.0
    e2 = w.add(0.1, 30)
    assert w.wait_s(0.2, 50) == pytest.approx(0.8)  # needs the 60 at t=0 to leave
    w.correct(e1, 10, now=0.2)  # the server billed less than estimated
    assert w.total == pytest.approx(40)
    assert w.wait_s(0.2, 50) == 0.0
    assert e2[1] == 30


def test_a_request_larger_than_the_limit_runs_alone():
    w = SlidingWindowLog(100, 1.0)
    assert w.wait_s(0.0, 500) == 0.0
    w.add(0.0, 500)
    assert w.wait_s(0.5, 1) == pytest.approx(0.5)


def test_limiter_against_a_burst_of_tasks():
    async def main():
        lim = RateLimiter(rpm=5, period_s=0.2, margin_s=0.02)  # margin: the wake-up after a sleep
        starts = []

        async def one():
            await lim.acquire()
            starts.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(23)))
        return starts

    starts = asyncio.run(main())
    assert len(starts) == 23 and max_in_window(starts, 0.2) <= 5


def test_pause_holds_every_request():
    async def main():
        lim = RateLimiter()
        lim.pause_until(time.monotonic() + 0.2)
        t0 = time.monotonic()
        await asyncio.gather(*(lim.acquire() for _ in range(5)))
        return time.monotonic() - t0

    assert asyncio.run(main()) >= 0.2


def test_header_parsing():
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3s") == 3723.0
    assert parse_duration("0.5") == 0.5
    assert parse_duration("soon") is None
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 8 <= retry_after_s({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert retry_after_s({"retry-after": "garbage"}) is None
    assert retry_after_s({}) is None
    assert exhausted_for_s({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}) == 2.0
    assert exhausted_for_s({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "2s"}) is None
    assert exhausted_for_s({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m"}) == 60.0


def _token_starts(n: int, tokens: float, tpm: int, period_s: float, actual: float | None = None) -> list[float]:
    async def main():
        lim = RateLimiter(tpm=tpm, period_s=period_s, margin_s=0.0)
        starts = []

        async def one():
            handle = await lim.acquire(tokens)
            starts.append(time.monotonic())
            if actual is not None:
                lim.correct(handle, actual)

        await asyncio.gather(*(one() for _ in range(n)))
        return starts

    return asyncio.run(main())


def test_tpm_spreads_requests_over_the_window():
    # the run, on a 3 s "minute": 100 requests of 1k tokens fit in a window of 100k tokens;
    # unpaced, ~90 went out in the first 5 s of the minute and then nothing for 55 s
    period = 3.0
    starts = _token_starts(60, 1000, 100_000, period)
    t0 = min(starts)
    rel = sorted(t - t0 for t in starts)
    even = period / 100  # 0.03 s between starts
    assert max_in_window(starts, period / 12) <= 12, "a burst: %s" % rel[:20]  # even pacing gives ~8
    assert rel[-1] >= 59 * 0.9 * even * 0.9  # spread, not all at once
    gaps = [b - a for a, b in zip(rel, rel[1:])]
    assert max(gaps) < 5 * even  # and no long silence either
    assert max_in_window(starts, period) <= 100


def test_tpm_pacing_gives_back_what_an_estimate_overstated():
    # estimates from max_tokens (1k) but the answers bill 250: four times the starts fit, still paced
    period = 2.0
    fast = _token_starts(60, 1000, 40_000, period, actual=250)  # 40 x 1k per window, 160 x 250
    slow = _token_starts(30, 1000, 40_000, period)
    assert max(fast) - min(fast) < (max(slow) - min(slow))  # twice as many, in less time
    assert max_in_window(fast, period / 10) <= 20
