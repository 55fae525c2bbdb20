"""What `threads_alone` buys (issue 25): the main thread's two kinds of work on 1 and on 2 torch intra-op threads,
side by side in one process, on the default recipe's real model and prompts.

    python benchmarks/threads_alone.py [--repeats 3] [--out benchmarks/results/async/threads_alone.json]

1. One update micro-batch as the recipe has it (SmolLM2-135M-Instruct from the GGUF package, fp32, LoRA r=16 on all
   linear layers with a nonzero B, `train.micro_batch_groups: 1`: one training prompt x G=8 completions of 24
   tokens): `rlvr.forward.completion_logprobs` with gradients, a GRPO-shaped loss, backward. Median seconds over
   `--repeats` after a warm-up, and whether the loss and the LoRA gradients are bitwise equal on 1 and 2 threads.
2. The held-out evaluation (`rlvr.evaluation.evaluate`, HF engine on the fp32 policy, 64 problems, greedy, the
   recipe's eval.batch_size): median seconds and whether the 64 verdicts and completions are identical.

The trainer uses 2 threads for these only once the background generation is done, i.e. while nothing else runs,
which is how this measures them (one at a time on an otherwise quiet machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.default_recipe import machine  # noqa: E402


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from rlvr.config import load_config
    from rlvr.data import heldout_rows, load_splits, render_prompt
    from rlvr.evaluation import evaluate
    from rlvr.forward import completion_logprobs
    from rlvr.models import load_policy, load_tokenizer, resolve_model
    from rlvr.plugins import load_verifier
    from rlvr.rollouts import HFEngine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/async/threads_alone.json"))
    args = ap.parse_args()

    cfg = load_config(str(ROOT / "recipes/basic_arithmetic.yaml"), [])
    path = resolve_model(cfg.model)
    tok = load_tokenizer(path)
    ids = lambda q: tok(render_prompt(tok, q, cfg.data.prompt), add_special_tokens=False)["input_ids"]  # noqa: E731
    G, T = cfg.train.group_size, cfg.sampling.max_new_tokens

    torch.manual_seed(0)
    lc = cfg.train.lora
    model = get_peft_model(load_policy(path, "float32"), LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=0.0,
                                                                    target_modules=lc.target_modules))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)  # a trained adapter, not the zero start
    params = [p for p in model.parameters() if p.requires_grad]
    prompt = [ids(load_splits(cfg.data).train[0]["prompt"])]
    comps = torch.randint(100, 10_000, (G, T), generator=torch.Generator().manual_seed(0)).tolist()
    adv = torch.linspace(-1, 1, G).reshape(-1, 1)

    def micro_batch():
        model.zero_grad(set_to_none=True)
        lp, mask, _ = completion_logprobs(model, prompt, comps, G, tok.pad_token_id)
        loss = -(adv * lp * mask).sum() / mask.sum()
        loss.backward()
        return loss.detach().clone(), [p.grad.clone() for p in params]

    held = heldout_rows(cfg.data)
    engine = HFEngine(load_policy(path, "float32"), tok)
    verifier = load_verifier(cfg.eval.verifier, field="eval.verifier")

    def held_out():
        return evaluate(engine, [ids(r["prompt"]) for r in held], [r["reference"] for r in held], verifier,
                        cfg.eval.max_new_tokens or T, cfg.eval.batch_size, prompts=[r["prompt"] for r in held],
                        keep_completions=True)

    res: dict = {"command": "python benchmarks/threads_alone.py " + " ".join(sys.argv[1:]), "machine": machine()}
    before = torch.get_num_threads()
    for name, work in (("micro_batch", micro_batch), ("heldout_eval_64", held_out)):
        seconds, outputs = {}, {}
        for n in (1, 2):
            torch.set_num_threads(n)
            outputs[n] = work()  # warm-up, and the result compared below
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                work()
                times.append(time.perf_counter() - t0)
            seconds[n] = statistics.median(times)
        if name == "micro_batch":
            (l1, g1), (l2, g2) = outputs[1], outputs[2]
            same = {"loss_bitwise_equal": bool(torch.equal(l1, l2)),
                    "grads_bitwise_equal": all(torch.equal(a, b) for a, b in zip(g1, g2))}
        else:
            same = {"verdicts_equal": outputs[1]["greedy_passed"] == outputs[2]["greedy_passed"],
                    "completions_equal": outputs[1]["completions"] == outputs[2]["completions"],
                    "correct": [outputs[1]["correct"], outputs[2]["correct"]]}
        res[name] = {"seconds_1_thread": round(seconds[1], 3), "seconds_2_threads": round(seconds[2], 3),
                     "speedup": round(seconds[1] / seconds[2], 2), **same}
        print(name, res[name], flush=True)
    torch.set_num_threads(before)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
