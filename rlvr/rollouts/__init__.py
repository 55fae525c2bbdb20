"""Rollout engines behind one interface (`RolloutEngine`): `make_engine(name, model, tokenizer)`."""

from rlvr.rollouts.base import Completion, Group, RolloutEngine, SamplingParams
from rlvr.rollouts.hf import HFEngine

ENGINES = {"hf": HFEngine}


def make_engine(name: str, model, tokenizer, **kwargs) -> RolloutEngine:
    """Build a registered engine. Raises KeyError naming the known engines."""
    if name not in ENGINES:
        raise KeyError(f"unknown rollout engine '{name}'; known: {sorted(ENGINES)}")
    return ENGINES[name](model, tokenizer, **kwargs)


__all__ = ["Completion", "Group", "RolloutEngine", "SamplingParams", "HFEngine", "ENGINES", "make_engine"]
