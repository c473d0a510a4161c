"""`factory train dpo`: TRL's DPOTrainer on the exported `dpo` split (a verified and a failed trace of one
seed), from an SFT checkpoint or a base model (`train.model`)."""

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

COLUMNS = ("prompt", "chosen", "rejected")


def train_dpo(cfg: Config, console: Console | None = None) -> TrainSummary:
    from trl import DPOConfig, DPOTrainer

    from factory.train.common import TokenCounter

    console = console or Console(stderr=True)
    t = cfg.train
    rows, data, version = load_split(cfg, "dpo")
    missing = [c for c in COLUMNS if c not in rows.column_names]
    if missing:
        raise TrainError(f"{data}/dpo: missing column(s) {missing} (expected prompt / chosen / rejected)")
    rows = rows.select_columns(list(COLUMNS))
    out = run_dir(cfg, "dpo", version)
    args = trl_config(cfg, DPOConfig, out, beta=t.dpo.beta, loss_type=[s.strip() for s in t.dpo.loss_type.split(",")],
                      max_length=t.max_length)
    # default reference: TRL's frozen copy of the starting model (or the adapter-free base with LoRA)
    ref_model = load_model(cfg, t.dpo.ref_model, trainable=False) if t.dpo.ref_model else None
    counter = TokenCounter()
    trainer = DPOTrainer(model=load_model(cfg, t.model), ref_model=ref_model, args=args, train_dataset=rows,
                         processing_class=load_tokenizer(cfg, t.model), peft_config=lora_config(cfg),
                         callbacks=[counter])
    console.print(f"dpo: {t.model} on {len(rows)} preference pairs from {data} (beta {t.dpo.beta}, "
                  f"{t.dpo.loss_type}{', LoRA' if t.lora.enabled else ''}) -> {out}", highlight=False)
    try:
        trainer.train()
    except ValueError as e:
        if str(e).startswith("Unknown loss type"):
            raise TrainError(f"train.dpo.loss_type: {e}") from None
        raise
    return finish(trainer, cfg, "dpo", t.model, data, version, out, counter, pairs=len(rows), beta=t.dpo.beta,
                  loss_type=t.dpo.loss_type, ref_model=t.dpo.ref_model or t.model, lora=t.lora.enabled)
