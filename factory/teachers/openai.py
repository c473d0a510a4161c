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
- Reasoning teachers: `stream: true` (the default) reads the answer as server-sent events, so a
  call has two clocks: `idle_timeout_s` without a byte (a dead connection, a hung server) and
  `timeout_s` for the whole call (long, for traces that take minutes). Reasoning is read from
  `reasoning_content` / `reasoning` / `reasoning_details` on the message or delta and kept apart
  from the answer (`response_from_choice`); `<think>` tags in the content stay in the text, where
  the parse stage splits them. `usage.completion_tokens_details.reasoning_tokens` is kept too.
- Attempts count calls: a call asking for n samples counts once, on its first request. With
  `on_attempt` set (the build sets the store writer's put), an IN_FLIGHT mark is handed over
  before each call, so a run killed during a call keeps the attempt in the store.
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
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from typing import Any
from urllib.parse import urlparse

from factory.config import ConfigError, OpenAITeacherConfig
from factory.records import IN_FLIGHT, Request, Response, content_hash
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


def request_body(request: Request, cfg: OpenAITeacherConfig | None) -> dict[str, Any]:
    """The chat-completions body of a request: model, messages, sampling params, top-k logprobs,
    reasoning_effort, then the teacher's extra_body (provider settings win). Online and batch send it."""
    p = request.params
    body: dict[str, Any] = {"model": request.model, "messages": list(request.messages)}
    for k in ("temperature", "top_p", "max_tokens"):
        if p.get(k) is not None:
            body[k] = p[k]
    top_k = int(p.get("logprobs") or 0)
    if top_k > 0:
        body["logprobs"] = True
        body["top_logprobs"] = top_k
    if cfg is not None:
        if getattr(cfg, "reasoning_effort", None):
            body["reasoning_effort"] = cfg.reasoning_effort
        if cfg.extra_body:
            body.update(cfg.extra_body)
    return body


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
        # called (on the teacher's thread) with an IN_FLIGHT mark before each call; must not block
        self.on_attempt: Callable[[Response], None] | None = None

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
        self._stream_cls = openai.AsyncStream[object]  # only its response is used: events are read here
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
        top_k = int(p.get("logprobs") or 0)
        body = request_body(first, cfg)
        if cfg.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            body.update(cfg.extra_body)  # the provider's settings win, as in the body without streaming
        prompt_id = content_hash("prompt", first.model, list(first.messages), p)
        ids = [_request_id(prompt_id, r.sample_index) for r in unit]
        prompt_chars = sum(len(str(m.get("content") or "")) for m in first.messages)
        max_tokens = int(p.get("max_tokens") or 0)

        pending = list(range(len(unit)))  # indices into unit still without an answer
        calls = [0] * len(unit)  # attempts per request: a call counts once, on its first request
        on_attempt = self.t.on_attempt
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
            lead = pending[0]
            calls[lead] += 1
            if on_attempt is not None:
                on_attempt(Response(request_id=ids[lead], teacher=cfg.name, model=first.model, error=IN_FLIGHT))
            reason, retry, delay = await self._call(body, unit, ids, pending, calls, top_k, handle)
            if reason is None:
                continue  # some or all answered; loop for the rest
            failures += 1
            if not retry or failures > cfg.max_retries:
                elapsed = time.perf_counter() - t_start
                noted = on_attempt is not None
                self._emit([Response(request_id=ids[i], teacher=cfg.name, model=unit[i].model, error=reason,
                                     latency_s=elapsed, attempts=calls[i], attempts_noted=calls[i] if noted else 0)
                            for i in pending])
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
            if body.get("stream"):
                raw, data = await self._post_streamed(body)
            else:
                async with _timeout(self.cfg.timeout_s):
                    raw = await self.client.post("/chat/completions", body=body, cast_to=self._raw)
                data = json.loads(raw.content)
        except _IdleTimeout:
            reason = f"timeout: no bytes for {self.cfg.idle_timeout_s:g} s"
        except _StreamBroken as e:
            reason = _connection_reason(e.__cause__) if e.__cause__ is not None else f"bad_response: {e}"
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
        # completion tokens per choice: the logprob count where there is one, else the usage
        # total split by text length (exact when there is one choice); reasoning tokens likewise
        per_choice: list[int | None] = []
        for c in choices:
            lp = c.get("logprobs")
            content = lp.get("content") if lp else None
            per_choice.append(None if content is None else len(content))
        per_lp = list(per_choice)
        if total_completion is not None:
            if len(choices) == 1:
                per_choice[0] = total_completion
            elif None in per_choice or sum(per_choice) != total_completion:  # type: ignore[arg-type]
                per_choice = _split(total_completion, [_chars(c.get("message") or {}) for c in choices])
        total_reasoning = reasoning_tokens_of(usage)
        per_reasoning: list[int | None] = [None] * len(choices)
        if total_reasoning is not None:
            per_reasoning = ([total_reasoning] if len(choices) == 1 else
                             _split(total_reasoning, [len(split_reasoning(c.get("message") or {}, True)[1] or "")
                                                      for c in choices]))
            # logprobs cover the answer only: answer tokens by logprob count, plus the reasoning's share
            if (len(choices) > 1 and None not in per_lp and total_completion is not None
                    and sum(per_lp) + total_reasoning == total_completion):  # type: ignore[arg-type]
                per_choice = [a + b for a, b in zip(per_lp, per_reasoning)]  # type: ignore[operator]
        cfg = self.cfg
        noted = self.t.on_attempt is not None
        out = []
        for j in range(m):
            i = pending[j]
            out.append(response_from_choice(
                choices[j], request_id=ids[i], teacher=cfg.name, model=unit[i].model, prompt_tokens=prompt_tokens,
                completion_tokens=per_choice[j], reasoning_tokens=per_reasoning[j], prompt_share=1 / len(choices),
                price_in_per_mtok=cfg.price_in_per_mtok, price_out_per_mtok=cfg.price_out_per_mtok,
                latency_s=latency, attempts=calls[i], attempts_noted=calls[i] if noted else 0, top_k=top_k))
        del pending[:m]
        self._emit(out)
        return m

    async def _post_streamed(self, body: dict) -> tuple[Any, dict]:
        """One streamed call: the events put together into the body a plain call would have got.
        Raises _IdleTimeout when no byte came for idle_timeout_s (headers included), TimeoutError
        past timeout_s, _StreamBroken when the stream breaks off or ends unfinished."""
        loop = asyncio.get_running_loop()
        idle = self.cfg.idle_timeout_s
        acc = StreamedCompletion()
        raw = None
        async with _timeout(self.cfg.timeout_s):
            idle_timer = _IdleTimer(loop, idle)
            try:
                stream = await self.client.post("/chat/completions", body=body, cast_to=self._raw, stream=True,
                                                stream_cls=self._stream_cls)
                raw = getattr(stream, "response", stream)
                if "event-stream" not in raw.headers.get("content-type", "event-stream"):
                    acc = None  # a server that ignores `stream` answers plain JSON
                try:
                    plain = b""
                    async for piece in raw.aiter_bytes():
                        idle_timer.touch()
                        if acc is not None:
                            acc.feed(piece)
                        else:
                            plain += piece
                    if acc is None:
                        return raw, json.loads(plain)
                    acc.feed(b"\n", end=True)
                except (asyncio.CancelledError, TimeoutError, ValueError, _StreamBroken):
                    raise
                except Exception as e:  # noqa: BLE001 - the transport's own errors while reading the body
                    raise _StreamBroken(type(e).__name__) from e
                finally:
                    await raw.aclose()
            except asyncio.CancelledError:
                if idle_timer.fired:
                    if hasattr(idle_timer.task, "uncancel"):  # 3.11+: this cancel was ours, not the caller's
                        idle_timer.task.uncancel()
                    raise _IdleTimeout() from None
                raise
            finally:
                idle_timer.cancel()
        if not acc.finished:
            raise _StreamBroken("stream ended before every choice finished")
        return raw, acc.body()

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
    content = message.get("content")
    return (len(content) if isinstance(content, str) else 0) + len(_reasoning_of(message) or "")


# -- reasoning: every place servers put it ------------------------------------------------------

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _reasoning_of(message: dict) -> str | None:
    """The separate reasoning of a message or a streamed delta: `reasoning_content` (DeepSeek, vLLM),
    `reasoning` (vLLM's newer parsers, OpenRouter, Ollama), or OpenRouter's `reasoning_details` list."""
    for key in ("reasoning_content", "reasoning"):
        v = message.get(key)
        if isinstance(v, str) and v:
            return v
    details = message.get("reasoning_details")
    if isinstance(details, list):
        parts = [d.get("text") or d.get("summary") for d in details if isinstance(d, dict)]
        text = "".join(p for p in parts if isinstance(p, str))
        return text or None
    return None


def split_reasoning(message: dict, think_tags: bool = False) -> tuple[str | None, str | None]:
    """(text, reasoning) of a chat message in any shape servers send: the reasoning of a separate field
    (see _reasoning_of), the content as text.

    With `think_tags`, a leading `<think>` block in the content (a server without a reasoning parser)
    moves to the reasoning too, and so does text before a `</think>` that no `<think>` opened (the chat
    template put `<think>` in the prompt); a `<think>` never closed leaves an empty answer. The teacher
    stores content as the server sent it (think_tags off): the parse stage splits tags into
    parsed.reasoning / parsed.answer, while dedup, export and the fidelity checks read the raw
    completion in `responses.text`."""
    reasoning = _reasoning_of(message)
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    elif content is not None and not isinstance(content, str):
        content = str(content)
    if content and think_tags:
        inner = None
        head = content.lstrip()
        if head.startswith(THINK_OPEN):
            rest = head[len(THINK_OPEN):]
            close = rest.find(THINK_CLOSE)
            if close >= 0:
                inner, content = rest[:close], rest[close + len(THINK_CLOSE):].lstrip()
            else:
                inner, content = rest, ""
        else:
            close = content.find(THINK_CLOSE)
            if close >= 0 and THINK_OPEN not in content[:close]:
                inner, content = content[:close], content[close + len(THINK_CLOSE):].lstrip()
        if inner is not None and inner.strip():
            reasoning = f"{reasoning}\n{inner.strip()}" if reasoning else inner.strip()
    return content, reasoning or None


def reasoning_tokens_of(usage: dict | None) -> int | None:
    """usage.completion_tokens_details.reasoning_tokens (or a flat usage.reasoning_tokens); None if absent."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("completion_tokens_details")
    v = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if v is None:
        v = usage.get("reasoning_tokens")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def response_from_choice(choice: dict, *, request_id: str, teacher: str, model: str,
                         prompt_tokens: int | None = None, completion_tokens: int | None = None,
                         reasoning_tokens: int | None = None, prompt_share: float = 1.0,
                         price_in_per_mtok: float | None = None, price_out_per_mtok: float | None = None,
                         latency_s: float | None = None, attempts: int = 1, attempts_noted: int = 0,
                         top_k: int = 0) -> Response:
    """The Response for one choice of a chat.completion body (plain, streamed and put together, or a
    Batch API output line). Token counts are this choice's; the prompt is billed once per call, so
    `prompt_share` (1 / choices in the call) of its cost is this choice's."""
    msg = choice.get("message") or {}
    text, reasoning = split_reasoning(msg)
    lp = choice.get("logprobs")
    content = lp.get("content") if isinstance(lp, dict) else None
    logprobs = ([{"token": t["token"], "logprob": t["logprob"],
                  "top": [[a["token"], a["logprob"]] for a in (t.get("top_logprobs") or ())]} for t in content]
                if content is not None and top_k > 0 else None)
    cost = None
    if (price_in_per_mtok is not None or price_out_per_mtok is not None) and (
            prompt_tokens is not None or completion_tokens is not None):
        cost = ((prompt_tokens or 0) * prompt_share * (price_in_per_mtok or 0.0)
                + (completion_tokens or 0) * (price_out_per_mtok or 0.0)) / 1e6
    return Response(request_id=request_id, teacher=teacher, model=model, text=text, reasoning=reasoning,
                    finish_reason=choice.get("finish_reason"), prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens, reasoning_tokens=reasoning_tokens, logprobs=logprobs,
                    latency_s=latency_s, cost=cost, attempts=attempts, attempts_noted=attempts_noted)


def response_from_body(body: dict, *, request_id: str, teacher: str, model: str,
                       price_in_per_mtok: float | None = None, price_out_per_mtok: float | None = None,
                       latency_s: float | None = None, attempts: int = 1, top_k: int = 0) -> Response:
    """The Response for a one-choice chat.completion body (e.g. a Batch API output line's body).
    Raises ValueError when the body has no choice."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices:
        raise ValueError("no choices")
    usage = body.get("usage") or {}
    return response_from_choice(
        choices[0], request_id=request_id, teacher=teacher, model=model, prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"), reasoning_tokens=reasoning_tokens_of(usage),
        price_in_per_mtok=price_in_per_mtok, price_out_per_mtok=price_out_per_mtok, latency_s=latency_s,
        attempts=attempts, top_k=top_k)


# -- streaming ---------------------------------------------------------------------------------

class _IdleTimeout(Exception):
    """No byte arrived for idle_timeout_s."""


class _StreamBroken(Exception):
    """The stream broke off (its cause: the transport's error) or ended before its choices finished."""


class _IdleTimer:
    """Cancels the task once `idle_s` pass without touch(). touch() only moves a deadline (no timer
    handle per chunk); the timer re-arms itself when it wakes early."""

    __slots__ = ("loop", "idle_s", "task", "deadline", "fired", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_s: float):
        self.loop, self.idle_s = loop, idle_s
        self.task = asyncio.current_task()
        self.deadline = loop.time() + idle_s
        self.fired = False
        self.handle = loop.call_at(self.deadline, self._wake)

    def touch(self) -> None:
        self.deadline = self.loop.time() + self.idle_s

    def _wake(self) -> None:
        if self.loop.time() >= self.deadline:
            self.fired = True
            self.task.cancel()
        else:
            self.handle = self.loop.call_at(self.deadline, self._wake)

    def cancel(self) -> None:
        self.handle.cancel()


class StreamedCompletion:
    """Server-sent `chat.completion.chunk` events put together into the body of a plain call."""

    def __init__(self):
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict | None = None
        self.done = False  # saw `data: [DONE]`
        self._buf = b""

    def feed(self, piece: bytes, end: bool = False) -> None:
        """Bytes as they come off the network: the complete lines are read, the rest waits. The
        events of one piece are decoded in one json.loads (per-event overhead is what streaming costs)."""
        buf = self._buf + piece
        cut = len(buf) if end else buf.rfind(b"\n") + 1
        self._buf = buf[cut:]
        # `data:` lines by a split, not a regex: a multiline regex over a whole response cost ~5 us per event
        payloads = [line[5:].strip() for line in buf[:cut].split(b"\n") if line.startswith(b"data:")]
        if not payloads:
            return
        if payloads[-1].strip() == b"[DONE]":
            self.done = True
            payloads.pop()
        if len(payloads) > 1:
            try:
                events = json.loads(b"[" + b",".join(payloads) + b"]")
            except ValueError:
                events = None  # find the bad one below, for its message
            if events is not None and len(events) == len(payloads):
                for event in events:
                    self.add_event(event)
                return
        for payload in payloads:
            self.add_line(b"data: " + payload)

    def add_line(self, line: bytes) -> None:
        line = line.strip()
        if not line.startswith(b"data:"):
            return  # blank, `event:`, `id:`, or a comment such as `: keep-alive`
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        self.add_event(json.loads(payload))

    def add_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise ValueError(f"event is not an object: {str(event)[:80]!r}")
        if event.get("error"):
            err = event["error"]
            raise _StreamBroken(f"error event: {(err.get('message') if isinstance(err, dict) else err)!s:.200}")
        if event.get("usage"):
            self.usage = event["usage"]
        for c in event.get("choices") or ():
            idx = c.get("index") or 0
            ch = self.choices.get(idx)
            if ch is None:
                ch = self.choices[idx] = {"content": [], "reasoning": [], "finish_reason": None, "logprobs": None}
            delta = c.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                ch["content"].append(content)
            if len(delta) > ("content" in delta) + ("role" in delta):  # most deltas carry only content
                reasoning = _reasoning_of(delta)
                if reasoning:
                    ch["reasoning"].append(reasoning)
            if c.get("finish_reason"):
                ch["finish_reason"] = c["finish_reason"]
            lp = c.get("logprobs")
            if isinstance(lp, dict) and lp.get("content"):
                if ch["logprobs"] is None:
                    ch["logprobs"] = []
                ch["logprobs"].extend(lp["content"])

    @property
    def finished(self) -> bool:
        return self.done or (bool(self.choices) and all(ch["finish_reason"] for ch in self.choices.values()))

    def body(self) -> dict[str, Any]:
        choices = []
        for idx in sorted(self.choices):
            ch = self.choices[idx]
            message = {"role": "assistant", "content": "".join(ch["content"]) if ch["content"] else None}
            if ch["reasoning"]:
                message["reasoning_content"] = "".join(ch["reasoning"])
            choices.append({"index": idx, "message": message, "finish_reason": ch["finish_reason"],
                            "logprobs": None if ch["logprobs"] is None else {"content": ch["logprobs"]}})
        return {"choices": choices, "usage": self.usage}


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
