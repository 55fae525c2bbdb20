"""Command line: `rlvr train RECIPE [key=value ...] [--debug]`.

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
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']}: data-parallel training under torchrun is not "
                        f"implemented yet; launch with `torchrun --nproc_per_node=1` or plain `rlvr train`")
    _quiet_libraries()
    from rlvr.trainer import Trainer

    summary = Trainer(cfg).run()
    before, after = summary["heldout_pass@1_before"], summary["heldout_pass@1_after"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"held-out pass@1 (greedy, {summary['heldout_n']} problems): before {fmt(before)} -> after {fmt(after)}")
    print(f"train reward: first-5-step mean {fmt(summary['train_reward_first5'])} -> "
          f"last-5-step mean {fmt(summary['train_reward_last5'])}")
    print(f"summary: {os.path.join(summary['run_dir'], 'summary.json')}")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or getattr(args, "debug_sub", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s")
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
