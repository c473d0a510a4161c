"""The `vllm` teacher on a Ray cluster through Ray Data's LLM support (`ray.data.llm`).

`build.executor: ray` with a `vllm` teacher and `build.ray.vllm_data: true` (the default) runs the
pending requests through a vLLM engine processor: `build.ray.replicas` engines (Ray Data's
actor pool, autoscaling from 1 up to that many), each on tensor_parallel_size x
pipeline_parallel_size devices of the teacher's `engine_args`, fed batches of `build.ray.shard_size`
rows. What stays as the in-process `vllm` teacher does it (teachers/vllm.py, used here as the
"encoder"): the chat template and tokenisation (so prompt tokens are the same, and a prompt that
cannot fit is answered `bad_request: prompt_too_long` instead of failing its batch), the sampling
parameters and the engine defaults (max_model_len from the first wave, float32 and eager on CPU).

The driver stays the single writer: it builds a Dataset of rows (request ids, token ids, sampling
parameters), and the processor's output rows stream back to it (`iter_rows`), each turned into
Responses with the fields the `vllm` teacher stores; the build stores them as they arrive. A killed
driver loses only rows in flight; a row Ray Data ran twice is yielded once (ids seen are skipped).

Differences from the in-process teacher, forced by the processor (one completion per row):
- samples of a prompt are one row each (n=1; the prompt's KV cache is shared through prefix
  caching, not n>1), so with a `seed` sample i gets seed + i; greedy samples are one row whose
  text answers them all (as locally);
- finish_reason is not in the processor's output: "length" when the answer used all its
  max_tokens, else "stop" (the factory sets no stop strings);
- logprobs come as the processor gives them (top-k per position, the sampled token included).
Requests are sent in waves of `WAVE` (one Dataset each: the engines start once per wave; the
driver holds one wave of rows, never the whole stream).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

from factory.config import RayConfig, VLLMTeacherConfig
from factory.errors import FactoryError
from factory.records import Request, Response
from factory.teachers.vllm import VLLMTeacher, _logprob_entry, chunks

log = logging.getLogger(__name__)

WAVE = 100_000  # requests per Ray Data run (engine start-up is paid once per wave)
ERROR_COLUMN = "__inference_error__"  # ray.data.llm's column for a row whose inference failed
KEEP = ("request_ids", "max_tokens", "top_logprobs", "generated_text", "generated_tokens", "num_input_tokens",
        "num_generated_tokens", "logprobs", "time_taken_llm")  # what comes back to the driver


# -- pure functions: config and rows (tested without Ray Data running) --------------------------------


def processor_kwargs(tcfg: VLLMTeacherConfig, rcfg: RayConfig, model_path: str, engine_kwargs: dict[str, Any],
                     on_cpu: bool) -> dict[str, Any]:
    """Keyword arguments of ray.data.llm.vLLMEngineProcessorConfig for this teacher.

    One engine per replica (`concurrency` = replicas), tensor/pipeline parallel from engine_args
    (Ray Data reads them from engine_kwargs and places tp*pp workers per engine). The chat template,
    tokenize and detokenize stages are off: rows carry token ids made as the vllm teacher makes them,
    and the engine's own text is kept. On CPU each engine is placed on `cpus_per_replica` CPUs per
    worker instead of Ray Data's default of one GPU each."""
    kwargs = {k: v for k, v in engine_kwargs.items() if k != "model"}  # the model is model_source
    tp = int(kwargs.get("tensor_parallel_size", 1))
    pp = int(kwargs.get("pipeline_parallel_size", 1))
    config: dict[str, Any] = {
        "model_source": model_path,
        "engine_kwargs": kwargs,
        "concurrency": rcfg.replicas,
        "batch_size": rcfg.shard_size,
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,
        "should_continue_on_error": True,  # a failing row is an error Response, not a failed build
        "log_engine_metrics": False,  # needs a metrics port on the cluster; the build shows its own progress
    }
    if on_cpu:
        config["placement_group_config"] = {"bundles": [{"CPU": rcfg.cpus_per_replica}] * (tp * pp)}
    return config


def request_rows(groups: list[tuple[list[Request], list[int], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Processor rows of prompt groups (requests, prompt token ids, the vllm teacher's sampling dict).

    Greedy: one row for the whole group (every sample is the same text). Sampled: one row per
    request with n=1, and seed + sample index when a seed is set (so samples differ)."""
    rows = []
    for group, ids, sp in groups:
        base = {"temperature": sp["temperature"], "top_p": sp["top_p"], "max_tokens": sp["max_tokens"],
                "logprobs": sp.get("logprobs"), "n": 1, "seed": sp.get("seed")}
        if sp["temperature"] <= 0:
            rows.append({"request_ids": [r.request_id for r in group], "tokenized_prompt": list(ids),
                         "sampling_params": base, "max_tokens": sp["max_tokens"], "top_logprobs": sp.get("logprobs") or 0})
            continue
        for i, r in enumerate(group):
            seed = None if base["seed"] is None else base["seed"] + i
            rows.append({"request_ids": [r.request_id], "tokenized_prompt": list(ids),
                         "sampling_params": base | {"seed": seed}, "max_tokens": sp["max_tokens"],
                         "top_logprobs": sp.get("logprobs") or 0})
    return rows


def keep_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's postprocess: only what the driver stores comes back (not the prompt's ids)."""
    return {k: row.get(k) for k in KEEP}


def responses_from_row(row: dict[str, Any], teacher: str, model: str, token_text=str) -> list[Response]:
    """One output row of the processor as the Responses of its requests (fields as the vllm teacher's)."""
    ids = [str(i) for i in _as_list(row.get("request_ids"))]
    error = row.get(ERROR_COLUMN) or ""
    latency = row.get("time_taken_llm")
    latency = float(latency) if latency is not None and latency >= 0 else None
    if error:
        reason = f"engine_error: {error}"[:300]
        return [Response(request_id=i, teacher=teacher, model=model, error=reason, latency_s=latency) for i in ids]
    tokens = [int(t) for t in _as_list(row.get("generated_tokens"))]
    completion = int(row.get("num_generated_tokens") or len(tokens))
    max_tokens = int(row.get("max_tokens") or 0)
    finish = "length" if max_tokens and completion >= max_tokens else "stop"
    lps = None
    logprobs_k = int(row.get("top_logprobs") or 0)
    raw = row.get("logprobs")
    if logprobs_k > 0 and raw is not None:
        entries = [_logprob_dict(e) for e in _as_list(raw)]
        if finish == "stop" and len(entries) == len(tokens) and tokens:
            entries = entries[:-1]  # the end-of-sequence token is not part of the text (as the vllm teacher)
        lps = [_logprob_entry(tid, e, logprobs_k, token_text) for tid, e in zip(tokens, entries)]
    return [Response(request_id=i, teacher=teacher, model=model, text=row.get("generated_text") or "",
                     finish_reason=finish, prompt_tokens=int(row.get("num_input_tokens") or 0),
                     completion_tokens=completion, logprobs=lps, latency_s=latency) for i in ids]


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _logprob_dict(entry: Any) -> dict[int, Any]:
    """ray.data.llm's {token_id: {logprob, rank, decoded_token}} (keys may come back as text or as
    key/value pairs through Arrow) -> {id: object with .logprob .rank .decoded_token}."""
    items = entry.items() if isinstance(entry, dict) else entry
    out = {}
    for key, value in items:
        if value is None:
            continue
        out[int(key)] = SimpleNamespace(logprob=value.get("logprob"), rank=value.get("rank"),
                                        decoded_token=value.get("decoded_token"))
    return out


# -- the teacher ----------------------------------------------------------------------------------------


class RayDataVLLMTeacher:
    """A `vllm` teacher whose engines are ray.data.llm replicas; same interface as any teacher."""

    def __init__(self, tcfg: VLLMTeacherConfig, rcfg: RayConfig, wave: int = WAVE):
        self.cfg, self.rcfg, self.wave = tcfg, rcfg, wave
        self.name, self.model = tcfg.name, tcfg.model
        self.encoder = VLLMTeacher(tcfg)  # tokenizer, sampling params and engine defaults, as locally
        self._processor = None

    def _on_cpu(self, ray) -> bool:
        if str(self.cfg.engine_args.get("device", "")).lower() == "cpu":
            return True
        return not ray.cluster_resources().get("GPU")

    def _build(self, encoded: list[tuple[list[Request], list[int]]]) -> None:
        from factory.distributed import RayUnavailable, connect

        ray = connect(self.rcfg)
        try:
            from ray.data.llm import build_processor, vLLMEngineProcessorConfig
        except ImportError as e:
            raise RayUnavailable(f"teacher '{self.name}': build.ray.vllm_data needs ray.data.llm ({e}): pip install "
                                 "'ray[data]' beside vllm, or set build.ray.vllm_data: false (one vllm teacher per "
                                 "Ray actor)") from None
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False  # the build shows its own progress
        longest = max((len(ids) for _, ids in encoded), default=0)
        max_tokens = max((int(g[0].params.get("max_tokens", 512)) for g, _ in encoded), default=512)
        on_cpu = self._on_cpu(ray)
        engine = self.encoder.engine_kwargs(longest, max_tokens, on_cpu=on_cpu)
        self.encoder.max_model_len = int(engine["max_model_len"])  # prompts are checked against it, as locally
        kwargs = processor_kwargs(self.cfg, self.rcfg, self.encoder._path, engine, on_cpu)
        log.info("ray.data.llm vLLM processor: %s", kwargs)
        self._processor = build_processor(vLLMEngineProcessorConfig(**kwargs), postprocess=keep_fields)

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        for wave in chunks(requests, self.wave):
            yield from self._run_wave(wave)

    def _run_wave(self, groups: list[list[Request]]) -> Iterator[Response]:
        enc = self.encoder
        try:
            encoded = [(g, enc._encode(g[0])) for g in groups]
        except Exception as e:  # no tokenizer, no template, no model folder: nothing can run
            yield from enc._errors(groups, f"load_failed: {type(e).__name__}: {e}"[:300])
            return
        bad: list[Response] = []
        ready = []
        for group, ids in encoded:
            if ids is None:
                bad.extend(enc._error(r, "bad_request: ValueError: could not render the prompt") for r in group)
        if self._processor is None:
            try:
                self._build([(g, ids) for g, ids in encoded if ids is not None])
            except FactoryError:  # no cluster, no ray.data.llm: the build stops with one line
                raise
            except Exception as e:
                yield from enc._errors(groups, f"load_failed: {type(e).__name__}: {e}"[:300])
                return
        for group, ids in encoded:
            if ids is None:
                continue
            try:
                ready.append((group, ids, enc._sampling(group, len(ids))))
            except Exception as e:
                bad.extend(enc._error(r, f"bad_request: {type(e).__name__}: {e}"[:300]) for r in group)
        yield from bad
        if not ready:
            return
        yield from self._run_rows(request_rows(ready), [r for g, _, _ in ready for r in g])

    def _run_rows(self, rows: list[dict[str, Any]], requests: list[Request]) -> Iterator[Response]:
        import ray.data

        seen: set[str] = set()
        t0 = time.perf_counter()
        try:
            out = self._processor(ray.data.from_items(rows))
            for row in out.iter_rows():
                for r in responses_from_row(row, self.name, self.model, self.encoder._token_text):
                    if r.request_id not in seen:  # a row Ray Data ran twice is stored once
                        seen.add(r.request_id)
                        yield r
        except Exception as e:  # the run failed (engines could not start, the cluster went away)
            reason = f"engine_error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            log.error("ray.data.llm run of %d rows failed after %.0fs: %s", len(rows), time.perf_counter() - t0, e)
            for r in requests:
                if r.request_id not in seen:
                    yield self.encoder._error(r, reason)

    def close(self) -> None:
        self._processor = None
