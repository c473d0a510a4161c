"""OpenAITeacher against the fake OpenAI-compatible server (127.0.0.1 only, no network)."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, defaultdict

import pytest

from support.fake_openai import FakeOpenAI, answer_text, messages_hash
from factory.config import ConfigError, teacher_config
from factory.parse import TRUNCATED_IN_REASONING, parse
from factory.records import IN_FLIGHT, Request, Response
from factory.store import ResponseWriter, Store
from factory.teachers import make_teacher
from factory.teachers.openai import (OpenAITeacher, StreamedCompletion, _request_id, resolve_api_key,
                                     response_from_body, response_from_choice, split_reasoning)

PARAMS = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "logprobs": 0}


@pytest.fixture
def server():
    servers = []

    def start(**settings) -> FakeOpenAI:
        srv = FakeOpenAI(**settings).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def teacher(srv: FakeOpenAI, **cfg) -> OpenAITeacher:
    backoff = cfg.pop("backoff_base_s", 0.01)
    opts = {k: cfg.pop(k) for k in ("limit_period_s", "max_pending") if k in cfg}
    base = dict(name="t", backend="openai", model="fake", base_url=srv.base_url, api_key_env="FACTORY_TEST_KEY",
                max_concurrency=16, timeout_s=5.0)
    return OpenAITeacher(teacher_config(**(base | cfg)), backoff_base_s=backoff, **opts)


def requests(n_prompts: int, k: int = 1, params: dict | None = None, prefix: str = "q", text=None):
    """k samples of each of n prompts, adjacent (as the build renders them)."""
    for i in range(n_prompts):
        content = text(i) if text else f"{prefix}{i}: what is {i} + {i}?"
        for j in range(k):
            yield Request(f"seed{i}", "t", "fake", "tpl", ({"role": "user", "content": content},),
                          dict(params or PARAMS), j)


def by_id(responses):
    out = {r.request_id: r for r in responses}
    assert len(out) == len(responses), "a request got more than one response"
    return out


def test_happy_path_n_samples_logprobs_reasoning_cost(server):
    srv = server(reasoning=True)
    t = teacher(srv, price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    params = PARAMS | {"logprobs": 2}
    reqs = list(requests(20, k=3, params=params))
    got = by_id(list(t.generate(iter(reqs))))
    assert set(got) == {r.request_id for r in reqs}
    # one call per prompt, n=3
    assert len(srv.records) == 20 and all(rec[2] == 3 and rec[3] for rec in srv.records)
    for r in reqs:
        resp = got[r.request_id]
        # attempts count calls: the one n=3 call counts on its first sample
        assert resp.ok and resp.attempts == (r.sample_index == 0) and resp.teacher == "t" and resp.model == "fake"
        assert resp.text == answer_text(r.messages[-1]["content"], r.sample_index)
        assert resp.reasoning == f"thinking about #{r.sample_index}"
        assert resp.finish_reason == "stop"
        # logprobs cover the answer; completion tokens include the reasoning's
        assert resp.reasoning_tokens == 3
        assert resp.logprobs and len(resp.logprobs) == resp.completion_tokens - 3
        first = resp.logprobs[0]
        assert set(first) == {"token", "logprob", "top"} and first["top"] == [["alt0", -1.0], ["alt1", -2.0]]
        assert resp.prompt_tokens == len(r.messages[-1]["content"]) // 4 + 1  # the prompt's length
        # the prompt is billed once per call: each of the 3 samples carries a third of it
        assert resp.cost == pytest.approx(resp.prompt_tokens / 3 * 1e-6 + resp.completion_tokens * 2e-6)
        assert resp.latency_s is not None and resp.latency_s >= 0


def test_request_ids_match_the_records():
    for r in itertools.islice(requests(5, k=3), 15):
        assert _request_id(r.prompt_id, r.sample_index) == r.request_id


def test_server_that_ignores_n_gets_the_rest_asked_again(server, caplog):
    srv = server(ignore_n=True)
    reqs = list(requests(10, k=3))
    with caplog.at_level(logging.WARNING):
        got = by_id(list(teacher(srv).generate(iter(reqs))))
    assert set(got) == {r.request_id for r in reqs} and all(r.ok for r in got.values())
    ns = defaultdict(list)
    for rec in srv.records:
        ns[rec[1]].append(rec[2])
    assert all(sorted(v, reverse=True) == [3, 2, 1] for v in ns.values())  # n=3, then the 2, then the 1 left
    # three calls per prompt (n=3, 2, 1), each counted once, on the first sample it asked for
    assert Counter(got[r.request_id].attempts for r in reqs) == {1: 30}
    assert sum("asked again" in m or "asking again" in m for m in caplog.messages) == 1  # warned once


def test_use_n_false_sends_one_call_per_sample(server):
    srv = server()
    reqs = list(requests(5, k=4))
    got = by_id(list(teacher(srv, use_n=False).generate(iter(reqs))))
    assert len(got) == 20 and len(srv.records) == 20 and all(rec[2] == 1 for rec in srv.records)


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_mixed_faults_every_request_ends_once_and_nothing_is_asked_twice(server):
    srv = server(fault_rate=0.3, retry_after="0", seed=7)  # 429, 500, 503, hang, bad_json, truncated
    single = list(requests(240, k=1, prefix="single"))
    grouped = list(requests(30, k=2, prefix="grouped"))
    reqs = single + grouped
    t0 = time.monotonic()
    got = by_id(list(teacher(srv, timeout_s=1.0, max_retries=8, max_concurrency=32).generate(iter(reqs))))
    assert time.monotonic() - t0 < 30
    assert set(got) == {r.request_id for r in reqs}
    faults = Counter(rec[4] for rec in srv.records)
    assert {"429", "500", "503", "hang", "bad_json", "truncated"} <= set(faults), faults
    # server side: per prompt, the successful calls answered exactly its samples, and the
    # (one) success was the last call for that prompt: nothing was asked again after it
    samples = Counter(messages_hash([{"role": "user", "content": r.messages[-1]["content"]}]) for r in reqs)
    calls = defaultdict(list)
    for rec in sorted(srv.records):
        calls[rec[1]].append(rec)
    failed = {messages_hash([{"role": "user", "content": r.messages[-1]["content"]}])
              for r in reqs if not got[r.request_id].ok}  # 9 faults in a row: rare, allowed
    assert len(failed) <= 2
    for h, k in samples.items():
        if h in failed:
            continue
        ok = [rec for rec in calls[h] if rec[3]]
        assert sum(rec[2] for rec in ok) == k, (h, [(round(r[0], 3), r[2], r[4]) for r in calls[h]])
        assert len(ok) == 1 and calls[h][-1] is ok[0]
    attempts = Counter()
    for r in reqs:
        resp = got[r.request_id]
        attempts[r.messages[-1]["content"]] += resp.attempts
        if resp.ok:
            assert resp.text == answer_text(r.messages[-1]["content"], r.sample_index)
        else:
            assert resp.error
    # a call counts once, however many samples it asked for; a prompt that failed made 9
    for r in reqs:
        assert attempts[r.messages[-1]["content"]] >= 1
        if not got[r.request_id].ok:
            assert attempts[r.messages[-1]["content"]] == 9
    # attempts count every call the server saw (a grouped call counts for each sample in it), and
    # the odd one that timed out before the server even read it (the machine may be loaded)
    assert sum(got[r.request_id].attempts for r in single) >= sum(len(calls[messages_hash(
        [{"role": "user", "content": r.messages[-1]["content"]}])]) for r in single)


@pytest.mark.parametrize("fault,reason", [("500", "http_500"), ("503", "http_503"), ("429", "http_429"),
                                          ("hang", "timeout"), ("bad_json", "bad_response: JSONDecodeError"),
                                          ("truncated", "connection: ")])
def test_errors_after_the_last_attempt_carry_reason_and_attempts(server, fault, reason):
    srv = server(fault_rate=1.0, faults=(fault,), retry_after="0")
    reqs = list(requests(3))
    got = list(teacher(srv, timeout_s=0.3 if fault == "hang" else 3.0, max_retries=2).generate(iter(reqs)))
    assert len(got) == 3
    for resp in got:
        assert not resp.ok and resp.error.startswith(reason) and resp.attempts == 3
        assert resp.text is None
    # every attempt the server saw counts (on a loaded machine a call can time out before
    # the server reads it: it counts as an attempt that never arrived)
    assert 0 < len(srv.records) <= 9


def test_retry_after_is_respected_and_pauses_every_request(server):
    srv = server(latency=0.1, retry_after="1")
    reqs = list(requests(1, text=lambda i: "first [[fail:429]]")) + list(requests(12, prefix="other"))
    got = by_id(list(teacher(srv, max_concurrency=2, backoff_base_s=0.0).generate(iter(reqs))))
    assert all(r.ok for r in got.values())
    h = messages_hash([{"role": "user", "content": "first [[fail:429]]"}])
    first = [rec for rec in srv.records if rec[1] == h]
    assert [rec[4] for rec in first] == ["429", "ok"]
    t429 = first[0][0]
    assert first[1][0] - t429 >= 1.0  # the retry waited for Retry-After
    # the whole limiter paused: besides the one call already in flight, nothing started meanwhile
    during = [rec for rec in srv.records if t429 < rec[0] < t429 + 0.95]
    assert len(during) <= 1, during


def test_retry_after_ms_header(server):
    srv = server(retry_after=None, retry_after_ms="300")
    got = list(teacher(srv, backoff_base_s=0.0).generate(requests(1, text=lambda i: "x [[fail:429,429]]")))
    assert got[0].ok and got[0].attempts == 3
    t = [rec[0] for rec in srv.records]
    assert t[1] - t[0] >= 0.3 and t[2] - t[1] >= 0.3


def test_ratelimit_remaining_zero_pauses_until_reset(server):
    srv = server(ratelimit_headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms"})
    got = list(teacher(srv, max_concurrency=1).generate(requests(3)))
    assert all(r.ok for r in got)
    t = [rec[0] for rec in srv.records]
    assert t[1] - t[0] >= 0.25 and t[2] - t[1] >= 0.25


def test_non_retryable_400_fails_fast(server):
    srv = server()
    reqs = list(requests(1, text=lambda i: "bad [[status:400]]")) + list(requests(5))
    t0 = time.monotonic()
    got = by_id(list(teacher(srv, max_retries=6, backoff_base_s=1.0).generate(iter(reqs))))
    assert time.monotonic() - t0 < 1.0
    bad = got[reqs[0].request_id]
    assert bad.error == "http_400: forced status 400 for this prompt" and bad.attempts == 1
    assert sum(1 for rec in srv.records if rec[4] == "status_400") == 1
    assert all(got[r.request_id].ok for r in reqs[1:])


@pytest.mark.parametrize("status", [401, 403, 404])
def test_other_client_errors_fail_fast(server, status):
    srv = server()
    got = list(teacher(srv).generate(requests(1, text=lambda i: f"x [[status:{status}]]")))
    assert got[0].error.startswith(f"http_{status}: ") and got[0].attempts == 1 and len(srv.records) == 1


def test_api_key_never_appears_in_responses_or_logs(server, monkeypatch, caplog):
    key = "sk-test-SECRET-0123456789abcdef"
    monkeypatch.setenv("FACTORY_TEST_KEY", key)
    srv = server(fault_rate=0.5, retry_after="0")
    reqs = list(requests(1, text=lambda i: "leak [[echo_auth]]")) + list(requests(20))
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="openai"):
        got = by_id(list(teacher(srv, timeout_s=0.3, max_retries=1).generate(iter(reqs))))
    assert "openai" in caplog.text  # the SDK's debug logs were on
    leak = got[reqs[0].request_id]
    assert leak.error.startswith("http_401: ") and "***" in leak.error  # the server echoed it; we scrubbed it
    assert all(key not in repr(r) for r in got.values())
    assert key not in caplog.text


def test_api_key_resolution(monkeypatch):
    monkeypatch.delenv("FACTORY_TEST_NO_KEY", raising=False)
    remote = teacher_config(name="api", backend="openai", model="m", base_url="https://api.example.com/v1",
                            api_key_env="FACTORY_TEST_NO_KEY")
    with pytest.raises(ConfigError, match="FACTORY_TEST_NO_KEY is not set") as e:
        list(OpenAITeacher(remote).generate(requests(1)))
    assert "\n" not in str(e.value)
    local = remote.model_copy(update={"base_url": "http://localhost:8000/v1"})
    assert resolve_api_key(local) == "EMPTY"
    monkeypatch.setenv("FACTORY_TEST_NO_KEY", "sk-x")
    assert resolve_api_key(remote) == "sk-x"


def test_input_is_consumed_lazily_and_generation_can_stop_early(server):
    srv = server()
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield Request(f"s{i}", "t", "fake", "tpl", ({"role": "user", "content": f"p{i}"},), PARAMS, 0)

    gen = teacher(srv, max_concurrency=8, max_pending=64).generate(endless())
    got = list(itertools.islice(gen, 200))
    assert len(got) == 200
    gen.close()  # stops the loop thread
    assert pulled <= 200 + 64 + 8


def test_errors_in_the_input_reach_the_caller(server):
    srv = server()

    def broken():
        yield from requests(5)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        list(teacher(srv).generate(broken()))


def test_make_teacher_builds_it(server):
    srv = server()
    cfg = teacher_config(name="t", backend="openai", model="fake", base_url=srv.base_url)
    t = make_teacher(cfg)
    assert isinstance(t, OpenAITeacher) and t.name == "t" and t.model == "fake"
    assert [r.ok for r in t.generate(requests(2))] == [True, True]
    t.close()


def test_a_refused_connection_is_not_reported_as_a_timeout():
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = teacher_config(name="t", backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m",
                         api_key_env="FACTORY_TEST_KEY", max_retries=1)
    t = OpenAITeacher(cfg, backoff_base_s=0.0)
    try:
        got = list(t.generate(iter(requests(2))))
    finally:
        t.close()
    assert [r.error for r in got] == ["connection: refused"] * 2 and all(r.attempts == 2 for r in got)


# -- reasoning teachers: every shape servers send, streamed or not ------------------------------

SHAPES = ("reasoning_content", "reasoning", "reasoning_details", "think", "think_open")


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_reasoning_in_every_shape_lands_in_the_same_columns(server, tmp_path, shape, stream):
    srv = server(reasoning=shape)
    reqs = list(requests(4, k=2))
    got = by_id(list(teacher(srv, stream=stream, price_in_per_mtok=1.0, price_out_per_mtok=3.0).generate(iter(reqs))))
    tagged = shape.startswith("think")  # tags stay in the text as sent; parse splits them
    for r in reqs:
        resp = got[r.request_id]
        answer = answer_text(r.messages[-1]["content"], r.sample_index)
        assert resp.ok and resp.reasoning_tokens == 3
        assert resp.text.endswith(answer) and (resp.text == answer) != tagged
        assert resp.reasoning == (None if tagged else f"thinking about #{r.sample_index}")
        p = parse(resp.text, resp.reasoning, "math", resp.finish_reason)
        assert p.reasoning == f"thinking about #{r.sample_index}" and p.think_closed, p
    with Store(tmp_path / "s.duckdb") as store:
        store.add_responses(got.values())
        rows = store.sql("SELECT sum(reasoning_tokens), sum(completion_tokens), sum(prompt_tokens), sum(cost), "
                         "count(*) FILTER (reasoning LIKE 'thinking about #_'), sum(attempts) FROM responses")[0]
    think, out, tin, cost, with_reasoning, attempts = rows
    assert think == 3 * len(reqs) and with_reasoning == (0 if tagged else len(reqs))
    assert attempts == 4  # one call per prompt
    assert out == sum(len(answer_text(r.messages[-1]["content"], r.sample_index).split()) + 3 for r in reqs)
    assert cost == pytest.approx(tin / 2 * 1e-6 + out * 3e-6)  # each sample carries half its call's prompt


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "think_open"])  # cut off before its </think>, a
def test_a_trace_cut_off_inside_its_reasoning_is_reported_as_such(server, shape, stream):  # think_open trace has no tag at all
    srv = server(reasoning=shape, reasoning_words=6)
    got = list(teacher(srv, stream=stream).generate(requests(2, params=PARAMS | {"max_tokens": 4})))
    for resp in got:
        assert resp.ok and resp.finish_reason == "length"
        p = parse(resp.text, resp.reasoning, "math", resp.finish_reason)
        assert p.error == TRUNCATED_IN_REASONING and p.answer is None
        assert p.reasoning.startswith("thinking about #0")
    # cut off after the reasoning closed: an ordinary truncation, not this one
    got = list(teacher(srv, stream=stream).generate(requests(1, params=PARAMS | {"max_tokens": 8})))
    assert parse(got[0].text, got[0].reasoning, "math", got[0].finish_reason).error != TRUNCATED_IN_REASONING


def test_an_unclosed_think_in_raw_text_is_truncated_in_reasoning_only_when_cut_off():
    assert parse("<think>let me see, 2+2", None, "math", "length").error == TRUNCATED_IN_REASONING
    assert parse("<think>let me see, 2+2", None, "math", "stop").error == "unclosed_think"
    assert parse("", "let me see", "math", "length").error == TRUNCATED_IN_REASONING
    assert parse("", "let me see", "math", "stop").error != TRUNCATED_IN_REASONING


@pytest.mark.parametrize("message,answer,reasoning", [
    ({"content": "<think>a</think>\n\nB"}, "B", "a"),
    ({"content": "  \n<think>\na\n</think>B"}, "B", "a"),  # leading whitespace, newlines in the block
    ({"content": "a</think>B"}, "B", "a"),  # the template opened <think> in the prompt
    ({"content": "<think>a"}, "", "a"),  # never closed: no answer
    ({"content": "<think></think>B"}, "B", None),  # an empty block (thinking off)
    ({"content": "use the <think> tag like <think>x</think> here"}, "use the <think> tag like <think>x</think> here", None),
    ({"content": "B", "reasoning_content": "a"}, "B", "a"),
    ({"content": "B", "reasoning": "a"}, "B", "a"),
    ({"content": "B", "reasoning_content": "", "reasoning": "a"}, "B", "a"),
    ({"content": "B", "reasoning_details": [{"type": "reasoning.text", "text": "a"}, {"type": "reasoning.encrypted"}]},
     "B", "a"),
    ({"content": "<think>b</think>C", "reasoning_content": "a"}, "C", "a\nb"),
    ({"content": None, "reasoning_content": "a"}, None, "a"),
    ({"content": [{"type": "text", "text": "<think>a</think>"}, {"type": "text", "text": "B"}]}, "B", "a"),
    ({"content": "B", "reasoning": {"effort": "high"}}, "B", None),  # not text: not reasoning
])
def test_split_reasoning_shapes(message, answer, reasoning):
    assert split_reasoning(message, think_tags=True) == (answer, reasoning)
    if isinstance(message["content"], str):  # what the teacher stores: the content as sent
        assert split_reasoning(message)[0] == message["content"]


def test_streamed_events_put_together_match_a_plain_body():
    acc = StreamedCompletion()
    lines = [b": keep-alive", b"", b"event: message",
             b'data: {"choices":[{"index":1,"delta":{"role":"assistant","content":""}}]}\r',
             b'data: {"choices":[{"index":0,"delta":{"reasoning":"th"}}]}',
             b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"ink"}}]}',
             b'data:{"choices":[{"index":0,"delta":{"content":"4"},"logprobs":{"content":[{"token":"4","logprob":-0.1}]}}]}',
             b'data: {"choices":[{"index":1,"delta":{"content":"<think>x</think>5"},"finish_reason":"length"}]}',
             b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
             b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":9,'
             b'"completion_tokens_details":{"reasoning_tokens":4}}}',
             b"data: [DONE]"]
    for line in lines:
        acc.add_line(line)
    assert acc.finished
    body = acc.body()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    first = response_from_choice(body["choices"][0], request_id="r", teacher="t", model="m", top_k=1)
    assert (first.text, first.reasoning, first.finish_reason) == ("4", "think", "stop")
    assert first.logprobs == [{"token": "4", "logprob": -0.1, "top": []}]
    second = response_from_choice(body["choices"][1], request_id="r", teacher="t", model="m")
    assert (second.text, second.reasoning, second.finish_reason) == ("<think>x</think>5", None, "length")
    one = response_from_body({"choices": [body["choices"][0]], "usage": body["usage"]}, request_id="r", teacher="t",
                             model="m", price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    assert one.reasoning_tokens == 4 and one.completion_tokens == 9 and one.cost == pytest.approx(7e-6 + 18e-6)
    with pytest.raises(ValueError):
        acc.add_line(b"data: {not json")
    with pytest.raises(ValueError):
        response_from_body({"choices": []}, request_id="r", teacher="t", model="m")
    unfinished = StreamedCompletion()
    unfinished.add_line(b'data: {"choices":[{"index":0,"delta":{"content":"4"}}]}')
    assert not unfinished.finished


def test_reasoning_effort_and_extra_body_reach_the_server(server):
    srv = server()
    srv.keep_bodies = True
    list(teacher(srv, reasoning_effort="high", extra_body={"chat_template_kwargs": {"enable_thinking": True},
                                                           "thinking": {"budget_tokens": 512}}).generate(requests(1)))
    body = srv.bodies[0]
    assert body["reasoning_effort"] == "high" and body["thinking"] == {"budget_tokens": 512}
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    srv.bodies.clear()
    list(teacher(srv, stream=False).generate(requests(1, prefix="plain")))
    assert "reasoning_effort" not in srv.bodies[0] and "stream" not in srv.bodies[0]


def test_new_teacher_keys_at_their_defaults_keep_the_config_hash():
    from factory.config import load_config

    base = {"sources": [{"name": "s", "path": "x.jsonl"}],
            "teachers": [{"name": "gpt", "backend": "openai", "model": "m"}]}
    h = load_config(data=base).config_hash()
    same = {**base, "teachers": [base["teachers"][0] | {"timeout_s": 1800, "idle_timeout_s": 5, "stream": False}]}
    assert load_config(data=same).config_hash() == h  # how long a call may take shapes no corpus
    effort = {**base, "teachers": [base["teachers"][0] | {"reasoning_effort": "high"}]}
    assert load_config(data=effort).config_hash() != h


# -- long generations without long hangs --------------------------------------------------------

@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_a_slow_but_steady_stream_is_not_retried(server):
    srv = server(stream_delay=0.2, replies={"fake": ["a b c d e f g h"]})  # ~12 events, 2.4 s in all
    t0 = time.monotonic()
    got = list(teacher(srv, idle_timeout_s=0.6, timeout_s=30).generate(requests(1)))
    assert got[0].ok and got[0].text == "a b c d e f g h" and got[0].attempts == 1
    assert len(srv.records) == 1 and time.monotonic() - t0 > 2.0 > 0.6  # longer than idle_timeout_s: still one call


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_keepalive_comments_count_as_bytes(server):
    srv = server(stream_delay=0.6, keepalive=True, replies={"fake": ["ok"]})  # a comment every 0.3 s
    got = list(teacher(srv, idle_timeout_s=0.45, timeout_s=30).generate(requests(1)))
    assert got[0].ok and got[0].text == "ok" and len(srv.records) == 1


@pytest.mark.parametrize("fault", ["hang", "stall"])  # no headers at all; a stream gone silent
def test_a_silent_connection_is_retried_within_about_idle_timeout(server, fault):
    srv = server()
    t0 = time.monotonic()
    got = list(teacher(srv, idle_timeout_s=0.5, timeout_s=600, backoff_base_s=0.0).generate(
        requests(1, text=lambda i: f"x [[fail:{fault}]]")))
    wall = time.monotonic() - t0
    assert got[0].ok and got[0].attempts == 2 and [rec[4] for rec in srv.records] == [fault, "ok"]
    assert 0.5 <= wall < 2.0, wall
    # out of attempts: the reason says what happened
    got = list(teacher(srv, idle_timeout_s=0.3, max_retries=0).generate(
        requests(1, text=lambda i: f"y [[fail:{fault}]]")))
    assert got[0].error == "timeout: no bytes for 0.3 s"


def test_a_server_that_ignores_stream_still_answers(server):
    srv = server(ignore_stream=True, reasoning="reasoning")
    got = list(teacher(srv).generate(requests(2)))
    assert all(r.ok and r.reasoning == "thinking about #0" for r in got)


# -- attempts: per call, and kept across a kill ---------------------------------------------------

def test_attempts_are_per_call_and_marks_keep_them_across_a_stopped_run(server, tmp_path):
    srv = server(latency=0.05)
    with Store(tmp_path / "s.duckdb") as store:
        writer = ResponseWriter(store)
        t = teacher(srv, idle_timeout_s=30, backoff_base_s=0.0)
        t.on_attempt = writer.put
        hang = list(requests(1, k=2, text=lambda i: "slow [[fail:500,hang]]"))
        fine = list(requests(6, k=3))
        gen = t.generate(iter(hang + fine))
        seen = set()
        for r in gen:  # every prompt but the hanging one answers; then the run is "killed"
            writer.put(r)
            seen.add(r.request_id)
            if len(seen) == len(fine):
                break
        gen.close()
        writer.close()
        rows = dict(store.sql("SELECT request_id, attempts FROM responses WHERE error = ?", [IN_FLIGHT]))
        assert rows == {hang[0].request_id: 2}  # the 500 and the call cut off: two calls, counted on the first sample
        # n=3 per call: stored attempts add up to the calls the server saw for them
        assert store.scalar("SELECT sum(attempts) FROM responses WHERE error IS NULL") == 6
        # the next run answers it; the attempts add up across runs
        writer = ResponseWriter(store)
        t.on_attempt = writer.put
        got = list(t.generate(iter(hang)))
        for r in got:
            writer.put(r)
        writer.close()
        assert all(r.ok for r in got)
        assert store.sql("SELECT sum(attempts), count(*) FILTER (error IS NULL) FROM responses WHERE request_id IN (?, ?)",
                         [hang[0].request_id, hang[1].request_id])[0] == (3, 2)


def test_a_mark_and_its_answer_in_one_group_make_one_row(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        mark1, mark2 = Response("r1", "t", "m", error=IN_FLIGHT), Response("r2", "t", "m", error=IN_FLIGHT)
        store.add_responses([mark1, mark1, Response("r1", "t", "m", text="x", attempts=2, attempts_noted=2),
                             mark2, Response("r2", "t", "m", error="http_500", attempts=1, attempts_noted=1)])
        assert sorted(store.sql("SELECT request_id, error, attempts FROM responses")) == [
            ("r1", None, 2), ("r2", "http_500", 1)]
        store.add_responses([mark2])  # the next run's call: stored before it is made
        assert store.sql("SELECT error, attempts FROM responses WHERE request_id = 'r2'") == [(IN_FLIGHT, 2)]
        store.add_responses([Response("r2", "t", "m", error="timeout", attempts=1, attempts_noted=1)])
        assert store.sql("SELECT error, attempts FROM responses WHERE request_id = 'r2'") == [("timeout", 2)]
        store.add_responses([Response("r2", "t", "m", error="timeout", attempts=1)])  # no marks (judge, tests)
        store.add_responses([mark1])  # a success is final
        assert sorted(store.sql("SELECT request_id, error, attempts FROM responses")) == [
            ("r1", None, 2), ("r2", "timeout", 3)]


def test_a_stream_split_anywhere_reads_the_same():
    import random

    events = [b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"a\\u00e9"}}]}\r\n\r\n',
              b": keep-alive\n\n",
              b'data:{"choices":[{"index":0,"delta":{"content":"x y"}}]}\n\n',
              b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
              b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n', b"data: [DONE]"]
    whole = b"".join(events)
    rng = random.Random(0)
    for trial in range(50):
        cuts = sorted(rng.sample(range(1, len(whole)), rng.randint(0, 12)))
        acc = StreamedCompletion()
        for a, b in zip([0] + cuts, cuts + [len(whole)]):
            acc.feed(whole[a:b])
        acc.feed(b"\n", end=True)
        assert acc.finished and acc.done
        assert acc.body()["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "x y",
                                                                  "reasoning_content": "aé"},
                                          "finish_reason": "stop", "logprobs": None}]
        assert acc.body()["usage"] == {"prompt_tokens": 1, "completion_tokens": 2}
    bad = StreamedCompletion()
    with pytest.raises(ValueError):
        bad.feed(b'data: {"choices":[]}\n\ndata: {not json\n\n')
