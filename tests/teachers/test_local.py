"""The local (transformers, in-process) teacher, run for real on the embedded SmolLM2 model."""

from __future__ import annotations

import itertools
import math

import pytest

from factory.config import teacher_config
from factory.records import Request
from factory.teachers import local as local_mod
from factory.teachers import make_teacher
from factory.teachers.local import LocalTeacher, ThreadTuner

QUESTIONS = [
    "What is 2+3?",
    "Tom has 3 apples and buys 5 more. How many apples does he have now? Answer briefly.",
    "Name one colour.",
]


def make_requests(questions, samples=1, **params) -> list[Request]:
    p = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 8, "logprobs": 0} | params
    return [
        Request(
            seed_id=f"s{i}",
            teacher="local",
            model="embedded",
            template="t",
            messages=({"role": "user", "content": q},),
            params=p,
            sample_index=k,
        )
        for i, q in enumerate(questions)
        for k in range(samples)
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Pin one torch thread: these check results, and on busy cores two OpenMP threads can be
    many times slower than one (the teacher's ThreadTuner copes with that; a test needs no
    timing trials)."""
    import os

    import torch

    saved_env, saved = os.environ.get("FACTORY_THREADS"), torch.get_num_threads()
    os.environ["FACTORY_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
    if saved_env is None:
        os.environ.pop("FACTORY_THREADS", None)
    else:
        os.environ["FACTORY_THREADS"] = saved_env


@pytest.fixture(scope="module")
def teacher(embedded_model):
    t = make_teacher(teacher_config(name="local", backend="local", batch_size=4))
    assert isinstance(t, LocalTeacher)
    yield t
    t.close()


def by_id(responses):
    return {r.request_id: r for r in responses}


@pytest.mark.slow
def test_samples_logprobs_and_one_response_per_request(teacher):
    reqs = make_requests(QUESTIONS[:2], samples=3, max_tokens=10, logprobs=3)
    out = list(teacher.generate(reqs))
    assert sorted(r.request_id for r in out) == sorted(r.request_id for r in reqs)
    for r in out:
        assert r.ok, r.error
        assert r.text and r.text.strip()
        assert r.teacher == "local" and r.model == "embedded"
        assert r.finish_reason in ("stop", "length")
        assert 0 < r.completion_tokens <= 10 and r.prompt_tokens > 10
        assert r.latency_s > 0
        # one entry per text token (a stop token is counted but has no entry)
        assert len(r.logprobs) == r.completion_tokens - (r.finish_reason == "stop")
        assert "".join(e["token"] for e in r.logprobs).strip() == r.text.strip()
        for e in r.logprobs:
            top = e["top"]
            assert len(top) == 3
            assert [lp for _, lp, _ in top] == sorted((lp for _, lp, _ in top), reverse=True)
            assert all(lp <= 0 for _, lp, _ in top) and e["logprob"] <= 0
            assert sum(math.exp(lp) for _, lp, _ in top) <= 1 + 1e-4
            # token ids are stored next to the strings, and decode to them
            assert teacher._text(e["id"]) == e["token"] and all(teacher._text(i) == t for t, _, i in top)
            by_id = {i: lp for _, lp, i in top}
            if e["id"] in by_id:  # the chosen token's logprob is the one in the top-k
                assert e["logprob"] == pytest.approx(by_id[e["id"]], abs=1e-5)
            else:  # a sampled token outside the top-k is less likely than all of it
                assert e["logprob"] <= top[-1][1] + 1e-6


@pytest.mark.slow
def test_greedy_matches_transformers_generate_token_for_token(teacher, embedded_model, monkeypatch):
    """Continuous batching gives what model.generate gives for each prompt alone; logprobs are
    the raw logits'. Batch 2, three prompts of different lengths (greedy samples share a row):
    the third joins when the short first answer ends, merged into the running batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setattr(teacher, "batch_size", 2)
    reqs = make_requests(QUESTIONS, samples=2, temperature=0, max_tokens=12, logprobs=2)
    got = by_id(teacher.generate(reqs))
    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model).eval()
    for q, (a, b) in zip(QUESTIONS, zip(reqs[::2], reqs[1::2])):
        ra, rb = got[a.request_id], got[b.request_id]
        assert ra.text == rb.text and ra.logprobs == rb.logprobs  # greedy samples are identical
        ids = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            ref = model.generate(**ids, max_new_tokens=12, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        new = ref.sequences[0, ids["input_ids"].shape[1]:]
        assert ra.text == tok.decode(new, skip_special_tokens=True)
        assert ra.completion_tokens == len(new)
        for entry, token, logits in zip(ra.logprobs, new.tolist(), ref.logits):
            lp = torch.log_softmax(logits[0].float(), -1)
            assert entry["logprob"] == pytest.approx(lp[token].item(), abs=2e-3)
            assert entry["top"][0][1] == pytest.approx(entry["logprob"], abs=1e-6)  # greedy = top-1
            assert entry["id"] == entry["top"][0][2] == token


@pytest.mark.slow
def test_tiny_max_tokens_ends_with_length(teacher):
    out = list(teacher.generate(make_requests(QUESTIONS, samples=2, max_tokens=2)))
    assert len(out) == 6
    assert all(r.ok and r.finish_reason == "length" and r.completion_tokens == 2 for r in out)


@pytest.mark.slow
def test_a_short_answer_ends_with_stop(teacher):
    (r,) = teacher.generate(make_requests(QUESTIONS[:1], temperature=0, max_tokens=40))
    assert r.finish_reason == "stop" and "5" in r.text


@pytest.mark.slow
def test_the_request_stream_is_consumed_lazily(teacher):
    def endless():
        for i in itertools.count():
            yield from make_requests([f"Say the number {i}."], max_tokens=1)

    stream = teacher.generate(endless())
    first = next(stream)
    assert first.ok
    stream.close()


@pytest.mark.slow
def test_errors_become_error_responses_and_the_run_goes_on(teacher, monkeypatch):
    bad = make_requests(["Say hi."], max_tokens=0)  # cannot start: answered with an error
    reqs = make_requests(QUESTIONS, max_tokens=3)
    calls = itertools.count()
    real = local_mod._Engine._forward

    def flaky(self, *a, **kw):
        if next(calls) == 0:  # the first batch's prefill fails
            raise RuntimeError("boom")
        return real(self, *a, **kw)

    monkeypatch.setattr(local_mod._Engine, "_forward", flaky)
    monkeypatch.setattr(teacher, "batch_size", 2)
    out = by_id(teacher.generate(bad + reqs))
    assert len(out) == 4
    assert out[bad[0].request_id].error.startswith("bad_request:")
    failed = [r for r in out.values() if r.error and "boom" in r.error]
    ok = [r for r in out.values() if r.ok]
    assert len(failed) == 2 and len(ok) == 1  # the first batch (2 rows) failed, the rest went on


@pytest.mark.slow
def test_the_generic_attention_path_gives_the_same_text(teacher, monkeypatch):
    """Architectures outside PLAIN_ATTENTION use transformers' own sdpa and masks."""
    monkeypatch.setattr(local_mod, "PLAIN_ATTENTION", set())
    generic = LocalTeacher(teacher_config(name="local", batch_size=2))
    reqs = make_requests(QUESTIONS, temperature=0, max_tokens=6)
    a = by_id(generic.generate(reqs))
    assert not generic.plain and teacher.plain
    b = by_id(teacher.generate(reqs))
    assert {k: r.text for k, r in a.items()} == {k: r.text for k, r in b.items()}


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_a_model_folder_that_is_not_there_is_one_line_before_any_request(tmp_path):
    from factory.errors import FactoryError

    t = LocalTeacher(teacher_config(name="local", model=str(tmp_path / "missing")))
    with pytest.raises(FactoryError, match="model folder .*missing does not exist"):
        list(t.generate(make_requests(QUESTIONS[:2])))



def test_thread_tuner_keeps_the_faster_count_and_rechecks():
    tuner = ThreadTuner(cores=4, period=10, trials=2)
    used = []
    for times in ({4: 1.0, 1: 0.3}, {4: 0.3, 1: 1.0}):  # the cores get busy, then free again
        for _ in range(10):
            n = tuner.threads()
            used.append(n)
            tuner.record(n, times[n])
        assert tuner.best == min(times, key=times.get)
    assert used[:4] == [4, 4, 1, 1] and set(used[4:10]) == {1} and set(used[14:]) == {4}


@pytest.mark.slow
def test_a_live_feed_with_gaps_gives_the_texts_of_one_stream(teacher):
    """A Ray replica feeds shard after shard with None between them ("nothing for now"): the running
    batch keeps decoding and later shards join it; greedy texts are those of one plain stream."""
    import queue
    import threading

    requests = make_requests(QUESTIONS, temperature=0, max_tokens=12)
    plain = {r.request_id: r.text for r in teacher.generate(requests)}
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    gaps = 0

    def feed():
        nonlocal gaps
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                gaps += 1
                yield None
                continue
            if item == "end":
                return
            yield from item

    half = len(requests) // 2
    inbox.put(requests[:half])
    later = threading.Timer(0.3, lambda: (inbox.put(requests[half:]), inbox.put("end")))
    later.start()
    fed = {r.request_id: r.text for r in teacher.generate(feed())}
    later.join()
    assert gaps > 0 and fed == plain
