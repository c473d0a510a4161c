"""A small, fast OpenAI-compatible chat-completions server for tests and benchmarks.

Raw asyncio (no framework) so that it costs little CPU when it shares cores with the client.

    POST /v1/chat/completions   a valid completion (honours n unless ignore_n, returns usage,
                                optional logprobs), or an injected fault
    GET  /stats                 what it received: {"count", "ok", "faults", "records": [...]}
                                (?records=0 leaves the records out)
    POST /config                change settings at run time: {"latency": 0.5, "fault_rate": 0.3, ...}
    POST /reset                 forget the records

Answers are deterministic: choice i of a prompt says `answer to <prompt[:40]> #i`, so tests can
check them; `replies` gives canned answers instead ({model name or prompt substring: [text of choice
0, 1, ...]}, first match wins, choice i gets texts[i % len]), e.g. right and wrong solutions to
benchmark items, or a better model. Directives in the last message steer one prompt:
  [[status:NNN]]    always that HTTP status (e.g. 400 to test non-retryable errors)
  [[fail:429,500]]  the first calls of this prompt get these faults in turn, then it succeeds
  [[echo_auth]]     a 401 whose message echoes the Authorization header (as some real servers
                    do) so tests can check that the client never stores the key

Faults (drawn with probability `fault_rate`, uniformly from `faults`):
  429        Retry-After (and, if set, retry-after-ms) header
  500, 503   JSON error body
  hang       never answers (the client must time out)
  bad_json   200 with a body that is not JSON
  truncated  200 with Content-Length larger than what is sent, then the connection closes

Reasoning (`reasoning`): True or "reasoning_content" puts it in message.reasoning_content,
"reasoning" in message.reasoning (vLLM's newer parsers, OpenRouter), "reasoning_details" in
OpenRouter's list, "think" as a leading <think>…</think> block in the content, "think_open" as text
before a lone </think> (the chat template opened <think> in the prompt). Reasoning words count in
completion_tokens (and usage.completion_tokens_details.reasoning_tokens); max_tokens cuts the
reasoning first, so a small limit leaves a trace cut off inside its reasoning.

Streaming: a request with `"stream": true` gets server-sent events (chunked), one event per word,
`stream_delay` seconds apart (0: all in one write), usage in a last event when asked by
stream_options.include_usage, then `data: [DONE]`; `keepalive` sends an SSE comment between words
instead of nothing. More faults: `stall` streams `stall_after` events and then goes silent with the
connection open; in a stream, bad_json is an event that is not JSON and truncated closes the
connection mid-stream. `ignore_stream` answers plain JSON anyway (as some servers do).

Each request is recorded as [t_monotonic, messages_hash, n, ok, outcome, tokens]: outcome is
"ok" or the fault name, `ok` turns true once a full answer is written (it stays false if the
client went away before a delayed answer), tokens is the usage total of an answer (else 0).

In a thread:      srv = FakeOpenAI(latency=0).start(); srv.base_url; srv.records; srv.stop()
As a subprocess:  python tests/support/fake_openai.py --port 0 --latency 1 --fault-rate 0.3
                  (prints `READY <port>` on stdout once it listens), or from Python:
                  srv = FakeOpenAIProcess(latency=1); srv.base_url; srv.records(); srv.close()
A subprocess keeps the server's clock and CPU away from the client's GIL (timing tests,
benchmarks); a thread is enough for behaviour tests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

ALL_FAULTS = ("429", "500", "503", "hang", "bad_json", "truncated")
EXTRA_FAULTS = ("stall",)  # not drawn by default (ALL_FAULTS)
_STATUS_RE = re.compile(r"\[\[status:(\d{3})\]\]")
_FAIL_RE = re.compile(r"\[\[fail:([\w,]+)\]\]")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Settings:
    latency: float = 0.0  # seconds before each answer (faults other than hang answer at once)
    fault_rate: float = 0.0
    faults: tuple[str, ...] = ALL_FAULTS
    retry_after: str | None = "1"  # Retry-After header value on injected 429s (None: no header)
    retry_after_ms: str | None = None  # retry-after-ms header value on injected 429s
    ignore_n: bool = False  # always answer one choice, like `transformers serve`
    reasoning: bool | str = False  # where reasoning goes (see the module docstring); False: none
    reasoning_words: int = 3  # words of reasoning in each answer (3: "thinking about #i")
    stream_delay: float = 0.0  # seconds between streamed events
    keepalive: bool = False  # an SSE comment goes out halfway between streamed events
    stall_after: int = 2  # events sent before a `stall` fault goes silent
    ignore_stream: bool = False  # answer plain JSON even when asked to stream
    words: int = 8  # words of filler in each answer (longer bodies for benchmarks)
    ratelimit_headers: dict[str, str] = field(default_factory=dict)  # sent on every 200
    replies: dict[str, list[str]] = field(default_factory=dict)  # model name or prompt substring -> canned texts
    seed: int = 0


def messages_hash(messages: Any) -> str:
    blob = json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def answer_text(prompt: str, index: int, words: int = 8) -> str:
    filler = " ".join(f"w{j}" for j in range(words))
    return f"answer to {prompt[:40]} #{index} {filler}".rstrip()


def _response(status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json", content_length: int | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            f"content-type: {content_type}",
            f"content-length: {len(body) if content_length is None else content_length}"]
    if headers:
        head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"error": {"message": message, "type": "fake_error", "code": status}}).encode()
    return _response(status, body, headers)


class FakeOpenAI:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **settings: Any):
        self.host, self.port = host, port
        self.settings = Settings(**settings)
        self.records: list[list[Any]] = []
        self._rng = random.Random(self.settings.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = 0
        self._calls: dict[str, int] = {}  # calls per messages hash, for [[fail:...]]
        self.keep_bodies = False  # in a thread: set it to keep every request body in `bodies`
        self.bodies: list[dict] = []

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def serve(self) -> None:
        """Listen (in the running loop) until cancelled."""
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = await self._loop.create_server(lambda: _Conn(self), sock=sock, backlog=4096)

    def start(self) -> FakeOpenAI:
        """Run in a daemon thread; returns once it listens."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve())
            except BaseException as e:  # e.g. the port is taken: tell start()
                failed.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            if self._server:
                self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- stats --------------------------------------------------------------------------------
    def stats(self, records: bool = True) -> dict[str, Any]:
        recs = list(self.records)
        faults: dict[str, int] = {}
        for r in recs:
            faults[r[4]] = faults.get(r[4], 0) + 1
        out: dict[str, Any] = {"count": len(recs), "ok": sum(1 for r in recs if r[3]), "faults": faults,
                               "settings": asdict(self.settings)}
        if records:
            out["records"] = recs
        return out

    def reset(self) -> None:
        self.records.clear()
        self._calls.clear()

    def configure(self, **changes: Any) -> None:
        for k, v in changes.items():
            if not hasattr(self.settings, k):
                raise ValueError(f"unknown setting {k}")
            setattr(self.settings, k, tuple(v) if k == "faults" else v)
        if "seed" in changes:
            self._rng = random.Random(self.settings.seed)

    # -- the one endpoint ---------------------------------------------------------------------
    def handle(self, conn: _Conn, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if method == "POST" and path.endswith("/chat/completions"):
            self._completion(conn, headers, body)
        elif method == "GET" and path.startswith("/stats"):
            conn.send(_response(200, json.dumps(self.stats(records="records=0" not in path)).encode()))
        elif method == "POST" and path.startswith("/config"):
            try:
                self.configure(**json.loads(body or b"{}"))
            except (ValueError, TypeError) as e:
                conn.send(_error(400, str(e)))
                return
            conn.send(_response(200, json.dumps(asdict(self.settings)).encode()))
        elif method == "POST" and path.startswith("/reset"):
            self.reset()
            conn.send(_response(200, b"{}"))
        else:
            conn.send(_error(404, f"no route {method} {path}"))

    def _completion(self, conn: _Conn, headers: dict[str, str], body: bytes) -> None:
        now = time.monotonic()
        s = self.settings
        try:
            req = json.loads(body)
            messages = req["messages"]
            n = int(req.get("n") or 1)
        except (ValueError, KeyError, TypeError) as e:
            conn.send(_error(400, f"bad request body: {e}"))
            return
        if self.keep_bodies:
            self.bodies.append(req)
        h = messages_hash(messages)
        record = [now, h, n, False, "ok", 0]
        self.records.append(record)
        prompt = str(messages[-1].get("content", "")) if messages else ""

        fault = None
        if "[[" in prompt:
            m = _FAIL_RE.search(prompt)
            if m:
                plan = m.group(1).split(",")
                k = self._calls.get(h, 0)
                self._calls[h] = k + 1
                if k < len(plan):
                    fault = plan[k]
            m = _STATUS_RE.search(prompt)
            if m:
                record[4] = f"status_{m.group(1)}"
                conn.send(_error(int(m.group(1)), f"forced status {m.group(1)} for this prompt"))
                return
            if "[[echo_auth]]" in prompt:
                record[4] = "status_401"
                conn.send(_error(401, f"Incorrect API key provided: {headers.get('authorization', '')}"))
                return

        if fault is None and s.fault_rate and self._rng.random() < s.fault_rate:
            fault = self._rng.choice(s.faults)
        stream = bool(req.get("stream")) and not s.ignore_stream
        if stream and fault in ("bad_json", "truncated", "stall"):
            record[4] = fault
            events = [b'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}}]}\n\n'] * 3
            if fault == "bad_json":
                conn.send(_stream_head() + _chunk(events[0] + b"data: {not json\n\n") + _chunk(b""))
            elif fault == "truncated":
                conn.send(_stream_head() + _chunk(events[0]) + b"ff\r\ndata: {", close=True)
            else:
                conn.send(_stream_head() + b"".join(_chunk(e) for e in events[:s.stall_after]))
            return
        if fault is not None:
            record[4] = fault
            if fault == "429":
                hdrs = {}
                if s.retry_after is not None:
                    hdrs["retry-after"] = s.retry_after
                if s.retry_after_ms is not None:
                    hdrs["retry-after-ms"] = s.retry_after_ms
                conn.send(_error(429, "rate limited (injected)", hdrs))
            elif fault.isdigit():
                conn.send(_error(int(fault), f"injected {fault}"))
            elif fault in ("hang", "stall"):
                pass  # never answer; the connection stays open until the client gives up
            elif fault == "bad_json":
                conn.send(_response(200, b'{"id": "x", "choices": [ {not json'))
            elif fault == "truncated":
                conn.send(_response(200, b'{"id": "chatcmpl-trunc", "object": "chat.completion", "cho',
                                    content_length=4096), close=True)
            return

        payload, record[5] = self._completion_body(req, messages, prompt, n)
        extra = s.ratelimit_headers or None
        if stream:  # the same answer, as events (subclasses override _completion_body only)
            self._stream(conn, record, json.loads(payload),
                         bool((req.get("stream_options") or {}).get("include_usage")), extra)
            return
        data = _response(200, payload, extra)
        if s.latency > 0:
            self._loop.call_later(s.latency, conn.send_ok, data, record)
        else:
            conn.send_ok(data, record)

    def _stream(self, conn: _Conn, record: list, body: dict, include_usage: bool, headers: dict | None) -> None:
        """The answer as chat.completion.chunk events: role, then a word of reasoning or content per event."""
        s = self.settings
        base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"]}
        events: list[dict] = []
        for c in body["choices"]:
            i, msg = c["index"], c["message"]
            events.append({"choices": [{"index": i, "delta": {"role": "assistant", "content": ""}}]})
            for key in ("reasoning_content", "reasoning"):
                for w in _pieces(msg.get(key)):
                    events.append({"choices": [{"index": i, "delta": {key: w}}]})
            for d in msg.get("reasoning_details") or ():
                for w in _pieces(d["text"]):
                    events.append({"choices": [{"index": i, "delta": {"reasoning_details": [
                        {"type": "reasoning.text", "text": w}]}}]})
            lp = (c.get("logprobs") or {}).get("content")
            for j, w in enumerate(_pieces(msg.get("content"))):
                ev: dict[str, Any] = {"index": i, "delta": {"content": w}}
                if lp is not None and j < len(lp):
                    ev["logprobs"] = {"content": [lp[j]]}
                events.append({"choices": [ev]})
            if lp is not None and len(lp) > len(_pieces(msg.get("content"))):  # tokens past the words
                events.append({"choices": [{"index": i, "delta": {}, "logprobs": {"content": lp[len(_pieces(msg.get("content"))):]}}]})
            events.append({"choices": [{"index": i, "delta": {}, "finish_reason": c["finish_reason"]}]})
        if include_usage:
            events.append({"choices": [], "usage": body["usage"]})
        frames = [b"data: " + json.dumps(base | e, separators=(",", ":")).encode() + b"\n\n" for e in events]
        frames.append(b"data: [DONE]\n\n")
        head = _stream_head(headers)
        if s.stream_delay <= 0:
            data = head + b"".join(_chunk(f) for f in frames) + _chunk(b"")
            if s.latency > 0:
                self._loop.call_later(s.latency, conn.send_ok, data, record)
            else:
                conn.send_ok(data, record)
            return
        loop = self._loop

        def send(k: int) -> None:
            if conn.transport is None or conn.transport.is_closing():
                return
            if k == len(frames):
                conn.send_ok(_chunk(b""), record)
                return
            conn.send(_chunk(frames[k]))
            if s.keepalive:
                loop.call_later(s.stream_delay / 2, conn.send, _chunk(b": keep-alive\n\n"))
            loop.call_later(s.stream_delay, send, k + 1)

        conn.send(head)
        loop.call_later(max(s.latency, 0.0), send, 0)

    def _completion_body(self, req: dict, messages: list, prompt: str, n: int) -> tuple[bytes, int]:
        """The JSON body of a plain answer, and its usage total (what a subclass overrides)."""
        body, tokens = self._completion_dict(req, messages, prompt, n)
        return json.dumps(body, separators=(",", ":")).encode(), tokens

    def _completion_dict(self, req: dict, messages: list, prompt: str, n: int) -> tuple[dict, int]:
        s = self.settings
        k = 1 if s.ignore_n else n
        max_tokens = req.get("max_tokens") or req.get("max_completion_tokens")
        top = int(req.get("top_logprobs") or 0) if req.get("logprobs") else -1
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
        choices, completion_tokens, reasoning_tokens = [], 0, 0
        canned = next((t for key, t in s.replies.items() if key == req.get("model") or key in prompt), None)
        for i in range(k):
            text = canned[i % len(canned)] if canned else answer_text(prompt, i, s.words)
            tokens = text.split(" ")
            thought = reasoning_text(i, s.reasoning_words).split(" ") if s.reasoning else []
            finish = "stop"
            if max_tokens is not None and len(thought) + len(tokens) > max_tokens:  # reasoning comes first
                thought, tokens = thought[:max_tokens], tokens[:max(0, max_tokens - len(thought))]
                finish = "length"
            completion_tokens += len(thought) + len(tokens)
            reasoning_tokens += len(thought)
            message: dict[str, Any] = {"role": "assistant", "content": " ".join(tokens)}
            if thought:
                _place_reasoning(message, s.reasoning, " ".join(thought), cut=len(thought) < s.reasoning_words)
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
            if top >= 0:
                choice["logprobs"] = {"content": [
                    {"token": t if j == 0 else " " + t, "logprob": -0.1 * (j % 7), "bytes": None,
                     "top_logprobs": [{"token": f"alt{a}", "logprob": -1.0 - a, "bytes": None}
                                      for a in range(top)]}
                    for j, t in enumerate(tokens)]}
            choices.append(choice)
        self._ids += 1
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        if s.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return {"id": f"chatcmpl-{self._ids}", "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model", "fake"), "choices": choices, "usage": usage}, prompt_tokens + completion_tokens


def reasoning_text(index: int, words: int = 3) -> str:
    return " ".join([f"thinking about #{index}"] + [f"r{j}" for j in range(max(0, words - 3))])


def _place_reasoning(message: dict, where: bool | str, thought: str, cut: bool) -> None:
    """Put the reasoning where a server of that kind puts it (see the module docstring)."""
    if where in (True, "reasoning_content", "reasoning"):
        message["reasoning_content" if where is True else where] = thought
    elif where == "reasoning_details":
        message["reasoning_details"] = [{"type": "reasoning.text", "text": thought}]
    elif where == "think":
        close = "" if cut else "</think>"
        message["content"] = f"<think>{thought}{close}" + (message["content"] and "\n\n" + message["content"])
    elif where == "think_open":
        close = "" if cut else "</think>"
        message["content"] = f"{thought}{close}" + (message["content"] and "\n\n" + message["content"])
    else:
        raise ValueError(f"unknown reasoning place {where!r}")


def _pieces(text: str | None) -> list[str]:
    """Text in streamed pieces (a word each, the space kept with the next word)."""
    if not text:
        return []
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def _stream_head(headers: dict[str, str] | None = None) -> bytes:
    head = ["HTTP/1.1 200 OK", "content-type: text/event-stream", "transfer-encoding: chunked"]
    if headers:
        head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: Content-Length bodies, no chunked uploads."""

    __slots__ = ("srv", "transport", "buf")

    def __init__(self, srv: FakeOpenAI):
        self.srv = srv
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def send(self, data: bytes, close: bool = False) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)
            if close:
                t.close()

    def send_ok(self, data: bytes, record: list) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)
            record[3] = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            try:
                method, path, _ = head[0].split(" ", 2)
            except ValueError:
                self.send(_error(400, "bad request line"), close=True)
                return
            try:
                self.srv.handle(self, method, path, headers, body)
            except Exception as e:  # a bug here must not hang the client
                self.send(_error(500, f"fake server error: {type(e).__name__}: {e}"))


class FakeOpenAIProcess:
    """The server in a subprocess (its own GIL); same settings as FakeOpenAI, driven over HTTP."""

    def __init__(self, port: int = 0, **settings: Any):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__, "--port", str(port)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = self.root + "/v1"
        if settings:
            self.configure(**settings)

    def _call(self, method: str, path: str, data: dict | None = None) -> Any:
        import urllib.request

        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.root + path, data=body, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def configure(self, reset: bool = True, **settings: Any) -> None:
        self._call("POST", "/config", settings)
        if reset:
            self.reset()

    def reset(self) -> None:
        self._call("POST", "/reset", {})

    def stats(self, records: bool = True) -> dict[str, Any]:
        return self._call("GET", "/stats" + ("" if records else "?records=0"))

    def records(self) -> list[list[Any]]:
        return self.stats()["records"]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001
            self.proc.kill()

    def __enter__(self) -> FakeOpenAIProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed as `READY <port>`)")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--faults", default=",".join(ALL_FAULTS), help="comma-separated subset of " + ",".join(ALL_FAULTS))
    p.add_argument("--retry-after", default="1", help="Retry-After header value on injected 429s ('' for none)")
    p.add_argument("--retry-after-ms", default=None)
    p.add_argument("--ignore-n", action="store_true")
    p.add_argument("--reasoning", nargs="?", const=True, default=False,
                   help="where reasoning goes: reasoning_content (the default), reasoning, reasoning_details, think, think_open")
    p.add_argument("--words", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    faults = tuple(f for f in a.faults.split(",") if f)
    bad = set(faults) - set(ALL_FAULTS) - set(EXTRA_FAULTS)
    if bad:
        p.error(f"unknown faults: {sorted(bad)}")
    srv = FakeOpenAI(a.host, a.port, latency=a.latency, fault_rate=a.fault_rate, faults=faults,
                     retry_after=a.retry_after or None, retry_after_ms=a.retry_after_ms,
                     ignore_n=a.ignore_n, reasoning=a.reasoning, words=a.words, seed=a.seed)

    async def run() -> None:
        await srv.serve()
        print(f"READY {srv.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
