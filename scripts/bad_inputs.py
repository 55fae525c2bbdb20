"""Try the bad inputs users make, each in a fresh temporary folder, through the real `rlvr` command (a subprocess,
as a user runs it), and write the table of exit statuses and messages that README and docs/bad_inputs.md show.

    python scripts/bad_inputs.py                 # prints the markdown table
    python scripts/bad_inputs.py --write docs/bad_inputs.md --readme README.md

For each case: the exit status (the contract: 0 done, 2 bad input, 3 stopped by the monitor, 1 only for a bug),
the first line of stderr, whether stderr held a traceback, and whether the disk changed (every file's hash in the
folder before and after, outside the paths the command is expected to write). Exit status of this script: 1 when
any case breaks the contract (status other than 2, a traceback, more than one line, or a changed disk).
Needs the default model alias installed (scripts/install.sh); nothing is trained (each case fails before step 1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "basic_arithmetic.yaml")
SMALL = ["data.train_size=16", "data.eval_size=4", "train.steps=1", "rollout.engine=hf"]

PLUGINS = {
    "no_prompt.py": (
        "from verifiers import SignalSpec, Verdict, Verifier\n\n\n"
        "class NoPrompt(Verifier):\n"
        "    name = 'no_prompt'\n"
        "    signal = SignalSpec(kind='binary', deterministic=True, source='external', cost='cheap')\n\n"
        "    def _verify(self, completion, reference):\n"
        "        return Verdict(score=1.0, passed=True, answer_class=None)\n"),
    "typo.py": "from verifiers import Verifier\n\nclass Typo(Verifier)\n    name = 'typo'\n",
    "needs_dep.py": "import no_such_dependency_xyz\n",
    "not_a_verifier.py": "class Plain:\n    pass\n",
    "wrong_answers.py": (
        "from verifiers import SignalSpec, Verdict, Verifier\n\n\n"
        "class AcceptsAll(Verifier):\n"
        "    name = 'accepts_all'\n"
        "    signal = SignalSpec(kind='binary', deterministic=True, source='external', cost='cheap')\n\n"
        "    def _verify(self, completion, reference, *, prompt=None):\n"
        "        return Verdict(score=1.0, passed=True, answer_class=completion[-3:])\n"),
}

FAKE_RUN = {"config.yaml": "name: basic_arithmetic\n", "metrics.jsonl": '{"step": 1, "reward": 0.1}\n' * 3,
            "summary.json": "{}\n"}

# (what the user did, argv after `rlvr`, files to create first)
CASES: list[tuple[str, list[str], dict[str, str]]] = [
    ("recipe path with a typo", ["train", "recipes/basic_arithmetc.yaml"], {}),
    ("recipe that is not valid YAML", ["train", "bad.yaml"], {"bad.yaml": "train:\n  steps: 3\n  lr: [1e-4\n"}),
    ("recipe that is a list, not a mapping", ["train", "list.yaml"], {"list.yaml": "- train\n- steps\n"}),
    ("misspelt key in an override", ["train", RECIPE, "train.stepz=3"], {}),
    ("misspelt section in the recipe", ["train", "r.yaml"], {"r.yaml": "trian:\n  steps: 3\n"}),
    ("wrong type", ["train", RECIPE, "train.steps=ten"], {}),
    ("value out of range (G = 1)", ["train", RECIPE, "train.group_size=1"], {}),
    ("override without '='", ["train", RECIPE, "train.steps"], {}),
    ("reasoning-gym task with a typo", ["train", RECIPE, "data.task=basic_arithmetc"], {}),
    ("data file given with a recipe that names a task", ["train", RECIPE, "data.path=train.jsonl"],
     {"train.jsonl": json.dumps({"prompt": "1+1", "reference": "2"}) + "\n"}),
    ("data file that does not exist", ["train", RECIPE, "data.task=null", "data.path=train.jsonl"], {}),
    ("data file without the reference column", ["train", RECIPE, "data.task=null", "data.path=d.jsonl"],
     {"d.jsonl": "".join(json.dumps({"prompt": f"{i}+1", "answer": str(i + 1)}) + "\n" for i in range(8))}),
    ("empty data file", ["train", RECIPE, "data.task=null", "data.path=empty.jsonl"], {"empty.jsonl": ""}),
    ("data file that is not JSON lines", ["train", RECIPE, "data.task=null", "data.path=bad.jsonl"], {"bad.jsonl": "prompt,reference\n"}),
    ("every reference empty", ["train", RECIPE, "data.task=null", "data.path=d.jsonl", "data.eval_size=2"],
     {"d.jsonl": "".join(json.dumps({"prompt": f"{i}+1", "reference": ""}) + "\n" for i in range(12))}),
    ("model path that does not exist", ["train", RECIPE, "model=./models/my-model", *SMALL], {}),
    ("model folder without config.json", ["train", RECIPE, "model=./m", *SMALL], {"m/weights.bin": "x"}),
    ("verifier name with a typo", ["train", RECIPE, "verifiers=[{name: maths}]"], {}),
    ("eval.verifier with a typo", ["train", RECIPE, "eval.verifier=mathh"], {}),
    ("verifier kwargs it does not take", ["train", RECIPE, "verifiers=[{name: math, kwargs: {tolerance: 0.1}}]"],
     {}),
    ("plug-in module not in the current folder", ["train", RECIPE, "verifiers=[{name: 'my_verifiers:Within10'}]"],
     {}),
    ("plug-in with a syntax error", ["train", RECIPE, "verifiers=[{name: 'typo:Typo'}]"], {}),
    ("plug-in whose import fails", ["train", RECIPE, "verifiers=[{name: 'needs_dep:X'}]"], {}),
    ("plug-in class name with a typo", ["train", RECIPE, "verifiers=[{name: 'no_prompt:NoPrompts'}]"], {}),
    ("plug-in class that is not a Verifier", ["train", RECIPE, "verifiers=[{name: 'not_a_verifier:Plain'}]"], {}),
    ("plug-in `_verify` without `prompt`", ["train", RECIPE, "verifiers=[{name: 'no_prompt:NoPrompt'}]"], {}),
    ("plug-in that accepts wrong answers", ["train", RECIPE, "verifiers=[{name: 'wrong_answers:AcceptsAll'}]"],
     {}),
    ("second run into a finished run dir", ["train", RECIPE], {f"runs/basic_arithmetic-seed0/{k}": v
                                                              for k, v in FAKE_RUN.items()}),
    ("run_dir that is a file", ["train", RECIPE, "run_dir=notes.txt"], {"notes.txt": "my notes\n"}),
    ("resume and overwrite together", ["train", RECIPE, "resume=true", "overwrite=true"], {}),
    ("unknown loss name", ["train", RECIPE, "algorithm.loss=grpoo"], {}),
    ("overlong buffer longer than the completion cap", ["train", RECIPE, "algorithm.overlong_buffer=64"], {}),
    ("GPU asked for on a machine without one", ["train", RECIPE, "train.device=cuda"], {}),
    ("unknown canary form", ["train", RECIPE, "monitor.canary_forms=[latex]"], {}),
    ("eval of a model path that does not exist", ["eval", "runs/nope"], {}),
    ("eval of a plain model without a task", ["eval", "smollm2-135m-instruct"], {}),
    ("eval with a verifier typo", ["eval", "smollm2-135m-instruct", "--recipe", RECIPE, "--verifier", "nope"], {}),
    ("eval --out into a folder that holds files", ["eval", "smollm2-135m-instruct", "--recipe", RECIPE, "--out",
                                                   "results"], {"results/eval.jsonl": "{}\n"}),
    ("export into an existing folder", ["export", "runs/r", "out"], {"out/keep.txt": "x",
                                                                     **{f"runs/r/{k}": v for k, v in FAKE_RUN.items()}}),
    ("export of something that is not a run", ["export", "smollm2-135m-instruct", "out"], {}),
    ("report of a folder without metrics", ["report", "somewhere"], {"somewhere/a.txt": "x"}),
    ("monitor --json of a missing run", ["monitor", "runs/missing", "--json"], {}),
]


def _tree(d: Path) -> dict[str, str]:
    """Every file (its sha256) and folder (so an empty run dir left behind counts as a change) under `d`."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(d.rglob("*"))}


def run_case(argv: list[str], files: dict[str, str], timeout: float = 300) -> dict:
    with tempfile.TemporaryDirectory(prefix="rlvr-bad-") as tmp:
        d = Path(tmp)
        for name, body in {**files, **{k: v for k, v in PLUGINS.items()}}.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(body)
        before = _tree(d)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "rlvr.cli", *argv], cwd=d, capture_output=True, text=True,
                           timeout=timeout, env=env)
        after = _tree(d)
        err = [ln for ln in p.stderr.splitlines() if ln.strip()]
        return {"status": p.returncode, "message": err[0] if err else "", "stderr_lines": len(err),
                "traceback": "Traceback" in p.stderr, "disk_unchanged": before == after,
                "seconds": time.perf_counter() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", default=None, help="write the markdown table to this file")
    ap.add_argument("--readme", default=None, help="also put the table between README's bad-inputs markers")
    args = ap.parse_args()
    rows, bad = [], 0
    for i, (what, argv, files) in enumerate(CASES, 1):
        r = run_case(argv, files)
        ok = r["status"] == 2 and not r["traceback"] and r["stderr_lines"] == 1 and r["disk_unchanged"]
        bad += not ok
        shown = " ".join(a.replace(str(ROOT) + "/", "") for a in argv)
        msg = r["message"].replace("|", "\\|")
        rows.append(f"| {i} | {what} | `rlvr {shown}` | {r['status']} | "
                    f"{'yes' if r['disk_unchanged'] else '**no**'} | {msg} |")
        print(f"{i:2d} {'ok ' if ok else 'BAD'} {r['status']} {r['seconds']:5.1f}s {what}: {r['message'][:150]}",
              file=sys.stderr, flush=True)
    table = ("| # | what the user did | command | exit | disk unchanged | message (stderr, one line) |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    if args.write:
        Path(args.write).write_text(
            "# Bad inputs: exit status and message\n\nGenerated by `python scripts/bad_inputs.py --write "
            "docs/bad_inputs.md` (each case in a fresh temporary folder, through the real `rlvr` command). Exit "
            "status contract: 0 done, 2 bad input (one line on stderr: the field, the value, the fix; the disk as "
            "it was), 3 stopped by the monitor, 130 interrupted, 1 only for a bug (a traceback; please report "
            "it).\n\n" + table)
    else:
        print(table)
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        a, b = "<!-- bad-inputs:start -->\n", "<!-- bad-inputs:end -->"
        readme.write_text(text[:text.index(a) + len(a)] + table + text[text.index(b):])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
