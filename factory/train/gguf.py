"""A trained student as a GGUF file for llama.cpp and Ollama, verified against the model it came from.

`export_gguf(model_dir, "q8_0")` writes <model_dir>/gguf/model-q8_0.gguf, an Ollama `Modelfile` and
model-q8_0.check.json. The file is written with the `gguf` package's GGUFWriter, the way llama.cpp's
convert_hf_to_gguf.py writes llama and qwen2 models (tensor names from gguf's own name map, the Q/K rotary
permutation for llama, the tokenizer as a byte-level BPE with its pre-tokenizer name), and quantised with
`gguf.quants` (numpy: f16 and q8_0; the k-quants such as Q4_K_M need llama.cpp's compiled quantiser).

Then it is verified, not assumed: transformers loads the GGUF back (`from_pretrained(gguf_file=)`), and
  - its tokenizer must encode the probe texts to the source tokenizer's ids;
  - its logits must equal those of the source model with the same rounding applied in memory (each weight
    through f16, or through Q8_0 and back): this catches a wrong layout, name or permutation exactly;
  - what the rounding costs is measured against the untouched source: max |logit diff|, next-token top-1
    agreement, and whether greedy continuations are equal.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from factory.errors import ModelError

TYPES = ("f16", "q8_0")
ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
LAYOUT_TOLERANCE = 1e-2  # |logit| difference allowed between the GGUF and the same rounding done in memory
NEW_TOKENS = 20
PROMPTS = (
    "What is 17 times 23? Think step by step, then give the final answer.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Name three primary colours and one thing that is usually each colour.",
)

# llama.cpp names a BPE tokenizer's pre-tokenizer by hashing its encoding of CHKTXT (convert_hf_to_gguf's
# get_vocab_base_pre). These are the llama-/qwen2-architecture families from its table; another hash is refused.
CHKTXT = ("\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) "
          "✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
          "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
          "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL")
PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM / SmolLM2
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3.x
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5 / Qwen2 / Qwen2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3 tokenizer
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",  # R1-Distill-Qwen
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
    "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821": "deepseek-coder",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "d4c8f286ea6b520b3d495c4455483cfa2302c0cfcd4be05d781b6a8a0a7cdaf1": "megrez",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}
# llama.cpp's llama rope wants Q/K rows in interleaved pairs (see _permute); qwen2 uses the NEOX rope, HF's order
PERMUTED = {"llama"}
# the ChatML turn Ollama's template writes; a chat template that renders the same text gets a TEMPLATE
CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


@dataclass
class GGUFExport:
    path: Path
    modelfile: Path
    gguf_type: str
    size_bytes: int
    tensors: int
    convert_s: float
    check: dict[str, Any] = field(default_factory=dict)  # empty when not verified

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "modelfile": str(self.modelfile)}


def check_type(gguf_type: str, model: str | None = None) -> str:
    """A one-line ModelError for an unknown type, or (given a local model folder, e.g. train.model) an
    architecture the export does not write: `train --gguf` checks this before it trains."""
    if gguf_type not in TYPES:
        raise ModelError(f"--gguf: unknown type {gguf_type!r}; choose one of {', '.join(TYPES)} "
                         "(k-quants such as Q4_K_M need llama.cpp's llama-quantize on the f16 file)")
    folder = Path(model).expanduser() if model and model != "embedded" else None
    if folder is not None and (folder / "config.json").is_file():
        check_model_folder(folder)
    return gguf_type


def check_model_folder(model_dir: Path) -> str:
    """The GGUF architecture of a transformers model folder, or a one-line ModelError."""
    config = model_dir / "config.json"
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model folder")
    if not config.is_file():
        raise ModelError(f"{model_dir}: no config.json (not a transformers model folder; a LoRA run keeps the merged "
                         "model in the run folder and the adapter in adapter/)")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        raise ModelError(f"{model_dir}: no model weights (*.safetensors)")
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except ValueError as e:
        raise ModelError(f"{config}: not valid JSON ({e})") from None
    arch = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        raise ModelError(f"{config}: architecture {', '.join(archs) or '(none)'} is not supported for GGUF export "
                         f"(supported: {', '.join(ARCHITECTURES)}); use llama.cpp's convert_hf_to_gguf.py")
    return arch


def export_gguf(model_dir: str | Path, gguf_type: str = "q8_0", out_dir: str | Path | None = None, *,
                verify: bool = True, console=None) -> GGUFExport:
    """Write <out_dir>/model-<type>.gguf (default out_dir: <model_dir>/gguf), the Modelfile next to it, and,
    unless verify=False, check the file against the source model (numbers in model-<type>.check.json)."""
    model_dir = Path(model_dir).expanduser()
    check_type(gguf_type)
    arch = check_model_folder(model_dir)
    out = Path(out_dir).expanduser() if out_dir is not None else model_dir / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"model-{gguf_type}.gguf"
    if console is not None:
        console.print(f"gguf: {model_dir} -> {path} ({gguf_type})", highlight=False, soft_wrap=True)
    model, tokenizer = load_source(model_dir)
    started = time.perf_counter()
    tensors = write_gguf(model, tokenizer, arch, path, gguf_type, name=model_dir.name)
    convert_s = time.perf_counter() - started
    modelfile = out / "Modelfile"
    modelfile.write_text(modelfile_text(tokenizer, path.name), encoding="utf-8")
    result = GGUFExport(path=path, modelfile=modelfile, gguf_type=gguf_type, size_bytes=path.stat().st_size,
                        tensors=tensors, convert_s=round(convert_s, 2))
    if verify:
        result.check = verify_gguf(model, tokenizer, path, gguf_type)
        (out / f"model-{gguf_type}.check.json").write_text(json.dumps(result.to_json(), indent=2) + "\n",
                                                          encoding="utf-8")
        if not result.check["ok"]:
            raise ModelError(f"{path}: verification failed: {result.check['problem']} "
                             f"(numbers in {out / f'model-{gguf_type}.check.json'})")
    return result


def load_source(model_dir: Path):
    """The model (fp32, eval mode) and tokenizer of a folder, or a one-line ModelError."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ModelError(f"{model_dir}: cannot load the model: {str(e).splitlines()[0]}") from None
    return model.eval(), tokenizer


# ---------------------------------------------------------------------------------------------- writing


def tensor_type(shape: tuple[int, ...], gguf_type: str):
    """What a tensor is stored as: 1-D (norms, biases) in F32, as llama.cpp does; Q8_0 needs rows of whole
    32-value blocks, else F16 (llama.cpp's fallback too)."""
    from gguf import GGMLQuantizationType as Q

    if len(shape) < 2:
        return Q.F32
    if gguf_type == "q8_0" and shape[-1] % 32 == 0:
        return Q.Q8_0
    return Q.F16


def write_gguf(model, tokenizer, arch: str, path: Path, gguf_type: str, name: str = "model") -> int:
    """Write the model as a GGUF at `path` (atomically: a temporary sibling renamed into place); returns the
    number of tensors written."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(None, arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    _add_hparams(writer, cfg, arch)
    writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, cfg, path.parent)
    count = _add_tensors(writer, model, arch, gguf_type)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _add_hparams(writer, cfg, arch: str) -> None:
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ModelError(f"rope scaling {rope.get('rope_type', rope.get('type'))!r} is not supported for GGUF export "
                         "yet; use llama.cpp's convert_hf_to_gguf.py")
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if theta is not None:
        writer.add_rope_freq_base(float(theta))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != cfg.hidden_size // cfg.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(cfg.vocab_size)


def _add_tokenizer(writer, tokenizer, cfg, where: Path) -> None:
    """The vocabulary as llama.cpp's byte-level BPE ("gpt2") with token types, merges, special ids and the
    chat template (what convert_hf_to_gguf's _set_vocab_gpt2 writes)."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    model_json = json.loads(backend.to_str()) if backend is not None else {}
    decoder = json.dumps(model_json.get("decoder"))
    if model_json.get("model", {}).get("type") != "BPE" or "ByteLevel" not in decoder:
        raise ModelError("tokenizer: only byte-level BPE tokenizers (GPT-2 / Llama 3 / Qwen / SmolLM style) are "
                         "supported for GGUF export; use llama.cpp's convert_hf_to_gguf.py")
    chkhsh = sha256(str(tokenizer.encode(CHKTXT)).encode()).hexdigest()  # with BOS, as llama.cpp hashes it
    pre = PRE_TOKENIZERS.get(chkhsh)
    if pre is None:
        raise ModelError(f"tokenizer: its pre-tokenizer is not one llama.cpp is known to name (hash {chkhsh[:16]}…); "
                         "use llama.cpp's convert_hf_to_gguf.py")
    vocab = tokenizer.get_vocab()
    size = cfg.vocab_size  # the embedding's rows; ids the tokenizer does not use become [PAD<id>] entries
    if max(vocab.values()) >= size:
        raise ModelError(f"tokenizer: it has ids up to {max(vocab.values())} but the model's embedding has {size} rows "
                         "(resize the embedding after adding tokens)")
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = _special_vocab(tokenizer, size, where)
    special.add_to_gguf(writer, quiet=True)


def _special_vocab(tokenizer, size: int, where: Path):
    """gguf.SpecialVocab reads merges and special ids from a tokenizer folder: save the loaded tokenizer (what
    transformers will actually use, e.g. the pad token `load_tokenizer` set) into a scratch folder for it."""
    import tempfile

    import gguf

    with tempfile.TemporaryDirectory(dir=where, prefix=".tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        special = gguf.SpecialVocab(tmp, load_merges=True, n_vocab=size)
    if not special.merges:
        raise ModelError("tokenizer: no BPE merges in tokenizer.json")
    special.chat_template = tokenizer.chat_template  # the one the model was trained with
    for typ, token in (("bos", tokenizer.bos_token), ("eos", tokenizer.eos_token), ("pad", tokenizer.pad_token),
                       ("unk", tokenizer.unk_token)):
        if token is not None and typ not in special.special_token_ids:
            special.special_token_ids[typ] = tokenizer.convert_tokens_to_ids(token)
    # llama.cpp adds BOS when tokenizing unless told not to; transformers' chat templates write their own
    special.add_special_token.setdefault("bos", bool(getattr(tokenizer, "add_bos_token", False)))
    special.add_special_token.setdefault("eos", False)
    return special


def _permute(w, n_head: int):
    """HF stores each Q/K head's rotary dimensions as two halves; llama.cpp's llama rope wants them
    interleaved (llama.cpp's LlamaModel.permute; transformers' GGUF loader undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add_tensors(writer, model, arch: str, gguf_type: str) -> int:
    import gguf
    import numpy as np
    import torch

    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    count = 0
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":  # llama.cpp uses token_embd when output.weight is absent
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ModelError(f"tensor {hf_name}: no GGUF name for it in the {arch} layout")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if arch in PERMUTED and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, cfg.num_attention_heads)
        elif arch in PERMUTED and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, cfg.num_key_value_heads)
        qtype = tensor_type(data.shape, gguf_type)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        count += 1
    return count


# -------------------------------------------------------------------------------------------- Modelfile


def modelfile_text(tokenizer, gguf_name: str) -> str:
    """An Ollama Modelfile: FROM the file, a TEMPLATE when the chat template is ChatML-shaped (with the
    template's default system prompt as SYSTEM), and stop tokens."""
    lines = ["# Ollama: ollama create <name> -f Modelfile && ollama run <name>", f"FROM ./{gguf_name}", ""]
    shape = chatml_shape(tokenizer)
    if shape is None:
        lines += ["# This model's chat template is not ChatML-shaped, so no TEMPLATE is written here: Ollama then",
                  "# uses the chat template stored in the GGUF (tokenizer.chat_template) if it recognises it;",
                  "# otherwise write a TEMPLATE by hand (https://github.com/ollama/ollama/blob/main/docs/template.md)."]
        stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    else:
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
        if shape["default_system"]:
            lines.append(f'SYSTEM """{shape["default_system"]}"""')
        stops = ["<|im_end|>", "<|im_start|>"] + ([tokenizer.eos_token] if tokenizer.eos_token else [])
    lines += [f'PARAMETER stop "{s}"' for s in dict.fromkeys(stops)]
    return "\n".join(lines) + "\n"


def chatml_shape(tokenizer) -> dict | None:
    """{"default_system": str} when the chat template renders plain ChatML turns (with, or without, a
    system prompt it adds by itself), else None. Decided by rendering, not by reading the template."""
    def chatml(messages):
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
            "<|im_start|>assistant\n"

    def render(messages):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # a template that raises on this conversation is not plain ChatML either
            return None

    conversation = [{"role": "system", "content": "S y s"}, {"role": "user", "content": "U 1"},
                    {"role": "assistant", "content": "A 1"}, {"role": "user", "content": "U 2"}]
    if not tokenizer.chat_template or render(conversation) != chatml(conversation):
        return None
    user_only = render(conversation[1:2])
    if user_only == chatml(conversation[1:2]):
        return {"default_system": ""}
    prefix, head = "<|im_start|>system\n", "<|im_end|>\n" + chatml(conversation[1:2])
    if user_only and user_only.startswith(prefix) and user_only.endswith(head):
        system = user_only[len(prefix):-len(head)]
        if '"""' not in system and "<|im_" not in system:
            return {"default_system": system}
    return None


# ------------------------------------------------------------------------------------------ verification


def verify_gguf(model, tokenizer, path: Path, gguf_type: str, prompts=PROMPTS, new_tokens: int = NEW_TOKENS) -> dict:
    """Load the GGUF back with transformers and compare it with `model` (see the module docstring).
    Returns the numbers and ok / problem. `model` ends up rounded as the file is (in place: at most two
    models are in memory at once)."""
    import torch

    started = time.perf_counter()
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    inputs = [torch.tensor([tokenizer.encode(t, add_special_tokens=False)]) for t in texts]
    source = _outputs(model, inputs, new_tokens, tokenizer)
    _round_like_gguf(model, gguf_type)
    reference = _outputs(model, inputs, 0, tokenizer)  # logits only: the layout check
    gguf_model, gguf_tokenizer = _load_gguf(path)
    loaded = _outputs(gguf_model, inputs, new_tokens, tokenizer)
    probes = [*texts, CHKTXT, "<think>\nx = 3.14159 </think>\n\n\\boxed{42}"]
    tokenizer_equal = all(tokenizer.encode(t, add_special_tokens=False) ==
                          gguf_tokenizer.encode(t, add_special_tokens=False) for t in probes)
    layout_diff = max(float((r - g).abs().max()) for r, g in zip(reference["logits"], loaded["logits"]))
    diffs = [(s - g).abs() for s, g in zip(source["logits"], loaded["logits"])]
    top1 = sum(int((s.argmax(-1) == g.argmax(-1)).sum()) for s, g in zip(source["logits"], loaded["logits"]))
    greedy_equal = [a == b for a, b in zip(source["greedy"], loaded["greedy"])]
    check = {
        "prompts": len(prompts),
        "positions": sum(int(x.shape[1]) for x in inputs),
        "new_tokens": new_tokens,
        "tokenizer_equal": tokenizer_equal,
        "layout_max_abs_logit_diff": round(layout_diff, 6),
        "max_abs_logit_diff": round(max(float(d.max()) for d in diffs), 5),
        "mean_abs_logit_diff": round(float(torch.cat([d.flatten() for d in diffs]).mean()), 6),
        "logit_range": round(max(float(s.abs().max()) for s in source["logits"]), 3),
        "top1_agreement": round(top1 / sum(int(x.shape[1]) for x in inputs), 4),  # over all prompt positions
        "greedy_equal": f"{sum(greedy_equal)}/{len(greedy_equal)}",
        "greedy_first_divergence": [_first_divergence(a, b) for a, b in zip(source["greedy"], loaded["greedy"])],
        "verify_s": 0.0,
    }
    problem = None
    if not tokenizer_equal:
        problem = "the GGUF's tokenizer encodes the probe texts differently from the source tokenizer"
    elif layout_diff > LAYOUT_TOLERANCE:
        problem = (f"logits differ from the same {gguf_type} rounding done in memory by {layout_diff:.4g} "
                   f"(> {LAYOUT_TOLERANCE}): the file's layout is wrong")
    check["ok"], check["problem"] = problem is None, problem
    check["verify_s"] = round(time.perf_counter() - started, 2)
    return check


def _load_gguf(path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from factory.embedded import _cached_gguf_name_maps

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        with _cached_gguf_name_maps():  # (transformers rebuilds gguf's name map per tensor otherwise)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{path}: transformers cannot load the GGUF back: {str(e).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.eval(), tokenizer


def _round_like_gguf(model, gguf_type: str) -> None:
    """Put every weight through the storage type write_gguf gives it, and back to fp32, in place."""
    import gguf
    import numpy as np
    import torch

    with torch.no_grad():
        for p in model.parameters():  # tied weights are one parameter: rounded once
            qtype = tensor_type(tuple(p.shape), gguf_type)
            if qtype == gguf.GGMLQuantizationType.F16:
                p.copy_(p.half().float())
            elif qtype == gguf.GGMLQuantizationType.Q8_0:
                data = p.detach().cpu().numpy().astype(np.float32)
                p.copy_(torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(data, qtype), qtype)))


def _outputs(model, inputs, new_tokens: int, tokenizer) -> dict:
    import torch

    logits, greedy = [], []
    with torch.no_grad():
        for ids in inputs:
            logits.append(model(ids).logits[0].float())
            if not new_tokens:
                continue
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            greedy.append(out[0, ids.shape[1]:].tolist())
    return {"logits": logits, "greedy": greedy}


def _first_divergence(a: list[int], b: list[int]) -> int | None:
    """The index of the first differing generated token, None when the continuations are equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def print_gguf_export(result: GGUFExport, console) -> None:
    from rich.table import Table

    table = Table(title=f"GGUF {result.gguf_type}", show_header=False)
    rows = [("size", f"{result.size_bytes / 2**20:,.1f} MiB"), ("tensors", str(result.tensors)),
            ("conversion", f"{result.convert_s:.1f} s")]
    c = result.check
    if c:
        rows += [("tokenizer", "equal ids" if c["tokenizer_equal"] else "DIFFERENT ids"),
                 ("layout check", f"max |Δlogit| {c['layout_max_abs_logit_diff']:.2g} vs the same rounding in memory"),
                 ("vs source", f"max |Δlogit| {c['max_abs_logit_diff']:.4f} (mean {c['mean_abs_logit_diff']:.5f}, "
                               f"logits up to {c['logit_range']:.1f})"),
                 ("top-1 agreement", f"{c['top1_agreement']:.2%} of {c['positions']} positions"),
                 ("greedy equal", f"{c['greedy_equal']} prompts x {c['new_tokens']} tokens"),
                 ("verification", f"{c['verify_s']:.1f} s")]
    else:
        rows.append(("verification", "skipped (--no-verify)"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f"gguf -> {result.path}", highlight=False, soft_wrap=True)
    console.print(f"Modelfile -> {result.modelfile}", highlight=False, soft_wrap=True)
