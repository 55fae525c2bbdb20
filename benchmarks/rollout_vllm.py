"""Rollout throughput, weight-sync time and GRPO step time: the colocated vLLM engine against rlvr's HF engine and
transformers' batched `generate`, on SmolLM2-135M-Instruct with the default recipe's prompts and sampling, in one
process, alternating engines round by round.

    python benchmarks/rollout_vllm.py [--rounds 5] [--steps 3] [--out benchmarks/results/rollout_vllm.json]

Part 1 (rollouts): each round samples G completions for each of the recipe's first-step P prompts with each engine
(same prompts, temperature, max_new_tokens, G). Completion tokens counted up to and including the stop token;
tokens/s = those tokens / wall time of the call. One unmeasured warm-up call per engine first (vLLM's first call
with logprobs pays a one-off ~1.5 s).
Part 2 (sync): `VLLMEngine.update_weights` of the recipe's LoRA policy (merged weights, all 135M parameters).
Part 3 (GRPO step): a Trainer built from the recipe (evaluation and checkpoints off), its engine swapped between the
HF engine and a VLLMEngine after construction, alternating steps; reports the trainer's own time/* metrics and
the sync time (already inside time/train, where the trainer calls engine.update_weights).
Pass --model-shape qwen2.5-0.5b to use a randomly initialised model of Qwen2.5-0.5B's shape instead (GPU runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from rlvr.cli import _quiet_libraries  # noqa: E402
from rlvr.config import load_config  # noqa: E402
from rlvr.errors import ConfigError  # noqa: E402
from rlvr.data import load_splits, render_prompt  # noqa: E402
from rlvr.models import load_policy, load_tokenizer, resolve_model  # noqa: E402
from rlvr.rollouts import HFEngine, SamplingParams  # noqa: E402
from rlvr.rollouts.hf import left_pad  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rollout_prefill import _count_hf  # noqa: E402  (same token count as the HF-generate benchmark)


def _timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def rollouts(model, tok, prompts, G, params, rounds, vllm_kwargs):
    from rlvr.rollouts.vllm import VLLMEngine

    hf = HFEngine(model, tok)
    (vl, t_start) = _timed(lambda: VLLMEngine(model, tok, **vllm_kwargs))

    def run_engine(engine, seed):
        groups, dt = _timed(lambda: engine.generate(prompts, G, params, seed=seed))
        n = sum(len(c.token_ids) for g in groups for c in g.completions)
        return {"seconds": dt, "tokens": n, "tok_per_s": n / dt}

    def run_generate(seed):
        torch.manual_seed(seed)
        ids, mask = left_pad(prompts, tok.pad_token_id)

        def call():
            with torch.no_grad():
                return model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                      temperature=params.temperature, top_k=0, top_p=1.0,
                                      max_new_tokens=params.max_new_tokens, num_return_sequences=G,
                                      eos_token_id=hf.stop_ids, pad_token_id=tok.pad_token_id)
        out, dt = _timed(call)
        n = _count_hf(out, ids.shape[1], hf.stop_ids)
        return {"seconds": dt, "tokens": n, "tok_per_s": n / dt}

    warm = {"vllm_engine": run_engine(vl, 10_000), "rlvr_hf_engine": run_engine(hf, 10_000)}
    res = {"vllm_engine": [], "rlvr_hf_engine": [], "hf_generate": []}
    for r in range(rounds):
        res["vllm_engine"].append(run_engine(vl, r))
        res["rlvr_hf_engine"].append(run_engine(hf, r))
        res["hf_generate"].append(run_generate(r))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]['tok_per_s']:.0f} tok/s" for k, v in res.items()), flush=True)
    return vl, {"engine_start_seconds": t_start, "warmup": warm, "rounds": res}


def sync_times(engine, model, cfg, repeats):
    """update_weights of the plain policy and of the recipe's LoRA-wrapped policy (merged weights)."""
    out = {}
    plain = []
    for _ in range(repeats):
        engine.update_weights(model)
        plain.append(engine.sync_seconds)
    out["full_model_seconds"] = plain
    if cfg.train.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lc = cfg.train.lora
        pm = get_peft_model(model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                              target_modules=lc.target_modules, task_type="CAUSAL_LM"))
        lora = []
        for _ in range(repeats):
            engine.update_weights(pm)
            lora.append(engine.sync_seconds)
        out["lora_merged_seconds"] = lora
        pm.unload()
        engine.update_weights(model)
    return out


def grpo_steps(recipe, overrides, steps, vllm_kwargs):
    """Alternate HF-engine and vLLM-engine steps of one Trainer (engine swapped after construction)."""
    from rlvr.rollouts.vllm import VLLMEngine
    from rlvr.trainer import Trainer

    run_dir = tempfile.mkdtemp(prefix="rlvr-bench-")
    base = list(overrides) + [f"run_dir={run_dir}", "rollout.engine=hf", "eval.at_start=false", "eval.at_end=false",
                              "eval.every=0",
                              "log.checkpoint_every=0", "log.tensorboard=false", "log.progress=false"]
    try:  # the info-gain monitor runs after the timed part of a step; switch it off where the config has it
        cfg = load_config(recipe, base + ["monitor.enabled=false"])
    except ConfigError:
        cfg = load_config(recipe, base)
    trainer = Trainer(cfg)
    # the trainer is built on the HF engine (rollout.engine=hf above: the recipe's default is vLLM); the vLLM engine
    # of the comparison is this benchmark's own, with the dtype asked for
    assert trainer.engine_name == "hf", trainer.engine_name
    engines = {"hf": trainer.engine, "vllm": VLLMEngine(trainer.model, trainer.tokenizer, **vllm_kwargs)}
    rows = {"hf": [], "vllm": []}
    keys = ("time/generate", "time/verify", "time/train", "time/step", "num_tokens", "completions/mean_length",
            "sampling/logp_diff_mean", "sampling/logp_diff_max", "reward")
    step = 0
    for i in range(steps):
        for name in ("vllm", "hf") if i % 2 == 0 else ("hf", "vllm"):
            engines["vllm"].update_weights(trainer.model)  # the other engine may have trained since
            trainer.engine = engines[name]
            m, _ = trainer.train_step(step)
            row = {k: m[k] for k in keys if k in m}
            row["step"] = step
            if name == "vllm":
                row["time/sync"] = engines["vllm"].sync_seconds  # the sync inside this step's _policy_update
            rows[name].append(row)
            print(f"step {step} [{name}]: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                        if isinstance(v, float)), flush=True)
            step += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/basic_arithmetic.yaml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps per engine (0 skips part 3)")
    ap.add_argument("--sync-repeats", type=int, default=5)
    ap.add_argument("--kv-cache-gib", type=float, default=None)
    ap.add_argument("--dtype", default=None, help="vLLM compute dtype (default: the policy's, float32)")
    ap.add_argument("--out", default="benchmarks/results/rollout_vllm.json")
    ap.add_argument("override", nargs="*", help="recipe overrides key=value")
    args = ap.parse_args()
    _quiet_libraries()
    cfg = load_config(args.recipe, args.override)
    torch.set_num_threads(cfg.threads)
    path = resolve_model(cfg.model)
    tok, model = load_tokenizer(path), load_policy(path, cfg.train.dtype)
    P, G, T = cfg.train.prompts_per_step, cfg.train.group_size, cfg.sampling.max_new_tokens
    questions = list(load_splits(cfg.data).train["prompt"])[:P]
    prompts = [tok(render_prompt(tok, q, cfg.data.prompt), add_special_tokens=False)["input_ids"] for q in questions]
    params = SamplingParams(cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.top_k, T)
    vllm_kwargs = {"cpu_threads": cfg.threads}
    if args.kv_cache_gib is not None:
        vllm_kwargs["kv_cache_gib"] = args.kv_cache_gib
    if args.dtype is not None:
        vllm_kwargs["dtype"] = args.dtype

    engine, roll = rollouts(model, tok, prompts, G, params, args.rounds, vllm_kwargs)
    sync = sync_times(engine, model, cfg, args.sync_repeats)
    engine.close()
    del engine
    steps = grpo_steps(args.recipe, args.override, args.steps, vllm_kwargs) if args.steps else {}

    med = {k: statistics.median(x["tok_per_s"] for x in v) for k, v in roll["rounds"].items()}
    step_med = {k: {m: statistics.median(r[m] for r in v if m in r)
                    for m in sorted({m for r in v for m in r if m != "step" and isinstance(r[m], float)})}
                for k, v in steps.items() if v}
    import vllm

    summary = {
        "command": "python benchmarks/rollout_vllm.py " + " ".join(sys.argv[1:]),
        "model": cfg.model, "policy_dtype": cfg.train.dtype, "vllm_dtype": args.dtype or cfg.train.dtype, "prompts": P, "group_size": G, "max_new_tokens": T,
        "temperature": cfg.sampling.temperature, "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts),
        "threads": cfg.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, vllm {vllm.__version__}",
        "median_tok_per_s": med,
        "speedup_vllm_over_rlvr_hf_engine": med["vllm_engine"] / med["rlvr_hf_engine"],
        "speedup_vllm_over_hf_generate": med["vllm_engine"] / med["hf_generate"],
        "vllm_engine_start_seconds": roll["engine_start_seconds"],
        "sync": sync,
        "sync_median_seconds": statistics.median(sync.get("lora_merged_seconds", sync["full_model_seconds"])),
        "grpo_step_median": step_med,
        "rollouts": roll, "grpo_steps": steps,
    }
    if step_med:
        v = step_med["vllm"]
        summary["sync_share_of_vllm_step"] = v["time/sync"] / v["time/step"]
        summary["step_speedup_vllm_over_hf"] = step_med["hf"]["time/step"] / v["time/step"]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    show = ("median_tok_per_s", "speedup_vllm_over_rlvr_hf_engine", "speedup_vllm_over_hf_generate",
            "sync_median_seconds", "grpo_step_median", "sync_share_of_vllm_step", "step_speedup_vllm_over_hf")
    print(json.dumps({k: summary[k] for k in show if k in summary}, indent=2))


if __name__ == "__main__":
    main()
