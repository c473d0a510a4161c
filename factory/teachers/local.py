"""The `local` backend: a transformers model in-process, batched, on CPU (or a GPU).

It does not call model.generate(). generate() keeps computing every row of a batch until the
longest one ends, so a batch of answers of mixed length spends much of its time on rows that
are done. This runs its own decode loop over the model's forward pass instead, with continuous
batching:

- rows (one per sample; greedy samples of one prompt share a row) are admitted from the lazy
  request stream while fewer than `batch_size` are running: their prompts are prefilled in one
  left-padded forward and their KV cache is merged into the running batch, left-padded to a
  common length;
- finished rows are answered at once (a Response per request, as each completes) and dropped
  from the batch when enough have finished to be worth the copy (or when new rows come in);
- the KV cache grows in place in chunks (no torch.cat of the whole cache per token);
- on CPU, torch's thread count is chosen by timing decode steps (ThreadTuner), unless
  $FACTORY_THREADS (or $OMP_NUM_THREADS) pins it;
- for plain decoder architectures (llama, qwen2, mistral, ...) attention is
  scaled_dot_product_attention with the grouped query heads folded onto their shared KV head,
  so the KV heads are never repeated (transformers copies them per layer per token when a
  mask is given), and the 4D mask is built here from the row masks.

Sampling follows the request params: temperature (0: greedy), top_p, max_tokens; logprobs=k>0
keeps, per generated token, the chosen token (text and id), its logprob and the top-k
alternatives ([text, logprob, id]), from log_softmax of the RAW logits (the model's own
distribution, before temperature and top-p, as the OpenAI API and vLLM report them).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from factory.config import LocalTeacherConfig
from factory.embedded import resolve_model
from factory.errors import FactoryError, TeacherError
from factory.records import Request, Response


log = logging.getLogger(__name__)

GROW = 128  # KV cache capacity is added in chunks of this many positions
TOP_P_CANDIDATES = 256  # top-p samples among this many top tokens when they hold the nucleus
# Architectures whose attention is plain causal softmax attention (no sliding window, soft
# capping, sinks, ...): these take the folded-GQA attention and masks built here.
PLAIN_ATTENTION = {"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2", "granite"}
ATTN_NAME = "factory_gqa_sdpa"


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def fixed_threads() -> int | None:
    """Threads pinned by the environment ($FACTORY_THREADS, else $OMP_NUM_THREADS), if any."""
    env = os.environ.get("FACTORY_THREADS") or os.environ.get("OMP_NUM_THREADS")
    try:
        return max(1, int(env)) if env else None
    except ValueError:
        return None


def set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)  # one model, one stream of ops: no inter-op parallelism
    except RuntimeError:
        pass  # already set, or parallel work already started


class ThreadTuner:
    """Picks torch's thread count for the decode steps by timing them.

    All usable cores is the right count on an idle machine, but when other processes load the
    cores, OpenMP's barriers wait on descheduled threads and a step can get several times slower
    than with one thread (measured 3-9x on 2 cores shared with other jobs). So every `period`
    steps, a few steps run with each candidate and the faster one is kept until the next round.
    Until the first round ends (prefills included), the load average decides.
    """

    def __init__(self, cores: int, period: int = 256, trials: int = 2):
        self.candidates = [cores, 1] if cores > 1 else [1]
        self.period, self.trials = period, trials
        self.step = 0
        try:
            busy = os.getloadavg()[0] > cores - 0.5  # other work already fills the cores
        except OSError:
            busy = False
        self.best = 1 if busy else cores
        self.times: dict[int, float] = {}

    def threads(self) -> int:
        """The thread count for the next step (set on torch by the caller)."""
        phase = self.step % self.period
        trial = phase // self.trials
        if len(self.candidates) > 1 and trial < len(self.candidates):
            return self.candidates[trial]
        return self.best

    def record(self, threads: int, seconds: float) -> None:
        phase = self.step % self.period
        if len(self.candidates) > 1 and phase < self.trials * len(self.candidates):
            if phase % self.trials == 0:
                self.times[threads] = seconds
            else:
                self.times[threads] = min(self.times.get(threads, seconds), seconds)
            if phase == self.trials * len(self.candidates) - 1:
                self.best = min(self.times, key=self.times.get)
                self.times = {}
        self.step += 1


@dataclass
class _Row:
    """One sequence being generated; answers `requests` (several when greedy samples share it)."""

    requests: list[Request]
    prompt: list[int]
    temperature: float
    top_p: float
    max_new: int
    logprobs: int
    tokens: list[int] = field(default_factory=list)
    lps: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None
    started: float = 0.0


IDLE_WAIT_S = 0.002  # an idle engine asks a live feed again after this
GAP = object()  # in the engine's row stream: nothing to admit now, keep decoding the running batch


def _groups(requests: Iterable[Request | None]) -> Iterator[list[Request] | None]:
    """by_prompt, passing a None through (it ends the group before it: a feed pauses between prompts)."""
    group: list[Request] = []
    for r in requests:
        if r is None or (group and r.prompt_id != group[0].prompt_id):
            if group:
                yield group
            group = []
            if r is None:
                yield None
                continue
        group.append(r)
    if group:
        yield group


class LocalTeacher:
    """Teacher backend "local": transformers in-process (see the module docstring)."""

    # `requests` may hold None: "nothing more for now" from a live feed (a Ray replica fed shard after
    # shard): the running batch goes on decoding and the stream is asked again, so batches continue
    # across shards instead of draining at the end of each
    takes_gaps = True

    def __init__(self, cfg: LocalTeacherConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.model = cfg.model
        self.batch_size = cfg.batch_size
        self._lm = None
        self._tok = None
        self._token_text: dict[int, str] = {}

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self._lm is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = torch.device(self.cfg.device)
        self.tuner = None
        if device.type == "cpu":
            pinned = fixed_threads()
            if pinned is None:
                self.tuner = ThreadTuner(usable_cores())
            set_threads(pinned or self.tuner.best)
        path = resolve_model(self.cfg.model)
        tok = AutoTokenizer.from_pretrained(path)
        # fp32 on CPU (bf16 matmuls are slow without AMX/avx512-bf16); the checkpoint's dtype elsewhere
        dtype = torch.float32 if device.type == "cpu" else "auto"
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
        lm.to(device).eval()
        self.plain = lm.config.model_type in PLAIN_ATTENTION
        if self.plain:
            _register_attention()
            lm.set_attn_implementation(ATTN_NAME)
        stop = set()
        for ids in (lm.generation_config.eos_token_id, tok.eos_token_id):
            if ids is not None:
                stop.update(ids if isinstance(ids, (list, tuple)) else [ids])
        if not stop:
            raise ValueError(f"{path}: the model declares no end-of-sequence token")
        self.stop_ids = stop
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else min(stop)
        self.max_len = getattr(lm.config, "max_position_embeddings", None) or 1 << 30
        self.device = device
        self._tok, self._lm = tok, lm

    def close(self) -> None:
        self._lm = self._tok = None
        self._token_text.clear()

    # -- the interface ---------------------------------------------------------------------

    def start(self) -> None:
        """Load the model now (build reports it as start-up); a failure shows again in generate."""
        try:
            self._load()
        except Exception:  # generate raises it as one line, or answers every request with it
            pass

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        try:
            self._load()
        except FactoryError:  # a model folder that is not there: one line, nothing to store
            raise
        except OSError as e:  # a Hub name offline, a folder without weights: the user must fix the config
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise TeacherError(f"teacher '{self.cfg.name}': cannot load model {self.cfg.model}: {first}") from None
        except Exception as e:  # a model that loads but cannot run here: every request gets the error
            reason = f"load_failed: {type(e).__name__}: {e}"[:300]
            for r in requests:
                if r is None:  # a live feed with nothing for now: what it sends later is asked again
                    return
                yield self._error(r, reason)
            return
        import torch

        with torch.inference_mode():
            yield from _Engine(self).run(requests)

    # -- helpers used by the engine --------------------------------------------------------

    def _error(self, request: Request, reason: str, latency: float | None = None) -> Response:
        return Response(
            request_id=request.request_id, teacher=self.name, model=self.model, error=reason, latency_s=latency
        )

    def _encode(self, request: Request) -> list[int]:
        tok = self._tok
        if not tok.chat_template:
            raise ValueError("the model's tokenizer has no chat template")
        text = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]

    def _text(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = self._token_text[token_id] = self._tok.decode([token_id])
        return text

    def rows(self, requests: Iterable[Request | None], errors: deque) -> Iterator[_Row | object]:
        """Lazily turn the request stream into rows; requests that cannot start go to `errors`.
        A None in the stream (a live feed with nothing for now, see `takes_gaps`) passes on as GAP."""
        for group in _groups(requests):
            if group is None:
                yield GAP
                continue
            first = group[0]
            try:
                p = first.params
                temperature = float(p.get("temperature", 0.7))
                top_p = float(p.get("top_p", 1.0))
                max_new = int(p.get("max_tokens", 512))
                k = int(p.get("logprobs") or 0)
                prompt = self._encode(first)
                if max_new < 1:
                    raise ValueError(f"max_tokens must be >= 1, got {max_new}")
                if len(prompt) >= self.max_len:
                    raise ValueError(f"prompt_too_long: {len(prompt)} tokens, context is {self.max_len}")
            except Exception as e:
                errors.extend(self._error(r, f"bad_request: {type(e).__name__}: {e}"[:300]) for r in group)
                continue
            max_new = min(max_new, self.max_len - len(prompt))
            # greedy decoding gives every sample the same text: compute it once
            shares = [group] if temperature <= 0 else [[r] for r in group]
            for reqs in shares:
                yield _Row(reqs, prompt, temperature, min(max(top_p, 1e-6), 1.0), max_new, k)

    def respond(self, row: _Row, now: float) -> list[Response]:
        stop = row.finish == "stop"  # the stop token is neither text nor in logprobs (still counted)
        text = self._tok.decode(row.tokens[:-1] if stop else row.tokens, skip_special_tokens=True)
        lps = (row.lps[:-1] if stop else list(row.lps)) if row.logprobs > 0 else None
        out = []
        for r in row.requests:
            out.append(
                Response(
                    request_id=r.request_id,
                    teacher=self.name,
                    model=self.model,
                    text=text,
                    finish_reason=row.finish,
                    prompt_tokens=len(row.prompt),
                    completion_tokens=len(row.tokens),
                    logprobs=list(lps) if lps is not None else None,
                    latency_s=now - row.started,
                )
            )
        return out


class _Engine:
    """Continuous batching over one model: rows join and leave a running left-padded batch."""

    def __init__(self, teacher: LocalTeacher):
        import torch

        self.t = teacher
        self.torch = torch
        self.lm = teacher._lm
        self.dev = teacher.device
        self.B = teacher.batch_size
        self.rows: list[_Row] = []  # the running batch, in cache order (finished rows linger)
        self.cache = None
        self.mask = None  # [B, L] bool, True on real tokens
        self.pos = None  # [B] next position of each row
        self.last = None  # [B] last sampled token of each row

    # admission and compaction ---------------------------------------------------------------

    def run(self, requests: Iterable[Request]) -> Iterator[Response]:
        errors: deque[Response] = deque()
        source = self.t.rows(requests, errors)
        exhausted = False
        while True:
            live = sum(r.finish is None for r in self.rows)
            dead = len(self.rows) - live
            idle = False
            # admit when a useful number of slots are free (a merge copies the whole cache)
            want = self.B - live
            if not exhausted and (live == 0 or want >= max(1, self.B // 8)):
                new = []
                while len(new) < want:
                    row = next(source, None)
                    while errors:
                        yield errors.popleft()
                    if row is GAP:
                        idle = live == 0
                        break
                    if row is None:
                        exhausted = True
                        break
                    new.append(row)
                if new:
                    yield from self._admit(new)
                    continue
            if not self.rows:
                if exhausted:
                    break
                if idle:  # a live feed with nothing for now and nothing running: wait for it
                    time.sleep(IDLE_WAIT_S)
                continue
            if dead and (dead >= max(1, len(self.rows) // 4) or live == 0):
                try:
                    self._compact()
                except Exception as e:
                    yield from self._fail(self.rows, e)
                if not self.rows:
                    continue
            yield from self._step()
        while errors:
            yield errors.popleft()

    def _admit(self, new: list[_Row]) -> Iterator[Response]:
        torch = self.torch
        now = time.perf_counter()
        for r in new:
            r.started = now
        # prefill each distinct prompt once (the sampled rows of one prompt share it), on its
        # own batch left-padded to the longest, then give every row its prompt's cache
        slot: dict[int, int] = {}
        prompts: list[list[int]] = []
        for r in new:
            if id(r.prompt) not in slot:
                slot[id(r.prompt)] = len(prompts)
                prompts.append(r.prompt)
        of_row = torch.tensor([slot[id(r.prompt)] for r in new], dtype=torch.long)
        P = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), P), self.t.pad_id, dtype=torch.long)
        pmask = torch.zeros((len(prompts), P), dtype=torch.bool)
        for i, p in enumerate(prompts):
            ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
            pmask[i, P - len(p) :] = True
        pos = (pmask.long().cumsum(-1) - 1).clamp(min=0)
        try:
            cache = _new_cache()
            logits = self._forward(ids, pmask, pos, cache, prefill=True)
            tokens = self._sample(new, logits[of_row])
        except Exception as e:  # only the new rows are lost; the running batch goes on
            rows, cache = self.rows, self.cache
            yield from self._fail(new, e)
            self.rows, self.cache = rows, cache
            return
        mask = pmask[of_row]
        try:
            self._compact(extra=(new, cache, of_row, mask, mask.sum(-1), tokens))
        except Exception as e:  # e.g. out of memory while merging: new and running rows are lost
            yield from self._fail(self.rows + new, e)
            return
        yield from self._finish_check()

    def _fail(self, rows: list[_Row], e: Exception) -> Iterator[Response]:
        """Answer every unfinished row with the error and empty the batch."""
        log.error("local generation failed: %s: %s", type(e).__name__, e, exc_info=e)
        reason = f"generation_failed: {type(e).__name__}: {e}"[:300]
        now = time.perf_counter()
        for r in rows:
            if r.finish is None:
                r.finish = "error"
                for q in r.requests:
                    yield self.t._error(q, reason, now - r.started)
        self.rows, self.cache = [], None

    def _compact(self, extra=None) -> None:
        """Drop finished rows from the cache; append `extra` = (rows, cache, cache row of each
        row, mask, pos, tokens)."""
        torch = self.torch
        keep = [i for i, r in enumerate(self.rows) if r.finish is None]
        parts = []  # (cache, row indices or None, mask, pos, last)
        if keep and self.cache is not None:
            idx = torch.tensor(keep, dtype=torch.long)
            parts.append((self.cache, idx, self.mask[idx], self.pos[idx], self.last[idx]))
        rows = [self.rows[i] for i in keep]
        if extra is not None:
            new_rows, cache, cache_rows, mask, pos, last = extra
            parts.append((cache, cache_rows, mask, pos, last))
            rows += new_rows
        if not parts:
            self.rows, self.cache = [], None
            return
        # drop leading columns that are padding in every kept row, then left-pad to a common length
        trims = []
        for _, _, m, _, _ in parts:
            cols = m.any(0).nonzero()
            trims.append(int(cols[0]) if len(cols) else m.shape[1])
        L = max(p[2].shape[1] - t for p, t in zip(parts, trims))
        caches = [(c, i, t, L - (m.shape[1] - t)) for (c, i, m, _, _), t in zip(parts, trims)]
        self.cache = _merge(caches, L)
        self.mask = torch.cat(
            [
                torch.nn.functional.pad(m[:, t:], (L - (m.shape[1] - t), 0), value=False)
                for (_, _, m, _, _), t in zip(parts, trims)
            ]
        )
        self.pos = torch.cat([p[3] for p in parts])
        self.last = torch.cat([p[4] for p in parts])
        self.rows = rows

    # decoding -------------------------------------------------------------------------------

    def _forward(self, ids, mask2d, pos, cache, prefill: bool):
        torch = self.torch
        dev = self.dev
        if self.t.plain:
            if prefill:
                P = ids.shape[1]
                causal = torch.ones(P, P, dtype=torch.bool).tril()
                attn = (causal[None, None] & mask2d[:, None, None, :]) | torch.eye(P, dtype=torch.bool)[None, None]
            else:
                attn = mask2d[:, None, None, :]
        else:
            attn = mask2d.long()
        out = self.lm(
            input_ids=ids.to(dev),
            attention_mask=attn.to(dev),
            position_ids=pos.to(dev),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()

    def _step(self) -> Iterator[Response]:
        torch = self.torch
        ones = torch.ones((len(self.rows), 1), dtype=torch.bool)
        mask = torch.cat([self.mask, ones], dim=1)
        tuner = self.t.tuner
        try:
            if tuner is not None:
                threads = tuner.threads()
                set_threads(threads)
                started = time.perf_counter()
            logits = self._forward(self.last[:, None], mask, self.pos[:, None], self.cache, prefill=False)
            tokens = self._sample(self.rows, logits)
            if tuner is not None:
                tuner.record(threads, time.perf_counter() - started)
        except Exception as e:  # the whole running batch is lost: answer it with the error
            yield from self._fail(self.rows, e)
            return
        self.mask = mask
        self.pos = self.pos + 1
        self.last = tokens
        yield from self._finish_check()

    def _finish_check(self) -> Iterator[Response]:
        now = time.perf_counter()
        for r in self.rows:
            if r.finish is None and r.tokens:
                if r.tokens[-1] in self.t.stop_ids:
                    r.finish = "stop"
                elif len(r.tokens) >= r.max_new:
                    r.finish = "length"
                else:
                    continue
                try:
                    yield from self.t.respond(r, now)
                except Exception as e:
                    for q in r.requests:
                        yield self.t._error(q, f"decode_failed: {type(e).__name__}: {e}"[:300], now - r.started)

    def _sample(self, rows: list[_Row], logits) -> Any:
        """Pick one token per row; record logprobs. Returns a [len(rows)] long tensor (CPU)."""
        torch = self.torch
        n = len(rows)
        logits = logits.cpu() if logits.device.type != "cpu" else logits
        out = logits.argmax(-1)
        live = [i for i, r in enumerate(rows) if r.finish is None]
        sample = [i for i in live if rows[i].temperature > 0]
        if sample:
            idx = torch.tensor(sample)
            temps = torch.tensor([rows[i].temperature for i in sample])[:, None]
            probs = torch.softmax(logits[idx] / temps, dim=-1)
            top_p = torch.tensor([rows[i].top_p for i in sample])
            out[idx] = _sample_top_p(probs, top_p)
        want = [i for i in live if rows[i].logprobs > 0]
        if want:
            idx = torch.tensor(want)
            k = max(rows[i].logprobs for i in want)
            lp = torch.log_softmax(logits[idx], dim=-1)
            chosen = lp.gather(1, out[idx][:, None])[:, 0].tolist()
            top_v, top_i = lp.topk(k, dim=-1)
            top_v, top_i = top_v.tolist(), top_i.tolist()
            text = self.t._text
            for j, i in enumerate(want):
                kk = rows[i].logprobs
                # ids next to the strings: token strings are ambiguous for logit-level distillation
                rows[i].lps.append(
                    {
                        "token": text(int(out[i])),
                        "id": int(out[i]),
                        "logprob": chosen[j],
                        "top": [[text(t), v, t] for t, v in zip(top_i[j][:kk], top_v[j][:kk])],
                    }
                )
        toks = out.tolist()
        for i in live:
            rows[i].tokens.append(toks[i])
        # finished rows keep decoding until compacted away: feed them a pad token
        for i in range(n):
            if rows[i].finish is not None:
                out[i] = self.t.pad_id
        return out


def _sample_top_p(probs, top_p):
    """Nucleus sampling per row: keep the most likely tokens whose mass before them is < top_p."""
    import torch

    k = min(TOP_P_CANDIDATES, probs.shape[-1])
    vals, idx = probs.topk(k, dim=-1)  # sorted, descending
    cum = vals.cumsum(-1)
    if bool((cum[:, -1] >= top_p).all()):  # the nucleus lies within the candidates
        keep = (cum - vals) < top_p[:, None]
        choice = torch.multinomial(vals * keep, 1)
        return idx.gather(1, choice)[:, 0]
    vals, idx = probs.sort(dim=-1, descending=True)  # rare: a flat distribution
    cum = vals.cumsum(-1)
    keep = (cum - vals) < top_p[:, None]
    choice = torch.multinomial(vals * keep, 1)
    return idx.gather(1, choice)[:, 0]


# -- KV cache ------------------------------------------------------------------------------


def _new_cache():
    from transformers.cache_utils import Cache

    return Cache(layer_class_to_replicate=_layer_class())


_LAYER = None


def _layer_class():
    """A DynamicLayer that writes into a preallocated buffer (grown in chunks) instead of torch.cat."""
    global _LAYER
    if _LAYER is not None:
        return _LAYER
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def lazy_initialization(self, key_states, value_states):
            self.dtype, self.device = key_states.dtype, key_states.device
            self.kbuf = self.vbuf = None
            self.length = 0
            self.is_initialized = True

        def set_buffers(self, kbuf, vbuf, length):
            self.dtype, self.device = kbuf.dtype, kbuf.device
            self.kbuf, self.vbuf, self.length = kbuf, vbuf, length
            self.keys, self.values = kbuf[:, :, :length], vbuf[:, :, :length]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if self.kbuf is None or end > self.kbuf.shape[-2]:
                b, h, _, d = key_states.shape
                kbuf = key_states.new_zeros((b, h, end + GROW, d))
                vbuf = value_states.new_zeros((b, h, end + GROW, d))
                if self.length:
                    kbuf[:, :, : self.length] = self.kbuf[:, :, : self.length]
                    vbuf[:, :, : self.length] = self.vbuf[:, :, : self.length]
                self.kbuf, self.vbuf = kbuf, vbuf
            self.kbuf[:, :, self.length : end] = key_states
            self.vbuf[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self.kbuf[:, :, :end], self.vbuf[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def batch_select_indices(self, indices):
            if self.is_initialized and self.length:
                self.set_buffers(self.kbuf[indices], self.vbuf[indices], self.length)

    _LAYER = GrowingLayer
    return _LAYER


def _merge(parts, L: int):
    """One cache from parts = [(cache, row indices or None, columns to trim, left pad)], length L."""

    out = _new_cache()
    n_layers = len(parts[0][0].layers)
    for li in range(n_layers):
        ks, vs = [], []
        for cache, idx, trim, pad in parts:
            layer = cache.layers[li]
            k, v = layer.kbuf[:, :, trim : layer.length], layer.vbuf[:, :, trim : layer.length]
            if idx is not None:
                k, v = k[idx], v[idx]
            ks.append((k, pad))
            vs.append((v, pad))
        b = sum(k.shape[0] for k, _ in ks)
        _, h, _, d = ks[0][0].shape
        ref = ks[0][0]
        kbuf = ref.new_zeros((b, h, L + GROW, d))
        vbuf = ref.new_zeros((b, h, L + GROW, d))
        row = 0
        for (k, pad), (v, _) in zip(ks, vs):
            n = k.shape[0]
            kbuf[row : row + n, :, pad:L] = k
            vbuf[row : row + n, :, pad:L] = v
            row += n
        layer = _layer_class()()
        layer.set_buffers(kbuf, vbuf, L)
        out.layers.append(layer)
    return out


# -- attention -----------------------------------------------------------------------------

_REGISTERED = False


def _register_attention() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, _gqa_sdpa)
    _REGISTERED = True


def _gqa_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA with the query heads of each KV group folded into the query length.

    query [B, H, q, D], key/value [B, Hkv, L, D], attention_mask a bool [B, 1, q, L] (True:
    attend). Query head h uses KV head h // (H / Hkv), so [B, H, q, D] reshapes to
    [B, Hkv, rep*q, D] (rows ordered (r, q)); the mask is tiled to match. Nothing is copied
    from the cache, where repeat_kv would copy every KV head per layer per token.
    """
    import torch

    b, h, q, d = query.shape
    hkv = key.shape[1]
    rep = h // hkv
    mask = attention_mask
    if rep > 1:
        query = query.reshape(b, hkv, rep * q, d)
        if mask is not None and q > 1:
            mask = mask.repeat(1, 1, rep, 1)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling)
    out = out.reshape(b, h, q, d).transpose(1, 2).contiguous()
    return out, None
