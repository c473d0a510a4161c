"""The `factory` command line: each command loads the config and calls one library function.

Every user-facing error is a `FactoryError`, caught in one place (`_Commands.invoke`): one line on
stderr and the error's exit code (0 done, 1 a run failed, 2 an error, 3 nothing new, 4 gates failed,
5 busy, 130 interrupted; see factory/errors.py). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console

from factory.errors import FactoryError


class _Commands(typer.core.TyperGroup):
    """The one place user-facing errors are caught: subcommands run inside this invoke."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FactoryError as e:
            _fail(str(e), e.exit_code)


app = typer.Typer(help="Build reasoning distillation datasets and distil them into small models.", cls=_Commands,
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
build_app = typer.Typer(help="Build things from the config.", no_args_is_help=True)
app.add_typer(build_app, name="build")
train_app = typer.Typer(help="Distil the curated corpus into a small model with TRL.", no_args_is_help=True)
app.add_typer(train_app, name="train")

console = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("-c", "--config", help="The project's YAML config.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: a.b=c (repeatable).")]


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    message = " ".join(message.split())  # one line, whatever a server or library put in it
    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def main(wait: Annotated[float, typer.Option(
        "--wait", help="When another process holds the store, wait up to this many seconds for it.")] = 0.0) -> None:
    """Build reasoning distillation datasets and distil them into small models."""
    import os

    if wait > 0:
        os.environ["FACTORY_STORE_WAIT_S"] = str(wait)


def _load(config: Path, overrides: list[str] | None):
    from factory.config import load_config

    return load_config(config, overrides or [])


@build_app.command("dataset")
def build_dataset_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None,
                      no_wait: Annotated[bool, typer.Option(
                          "--no-wait", help="Teachers in mode: batch submit their batches and exit; a later build "
                                            "collects what finished.")] = False,
                      batch_files: Annotated[Optional[Path], typer.Option(
                          "--batch-files", help="Plan, then write each teacher's pending requests as Batch API "
                                                "JSONL into DIR/<teacher>/ instead of asking it (for `vllm "
                                                "run-batch`; store its output with `factory import-batch`).")] = None
                      ) -> None:
    """Render seeds through the prompts, ask the teachers, store every answer (resumable); filter and export."""
    from factory.pipeline import EXIT_INTERRUPTED, run_pipeline

    if batch_files is not None:
        return _write_batch_files(_load(config, set_), batch_files)
    result = run_pipeline(_load(config, set_), console=console, wait_batches=not no_wait)
    if result.stopped and result.exit_code == 0:  # batches in flight (--no-wait): not an error
        console.print(result.stopped, highlight=False)
    elif result.stopped and result.exit_code != EXIT_INTERRUPTED:  # Ctrl-C: the summary says so, as any tool would
        _fail(result.stopped, result.exit_code)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _write_batch_files(cfg, folder: Path) -> None:
    """`build dataset --batch-files DIR`: the plan stage, then the pending requests into files (nothing sent)."""
    from factory.build import build_dataset
    from factory.teachers.batch_file import BatchFileWriter

    writers = {t.name: BatchFileWriter(t, folder) for t in cfg.teachers if t.generate}
    for w in writers.values():
        w.clear()
    summary = build_dataset(cfg, console=console, teachers=writers)
    for w in writers.values():
        if w.files:
            console.print(f"{w.name}: {w.requests_written} requests -> {len(w.files)} file(s) in {w.folder} "
                          f"(body model: '{w.model}')", highlight=False)
        for request_id, size in w.too_large[:3]:
            console.print(f"[yellow]{w.name}: request {request_id} not written: {size} bytes is over "
                          f"batch_max_bytes[/]", highlight=False)
    if not any(w.files for w in writers.values()):
        console.print(f"nothing pending: every one of the {summary.requests_planned} planned requests has an answer",
                      highlight=False)
    if summary.interrupted:
        raise typer.Exit(130)


@app.command("batches")
def batches_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None) -> None:
    """List the Batch API batches of teachers in mode: batch, with their status and counts (as last polled)."""
    from factory.store import Store
    from factory.teachers.openai_batch import list_batches

    cfg = _load(config, set_)
    if not cfg.store_path.exists():
        _fail(f"{cfg.store_path}: no store yet; run `factory build dataset` first")
    with Store(cfg.store_path, read_only=True) as store:
        rows = list_batches(store)
    if not rows:
        console.print("no batches", highlight=False)
    for b in rows:
        c = b["counts"]
        counts = f"{c.get('completed', 0)} done, {c.get('failed', 0)} failed of {b['request_count']}"
        when = f"submitted {b['submitted_at']:%Y-%m-%d %H:%M}" if b["submitted_at"] else "not submitted"
        state = "collected" if b["collected_at"] else "in flight"
        print(f"{b['provider_batch_id'] or b['batch_id']}  {b['teacher']}  {b['status']}  {counts}  {when}  {state}"
              + (f"  ({b['message']})" if b["message"] else ""))


@app.command("import-batch")
def import_batch_cmd(output: Annotated[Path, typer.Argument(help="A Batch API output JSONL file (OpenAI's or "
                                                                 "`vllm run-batch -o`).")],
                     config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None) -> None:
    """Store the answers of a batch output file, matched to planned requests by custom_id."""
    from factory.store import Store
    from factory.teachers.openai_batch import import_batch_output

    cfg = _load(config, set_)
    if not output.is_file():
        _fail(f"{output}: no such file")
    with Store(cfg.store_path) as store:
        s = import_batch_output(store, output, {t.name: t for t in cfg.teachers})
    console.print(f"{output}: {s.lines} lines, {s.stored} answers stored, {s.errors} errors, {s.already} already "
                  f"answered, {s.unknown_count} unknown custom_id" + (f" (e.g. {s.unknown[0]})" if s.unknown else "")
                  + (f", {len(s.bad_lines)} bad lines (e.g. line {s.bad_lines[0]})" if s.bad_lines else ""),
                  highlight=False)
    if s.lines and s.unknown_count + len(s.bad_lines) == s.lines:
        _fail(f"{output}: no line matches a planned request (is this the right project?)")


@app.command("filter")
def filter_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None) -> None:
    """Parse, verify, dedup, decontaminate and select the stored traces; record a version."""
    from factory.filter import run_filter
    from factory.report import print_filter_summary

    print_filter_summary(run_filter(_load(config, set_), console=console), console)


@app.command("export")
def export_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None,
               version: Annotated[Optional[int], typer.Option(help="Version to export (default: the latest).")] = None
               ) -> None:
    """Write a version as Parquet (sft / dpo / soft_labels) plus a dataset card."""
    from factory.export import export_version
    from factory.report import print_export

    print_export(export_version(_load(config, set_), version), console)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")]) -> None:
    """Scaffold a project: factory.yaml, prompts/, filters/, data/ with a seed sample (runs offline as is),
    configs/accelerate/ (multi-GPU training launch configs)."""
    from factory.config import shipped_root

    root = shipped_root()
    if root is None:
        _fail("cannot find the shipped project files (prompts/, filters/, factory.yaml); reinstall factory")
    target = directory.resolve()
    if (target / "factory.yaml").exists():
        _fail(f"{target / 'factory.yaml'} already exists; not overwriting")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "factory.yaml", target / "factory.yaml")
    for folder in ("prompts", "filters", "configs"):
        if (root / folder).is_dir():  # configs/: absent from installs older than this version
            shutil.copytree(root / folder, target / folder, dirs_exist_ok=True)
    (target / "data").mkdir(exist_ok=True)
    for name in ("gsm8k_train_sample.jsonl", "LICENSES.md"):
        shutil.copy2(root / "data" / name, target / "data" / name)
    shutil.copytree(root / "data" / "benchmarks", target / "data" / "benchmarks", dirs_exist_ok=True)  # decontamination
    console.print(f"created {target}: factory.yaml, prompts/, filters/, data/, configs/\n"
                  f"next: cd {directory} && factory build dataset")


@app.command()
def report(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None,
           version: Annotated[Optional[int], typer.Option(help="Version (default: the latest).")] = None,
           html: Annotated[Optional[Path], typer.Option(help="Where to write the HTML page "
                                                             "(default: <workdir>/report/v<N>.html).")] = None,
           ) -> None:
    """Print the text summary and write a self-contained HTML report (funnel, lengths, diversity trend, cost)."""
    from factory.report import html_report, text_report

    cfg = _load(config, set_)
    text_report(cfg, Console(), version)
    path = html_report(cfg, version, html)
    console.print(f"HTML report -> {path}", highlight=False)


PushOpt = Annotated[bool, typer.Option("--push-to-hub", help="Push the trained model to train.hub_repo_id "
                                                             "(token from HF_TOKEN).")]


GGUFOpt = Annotated[Optional[str], typer.Option(
    "--gguf", help="At the end, also write the model as a verified GGUF of this type (f16 or q8_0) with an Ollama "
                   "Modelfile, in <run>/gguf/ (as `factory export-model` does).")]


ProcessesOpt = Annotated[int, typer.Option(
    "--num-processes", min=1, help="Train data-parallel on N processes (one per GPU; CPU processes without a "
                                   "GPU): re-runs this command under `accelerate launch`.")]
AccelerateOpt = Annotated[Optional[Path], typer.Option(
    "--accelerate-config", help="An accelerate config file for the launch (DeepSpeed ZeRO-2/3, FSDP, several "
                                "machines): see configs/accelerate/.")]


def _train(method: str, config: Path, set_: list[str] | None, push_to_hub: bool, num_processes: int = 1,
           accelerate_config: Path | None = None, gguf: str | None = None) -> None:
    import importlib

    from factory.train.common import print_train_summary, push_model
    from factory.train.launch import is_main_process, world_size

    cfg = _load(config, set_)
    if gguf is not None:  # a typo fails now, not after the training
        from factory.train.gguf import check_type

        check_type(gguf, cfg.train.model)
    if world_size() == 1 and (num_processes > 1 or accelerate_config is not None):
        _launch(cfg, method, config, set_, push_to_hub, num_processes, accelerate_config, gguf)
    main = is_main_process()  # under a launcher: rank 0 alone prints, saves and pushes
    fn = getattr(importlib.import_module(f"factory.train.{method}"), f"train_{method}")
    summary = fn(cfg, console=console if main else Console(stderr=True, quiet=True))
    if not main:
        return
    print_train_summary(summary, console)
    if gguf is not None:  # before the push, so that the GGUF and its Modelfile are uploaded too
        from factory.train.gguf import export_gguf, print_gguf_export

        print_gguf_export(export_gguf(summary.output_dir, gguf, console=console), console)
    if push_to_hub:
        console.print(f"pushed -> {push_model(cfg, summary)}", highlight=False)


def _launch(cfg, method: str, config: Path, set_: list[str] | None, push_to_hub: bool, num_processes: int,
            accelerate_config: Path | None, gguf: str | None = None) -> None:
    """Re-run `factory train <method>` in num_processes processes under `accelerate launch`; exits."""
    from factory.train.common import TrainError, data_folder
    from factory.train.launch import relaunch

    if accelerate_config is not None and not accelerate_config.is_file():
        raise TrainError(f"--accelerate-config: {accelerate_config} does not exist")
    data_folder(cfg)  # here, once: a missing export is written by one process, a bad version fails in one line
    args = ["train", method, "-c", str(config), *(a for s in set_ or [] for a in ("--set", s)),
            *(["--push-to-hub"] if push_to_hub else []), *(["--gguf", gguf] if gguf else [])]
    raise typer.Exit(relaunch(args, num_processes, accelerate_config))


@train_app.command("sft")
def train_sft_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None, push_to_hub: PushOpt = False,
                  num_processes: ProcessesOpt = 1, accelerate_config: AccelerateOpt = None, gguf: GGUFOpt = None) -> None:
    """Supervised fine-tuning (TRL SFTTrainer) on the `sft` split: loss on the assistant turn only."""
    _train("sft", config, set_, push_to_hub, num_processes, accelerate_config, gguf)


@train_app.command("dpo")
def train_dpo_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None, push_to_hub: PushOpt = False,
                  num_processes: ProcessesOpt = 1, accelerate_config: AccelerateOpt = None, gguf: GGUFOpt = None) -> None:
    """Preference training (TRL DPOTrainer) on the `dpo` split: verified vs failed traces of a seed."""
    _train("dpo", config, set_, push_to_hub, num_processes, accelerate_config, gguf)


@train_app.command("distill")
def train_distill_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None,
                      push_to_hub: PushOpt = False, num_processes: ProcessesOpt = 1,
                      accelerate_config: AccelerateOpt = None, gguf: GGUFOpt = None) -> None:
    """Distillation: soft labels from stored teacher logprobs (train.distill.mode=soft_labels) or
    on-policy with a teacher model (mode=on_policy, TRL DistillationTrainer)."""
    _train("distill", config, set_, push_to_hub, num_processes, accelerate_config, gguf)


@app.command("export-model")
def export_model_cmd(model_dir: Annotated[Path, typer.Argument(help="A trained model folder (a `factory train` run).")],
                     gguf: Annotated[str, typer.Option("--gguf", help="GGUF type: f16 or q8_0.")] = "q8_0",
                     out: Annotated[Optional[Path], typer.Option(
                         "--out", help="Where to write (default: MODEL_DIR/gguf).")] = None,
                     verify: Annotated[bool, typer.Option(
                         "--verify/--no-verify", help="Load the GGUF back and compare it with the model.")] = True,
                     ) -> None:
    """Write a model as a GGUF for llama.cpp / Ollama (plus a Modelfile), verified against the model."""
    from factory.train.gguf import export_gguf, print_gguf_export

    print_gguf_export(export_gguf(model_dir, gguf, out, verify=verify, console=console), console)


@app.command("eval")
def eval_cmd(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None,
             model: Annotated[Optional[list[str]], typer.Option(
                 "--model", "-m", help="Model to score (repeat twice for a before/after table); "
                                       "default: train.model.")] = None) -> None:
    """pass@1 / pass@k of one or two models on a benchmark set, scored with the filter stage's verifiers."""
    from factory.train.eval import evaluate, print_eval_table

    cfg = _load(config, set_)
    print_eval_table(evaluate(cfg, model or [cfg.train.model], console=console), console)


@app.command()
def publish(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None,
            version: Annotated[Optional[int], typer.Option(help="Version (default: the latest).")] = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Write the folder and commit plan; upload "
                                                                      "nothing.")] = False,
            force: Annotated[bool, typer.Option("--force", help="Publish a version with no kept traces, or one that "
                                                                "shrank by more than publish.max_shrink.")] = False
            ) -> None:
    """Push an exported version to the Hugging Face Hub: one commit (Parquet + card), tagged v<N>."""
    from factory.hub import print_publish, publish_version

    print_publish(publish_version(_load(config, set_), version, dry_run=dry_run, console=console, force=force), console)


@app.command()
def refresh(config: ConfigOpt = Path("factory.yaml"), set_: SetOpt = None,
            force: Annotated[bool, typer.Option("--force", help="Lift the size guard (an empty version, or one that "
                                                                "shrank by more than publish.max_shrink); the other "
                                                                "gates still apply.")] = False) -> None:
    """The scheduled job: lock, re-read sources, generate what is missing, filter, compare, gate, publish.
    Exit codes: 0 published, 3 nothing new, 4 gates failed, 5 locked, 1 error (README: Scheduling)."""
    from factory.refresh import run_refresh

    cfg = _load(config, set_)
    raise typer.Exit(run_refresh(cfg, console=console, force=force).exit_code)


if __name__ == "__main__":
    app()
