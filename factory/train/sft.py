"""`factory train sft`: TRL's SFTTrainer on the exported `sft` split, with the loss on the assistant turn only.

Each conversation is split into a conversational prompt (every message before the last) and completion
(the final assistant message). TRL then masks the prompt by itself (`completion_only_loss`) with any
chat template: it needs no `{% generation %}` markers, which SmolLM2's template (and most others) lack.
"""

from __future__ import annotations

from rich.console import Console

from factory.config import Config
from factory.train.common import (
    TrainError,
    TrainSummary,
    finish,
    load_model,
    load_split,
    load_tokenizer,
    lora_config,
    run_dir,
    trl_config,
)


def prompt_completion(rows, data: str):
    """{"messages": [..., assistant]} -> {"prompt": [...], "completion": [assistant]}; other columns dropped."""
    if "messages" not in rows.column_names:
        raise TrainError(f"{data}/sft: no 'messages' column (got {rows.column_names})")
    for i, messages in enumerate(rows["messages"]):
        if not messages or len(messages) < 2 or messages[-1].get("role") != "assistant":
            roles = [m.get("role") for m in messages or []]
            raise TrainError(f"{data}/sft row {i}: messages: expected a prompt and a final assistant message, "
                             f"got roles {roles}")
    return rows.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                    remove_columns=rows.column_names, desc="prompt/completion")


def build_trainer(cfg: Config, dataset, out, callbacks=()):
    """The SFTTrainer `factory train sft` runs (also used by the overhead benchmark)."""
    from trl import SFTConfig, SFTTrainer

    t = cfg.train
    if t.padding_free and not t.packing:
        raise TrainError("train.padding_free needs train.packing: true (TRL enforces max_length only when packing; "
                         "packing is padding-free by itself)")
    args = trl_config(cfg, SFTConfig, out, max_length=t.max_length, packing=t.packing, padding_free=t.padding_free,
                      completion_only_loss=True,
                      # a padding-free batch has no padding and no attention mask: every token is real
                      include_num_input_tokens_seen="all" if t.packing else "non_padding")
    return SFTTrainer(model=load_model(cfg, t.model), args=args, train_dataset=dataset,
                      processing_class=load_tokenizer(cfg, t.model), peft_config=lora_config(cfg),
                      callbacks=list(callbacks))


def train_sft(cfg: Config, console: Console | None = None) -> TrainSummary:
    from factory.train.common import TokenCounter

    console = console or Console(stderr=True)
    rows, data, version = load_split(cfg, "sft")
    dataset = prompt_completion(rows, data)
    out = run_dir(cfg, "sft", version)
    counter = TokenCounter()
    trainer = build_trainer(cfg, dataset, out, [counter])
    console.print(f"sft: {cfg.train.model} on {len(dataset)} conversations from {data}"
                  f"{' (LoRA)' if cfg.train.lora.enabled else ''} -> {out}", highlight=False)
    trainer.train()
    return finish(trainer, cfg, "sft", cfg.train.model, data, version, out, counter,
                  rows=len(dataset), lora=cfg.train.lora.enabled, packing=cfg.train.packing)
