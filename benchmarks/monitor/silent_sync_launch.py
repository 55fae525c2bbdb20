"""Launch the rlvr CLI with the rollout engine's weight sync made a silent no-op (issue 22, the class of verl#7495:
rollouts keep coming from the base model and the run exits 0). Product code is not changed: this wrapper replaces
`rlvr.rollouts.vllm.VLLMEngine.update_weights` before calling `rlvr.cli.main`. The first call (made by the engine's
constructor) still loads the weights, so the engine serves the initial policy; every later sync returns at once.

    python benchmarks/monitor/silent_sync_launch.py train recipes/basic_arithmetic.yaml [overrides ...]

Used by `benchmarks/monitor/data_faults.py run --loops silent_sync`.
"""

from __future__ import annotations

import sys

from rlvr.rollouts import vllm as _vllm

_real = _vllm.VLLMEngine.update_weights


def _silent(self, model, full: bool = False) -> None:
    if not getattr(self, "_silent_sync_loaded", False):
        self._silent_sync_loaded = True
        return _real(self, model, full)
    self.sync_seconds, self.sync_tensors = 0.0, 0  # nothing sent, no error


_vllm.VLLMEngine.update_weights = _silent

if __name__ == "__main__":
    from rlvr.cli import main

    sys.exit(main(sys.argv[1:]))
