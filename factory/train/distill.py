"""`factory train distill`: logit-level distillation into a student that shares the teacher's tokenizer.

Two modes (`train.distill.mode`):

- `soft_labels`: offline, from the teacher's top-k logprobs stored at generation time (the export's
  `soft_labels` split); no teacher runs at training time. The student reads the chat-templated prompt
  followed by the teacher's own completion token ids, so every completion position lines up with a
  stored distribution. At each position the teacher's top-k probabilities plus a tail bucket (the
  mass outside the top-k, 1 - sum) and the student's probabilities of the same k tokens plus its own
  tail mass form two (k+1)-way distributions; the loss is a divergence between them (forward KL,
  reverse KL or generalised JSD), both tempered with `temperature` and scaled by T^2, plus
  `sft_weight` times the hard-label NLL of the teacher's token. A transformers Trainer subclass
  (`compute_loss`) with its own data collator.
- `on_policy`: TRL's DistillationTrainer with the teacher model `train.distill.teacher_model` on the
  `sft` split's prompts: the student samples completions and matches the teacher's full next-token
  distribution on them. `lmbda` < 1 mixes in, per generation batch, the teacher's own completions
  from the `sft` split (off-policy batches), as GKD does.

A student whose vocabulary differs from the teacher's is refused before any training.
"""

from __future__ import annotations

import math
import random
from collections import Counter

from rich.console import Console

from factory.config import Config, DistillSection
from factory.train.common import (
    TrainError,
    TrainSummary,
    finish,
    load_model,
    load_split,
    load_tokenizer,
    lora_config,
    model_path,
    run_dir,
    trl_config,
)

TAIL_FLOOR = 1e-6  # the teacher's tail bucket never reaches 0 (reverse KL would be infinite)


def trl_beta(d: DistillSection) -> float:
    """`train.distill.loss` as the `beta` of TRL's generalised JSD (DistillationConfig.beta): the divergence
    between teacher p and student q with mixture m = beta * p + (1 - beta) * q is
    beta * KL(p || m) + (1 - beta) * KL(q || m), and TRL defines the ends as beta = 0: forward KL(p || q)
    (mean-seeking: the student covers every teacher mode) and beta = 1: reverse KL(q || p) (mode-seeking).
    So forward_kl -> 0, reverse_kl -> 1, jsd -> jsd_beta (0.5: the symmetric JSD)."""
    return {"forward_kl": 0.0, "reverse_kl": 1.0, "jsd": d.jsd_beta}[d.loss]


# -- the soft-label loss ---------------------------------------------------------------------------------


def _kl(log_a, log_b):
    """KL(a || b) over the last dim. Padded slots are -inf in both: they count 0, and the -inf never enters
    a difference (0 * (-inf - -inf) would make the gradient NaN)."""
    import torch

    zero = torch.zeros_like(log_a)
    pad = torch.isneginf(log_a)
    diff = torch.where(pad, zero, log_a) - torch.where(pad, zero, log_b)
    return (log_a.exp() * diff).sum(-1)


def topk_divergence(student_logits, top_ids, top_logprobs, beta: float = 0.0, temperature: float = 1.0):
    """Per-position divergence between the teacher's top-k + tail distribution and the student's.

    student_logits: (N, V) raw logits; top_ids: (N, K) long; top_logprobs: (N, K) the teacher's stored
    log-probabilities (log_softmax of its raw logits), -inf at padded slots (whose id must repeat a real
    one of the row). Both distributions are projected on the same k+1 buckets (the k tokens, the rest),
    then tempered alike (bucket log-probs / T, renormalised), so a teacher whose tail shape is unknown
    and the student are treated the same way. Returns (N,) divergences times T^2 (gradient scale
    independent of T, as in Hinton et al.); `beta` as in `trl_beta`.
    """
    import torch

    z = student_logits.float()
    lse = z.logsumexp(-1, keepdim=True)
    padded = torch.isneginf(top_logprobs)
    s_top = (z.gather(-1, top_ids) - lse).masked_fill(padded, float("-inf"))
    s_tail = z.scatter(-1, top_ids, float("-inf")).logsumexp(-1, keepdim=True) - lse
    t_top = top_logprobs.float()
    t_tail = torch.log((1 - t_top.exp().sum(-1, keepdim=True)).clamp_min(TAIL_FLOOR))
    q = torch.log_softmax(torch.cat([s_top, s_tail], -1) / temperature, -1)  # student
    p = torch.log_softmax(torch.cat([t_top, t_tail], -1) / temperature, -1)  # teacher
    if beta == 0.0:
        div = _kl(p, q)
    elif beta == 1.0:
        div = _kl(q, p)
    else:  # mixture m = beta * p + (1 - beta) * q; padded slots stay out of the logsumexp (NaN gradient on all -inf)
        pad = torch.isneginf(p)
        p0, q0 = p.masked_fill(pad, 0.0), q.masked_fill(pad, 0.0)
        m = torch.logsumexp(torch.stack([p0 + math.log(beta), q0 + math.log1p(-beta)]), 0)
        m = m.masked_fill(pad, float("-inf"))
        div = beta * _kl(p, m) + (1 - beta) * _kl(q, m)
    return div * temperature**2


def _soft_label_trainer_cls():
    from transformers import Trainer

    class SoftLabelTrainer(Trainer):
        """Trainer whose loss is `topk_divergence` over the completion positions (+ sft_weight x NLL)."""

        # compute_loss normalises by the tokens of the whole accumulated batch itself
        loss_is_scaled_for_ga = True

        def __init__(self, *args, beta: float, temperature: float, sft_weight: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.beta, self.temperature, self.sft_weight = beta, temperature, sft_weight

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch.nn.functional as F

            labels = inputs["labels"][:, 1:]  # the logits at position i predict the token at i + 1
            mask = labels != -100
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            logits = outputs.logits[:, :-1][mask]
            per_token = topk_divergence(logits, inputs["top_ids"][:, 1:][mask], inputs["top_logprobs"][:, 1:][mask],
                                        self.beta, self.temperature)
            if self.sft_weight:
                nll = F.cross_entropy(logits.float(), labels[mask], reduction="none")
                per_token = per_token + self.sft_weight * nll
            if num_items_in_batch is None or self.args.n_gpu > 1:  # mean here, then share the accumulation
                loss = per_token.sum() / mask.sum().clamp_min(1) / self.current_gradient_accumulation_steps
            else:  # the completion tokens of the whole accumulated batch (all processes when averaged across them)
                loss = per_token.sum() / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

    return SoftLabelTrainer


class SoftLabelCollator:
    """Right-pads input_ids / attention_mask / labels (-100) and the per-position top-k (ids repeat the
    position's first id, logprobs -inf), to (B, L) and (B, L, K)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        n, length = len(features), max(len(f["input_ids"]) for f in features)
        k = max(len(top) for f in features for top in f["top_ids"])
        batch = {"input_ids": torch.full((n, length), self.pad_id, dtype=torch.long),
                 "attention_mask": torch.zeros((n, length), dtype=torch.long),
                 "labels": torch.full((n, length), -100, dtype=torch.long),
                 "top_ids": torch.zeros((n, length, k), dtype=torch.long),
                 "top_logprobs": torch.full((n, length, k), float("-inf"))}
        for i, f in enumerate(features):
            m = len(f["input_ids"])
            batch["input_ids"][i, :m] = torch.tensor(f["input_ids"])
            batch["attention_mask"][i, :m] = 1
            batch["labels"][i, :m] = torch.tensor(f["labels"])
            for j, (ids, lps) in enumerate(zip(f["top_ids"], f["top_logprobs"])):
                if ids:
                    batch["top_ids"][i, j] = ids[0]
                    batch["top_ids"][i, j, :len(ids)] = torch.tensor(ids)
                    batch["top_logprobs"][i, j, :len(lps)] = torch.tensor(lps)
        return batch


# -- soft-label rows -------------------------------------------------------------------------------------


class _StringIds:
    """Token strings (the openai backend stores no ids) -> ids, where the teacher's tokenizer maps a string
    to exactly one token that decodes back to the same string; None otherwise."""

    def __init__(self, tokenizer):
        self.tok, self.cache = tokenizer, {}

    def __call__(self, text: str) -> int | None:
        if text not in self.cache:
            ids = self.tok.encode(text, add_special_tokens=False)
            self.cache[text] = ids[0] if len(ids) == 1 and self.tok.decode(ids) == text else None
        return self.cache[text]


def soft_label_row(row: dict, tokenizer, string_ids: _StringIds, max_length: int) -> dict | str:
    """One exported soft_labels row -> training features, or the reason it is dropped."""
    ids, top_ids, top_lps = row["token_ids"], row.get("top_ids"), row["top_logprobs"]
    if ids is None or top_ids is None:  # strings only: map them with the teacher's tokenizer
        ids = [string_ids(t) for t in row["tokens"]]
        top_ids = [[string_ids(t) for t in top] for top in row["top_tokens"]]
        if None in ids or any(None in top for top in top_ids):
            return "token_not_in_teacher_vocab"
    if not ids:
        return "empty_completion"
    if len(top_ids) != len(ids) or any(len(a) != len(b) or not a for a, b in zip(top_ids, top_lps)):
        return "bad_top_logprobs"
    eos = tokenizer.eos_token_id
    if row.get("finish_reason") == "stop" and ids[-1] != eos:  # the teacher emitted EOS there but stores no
        ids, top_ids, top_lps = ids + [eos], top_ids + [[eos]], top_lps + [[0.0]]  # distribution: a one-hot target
    text = tokenizer.apply_chat_template(list(row["prompt"]), add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]  # as the local teacher encodes it
    room = max_length - len(prompt)
    if room < 1:
        return "prompt_too_long"
    ids, top_ids, top_lps = ids[:room], top_ids[:room], top_lps[:room]
    return {"input_ids": prompt + ids, "labels": [-100] * len(prompt) + ids,
            "top_ids": [[]] * len(prompt) + top_ids, "top_logprobs": [[]] * len(prompt) + top_lps}


def check_same_tokenizer(student_tok, teacher_tok, student: str, teacher: str) -> None:
    a, b = student_tok.get_vocab(), teacher_tok.get_vocab()
    if a != b:
        differ = len(set(a.items()) ^ set(b.items()))
        raise TrainError(f"student {student!r} and teacher {teacher!r} have different tokenizers ({len(a)} vs "
                         f"{len(b)} tokens, {differ} entries differ): distillation needs the teacher's tokenizer")


def _teacher_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path(name))
    except (TrainError, OSError) as e:
        reason = str(e).splitlines()[0].removeprefix("train.model: ")
        raise TrainError(f"train.distill.teacher_model: cannot load {name!r}: {reason}") from None


def _soft_labels(cfg: Config, console: Console) -> TrainSummary:
    import datasets
    from rich.progress import track
    from transformers import TrainingArguments

    from factory.train.common import TokenCounter

    t, d = cfg.train, cfg.train.distill
    rows, data, version = load_split(cfg, "soft_labels")
    tokenizer = load_tokenizer(cfg, t.model)
    teacher_tok = _teacher_tokenizer(d.teacher_model)
    check_same_tokenizer(tokenizer, teacher_tok, t.model, d.teacher_model)
    # stored distributions are over the ids of the teacher that wrote them: other teachers' rows cannot be used
    models = Counter(rows["model"])
    if d.teacher_model not in models:
        raise TrainError(f"{data}/soft_labels: no rows from teacher model {d.teacher_model!r} (the data holds "
                         f"{', '.join(map(repr, models))}): set train.distill.teacher_model")
    dropped, features = Counter(), []
    string_ids = _StringIds(teacher_tok)
    for row in track(rows, description="soft labels", console=console, transient=True):
        result = (f"other_teacher:{row['model']}" if row["model"] != d.teacher_model
                  else soft_label_row(row, tokenizer, string_ids, t.max_length))
        if isinstance(result, str):
            dropped[result] += 1
        else:
            features.append(result)
    if not features:
        raise TrainError(f"{data}/soft_labels: every row was dropped ({_reasons(dropped)})")
    dataset = datasets.Dataset.from_list(features)
    out = run_dir(cfg, "distill", version)
    counter = TokenCounter()
    args = trl_config(cfg, TrainingArguments, out, remove_unused_columns=False)
    trainer = _soft_label_trainer_cls()(
        model=_maybe_lora(cfg, load_model(cfg, t.model)), args=args, train_dataset=dataset,
        data_collator=SoftLabelCollator(tokenizer.pad_token_id), processing_class=tokenizer, callbacks=[counter],
        beta=trl_beta(d), temperature=d.temperature, sft_weight=d.sft_weight)
    console.print(f"distill (soft labels, {d.loss}, T={d.temperature}): {t.model} on {len(dataset)} completions "
                  f"from {data}{' (LoRA)' if t.lora.enabled else ''} -> {out}"
                  + (f"; dropped {_reasons(dropped)}" if dropped else ""), highlight=False)
    trainer.train()
    return finish(trainer, cfg, "distill", t.model, data, version, out, counter, mode="soft_labels",
                  teacher=d.teacher_model, loss=d.loss, temperature=d.temperature, rows=len(dataset),
                  dropped=_reasons(dropped) if dropped else "none")


def _maybe_lora(cfg: Config, model):
    peft_config = lora_config(cfg)
    if peft_config is None:
        return model
    from peft import get_peft_model

    if cfg.train.gradient_checkpointing:  # checkpointed blocks need an input that requires grad (frozen embeddings)
        model.enable_input_require_grads()
    return get_peft_model(model, peft_config)


def _reasons(dropped: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in dropped.most_common())


# -- on-policy -------------------------------------------------------------------------------------------


def _on_policy_trainer_cls():
    from trl import DistillationTrainer

    class MixedPolicyDistillationTrainer(DistillationTrainer):
        """TRL's DistillationTrainer samples every completion from the student (on-policy). GKD's `lmbda`
        is added back: each generation batch is on-policy with probability lmbda, else it uses the
        teacher's own completions from the data (`completion_ids`), and the loss is the same."""

        def __init__(self, *args, lmbda: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.lmbda, self._rng, self._fixed = lmbda, random.Random(self.args.seed), None
            self.batches = Counter()

        def _generate_and_score_completions(self, inputs):
            if not self.model.training:
                return super()._generate_and_score_completions(inputs)
            on_policy = self._rng.random() < self.lmbda
            self.batches["on_policy" if on_policy else "off_policy"] += 1
            self._fixed = None if on_policy else [list(x["completion_ids"]) for x in inputs]
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                self._fixed = None

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            if self._fixed is not None:
                return self._fixed
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)

        def _track_num_input_tokens(self, inputs):
            pass  # the batch holds raw prompts; DistillationTrainer counts prompt + completion tokens itself

    return MixedPolicyDistillationTrainer


def _on_policy(cfg: Config, console: Console) -> TrainSummary:
    from trl import DistillationConfig

    from factory.train.common import TokenCounter
    from factory.train.sft import prompt_completion

    t, d = cfg.train, cfg.train.distill
    rows, data, version = load_split(cfg, "sft")
    tokenizer = load_tokenizer(cfg, t.model)
    check_same_tokenizer(tokenizer, _teacher_tokenizer(d.teacher_model), t.model, d.teacher_model)
    tokenizer.padding_side = "left"  # DistillationTrainer generates from left-padded prompts
    eos = tokenizer.eos_token_id

    def completion_ids(row):  # the teacher's answer as the student would emit it: content, then EOS
        ids = tokenizer(row["completion"][0]["content"], add_special_tokens=False)["input_ids"]
        return {"completion_ids": ids[:d.max_new_tokens] if len(ids) >= d.max_new_tokens else ids + [eos]}

    dataset = prompt_completion(rows, data).map(completion_ids, remove_columns=["completion"], desc="completions")
    out = run_dir(cfg, "distill", version)
    counter = TokenCounter()
    args = trl_config(cfg, DistillationConfig, out, beta=trl_beta(d), temperature=d.temperature,
                      max_completion_length=d.max_new_tokens)
    per_generation = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if len(dataset) < per_generation:  # TRL's sampler drops an incomplete generation batch: it would train 0 steps
        raise TrainError(f"{data}/sft: {len(dataset)} prompts, fewer than one generation batch of {per_generation} "
                         f"(train.batch_size x train.grad_accum x processes): lower train.batch_size")
    trainer = _on_policy_trainer_cls()(
        model=load_model(cfg, t.model), teacher_model=load_model(cfg, d.teacher_model, trainable=False), args=args,
        train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=[counter],
        lmbda=d.lmbda)
    console.print(f"distill (on-policy, {d.loss}, T={d.temperature}, lmbda={d.lmbda}): {t.model} from teacher "
                  f"{d.teacher_model} on {len(dataset)} prompts from {data}{' (LoRA)' if t.lora.enabled else ''} "
                  f"-> {out}", highlight=False)
    trainer.train()
    return finish(trainer, cfg, "distill", t.model, data, version, out, counter, mode="on_policy",
                  teacher=d.teacher_model, loss=d.loss, temperature=d.temperature, lmbda=d.lmbda, rows=len(dataset),
                  on_policy_batches=trainer.batches["on_policy"], off_policy_batches=trainer.batches["off_policy"])


def train_distill(cfg: Config, console: Console | None = None) -> TrainSummary:
    console = console or Console(stderr=True)
    if cfg.train.distill.mode == "soft_labels":
        return _soft_labels(cfg, console)
    return _on_policy(cfg, console)
