"""Rollout throughput: rlvr's HF engine (prompt prefilled once, KV cache shared by the G samples) against
transformers' `generate(num_return_sequences=G)` (which prefills the prompt G times), same model, prompts and
sampling, alternating in one process.

    python benchmarks/rollout_prefill.py [--rounds 3] [--out benchmarks/results/rollout_prefill.json]

Reports completion tokens per second (tokens up to and including the stop token) and the ratio. The baseline is
one batched `generate` call over all P prompts with `num_return_sequences=G`, as TRL's GRPOTrainer makes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from rlvr.cli import _quiet_libraries
from rlvr.config import load_config
from rlvr.data import load_splits, render_prompt
from rlvr.models import load_policy, load_tokenizer, resolve_model
from rlvr.rollouts import HFEngine, SamplingParams
from rlvr.rollouts.hf import left_pad


def _count_hf(out: torch.Tensor, prompt_len: int, stops: list[int]) -> int:
    n = 0
    for row in out[:, prompt_len:].tolist():
        for t in row:
            n += 1
            if t in stops:
                break
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/basic_arithmetic.yaml")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/rollout_prefill.json")
    args = ap.parse_args()
    _quiet_libraries()
    cfg = load_config(args.recipe)
    torch.set_num_threads(cfg.threads)
    path = resolve_model(cfg.model)
    tok, model = load_tokenizer(path), load_policy(path)
    P, G, T = cfg.train.prompts_per_step, cfg.train.group_size, cfg.sampling.max_new_tokens
    questions = list(load_splits(cfg.data).train["prompt"])[:P]
    prompts = [tok(render_prompt(tok, q, cfg.data.prompt), add_special_tokens=False)["input_ids"] for q in questions]
    engine = HFEngine(model, tok)
    params = SamplingParams(temperature=cfg.sampling.temperature, max_new_tokens=T)
    res = {"hf_generate": [], "rlvr_hf_engine": []}
    with torch.no_grad():
        for r in range(args.rounds):
            t0 = time.perf_counter()
            groups = engine.generate(prompts, G, params, seed=r)
            dt = time.perf_counter() - t0
            n = sum(len(c.token_ids) for g in groups for c in g.completions)
            res["rlvr_hf_engine"].append({"seconds": dt, "tokens": n, "tok_per_s": n / dt})
            t0 = time.perf_counter()
            torch.manual_seed(r)
            # one batched call over all P prompts (left-padded), G samples each: how TRL calls it
            ids, mask = left_pad(prompts, tok.pad_token_id)
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=params.temperature,
                                 top_k=0, top_p=1.0, max_new_tokens=T, num_return_sequences=G,
                                 eos_token_id=engine.stop_ids, pad_token_id=tok.pad_token_id)
            n = _count_hf(out, ids.shape[1], engine.stop_ids)
            dt = time.perf_counter() - t0
            res["hf_generate"].append({"seconds": dt, "tokens": n, "tok_per_s": n / dt})
            print(f"round {r}: engine {res['rlvr_hf_engine'][-1]['tok_per_s']:.0f} tok/s, "
                  f"generate {res['hf_generate'][-1]['tok_per_s']:.0f} tok/s")
    med = {k: statistics.median(x["tok_per_s"] for x in v) for k, v in res.items()}
    summary = {
        "command": "python benchmarks/rollout_prefill.py --rounds %d" % args.rounds,
        "model": cfg.model, "prompts": P, "group_size": G, "max_new_tokens": T,
        "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts), "threads": cfg.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "median_tok_per_s": med, "speedup_engine_over_generate": med["rlvr_hf_engine"] / med["hf_generate"],
        "rounds": res,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps({k: summary[k] for k in ("median_tok_per_s", "speedup_engine_over_generate")}, indent=2))


if __name__ == "__main__":
    main()
