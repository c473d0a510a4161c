"""Training on several processes (GPUs, or CPU processes without one): which process this is, and the
`accelerate launch` command that `factory train <method> --num-processes N` re-runs itself through.

Every process of a run executes the same `factory train` command; TRL's trainers shard the batches and
average the gradients through accelerate (DDP; DeepSpeed ZeRO or FSDP from an accelerate config file).
Rank 0 (the main process) alone writes the model, the summary and the Hub push and prints; the others
wait at a barrier. Which process this is comes from the environment that torchrun / `accelerate launch`
set (RANK, WORLD_SIZE), so asking costs no torch import and works before the process group exists.
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

DDP_TIMEOUT_S = 1800  # transformers' TrainingArguments.ddp_timeout default: rank 0 may export a version meanwhile


def world_size() -> int:
    """How many processes train together: WORLD_SIZE under `accelerate launch` / torchrun, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """Rank 0 of the run (every process outside a launcher is its own main process)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def _state():
    """accelerate's process state, created as the Trainer creates it (CPU processes: gloo; the Trainer's
    default ddp_timeout), since the Trainer then reuses this process group as it is."""
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=DDP_TIMEOUT_S))


@contextmanager
def main_process_first():
    """Rank 0 runs the block first (export a missing version, fill the datasets cache), then the others
    run it and read what it wrote. A no-op in a single process.

    Rank 0 reaches the barrier even when the block raises (accelerate's own main_process_first does not):
    the others then run the block too and fail with the same one-line error, instead of a page of gloo /
    NCCL "connection closed" tracebacks when rank 0 exits under them."""
    if world_size() == 1:
        yield
        return
    state = _state()
    if not state.is_main_process:
        state.wait_for_everyone()
    try:
        yield
    finally:
        if state.is_main_process:
            state.wait_for_everyone()


def wait_for_everyone() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


def _free_port() -> int:
    # two runs on one machine (or a test next to a run) must not both take torchrun's default 29500
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(cli_args: list[str], num_processes: int, config_file: Path | None = None) -> list[str]:
    """`accelerate launch` running `python -m factory.cli <cli_args>` in num_processes processes.

    Without a config file: data parallel (DDP) on one machine, on the GPUs, or on CPU processes (gloo)
    when there is none: `--multi_gpu` only selects torchrun, the Trainer picks the backend. A config file
    (DeepSpeed ZeRO-2/3, FSDP, several machines: see configs/accelerate/) decides the rest itself."""
    # --quiet: a failed process's own error, then the launcher's short report (not its traceback)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--num_processes", str(num_processes)]
    if config_file is not None:
        cmd += ["--config_file", str(config_file)]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(_free_port())]
    return cmd + ["-m", "factory.cli", *cli_args]


def relaunch(cli_args: list[str], num_processes: int, config_file: Path | None = None) -> int:
    """Run the command under `accelerate launch` and return its exit status (1 when a process failed:
    its own one-line error is printed above the launcher's report)."""
    import subprocess

    return subprocess.run(accelerate_command(cli_args, num_processes, config_file), check=False).returncode
