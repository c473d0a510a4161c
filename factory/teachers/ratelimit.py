"""Client-side rate limits for API teachers: requests and tokens per period, plus a global pause.

Neither is a token bucket: a bucket with burst=limit lets up to 2*limit requests start within
one period (a full bucket, then its refill), which a provider counting over a sliding window
rejects. Both are exact on our clock, and `margin_s` (added to the period; default 50 ms + 1 %)
absorbs the jitter between a start here and its arrival at the server.

- Requests: a sliding-window log of start times (exact: a start is let go only while fewer
  than `limit` starts lie in the window before it), paced so that two starts are at least 90 %
  of the even spacing (window / limit) apart. The log alone lets `limit` requests go at once;
  those open fresh connections and reach the server tens of ms late, all together, while the
  next window's requests on warm connections arrive on time, so the server counted more than
  `limit` in one of its windows (measured: 28 for a limit of 20). Paced starts never bunch up,
  and the pacing keeps its schedule: a start that woke late is followed by the next one on
  time (at least half a spacing later), or every late wake-up would add to the run time.
- Tokens: a sliding-window log of (start, tokens) admitting a request while the window's
  tokens plus its estimate stay within the limit; estimates are corrected to the billed usage
  when the answer comes. Paced as well: a request of t tokens holds the next start back by
  90 % of its share of the window (t / limit of it), so a limit of 100k tokens for requests of
  ~1k is spent as ~100 starts spread over the minute, not ~90 in the first seconds and then
  nothing. A correction moves that schedule too: an estimate above the billed usage (max_tokens
  is an upper bound) gives the difference back at once.

The two are checked and recorded together, under one lock, at the moment a request is let go:
recording one earlier than the other would let a slow wait on the second push the real start
outside the window that was checked.

Config `rpm` / `tpm` map to `period_s=60`; tests use short periods.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

monotonic = time.monotonic

def default_margin_s(period_s: float) -> float:
    """50 ms plus 1 % of the period: a new connection's handshake, a loaded machine (0.65 s a minute)."""
    return 0.05 + 0.01 * period_s


class SlidingWindowLog:
    """Amounts (1 per request, or tokens) added at times; at most `limit` inside any window.

    An amount larger than the whole limit is admitted once the window is empty (otherwise it
    could never run). Entries can be corrected after the fact (estimated -> actual tokens).
    """

    __slots__ = ("limit", "period_s", "_log", "total")

    def __init__(self, limit: int, period_s: float = 60.0):
        if limit < 1 or period_s <= 0:
            raise ValueError("limit must be >= 1 and period_s > 0")
        self.limit = limit
        self.period_s = period_s
        self._log: deque[list[float]] = deque()  # [t, amount], in the order they were added
        self.total = 0.0  # sum of the amounts in the log

    def _expire(self, now: float) -> None:
        log, edge = self._log, now - self.period_s
        while log and log[0][0] <= edge:
            self.total -= log.popleft()[1]
        if not log:
            self.total = 0.0  # no float drift

    def wait_s(self, now: float, amount: float = 1.0) -> float:
        """Seconds until `amount` fits in the window (0.0: it fits now)."""
        self._expire(now)
        if not self._log or self.total + amount <= self.limit:
            return 0.0
        excess = self.total + amount - self.limit
        freed = 0.0
        for t, a in self._log:
            freed += a
            if freed >= excess:
                return max(t + self.period_s - now, 1e-6)
        return max(self._log[-1][0] + self.period_s - now, 1e-6)  # the window must empty

    def add(self, now: float, amount: float = 1.0) -> list[float]:
        entry = [now, float(amount)]
        self._log.append(entry)
        self.total += entry[1]
        return entry

    def correct(self, entry: list[float], amount: float, now: float | None = None) -> None:
        """Replace an entry's amount (e.g. the token estimate by the usage the server reported)."""
        now = monotonic() if now is None else now
        self._expire(now)  # entries are in time order: an entry still in the window is still in the log
        if entry[0] > now - self.period_s:
            self.total += float(amount) - entry[1]
        entry[1] = float(amount)


class RateLimiter:
    """Requests per period and/or tokens per period, and a pause that holds every request.

    `await acquire(tokens)` returns when a request may start and records it; it returns a
    handle to pass to `correct(handle, actual_tokens)` once the server reports usage.
    `pause_until(t)` (monotonic seconds) holds all requests until t, e.g. after a 429.
    """

    def __init__(self, rpm: int | None = None, tpm: int | None = None, period_s: float = 60.0,
                 margin_s: float | None = None):
        window = period_s + (default_margin_s(period_s) if margin_s is None else margin_s)
        self.requests = SlidingWindowLog(rpm, window) if rpm else None
        self.pace_s = 0.9 * window / rpm if rpm else 0.0  # least time between two starts
        self._next_paced = -math.inf  # when pacing lets the next start go
        self.tokens = SlidingWindowLog(tpm, window) if tpm else None
        self.token_pace_s = 0.9 * window / tpm if tpm else 0.0  # least time between starts, per token
        self._next_token_paced = -math.inf
        self.paused_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._poll_s = max(window / 50, 0.005)  # re-check a token wait this often (corrections free room)

    @property
    def limited(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def pause_until(self, t: float) -> None:
        if t > self.paused_until:
            self.paused_until = t

    async def acquire(self, tokens: float = 0.0) -> list[float] | None:
        if self.requests is None and self.tokens is None:
            while (d := self.paused_until - monotonic()) > 0:
                await asyncio.sleep(d)
            return None
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # first come, first served
            while True:
                now = monotonic()
                wait = self.paused_until - now
                if self.requests is not None:
                    wait = max(wait, self._next_paced - now, self.requests.wait_s(now))
                if self.tokens is not None:
                    wait = max(wait, min(max(self.tokens.wait_s(now, tokens), self._next_token_paced - now),
                                         self._poll_s))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests is not None:
                self.requests.add(now)
                # on schedule, not from this (maybe late) wake-up, or every late wake-up adds up
                self._next_paced = max(self._next_paced + self.pace_s, now + self.pace_s / 2)
            if self.tokens is None:
                return None
            step = self.token_pace_s * min(tokens, self.tokens.limit)
            self._next_token_paced = max(self._next_token_paced + step, now + step / 2)
            return self.tokens.add(now, tokens)

    def correct(self, handle: list[float] | None, actual_tokens: float | None) -> None:
        if handle is not None and actual_tokens is not None and self.tokens is not None:
            limit = self.tokens.limit
            self._next_token_paced -= self.token_pace_s * (min(handle[1], limit) - min(actual_tokens, limit))
            self.tokens.correct(handle, actual_tokens)


# -- response headers ------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """'6m0s', '1.5s', '20ms', '1h2m', or plain seconds '0.5' -> seconds (None if unparsable)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(a + u for a, u in parts) != value.replace(" ", ""):
        return None
    return sum(float(a) * _UNIT_S[u] for a, u in parts)


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Delay the server asks for: `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            v = float(ms)
            if math.isfinite(v):
                return max(v / 1000.0, 0.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        v = float(ra)
        return max(v, 0.0) if math.isfinite(v) else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def exhausted_for_s(headers: Mapping[str, str] | None) -> float | None:
    """If x-ratelimit-remaining-{requests,tokens} is 0, seconds until its reset; else None."""
    if not headers:
        return None
    wait = None
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
            if reset is None:
                reset = 1.0  # exhausted, reset unknown: a short, safe pause
            wait = reset if wait is None else max(wait, reset)
    return wait
