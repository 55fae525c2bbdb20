"""Command line: `rlvr train RECIPE [key=value ...] [--debug]`, `rlvr eval MODEL_OR_RUN_DIR [--data ...]
[--verifier ...] [--samples K]`, `rlvr export RUN_DIR OUT [--merge]`, `rlvr monitor RUN_DIR [--once]`,
`rlvr report RUN_DIR [--out DIR]`.

`rlvr train` exits 0 when training finished, 3 when the monitor stopped it (monitor.stop_on_critical). Under
`torchrun --nproc_per_node=N -m rlvr.cli train RECIPE` every rank runs it (data parallel, rlvr/distributed.py);
rank 0 prints the result and all ranks exit with the same status.

Bad input (missing recipe, unknown key, wrong type, missing column, missing model, G < 2, ...) exits with status 2
and one line naming the field, the value and what is expected; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from rlvr.errors import UserError


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    import datasets

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def cmd_train(args) -> int:
    from rlvr.config import load_config

    cfg = load_config(args.recipe, args.overrides)
    _quiet_libraries()
    from rlvr import distributed
    from rlvr.trainer import Trainer

    trainer = None
    try:  # under torchrun every rank runs this; rank 0 writes the run's files and prints the result
        trainer = Trainer(cfg)
        summary = trainer.run()
    finally:
        if trainer is not None:
            trainer.close()
        distributed.shutdown()
    if not trainer.dist.is_main:
        return 3 if summary.get("stopped_by_monitor") else 0
    before, after = summary["heldout_pass@1_before"], summary["heldout_pass@1_after"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    if summary["heldout_n"]:
        print(f"held-out pass@1 (greedy, {summary['heldout_n']} problems): before {fmt(before)} -> after {fmt(after)}")
    else:
        print("held-out evaluation: off (data.eval_size=0 or eval.at_start/at_end false)")
    print(f"train reward: first-5-step mean {fmt(summary['train_reward_first5'])} -> "
          f"last-5-step mean {fmt(summary['train_reward_last5'])}")
    print(f"summary: {os.path.join(summary['run_dir'], 'summary.json')}")
    if summary.get("stopped_by_monitor"):
        print(f"stopped by the monitor: {summary['stopped_by_monitor']} (see alerts.jsonl; `rlvr report "
              f"{summary['run_dir']}`)")
        return 3
    return 0


def cmd_eval(args) -> int:
    _quiet_libraries()
    from rlvr.evaluation import evaluate_model

    s = evaluate_model(args.model, recipe=args.recipe, data=args.data, n=args.n, verifier=args.verifier,
                       samples=args.samples, temperature=args.temperature, engine=args.engine, device=args.device,
                       out=args.out, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                       timeout_s=args.timeout_s, progress=not args.no_progress)
    line = (f"{s['loaded']} on {s['data']} ({s['n']} problems, verifier {s['verifier']}, {s['engine']} "
            f"{s['dtype']} on {s['device']}): greedy pass@1 {s['pass@1']:.3f} ({s['correct']}/{s['n']})")
    if s["samples"] > 1:
        ks = [k for k in s if k.startswith("pass@") and k not in ("pass@1", "pass@1_sampled")]
        line += f" | {s['samples']} samples: pass@1 {s['pass@1_sampled']:.3f}, " + ", ".join(
            f"{k} {s[k]:.3f}" for k in ks)
    print(line)
    print(f"answer extracted {s['extracted_rate']:.0%} | verifier errors {s['error_rate']:.1%}, timeouts "
          f"{s['timeout_rate']:.1%} | {s['tokens_per_s']:.1f} completion tokens/s | {s['wall_seconds']:.1f} s")
    print(f"wrote {s['out']}/eval.jsonl and {s['out']}/eval_summary.json")
    return 0


def cmd_export(args) -> int:
    _quiet_libraries()
    from rlvr.artifacts import export

    out = export(args.run_dir, args.out, merge=args.merge)
    kind = "merged HF model (transformers / vLLM load it directly)" if args.merge else "LoRA adapter (peft)"
    print(f"exported {args.run_dir} -> {out} ({kind})")
    return 0


def cmd_monitor(args) -> int:
    from rlvr.monitor.view import latest_json, watch

    if args.replay:
        _quiet_libraries()
        from rlvr.monitor.replay import replay

        r = replay(args.run_dir)
        for a in r["alerts"]:
            print(f"step {a['step']}: {a['severity'].upper()} {a['name']} ({a['rule']})")
        print(f"replayed {r['steps']} steps: {r['critical']} critical, {r['warning']} warning alerts "
              f"(alerts in {r['out']}/alerts.jsonl)")
        return 0
    if args.json:
        from pathlib import Path

        if not Path(args.run_dir).is_dir():
            raise UserError(f"run directory '{args.run_dir}' not found: pass the run_dir of a `rlvr train` run")
        print(json.dumps(latest_json(Path(args.run_dir)), indent=2))
        return 0
    return watch(args.run_dir, once=args.once, interval=args.interval)


def cmd_report(args) -> int:
    from rlvr.monitor.report import report

    png, md = report(args.run_dir, args.out)
    print(f"wrote {png}\nwrote {md}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlvr", description="Verifier-in-the-loop RLVR training.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train with GRPO from a YAML recipe")
    t.add_argument("recipe", help="recipe YAML, e.g. recipes/basic_arithmetic.yaml")
    t.add_argument("overrides", nargs="*", help="key=value overrides with dotted keys, e.g. train.steps=5 seed=1")
    t.add_argument("--debug", action="store_true", dest="debug_sub", help=argparse.SUPPRESS)
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="evaluate a model, run directory, final adapter or checkpoint: pass@1, pass@k")
    e.add_argument("model", help="run directory, RUN/final_adapter, RUN/checkpoints/step_N, or a model (alias, HF "
                   "folder, .gguf)")
    e.add_argument("--recipe", default=None, help="take prompt, data and verifier from this recipe (default: the "
                   "run's own config.yaml, else the defaults)")
    e.add_argument("--data", default=None, help="reasoning-gym task, .jsonl/.parquet/.csv file, or humaneval "
                   "(default: the run's / recipe's held-out split)")
    e.add_argument("--n", type=int, default=None, help="number of problems (default: eval_size for tasks, every "
                   "row for files)")
    e.add_argument("--verifier", default=None, help="verifier name (default: eval.verifier)")
    e.add_argument("--samples", type=int, default=None, help="k completions per problem for pass@k (default 1: "
                   "greedy only)")
    e.add_argument("--temperature", type=float, default=None, help="sampling temperature for --samples > 1")
    e.add_argument("--engine", default="auto", choices=["auto", "hf", "vllm"], help="rollout engine (auto: the "
                   "run's evaluation engine; vLLM where installed for plain models)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    e.add_argument("--out", default=None, help="output folder (default RUN/eval or evals/<model>)")
    e.add_argument("--max-new-tokens", type=int, default=None, dest="max_new_tokens")
    e.add_argument("--batch-size", type=int, default=None, dest="batch_size")
    e.add_argument("--timeout-s", type=float, default=None, dest="timeout_s", help="verifier deadline per prompt")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="export a run's policy: the LoRA adapter, or a merged HF folder (--merge)")
    x.add_argument("run_dir", help="run directory, RUN/final_adapter or RUN/checkpoints/step_N")
    x.add_argument("out", help="new output folder")
    x.add_argument("--merge", action="store_true", help="merge LoRA into the base: a plain HF folder (safetensors, "
                   "config, tokenizer, chat template) for transformers and vLLM")
    x.set_defaults(func=cmd_export)

    m = sub.add_parser("monitor", help="live view of a run's monitor quantities and alerts")
    m.add_argument("run_dir", help="the run directory (run_dir of `rlvr train`)")
    m.add_argument("--once", action="store_true", help="print one snapshot and exit")
    m.add_argument("--json", action="store_true", help="print the latest values and alerts as JSON and exit")
    m.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    m.add_argument("--replay", action="store_true", help="re-run the current monitor over the run's rollouts.jsonl "
                   "(alerts to RUN_DIR/replay/alerts.jsonl) and print the alerts it raises")
    m.set_defaults(func=cmd_monitor)
    r = sub.add_parser("report", help="plots (PNG) and a markdown summary of a run")
    r.add_argument("run_dir", help="the run directory (run_dir of `rlvr train`)")
    r.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or getattr(args, "debug_sub", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s")
    # rlvr's own messages get one handler and do not propagate: vLLM re-configures the root logger when it starts,
    # which printed every later rlvr message twice
    own = logging.getLogger("rlvr")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    own.handlers[:] = [handler]
    own.setLevel(logging.DEBUG if debug else logging.INFO)
    own.propagate = False
    try:
        return args.func(args)
    except UserError as e:
        if debug:
            raise
        print(f"rlvr: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rlvr: interrupted; finished steps are in metrics.jsonl, resume with resume=true", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
