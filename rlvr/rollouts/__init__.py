"""Rollout engines behind one interface (`RolloutEngine`): `make_engine(name, model, tokenizer)`.

"hf": HFEngine (always available). "vllm": VLLMEngine (rlvr/rollouts/vllm.py), colocated vLLM; vllm is imported
only when this engine is built, so rlvr works without it. "auto": vllm when it is installed, else hf.
"""

from rlvr.rollouts.base import Completion, Group, RolloutEngine, SamplingParams
from rlvr.rollouts.hf import HFEngine


def _vllm_engine(model, tokenizer, **kwargs):
    from rlvr.rollouts.vllm import VLLMEngine

    return VLLMEngine(model, tokenizer, **kwargs)


ENGINES = {"hf": HFEngine, "vllm": _vllm_engine}


def resolve_engine_name(name: str) -> str:
    """'auto' -> 'vllm' when vllm is importable, else 'hf'; other names unchanged."""
    if name == "auto":
        from rlvr.rollouts.vllm import vllm_available

        return "vllm" if vllm_available() else "hf"
    return name


def make_engine(name: str, model, tokenizer, **kwargs) -> RolloutEngine:
    """Build a registered engine ('auto' picks vllm when installed). Raises KeyError naming the known engines."""
    name = resolve_engine_name(name)
    if name not in ENGINES:
        raise KeyError(f"unknown rollout engine '{name}'; known: {sorted(ENGINES) + ['auto']}")
    return ENGINES[name](model, tokenizer, **kwargs)


__all__ = ["Completion", "Group", "RolloutEngine", "SamplingParams", "HFEngine", "ENGINES", "make_engine",
           "resolve_engine_name"]
