"""Held-out evaluation on a split training never sees: greedy pass@1, and pass@k when k samples are drawn.

Verdicts come from `rlvr.scoring.score` with the training reward's item shape (completion, reference, prompt),
and a completion counts as solved when `rlvr.scoring.passed` says so (`Verdict.passed`; for the code verifier: all
tests pass), so training, evaluation and the monitor agree on what "correct" means.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlvr.rollouts import RolloutEngine, SamplingParams
from rlvr.scoring import DEFAULT_TIMEOUT_S, make_items, pass_at_k, passed, score


def evaluate(engine: RolloutEngine, prompt_ids: list[list[int]], references: list, verifier,
             max_new_tokens: int, batch_size: int = 16, out_path: Path | None = None, *,
             prompts: list[str] | None = None, samples: int = 1, temperature: float = 1.0, seed: int = 0,
             timeout_s: float | None = DEFAULT_TIMEOUT_S) -> dict:
    """Greedy-decode each held-out prompt once (`batch_size` prompts per generate call) and verify it; with
    `samples` = k > 1, also sample k completions per prompt at `temperature` (seeded by `seed`).

    Args:
        prompts: the question text of each prompt, passed to the verifier (None: no prompt; avoid).
    Returns:
        {"pass@1": greedy pass@1 in [0, 1], "correct": int, "n": int, "extracted_rate", "error_rate",
        "timeout_rate"}; with k > 1 also "samples": k, "pass@1_sampled" and "pass@j" for j in
        `pass_k_values(k)` (means over prompts of the unbiased estimator with n = k samples, Chen et al. 2021,
        arXiv 2107.03374 eq. 1). When `out_path` is
        given, every completion and verdict is written there as JSON lines.
    """
    if not prompt_ids:
        return {"pass@1": float("nan"), "correct": 0, "n": 0, "extracted_rate": float("nan")}
    prompts = list(prompts) if prompts is not None else [None] * len(prompt_ids)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    texts = _generate(engine, prompt_ids, 1, greedy, batch_size, seed=0)
    verdicts = score(verifier, make_items(texts, references, prompts), 1, timeout_s)
    ok = [passed(v) for v in verdicts]
    n = len(texts)
    out = {"pass@1": sum(ok) / n, "correct": sum(ok), "n": n,
           "extracted_rate": sum(v.answer_class is not None for v in verdicts) / n,
           "error_rate": sum(v.error is not None and not v.error.startswith("timeout") for v in verdicts) / n,
           "timeout_rate": sum(bool(v.error) and v.error.startswith("timeout") for v in verdicts) / n}
    rows = [{"sample": "greedy", "prompt_index": i, "completion": t, "reference": r, "score": v.score,
             "passed": p, "answer_class": v.answer_class, "error": v.error}
            for i, (t, r, v, p) in enumerate(zip(texts, references, verdicts, ok))]
    if samples > 1:
        params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
        s_texts = _generate(engine, prompt_ids, samples, params, batch_size, seed=seed)
        rep = lambda xs: [x for x in xs for _ in range(samples)]  # noqa: E731
        s_verdicts = score(verifier, make_items(s_texts, rep(references), rep(prompts)), samples, timeout_s)
        s_ok = [passed(v) for v in s_verdicts]
        per_prompt = [sum(s_ok[i * samples:(i + 1) * samples]) for i in range(n)]
        out.update({"samples": samples, "pass@1_sampled": sum(pass_at_k(samples, c, 1) for c in per_prompt) / n})
        for k in pass_k_values(samples):
            out[f"pass@{k}"] = sum(pass_at_k(samples, c, k) for c in per_prompt) / n
        rows += [{"sample": j, "prompt_index": i, "completion": s_texts[i * samples + j], "reference": references[i],
                  "score": s_verdicts[i * samples + j].score, "passed": s_ok[i * samples + j],
                  "answer_class": s_verdicts[i * samples + j].answer_class, "error": s_verdicts[i * samples + j].error}
                 for i in range(n) for j in range(samples)]
    if out_path is not None:
        with open(out_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return out


def pass_k_values(samples: int) -> list[int]:
    """The k > 1 reported for `samples` completions per prompt: powers of two below it, and `samples` itself."""
    return sorted({2 ** i for i in range(1, samples.bit_length()) if 2 ** i < samples} | {samples}) if samples > 1 else []


def _generate(engine, prompt_ids, n, params, batch_size, seed) -> list[str]:
    """Group-major texts: n per prompt."""
    return [c.text
            for s in range(0, len(prompt_ids), batch_size)
            for g in engine.generate(prompt_ids[s:s + batch_size], n, params, seed=seed, index_offset=s)
            for c in g.completions]
