"""Held-out evaluation: greedy pass@1 with the exact verifier on a split training never sees."""

from __future__ import annotations

import json
from pathlib import Path

from rlvr.rollouts import RolloutEngine, SamplingParams


def evaluate(engine: RolloutEngine, prompt_ids: list[list[int]], references: list[str], verifier,
             max_new_tokens: int, batch_size: int = 16, out_path: Path | None = None) -> dict:
    """Greedy-decode each held-out prompt once (`batch_size` prompts per generate call) and verify it.

    Returns {"pass@1": float in [0, 1], "correct": int, "n": int, "extracted_rate": float}. When `out_path` is
    given, every completion and verdict is written there as JSON lines.
    """
    if not prompt_ids:
        return {"pass@1": float("nan"), "correct": 0, "n": 0, "extracted_rate": float("nan")}
    greedy = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    texts = [g.completions[0].text
             for s in range(0, len(prompt_ids), batch_size)
             for g in engine.generate(prompt_ids[s:s + batch_size], 1, greedy, seed=0)]
    verdicts = verifier.verify_batch(list(zip(texts, references)))
    correct = sum(1 for v in verdicts if v.score > 0.5)
    if out_path is not None:
        with open(out_path, "w") as f:
            for t, r, v in zip(texts, references, verdicts):
                f.write(json.dumps({"completion": t, "reference": r, "score": v.score,
                                    "answer_class": v.answer_class, "error": v.error}) + "\n")
    return {"pass@1": correct / len(texts), "correct": correct, "n": len(texts),
            "extracted_rate": sum(v.answer_class is not None for v in verdicts) / len(texts)}
