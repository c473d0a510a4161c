"""Teacher for any OpenAI-compatible chat-completions endpoint (OpenAI, vllm serve, SGLang,
`transformers serve`, hosted APIs).

The async openai SDK runs on an asyncio loop in one background thread; `generate()` hands
responses to the caller through a queue, in batches (whatever completed in one loop turn).

- Lazy and bounded: `max_concurrency` workers each pull the next prompt from the caller's
  iterator only when they are free, and stop pulling while too many answers wait for the
  caller, so memory does not grow with the input. The iterator is advanced on the teacher's
  thread (never concurrently): if it reads a DuckDB connection, the caller's thread should not
  use that same connection meanwhile (give one of them a cursor).
- n samples: the samples of one prompt go out as one call with n=k (`use_n`); when the server
  answers fewer choices (e.g. `transformers serve` ignores n) the rest are asked again.
- Every attempt goes through our rate limiter and our retry loop (the SDK's own retries are
  off): retries on 408/409/429/5xx, timeouts, connection errors and malformed bodies, with
  exponential backoff and full jitter; Retry-After / retry-after-ms are honoured and a 429
  with one pauses every request; x-ratelimit-remaining-* = 0 pauses until the reset.
  Other 4xx fail at once. A request that runs out of attempts ends with an error Response.
- Transport: the SDK's aiohttp client (`DefaultAioHttpClient`); see benchmarks/README.md for
  the numbers against the default httpx one. The SDK's typed `chat.completions.create` builds
  a pydantic model of every reply (one per logprob token); we post through the same client
  (`client.post`, same auth, headers and error mapping) and read the JSON ourselves.
- The API key is read from the environment when generate() starts and is scrubbed from any
  error text kept in a Response.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any
from urllib.parse import urlparse

from factory.config import ConfigError, OpenAITeacherConfig
from factory.records import Request, Response, content_hash
from factory.teachers.ratelimit import RateLimiter, exhausted_for_s, retry_after_s

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx
MAX_RETRY_AFTER_S = 600.0  # a longer Retry-After is capped (a run should not sleep for hours)
_DONE = object()
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - 3.10
    import contextlib

    @contextlib.asynccontextmanager
    async def _timeout(delay: float):
        task = asyncio.current_task()
        handle = asyncio.get_running_loop().call_later(delay, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            if handle.when() <= asyncio.get_running_loop().time():
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()


def is_local(base_url: str | None) -> bool:
    host = (urlparse(base_url).hostname or "") if base_url else ""
    return host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost")


def resolve_api_key(cfg: OpenAITeacherConfig) -> str:
    """The key from os.environ[cfg.api_key_env]; "EMPTY" for a local server (or no variable named)."""
    env = cfg.api_key_env
    key = os.environ.get(env) if env else None
    if key:
        return key
    if env is None or is_local(cfg.base_url):
        return "EMPTY"
    where = urlparse(cfg.base_url).hostname if cfg.base_url else "api.openai.com"
    raise ConfigError(f"teacher '{cfg.name}': environment variable {env} is not set "
                      f"(it must hold the API key for {where})")


def _connection_reason(e: BaseException) -> str:
    """What really went wrong under an SDK connection error: the aiohttp transport reports a refused
    connection as a ConnectTimeout, so the cause chain is read rather than the SDK's class."""
    import socket
    import ssl

    seen, c = [], e
    while c is not None and len(seen) < 12:
        seen.append(c)
        c = c.__cause__ or c.__context__
    for c in seen:
        if isinstance(c, ConnectionRefusedError):
            return "connection: refused"
        if isinstance(c, socket.gaierror):
            return "connection: unknown host"
        if isinstance(c, ConnectionResetError):
            return "connection: reset"
        if isinstance(c, ssl.SSLError):
            return "connection: ssl"
    if any(isinstance(c, TimeoutError) or "Timeout" in type(c).__name__ for c in seen):
        return "timeout"
    return f"connection: {type(seen[-1]).__name__}"


class _Fatal(Exception):
    """Wraps an exception that must reach the caller (a bug, or the caller's iterator failing)."""


class OpenAITeacher:
    def __init__(self, cfg: OpenAITeacherConfig, *, transport: str = "aiohttp", backoff_base_s: float = 0.5,
                 backoff_max_s: float = 8.0, limit_period_s: float = 60.0, limit_margin_s: float | None = None,
                 max_pending: int | None = None):
        if transport not in ("aiohttp", "httpx"):
            raise ValueError("transport must be 'aiohttp' or 'httpx'")
        self.cfg = cfg
        self.name = cfg.name
        self.model = cfg.model
        self.transport = transport
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.limit_period_s = limit_period_s  # cfg.rpm / cfg.tpm are per minute; tests shorten it
        self.limit_margin_s = limit_margin_s  # None: ratelimit.default_margin_s
        # answers not yet taken by the caller (in flight included) before workers stop pulling
        self.max_pending = max_pending or max(1024, 8 * cfg.max_concurrency)

    def close(self) -> None:
        pass  # every generate() call owns (and closes) its own client and loop

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        run = _Run(self, resolve_api_key(self.cfg), iter(requests))
        thread = threading.Thread(target=run.thread_main, name=f"teacher-{self.name}", daemon=True)
        thread.start()
        out = run.out
        try:
            while True:
                batch = out.get()
                if batch is _DONE:
                    break
                if isinstance(batch, BaseException):
                    raise batch
                run.consumed += len(batch)
                if run.producer_waiting:
                    run.wake_producer()
                yield from batch
        finally:
            run.stop()
            thread.join()


class _Run:
    """One generate() call: the loop thread's state."""

    def __init__(self, teacher: OpenAITeacher, api_key: str, requests: Iterator[Request]):
        cfg = teacher.cfg
        self.t = teacher
        self.cfg = cfg
        self.api_key = api_key
        self.units = self._units(requests, cfg.use_n)
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task | None = None
        self.limiter = RateLimiter(cfg.rpm, cfg.tpm, period_s=teacher.limit_period_s,
                                   margin_s=teacher.limit_margin_s)
        self.pulled = 0  # requests taken from the caller's iterator (loop thread writes)
        self.consumed = 0  # responses the caller took (caller thread writes)
        self.producer_waiting = False
        self._room: asyncio.Event | None = None
        self._batch: list[Response] = []
        self._flush_scheduled = False
        self._stopped = False
        self._warned_n = False
        self._price_in = (cfg.price_in_per_mtok or 0.0) / 1e6
        self._price_out = (cfg.price_out_per_mtok or 0.0) / 1e6
        self._priced = cfg.price_in_per_mtok is not None or cfg.price_out_per_mtok is not None

    # -- caller side --------------------------------------------------------------------------
    def wake_producer(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._set_room)
            except RuntimeError:
                pass

    def stop(self) -> None:
        """The caller stopped early (or failed): cancel what is in flight."""
        self._stopped = True  # workers take nothing new (covers a stop before the task exists)
        loop, task = self.loop, self.main_task
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._set_room)
                if task is not None:
                    loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile
                pass

    # -- loop thread --------------------------------------------------------------------------
    def thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            if self._stopped:
                return
            self.main_task = loop.create_task(self._main())
            loop.run_until_complete(self.main_task)
        except asyncio.CancelledError:
            pass
        except _Fatal as e:
            self.out.put(e.__cause__ or e)
        except BaseException as e:  # noqa: BLE001 - hand any failure to the caller
            self.out.put(e)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
            self.out.put(_DONE)

    def _set_room(self) -> None:
        if self._room is not None:
            self._room.set()

    @staticmethod
    def _units(requests: Iterator[Request], use_n: bool) -> Iterator[list[Request]]:
        """Units of work: the samples of one prompt (adjacent, like base.by_prompt) or single requests.

        Grouping compares what the prompt_id hashes (model, messages, params) by equality, so
        no hash is computed per request just to find group boundaries.
        """
        if not use_n:
            for r in requests:
                yield [r]
        else:
            for _, group in groupby(requests, key=lambda r: (r.model, r.messages, r.params)):
                yield list(group)

    def _client(self):
        import httpx2
        import openai

        c = self.cfg.max_concurrency
        limits = httpx2.Limits(max_connections=c, max_keepalive_connections=c)
        timeout = httpx2.Timeout(self.cfg.timeout_s, connect=min(self.cfg.timeout_s, 10.0))
        http_client = None
        if self.t.transport == "aiohttp":
            try:
                http_client = openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
            except RuntimeError:  # aiohttp not installed
                http_client = None
        if http_client is None:
            http_client = openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)
        return openai.AsyncOpenAI(api_key=self.api_key, base_url=self.cfg.base_url, max_retries=0,
                                  timeout=timeout, http_client=http_client)

    async def _main(self) -> None:
        import httpx2
        import openai

        self.client = self._client()
        self._raw = httpx2.Response
        self._status_error, self._timeout_error, self._connection_error = (
            openai.APIStatusError, openai.APITimeoutError, openai.APIConnectionError)
        self._errors = (openai.APIStatusError, openai.APIConnectionError, openai.APIResponseValidationError)
        self._room = asyncio.Event()
        await self._warm_up()
        workers = [asyncio.ensure_future(self._worker()) for _ in range(self.cfg.max_concurrency)]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for w in done:
                if not w.cancelled() and w.exception() is not None:
                    raise w.exception()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._flush()
            await self.client.close()

    async def _warm_up(self) -> None:
        """The SDK looks up the platform (in a thread) on its first request; do it before any
        request is let go, so that the first requests do not start late, all at once, after
        the rate limiter counted them."""
        if getattr(self.client, "_platform", False) is None:
            try:
                from openai._base_client import get_platform

                self.client._platform = await asyncio.to_thread(get_platform)
            except Exception:  # noqa: BLE001 - only an optimisation; the SDK does it itself otherwise
                pass

    def _emit(self, responses: list[Response]) -> None:
        self._batch.extend(responses)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._batch:
            self.out.put(self._batch)
            self._batch = []

    async def _worker(self) -> None:
        units = self.units
        max_pending = self.t.max_pending
        while not self._stopped:
            while self.pulled - self.consumed >= max_pending and not self._stopped:
                self._room.clear()
                self.producer_waiting = True
                if self.pulled - self.consumed < max_pending:  # the caller caught up meanwhile
                    break
                await self._room.wait()
            self.producer_waiting = False
            if self._stopped:
                return
            try:
                unit = next(units, None)
            except Exception as e:
                raise _Fatal(str(e)) from e
            if unit is None:
                return
            self.pulled += len(unit)
            await self._unit(unit)

    # -- one prompt: calls until each of its samples has an answer or runs out of attempts -------
    async def _unit(self, unit: list[Request]) -> None:
        cfg = self.cfg
        first = unit[0]
        p = first.params
        body: dict[str, Any] = {"model": first.model, "messages": list(first.messages)}
        for k in ("temperature", "top_p", "max_tokens"):
            if p.get(k) is not None:
                body[k] = p[k]
        top_k = int(p.get("logprobs") or 0)
        if top_k > 0:
            body["logprobs"] = True
            body["top_logprobs"] = top_k
        if cfg.extra_body:
            body.update(cfg.extra_body)
        prompt_id = content_hash("prompt", first.model, list(first.messages), p)
        ids = [_request_id(prompt_id, r.sample_index) for r in unit]
        prompt_chars = sum(len(str(m.get("content") or "")) for m in first.messages)
        max_tokens = int(p.get("max_tokens") or 0)

        pending = list(range(len(unit)))  # indices into unit still without an answer
        calls = [0] * len(unit)  # attempts per request
        failures = 0  # failed calls of this unit (retries are counted per unit)
        t_start = time.perf_counter()
        while pending:
            n = len(pending)
            if n > 1:
                body["n"] = n
            else:
                body.pop("n", None)
            est = prompt_chars / 4 + max_tokens * n
            handle = await self.limiter.acquire(est)
            for i in pending:
                calls[i] += 1
            reason, retry, delay = await self._call(body, unit, ids, pending, calls, top_k, handle)
            if reason is None:
                continue  # some or all answered; loop for the rest
            failures += 1
            if not retry or failures > cfg.max_retries:
                elapsed = time.perf_counter() - t_start
                self._emit([Response(request_id=ids[i], teacher=cfg.name, model=unit[i].model, error=reason,
                                     latency_s=elapsed, attempts=calls[i]) for i in pending])
                return
            if delay is None:  # exponential backoff with full jitter
                delay = random.uniform(0, min(self.t.backoff_max_s, self.t.backoff_base_s * 2 ** (failures - 1)))
            await asyncio.sleep(delay)

    async def _call(self, body, unit, ids, pending, calls, top_k, handle) -> tuple[str | None, bool, float | None]:
        """One HTTP call: (None, _, _) when it answered some requests (they leave `pending`), else
        (reason, retryable, the delay the server asked for or None for our backoff)."""
        headers = None
        t0 = time.perf_counter()
        status = 0
        try:
            async with _timeout(self.cfg.timeout_s):
                raw = await self.client.post("/chat/completions", body=body, cast_to=self._raw)
            data = json.loads(raw.content)
        except self._errors as e:
            if isinstance(e, self._status_error):
                status = e.status_code
                headers = e.response.headers
                reason = f"http_{status}"
                if not (status in RETRYABLE_STATUS or status >= 500):
                    return self._scrub(f"{reason}: {_error_message(e)[:200]}"), False, None
            elif isinstance(e, self._connection_error):  # APITimeoutError is a subclass
                reason = _connection_reason(e)
            else:  # APIResponseValidationError
                reason = f"bad_response: {self._scrub(str(e))[:200]}"
        except TimeoutError:
            reason = "timeout"
        except ValueError as e:  # the body is not JSON (json.JSONDecodeError, UnicodeDecodeError)
            reason = f"bad_response: {type(e).__name__}: {self._scrub(str(e))[:120]}"
        else:
            latency = time.perf_counter() - t0
            try:
                answered = self._answers(data, unit, ids, pending, calls, top_k, latency, handle)
            except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
                return f"bad_response: {type(e).__name__}: {self._scrub(str(e))[:120]}", True, None
            if answered:
                hdrs = raw.headers
                if "x-ratelimit-remaining-requests" in hdrs or "x-ratelimit-remaining-tokens" in hdrs:
                    wait = exhausted_for_s(hdrs)
                    if wait:
                        self.limiter.pause_until(time.monotonic() + min(wait, MAX_RETRY_AFTER_S))
                return None, False, None
            return "bad_response: no choices", True, None

        # a failure that may be retried: when?
        wait = retry_after_s(headers) if headers is not None else None
        if wait is not None:
            wait = min(wait, MAX_RETRY_AFTER_S)
            if status == 429:
                self.limiter.pause_until(time.monotonic() + wait)
        elif headers is not None and status == 429:
            wait = exhausted_for_s(headers)
            if wait:
                wait = min(wait, MAX_RETRY_AFTER_S)
                self.limiter.pause_until(time.monotonic() + wait)
        return reason, True, wait

    def _answers(self, data: dict, unit, ids, pending, calls, top_k, latency, handle) -> int:
        """Turn the choices of one reply into Responses for the first pending requests."""
        choices = data["choices"]
        if not choices:
            return 0
        if len(choices) > 1:
            choices = sorted(choices, key=lambda c: c.get("index") or 0)
        m = min(len(choices), len(pending))
        if m < len(pending) and len(pending) > 1 and not self._warned_n:
            self._warned_n = True
            log.warning("teacher %s: asked for n=%d, the server answered %d; asking again for the rest",
                        self.cfg.name, len(pending), len(choices))
        usage = data.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        total_completion = usage.get("completion_tokens")
        if handle is not None:
            self.limiter.correct(handle, (prompt_tokens or 0) + (total_completion or 0) if usage else None)
        chosen = choices[:m]
        # completion tokens per choice: the logprob count where there is one, else the usage
        # total split by text length (exact when there is one choice)
        per_choice: list[int | None] = []
        lps: list[list[dict] | None] = []
        for c in choices:
            lp = c.get("logprobs")
            content = lp.get("content") if lp else None
            per_choice.append(None if content is None else len(content))
            lps.append([{"token": t["token"], "logprob": t["logprob"],
                         "top": [[a["token"], a["logprob"]] for a in (t.get("top_logprobs") or ())]}
                        for t in content] if content is not None and top_k > 0 else None)
        if total_completion is not None:
            if len(choices) == 1:
                per_choice[0] = total_completion
            elif None in per_choice or sum(per_choice) != total_completion:  # type: ignore[arg-type]
                per_choice = _split(total_completion, [_chars(c.get("message") or {}) for c in choices])
        # the prompt is billed once per call: its cost is shared by the choices of that call
        share_in = (prompt_tokens or 0) / len(choices)
        out = []
        cfg = self.cfg
        for j in range(m):
            i = pending[j]
            msg = chosen[j].get("message") or {}
            ct = per_choice[j]
            cost = None
            if self._priced and (prompt_tokens is not None or ct is not None):
                cost = share_in * self._price_in + (ct or 0) * self._price_out
            out.append(Response(
                request_id=ids[i], teacher=cfg.name, model=unit[i].model, text=msg.get("content"),
                reasoning=msg.get("reasoning_content") or msg.get("reasoning"),
                finish_reason=chosen[j].get("finish_reason"), prompt_tokens=prompt_tokens, completion_tokens=ct,
                logprobs=lps[j], latency_s=latency, cost=cost, attempts=calls[i]))
        del pending[:m]
        self._emit(out)
        return m

    def _scrub(self, text: str) -> str:
        key = self.api_key
        if key and key != "EMPTY" and len(key) >= 4 and key in text:
            text = text.replace(key, "***")
        return text


def _request_id(prompt_id: str, sample_index: int) -> str:
    """Request.request_id, without re-hashing the prompt: content_hash("request", prompt_id, i)
    serialises to exactly this JSON for a hex prompt_id and an int index."""
    if type(sample_index) is not int:
        return content_hash("request", prompt_id, sample_index)
    blob = f'["request","{prompt_id}",{sample_index}]'.encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _error_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or body.get("error") or body
        return msg if isinstance(msg, str) else json.dumps(msg)[:400]
    if isinstance(body, str):
        return body
    return str(getattr(e, "message", "") or e)


def _chars(message: dict) -> int:
    return len(message.get("content") or "") + len(message.get("reasoning_content") or message.get("reasoning") or "")


def _split(total: int, weights: list[int]) -> list[int]:
    """Split an integer total in proportion to weights (largest remainder; equal if all zero)."""
    k = len(weights)
    s = sum(weights)
    if s <= 0:
        weights, s = [1] * k, k
    raw = [total * w / s for w in weights]
    parts = [int(x) for x in raw]
    for j in sorted(range(k), key=lambda j: raw[j] - parts[j], reverse=True)[: total - sum(parts)]:
        parts[j] += 1
    return parts
