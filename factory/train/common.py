"""What every `factory train` method shares: the data, the tokenizer and model, TRL's config from
`train.*`, LoRA, where a run writes, and how it ends (save, summary, push).

Only the train/ modules import torch / transformers / trl / peft, and only inside functions, so
importing this module (the CLI does) stays cheap.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.config import Config
from factory.errors import TrainError  # noqa: F401 - raised here; importable from this module too
from factory.train.launch import main_process_first

if TYPE_CHECKING:
    import datasets

# why a split can be empty: said in the one-line error
EMPTY_HINTS = {
    "sft": "no trace survived the filter (see `factory report`)",
    "dpo": "needs seeds with both a verified and a failed trace",
    "soft_labels": "needs the teacher's logprobs: set generation.logprobs > 0 and rebuild",
}


@dataclass
class TrainSummary:
    method: str
    model: str
    data: str
    version: int | None
    output_dir: Path
    steps: int
    tokens: int  # non-padding input tokens the model was trained on
    runtime_s: float  # the training loop only (not loading or saving)
    tokens_per_s: float
    final_loss: float | None  # the last logged loss
    train_loss: float | None  # the mean over the run
    device: str
    extra: dict = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)  # every logged training loss, in order
    processes: int = 1  # data-parallel processes (GPUs) the run trained on

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "output_dir": str(self.output_dir)}


def data_folder(cfg: Config) -> tuple[Path, int | None]:
    """`train.data`, or the export of `train.version` (default: the latest), exported first if missing."""
    if cfg.train.data:
        folder = cfg.path(cfg.train.data)
        if not folder.is_dir():
            raise TrainError(f"train.data: {folder} is not a folder (expected an export with sft/ dpo/ soft_labels/)")
        match = re.fullmatch(r"v(\d+)", folder.name)
        return folder, int(match.group(1)) if match else None
    from factory.export import export_dir, export_version
    from factory.store import Store
    from factory.versions import version_row

    if not cfg.store_path.exists():
        raise TrainError(f"{cfg.store_path}: no store yet (run `factory build dataset` first, or set train.data)")
    with Store(cfg.store_path, read_only=True) as store:
        try:
            version, _ = version_row(store, cfg.train.version, "version")
        except LookupError as e:
            raise TrainError(f"train.version: {e}") from None
    folder = export_dir(cfg, version)
    if not folder.is_dir():
        folder = export_version(cfg, version).path
    return folder, version


def load_split(cfg: Config, split: str) -> tuple[datasets.Dataset, str, int | None]:
    """The rows of one exported split, with the data folder and version they came from. Under several
    processes rank 0 goes first: it alone exports a missing version and fills the datasets cache."""
    with main_process_first():
        return _load_split(cfg, split)


def _load_split(cfg: Config, split: str) -> tuple[datasets.Dataset, str, int | None]:
    import datasets

    folder, version = data_folder(cfg)
    import pyarrow.parquet as pq

    # an empty split is exported as one 0-row shard (its schema), which load_dataset cannot read
    files = [f for f in sorted((folder / split).glob("*.parquet")) if pq.read_metadata(f).num_rows]
    where = f"v{version}" if version is not None else str(folder)
    if not files:
        raise TrainError(f"no {split} rows in {where} ({folder / split}): {EMPTY_HINTS.get(split, 'empty split')}")
    rows = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    if len(rows) == 0:
        raise TrainError(f"no {split} rows in {where} ({folder / split}): {EMPTY_HINTS.get(split, 'empty split')}")
    return rows, str(folder), version


def model_path(name: str) -> str:
    """"embedded" -> the converted SmolLM2 folder; a folder; else a Hub name."""
    from factory.embedded import EmbeddedModelError, resolve_model

    try:
        return resolve_model(name)
    except (EmbeddedModelError, FileNotFoundError) as e:
        raise TrainError(f"cannot load model {name!r}: {e}") from None


def load_tokenizer(cfg: Config, name: str):
    """The model's tokenizer, with `train.chat_template` (a jinja file) replacing its chat template
    and a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path(name))
    except OSError as e:
        raise TrainError(f"cannot load the tokenizer of {name!r}: {str(e).splitlines()[0]}") from None
    if cfg.train.chat_template:
        path = cfg.path(cfg.train.chat_template)
        if not path.is_file():
            raise TrainError(f"train.chat_template: {path} does not exist")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        raise TrainError(f"train.model: {name} has no chat template (set train.chat_template to a jinja file)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(cfg: Config) -> bool:
    """bf16 on a GPU that supports it, fp32 on CPU (unless train.bf16 says otherwise)."""
    import torch

    if cfg.train.bf16 is not None:
        return cfg.train.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def load_model(cfg: Config, name: str, *, trainable: bool = True):
    """A causal LM in fp32 on CPU, bf16 on a bf16 GPU; frozen and in eval mode unless trainable."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if use_bf16(cfg) else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=dtype)
    except OSError as e:
        raise TrainError(f"cannot load model {name!r}: {str(e).splitlines()[0]}") from None
    if not trainable:
        model.eval().requires_grad_(False)
    return model


def trl_config(cfg: Config, config_cls, output_dir: Path, **kwargs):
    """A TRL *Config built from `train.*`; `train.extra` goes in verbatim, then kwargs override."""
    t = cfg.train
    cpu = device() == "cpu"
    args = {
        "output_dir": str(output_dir), "num_train_epochs": t.epochs, "max_steps": t.max_steps,
        "per_device_train_batch_size": t.batch_size, "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": t.learning_rate, "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": min(t.warmup_ratio, 0.999),  # transformers 5: a float < 1 is a ratio of the steps
        "weight_decay": t.weight_decay, "bf16": use_bf16(cfg), "fp16": False, "use_cpu": cpu,
        "gradient_checkpointing": t.gradient_checkpointing,  # (TRL's default is on)
        "seed": t.seed, "logging_steps": t.logging_steps, "logging_first_step": True,
        "save_strategy": t.save_strategy, "report_to": "none",
        "include_num_input_tokens_seen": "non_padding",  # what TokenCounter reads
        "dataloader_pin_memory": not cpu,
    }
    args.update(t.extra)
    args.update(kwargs)
    try:
        return config_cls(**args)
    except (TypeError, ValueError) as e:
        raise TrainError(f"train: {config_cls.__name__}: {str(e).splitlines()[0]}") from None


def lora_config(cfg: Config):
    """peft.LoraConfig from train.lora, or None when LoRA is off."""
    lora = cfg.train.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def run_dir(cfg: Config, method: str, version: int | None) -> Path:
    """<workdir>/<train.output_dir>/<method>-v<N> (<method>-data for a train.data folder without a version)."""
    return cfg.path(cfg.workdir) / cfg.train.output_dir / f"{method}-{'data' if version is None else f'v{version}'}"


def _make_token_counter():
    from transformers import TrainerCallback

    class TokenCounter(TrainerCallback):
        """Times the training loop and reads the non-padding tokens it saw (the Trainer counts them when
        include_num_input_tokens_seen="non_padding", which trl_config sets)."""

        def __init__(self):
            self.tokens = 0
            self.runtime_s = 0.0
            self._started = None

        def on_train_begin(self, args, state, control, **kwargs):
            if args.include_num_input_tokens_seen == "no":  # a config built without trl_config
                args.include_num_input_tokens_seen = "non_padding"
            self._started = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.runtime_s = time.perf_counter() - self._started
            self.tokens = int(state.num_input_tokens_seen)

        @property
        def tokens_per_s(self) -> float:
            return self.tokens / self.runtime_s if self.runtime_s else 0.0

    return TokenCounter


def __getattr__(name: str):
    # TokenCounter subclasses transformers.TrainerCallback; build it on first use so that importing
    # this module does not import transformers.
    if name == "TokenCounter":
        cls = _make_token_counter()
        globals()["TokenCounter"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _losses(trainer) -> tuple[list[float], float | None]:
    history = trainer.state.log_history
    mean = next((h["train_loss"] for h in reversed(history) if "train_loss" in h), None)
    return [h["loss"] for h in history if "loss" in h], mean


def finish(trainer, cfg: Config, method: str, model_name: str, data: str, version: int | None, out: Path,
           counter, **extra) -> TrainSummary:
    """Save the model (LoRA: the adapter in adapter/ and the merged model), the tokenizer, the
    resolved config (train.yaml) and summary.json; return the summary.

    Every process of a multi-process run calls this (a ZeRO-3 / FSDP model is gathered from all of
    them); only the main process writes, the others wait until it has, and all return the summary."""
    losses, train_loss = _losses(trainer)
    accelerator = getattr(trainer, "accelerator", None)
    processes = accelerator.num_processes if accelerator is not None else 1
    # DeepSpeed / FSDP shard the weights even in one process: they save through the Trainer
    distributed = accelerator is not None and (processes > 1 or _sharded(accelerator))
    if distributed:
        _save_distributed(trainer, accelerator, out, extra)
    else:
        _save(trainer, out)
    summary = TrainSummary(method=method, model=model_name, data=data, version=version, output_dir=out,
                           steps=trainer.state.global_step, tokens=counter.tokens, runtime_s=round(counter.runtime_s, 3),
                           tokens_per_s=round(counter.tokens_per_s, 1), final_loss=losses[-1] if losses else None,
                           train_loss=train_loss, device=device(), extra=extra, losses=losses, processes=processes)
    if not distributed or accelerator.is_main_process:
        _write_run_files(cfg, out, summary)
    if distributed:
        accelerator.wait_for_everyone()  # nobody returns (or pushes) before the model is on disk
    return summary


def _save(trainer, out: Path) -> None:
    """One process: the model as trained (LoRA: adapter/ and the merged model) and the tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
    if hasattr(model, "merge_and_unload"):  # a peft model
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    trainer.processing_class.save_pretrained(out)


def _sharded(accelerator) -> bool:
    return accelerator.distributed_type.value in ("DEEPSPEED", "FSDP")


def _save_distributed(trainer, accelerator, out: Path, extra: dict) -> None:
    """Several processes. DDP: every process holds the whole model, the main one saves it as `_save` does.
    DeepSpeed / FSDP: the weights are sharded; the Trainer's save_model gathers them (a collective: every
    process calls it) and writes on the main process. A LoRA run there saves the adapter only: merging
    needs the base weights whole on one process (merge adapter/ into the base model afterwards)."""
    if _sharded(accelerator):
        peft = hasattr(accelerator.unwrap_model(trainer.model), "merge_and_unload")
        trainer.save_model(str(out / "adapter" if peft else out))
        if peft:
            extra["merged"] = "no (DeepSpeed/FSDP with LoRA: adapter/ only)"
        if accelerator.is_main_process:
            trainer.processing_class.save_pretrained(out)
    elif accelerator.is_main_process:
        _save(trainer, out)


def _write_run_files(cfg: Config, out: Path, summary: TrainSummary) -> None:
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    (out / "train.yaml").write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")


def print_train_summary(summary: TrainSummary, console) -> None:
    from rich.table import Table

    def loss(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    table = Table(title=f"train {summary.method}", show_header=False)
    for key, value in (("model", summary.model), ("data", summary.data),
                       ("version", "-" if summary.version is None else f"v{summary.version}"),
                       ("device", summary.device if summary.processes == 1
                        else f"{summary.device} x {summary.processes} processes"), ("steps", f"{summary.steps:,}"), ("tokens", f"{summary.tokens:,}"),
                       ("runtime", f"{summary.runtime_s:.1f} s"), ("tokens/s", f"{summary.tokens_per_s:,.1f}"),
                       ("final loss", loss(summary.final_loss)), ("mean train loss", loss(summary.train_loss)),
                       *((k, str(v)) for k, v in summary.extra.items())):
        table.add_row(key, value)
    console.print(table)
    # outside the table, unwrapped: a path to copy
    console.print(f"saved -> {summary.output_dir}", highlight=False, soft_wrap=True)


def push_model(cfg: Config, summary: TrainSummary) -> str:
    """Upload the run's folder to train.hub_repo_id (token from publish.token_env, default HF_TOKEN,
    else the user's huggingface_hub login); returns the repo URL. The token is never printed."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from factory.hub import HubError, hub_token, one_line

    repo_id = cfg.train.hub_repo_id
    if not repo_id:
        raise TrainError("--push-to-hub needs train.hub_repo_id (e.g. --set train.hub_repo_id=user/model)")
    try:
        token = hub_token(cfg)
    except HubError as e:
        raise TrainError(str(e)) from None
    api = HfApi(token=token, library_name="factory")
    try:
        url = api.create_repo(repo_id, repo_type="model", private=cfg.publish.private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(summary.output_dir),
                          commit_message=f"factory train {summary.method} "
                                         f"({'data' if summary.version is None else f'v{summary.version}'})",
                          ignore_patterns=["checkpoint-*/**"])
    except HfHubHTTPError as e:
        raise TrainError(f"push to {repo_id} failed: {one_line(e, token)}") from None
    return str(url)
