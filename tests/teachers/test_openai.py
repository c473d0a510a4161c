"""OpenAITeacher against the fake OpenAI-compatible server (127.0.0.1 only, no network)."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, defaultdict

import pytest

from support.fake_openai import FakeOpenAI, answer_text, messages_hash
from factory.config import ConfigError, teacher_config
from factory.records import Request
from factory.teachers import make_teacher
from factory.teachers.openai import OpenAITeacher, _request_id, resolve_api_key

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
        assert resp.ok and resp.attempts == 1 and resp.teacher == "t" and resp.model == "fake"
        assert resp.text == answer_text(r.messages[-1]["content"], r.sample_index)
        assert resp.reasoning == f"thinking about #{r.sample_index}"
        assert resp.finish_reason == "stop"
        assert resp.logprobs and len(resp.logprobs) == resp.completion_tokens
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
    assert Counter(got[r.request_id].attempts for r in reqs) == {1: 10, 2: 10, 3: 10}
    assert sum("asked again" in m or "asking again" in m for m in caplog.messages) == 1  # warned once


def test_use_n_false_sends_one_call_per_sample(server):
    srv = server()
    reqs = list(requests(5, k=4))
    got = by_id(list(teacher(srv, use_n=False).generate(iter(reqs))))
    assert len(got) == 20 and len(srv.records) == 20 and all(rec[2] == 1 for rec in srv.records)


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
    for r in reqs:
        resp = got[r.request_id]
        assert resp.attempts >= 1
        if resp.ok:
            assert resp.text == answer_text(r.messages[-1]["content"], r.sample_index)
        else:
            assert resp.error and resp.attempts == 9
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
