"""Where the policy runs and in which precision, decided from what the machine can do.

`train.device` and `train.dtype` / `rollout.dtype` accept `auto`. The rule (issue "trainer core", item 3):
bfloat16 where the device computes it natively, float32 elsewhere.

* CUDA: `torch.cuda.is_bf16_supported()` (compute capability >= 8.0 on NVIDIA).
* CPU: native bf16 needs the AVX512_BF16 instructions or AMX tiles (`torch.cpu._is_avx512_bf16_supported()`,
  `torch.cpu._is_amx_tile_supported()`, read from the CPU's own feature bits by cpuinfo), and torch must actually
  dispatch to AVX-512 kernels (`torch.backends.cpu.get_cpu_capability()`; `ATEN_CPU_CAPABILITY=avx2` lowers it).
  Without them a bf16 matmul is emulated: measured 0.7 GFLOP/s against 67.6 GFLOP/s in fp32 on a 2-core AVX2-only
  AMD EPYC, which made the default recipe's generation 10-20x slower (85-94 s per step instead of 9-11 s).

This is a probe of capabilities, not a list of CPU names: a CPU nobody here has seen is judged by its feature bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """A resolved dtype and the reason it was chosen (printed in the batch plan line)."""

    dtype: str  # "float32" | "bfloat16"
    reason: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def cpu_bf16_support() -> tuple[bool, str]:
    """(native, why) for bf16 compute on this CPU, as torch will run it.

    native is True only when the CPU has AVX512_BF16 or AMX and torch's dispatch level is AVX-512 (or higher).
    """
    cap = torch.backends.cpu.get_cpu_capability()
    flags = []
    if _probe(getattr(torch.cpu, "_is_avx512_bf16_supported", None)):
        flags.append("AVX512_BF16")
    if _probe(getattr(torch.cpu, "_is_amx_tile_supported", None)):
        flags.append("AMX")
    if not flags:
        return False, f"CPU has neither AVX512_BF16 nor AMX (torch capability {cap})"
    if not cap.upper().startswith(("AVX512", "AMX")):
        return False, f"CPU has {'+'.join(flags)} but torch dispatches {cap} kernels"
    return True, f"CPU has {'+'.join(flags)} (torch capability {cap})"


def _probe(fn) -> bool:
    try:
        return bool(fn()) if fn is not None else False
    except Exception:  # an old torch or an unusual build: assume no native bf16
        return False


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """(native, why) for bf16 compute on `device` (cpu or cuda:N)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'computes' if ok else 'does not compute'} bf16 natively"
    if device.type == "cpu":
        return cpu_bf16_support()
    return False, f"device type {device.type} is not probed"


def resolve_dtype(requested: str, device: torch.device) -> Precision:
    """`auto` -> bfloat16 where `device` computes it natively, else float32; explicit values are kept as asked.

    Raises:
        ValueError: `requested` is not auto, float32 or bfloat16.
    """
    if requested in ("float32", "bfloat16"):
        return Precision(requested, "set in the recipe")
    if requested != "auto":
        raise ValueError(f"dtype '{requested}': expected auto, float32 or bfloat16")
    ok, why = bf16_support(device)
    return Precision("bfloat16" if ok else "float32", f"auto: {why}")


def resolve_device(requested: str, local_rank: int | None = None) -> torch.device:
    """`train.device` -> a torch.device. `auto`: CUDA when available, else CPU. Under torchrun (LOCAL_RANK set)
    `auto` and `cuda` become `cuda:LOCAL_RANK`; `cuda:N` is kept as given.

    Raises:
        ValueError: CUDA was asked for and is not available, or the index is out of range (names the field).
    """
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    req = requested.strip().lower()
    if req == "auto":
        req = "cuda" if torch.cuda.is_available() else "cpu"
    if req == "cpu":
        return torch.device("cpu")
    if req == "cuda" or req.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"train.device = '{requested}': CUDA is not available on this machine (torch "
                             f"{torch.__version__}); use train.device=cpu or auto")
        index = local_rank if req == "cuda" else int(req.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise ValueError(f"train.device = '{requested}': cuda:{index} does not exist (this machine has "
                             f"{torch.cuda.device_count()} GPU(s)); use train.device=auto")
        return torch.device("cuda", index)
    raise ValueError(f"train.device = '{requested}': expected auto, cpu, cuda or cuda:N")
