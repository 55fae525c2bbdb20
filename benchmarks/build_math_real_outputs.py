"""Build ``benchmarks/data/math_real_outputs.jsonl``: released real model completions on math word problems and
competition math, with the correctness label their publishers recorded.

Usage:
    python benchmarks/build_math_real_outputs.py [--mirrors /work/.mirror]

Each source is read from a local git snapshot (``<mirrors>/<owner>+<name>/repo``, a bare git directory) at a pinned
commit with ``git show``. Only facts are taken: the completion text as the model wrote it (with the answer prompt the
source's pipeline appended, where the transcript holds it), the question, the reference as the dataset gives it,
and the publisher's verdict. No code of those projects is copied or run.

Sources (the first ``N`` items of each file, in file order, so the selection never depends on any verifier):

- ``openai/grade-school-math`` ``example_model_solutions.jsonl`` (Cobbe et al. 2021): GPT-3 6B and 175B solutions
  (fine-tuned and verifier-selected) ending in ``A: N``; label: the file's ``is_correct``.
- ``kojima-takeshi188/zero_shot_cot`` ``log/*_zero_shot_cot.log`` (Kojima et al. 2022, GPT-3 text-davinci-002):
  "Let's think step by step." reasoning (cut at 128 tokens by the pipeline) followed by the answer prompt
  "Therefore, the answer (arabic numerals) is" / "Therefore, among A through E, the answer is" and the model's
  answer; label: the logged ``pred_after`` equals the logged ``GT``.
- ``AGI-Edgerunners/Plan-and-Solve-Prompting`` ``generated_result/*.json`` (Wang et al. 2023, text-davinci-003):
  plan-and-solve reasoning ending in a prose answer ("Answer: Janet makes $18 every day ..."); label: the file's
  ``ans``. That pipeline read the answer with a second model call that is not in the text, so a case is
  ``debatable`` when the completion does not state the source's ``pred`` in its final answer.

- ``microsoft/ToRA`` ``src/outputs/llm-agents/*/gsm8k/*.jsonl`` (Gou et al. 2024, ToRA-70B and ToRA-Code-34B):
  tool-integrated solutions (a Python block, its printed output, a sentence with ``\\boxed{}``); label: the logged
  ``pred`` equals the logged ``gt`` (the computation behind the published accuracy). The first 60 right and the
  first 60 wrong completions of each model, in file order (most are right).

Competition math (MATH problems, LaTeX references):

- ``minerva-demo/minerva-demo.github.io`` ``docs/js/app.cec95961.js`` (Lewkowycz et al. 2022, the Minerva sample
  explorer): Minerva 540B and 62B solutions to MATH problems, curated and typed by the authors; the samples are a
  JavaScript array literal in the site's bundle (read here as data, never run). Label: the sample's ``type``
  (``Correct`` and ``False Positive`` -- the final answer is right though the reasoning is not -- are right,
  ``Incorrect`` is wrong). Reference: the one ``\\boxed{}`` of the MATH solution the sample carries (``target``).
  Every MATH sample is taken (219).
- ``GAIR-NLP/ReasonEval`` ``dataset/mr-math_invalid_errors.json`` (Xia et al. 2024, MR-MATH): Abel 13B/70B and
  WizardMath 13B/70B solutions to MATH problems, annotated by hand; every one has a correct final answer (the
  file's ``model_output_answer_correctness``; the annotators judged the steps). All 159.

``debatable`` (with a reason) marks a case whose label is not a fact about the text alone; the rules are decided from
the case and the source's own fields, never from what any verifier answers:

- the source's answer sentence holds several different numbers (or letters) and its grader took one of them;
- the source's extracted prediction is empty (its grader read nothing) while the text states something;
- (ToRA) the completion has no box (the source read the program output) or several different boxes;
- (Plan-and-Solve) the source's prediction does not appear in the completion's final answer, or that answer
  states both the prediction and a different reference while the label says wrong.
- (MR-MATH) the completion boxes several different values;
- (Minerva, MR-MATH) a case listed in ``REVIEWED`` below: read by hand, the label and the completion's final answer
  disagree in a way the publisher did not explain (the reason is written beside the id).

CI has no network: the JSONL is committed, and this script only regenerates it where the snapshots exist.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "data" / "math_real_outputs.jsonl"

GSM = ("openai/grade-school-math", "3101c7d5072418e28b9008a6636bde82a006892c",
       "grade_school_math/data/example_model_solutions.jsonl")
KOJIMA = ("kojima-takeshi188/zero_shot_cot", "5ef330f",
          [("log/gsm8k_zero_shot_cot.log", "gsm8k", 150), ("log/multiarith_zero_shot_cot.log", "multiarith", 50),
           ("log/aqua_zero_shot_cot.log", "aqua", 100)])
PS = ("AGI-Edgerunners/Plan-and-Solve-Prompting", "9d5a176",
      [("generated_result/gsm8k-zero_shot-305-text-davinci-003.json", "gsm8k", 150),
       ("generated_result/SVAMP-zero_shot-307-text-davinci-003.json", "svamp", 50),
       ("generated_result/AQuA-zero_shot-305-text-davinci-003.json", "aqua", 100)])
TORA = ("microsoft/ToRA", "213c1c9",
        [("src/outputs/llm-agents/tora-70b-v1.0/gsm8k/test_tora_-1_seed0_t0.0_s0_e1319.jsonl", "ToRA-70B"),
         ("src/outputs/llm-agents/tora-code-34b-v1.0/gsm8k/test_tora_-1_seed0_t0.0_s0_e1319.jsonl", "ToRA-Code-34B")])
MINERVA = ("minerva-demo/minerva-demo.github.io", "55b47e2be76351c40ab77d49982e009b56f4e17c",
           "docs/js/app.cec95961.js")
MRMATH = ("GAIR-NLP/ReasonEval", "6c91c7a16e2b0e12ebc89685207cd091fb411478", "dataset/mr-math_invalid_errors.json")
# Cases read by hand whose label is not a fact about the text alone (id -> reason, from the data).
REVIEWED = {
    "math-minerva-180": "the final answer -\\frac{2}{\\sqrt{3}} equals the reference -\\frac{2 \\sqrt{3}}{3} in value "
                        "(denominator not rationalised); the publishers typed it Incorrect",
    "math-minerva-182": "the question asks how many real k; the completion answers 'no real values of k' (none) and "
                        "the reference is 0; the publishers typed it Incorrect",
    "math-mrmath-9": "the question simplifies to \\cot x (the reference); the completion's final answer is \\csc x; the "
                     "annotators marked the answer correct",
    "math-mrmath-49": "the question simplifies to \\cot x (the reference); the completion's final answer is \\csc x; the "
                      "annotators marked the answer correct",
    "math-mrmath-117": "the boxed answer is the repeating decimal 0.\\overline{35625}, which is not the reference "
                       ".35625; the annotators marked the answer correct",
}
TORA_PER_LABEL = 60  # the first 60 right and the first 60 wrong completions of each model, in file order
GSM_PROBLEMS = 100  # x 4 models

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
LETTER = re.compile(r"\(?\b([A-E])\b\)?")


def git_show(mirrors: Path, repo: str, commit: str, path: str) -> str:
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def value(text: str):
    try:
        return Fraction(text.replace(",", "").rstrip("."))
    except (ValueError, ZeroDivisionError):
        return None


def numbers(text: str) -> set:
    return {v for v in (value(m) for m in NUMBER.findall(text)) if v is not None}


def fmt(x) -> str:
    """A reference number as a dataset prints it (18.0 -> 18)."""
    f = Fraction(str(x))
    return str(f.numerator) if f.denominator == 1 else str(float(f))


def gsm_cases(mirrors: Path) -> list[dict]:
    repo, commit, path = GSM
    rows = [json.loads(line) for line in git_show(mirrors, repo, commit, path).splitlines() if line.strip()]
    out = []
    for i, row in enumerate(rows[:GSM_PROBLEMS]):
        reference = row["ground_truth"].rsplit("A:", 1)[1].strip()
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            sol = row[model]
            out.append({"id": f"gsm8k-openai-{i}-{model}", "source": repo, "commit": commit, "file": path,
                        "model": f"GPT-3 {model}", "dataset": "gsm8k", "question": row["question"],
                        "completion": sol["solution"],
                        "reference": reference, "label": bool(sol["is_correct"]), "label_source": "is_correct",
                        "debatable": None})
    return out


_BLOCK_END = "\npred_before :"


def kojima_cases(mirrors: Path) -> list[dict]:
    repo, commit, files = KOJIMA
    out = []
    for path, dataset, limit in files:
        log = git_show(mirrors, repo, commit, path)
        blocks = [b for b in log.split("*************************\n") if "\nGT :" in b]
        for k, block in enumerate(blocks[:limit]):
            question = block[block.index("\nQ: ") + len("\nQ: "):block.index("\nA: ")]
            a_start = block.index("\nA: ") + len("\nA: ")
            completion = block[a_start:block.index(_BLOCK_END)]
            fields = dict(re.findall(r"^(pred_before|pred_after|GT) :(.*)$", block, re.M))
            pred_before = re.search(r"^pred_before :(.*?)\npred_after :", block, re.S | re.M).group(1).strip()
            pred, gt = fields["pred_after"].strip(), fields["GT"].strip()
            if dataset == "aqua":
                label = pred == gt
                found = set(re.findall(r"\b([A-E])\b", pred_before))
            else:
                label = pred != "" and value(pred) is not None and value(pred) == value(gt)
                found = numbers(pred_before)
            debatable = None
            if pred == "":
                debatable = "the source's grader read no answer from the answer sentence"
            elif len(found) > 1:
                debatable = "the answer sentence holds several different values and the source's grader took one"
            out.append({"id": f"{dataset}-zeroshotcot-{k}", "source": repo, "commit": commit, "file": path,
                        "model": "GPT-3 text-davinci-002 (zero-shot-CoT)", "dataset": dataset,
                        "question": question, "completion": completion, "reference": gt, "label": label,
                        "label_source": "pred_after == GT", "debatable": debatable})
    return out


def _final_answer(text: str) -> str:
    """The completion's final answer section: after its last "Answer", else its last non-empty line."""
    parts = re.split(r"\banswer\b", text, flags=re.I)
    if len(parts) > 1:
        return parts[-1]
    lines = [line for line in text.strip().split("\n") if line.strip()]
    return lines[-1] if lines else ""


def ps_cases(mirrors: Path) -> list[dict]:
    repo, commit, files = PS
    out = []
    for path, dataset, limit in files:
        rows = json.loads(git_show(mirrors, repo, commit, path))
        for row in rows[:limit]:
            completion = row["chain-of-thought"].strip("\n")
            final = _final_answer(completion)
            if dataset == "aqua":
                reference = str(row["answer"])
                stated = set(re.findall(r"\(([A-E])\)|\b([A-E])\b(?=[).:]|\s*$)", final))
                stated = {a or b for a, b in stated}
                states_pred = str(row["pred"]) in stated
                several = len(stated) > 1
            else:
                reference = fmt(row["answer"])
                stated = numbers(final)
                states_pred = row["pred"] is not None and value(fmt(row["pred"])) in stated
                several = False
            debatable = None
            states_reference = (reference in stated) if dataset == "aqua" else value(reference) in stated
            if not states_pred:
                debatable = ("the source read its prediction with a second model call; the completion's final "
                             "answer does not state it")
            elif states_reference and not row["ans"]:
                debatable = ("the completion's final answer states the reference beside the source's (different) "
                             "prediction")
            elif several:
                debatable = "the final answer names several choices"
            out.append({"id": f"{dataset}-planandsolve-{row['ID']}", "source": repo, "commit": commit, "file": path,
                        "model": "GPT-3 text-davinci-003 (plan-and-solve)", "dataset": dataset,
                        "question": row["question"], "completion": completion, "reference": reference,
                        "label": bool(row["ans"]),
                        "label_source": "ans", "debatable": debatable})
    return out


def tora_cases(mirrors: Path) -> list[dict]:
    repo, commit, files = TORA
    out = []
    for path, model in files:
        rows = [json.loads(line) for line in git_show(mirrors, repo, commit, path).splitlines() if line.strip()]
        taken = {True: 0, False: 0}
        for row in rows:
            pred, gt = str(row["pred"][0]), str(row["gt"])
            label = value(pred) is not None and value(pred) == value(gt)
            if taken[label] >= TORA_PER_LABEL:
                continue
            taken[label] += 1
            completion = row["code"][0]
            boxes = set(re.findall(r"\\boxed\{([^{}]*)\}", completion))
            debatable = None
            if not boxes:
                debatable = "no box: the source read the program's printed output as the answer"
            elif len(boxes) > 1:
                debatable = "several different boxes and the source's grader took one"
            out.append({"id": f"gsm8k-tora-{model}-{row['idx']}", "source": repo, "commit": commit, "file": path,
                        "model": model, "dataset": "gsm8k", "question": row["question"], "completion": completion,
                        "reference": gt, "label": label, "label_source": "pred == gt", "debatable": debatable})
    return out


def boxed(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` in ``text`` (balanced braces), in order."""
    out, i = [], 0
    while (j := text.find("\\boxed", i)) >= 0:
        k = j + len("\\boxed")
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            depth, start = 0, k
            while k < len(text):
                depth += {"{": 1, "}": -1}.get(text[k], 0)
                if depth == 0:
                    break
                k += 1
            out.append(text[start + 1:k])
        i = k
    return out


_JS_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_JS_KEY = re.compile(r"([A-Za-z_]+):")


def _js_string(js: str, k: int) -> tuple[str, int]:
    """The JavaScript string literal (single or double quotes) starting at ``js[k]``, decoded; and the index after."""
    quote, k, out = js[k], k + 1, []
    while js[k] != quote:
        if js[k] != "\\":
            out.append(js[k])
            k += 1
            continue
        esc = js[k + 1]
        if esc == "u":
            out.append(chr(int(js[k + 2:k + 6], 16)))
            k += 6
        elif esc == "x":
            out.append(chr(int(js[k + 2:k + 4], 16)))
            k += 4
        else:
            out.append(_JS_ESCAPES.get(esc, "" if esc == "\n" else esc))
            k += 2
    return "".join(out), k + 1


def minerva_samples(js: str) -> list[dict]:
    """The sample array of the explorer's bundle: ``[{source:"...",category:"...",...}, ...]`` with string values."""
    k = js.index("[{source:") + 1
    rows = []
    while js[k] == "{":
        k += 1
        row = {}
        while js[k] != "}":
            m = _JS_KEY.match(js, k)
            row[m.group(1)], k = _js_string(js, m.end())
            k += js[k] == ","
        rows.append(row)
        k += 1
        k += js[k] == ","
    if js[k] != "]":
        raise ValueError("the sample array did not end where expected")
    return rows


def minerva_cases(mirrors: Path) -> list[dict]:
    repo, commit, path = MINERVA
    out = []
    samples = [r for r in minerva_samples(git_show(mirrors, repo, commit, path)) if r["source"] == "MATH"]
    for k, row in enumerate(samples):
        references = set(boxed(row["target"]))
        if len(references) != 1:
            raise ValueError(f"MATH sample {k}: the solution has {len(references)} different boxes")
        case_id = f"math-minerva-{k}"
        out.append({"id": case_id, "source": repo, "commit": commit, "file": path,
                    "model": f"Minerva {row['model']}", "dataset": "math", "question": row["question"].strip(),
                    "completion": row["output"], "reference": references.pop(),
                    "label": row["type"] in ("Correct", "False Positive"),
                    "label_source": f"type == {row['type']!r} (Correct / False Positive: right; Incorrect: wrong)",
                    "debatable": REVIEWED.get(case_id)})
    return out


def mrmath_cases(mirrors: Path) -> list[dict]:
    repo, commit, path = MRMATH
    rows = [json.loads(line) for line in git_show(mirrors, repo, commit, path).splitlines() if line.strip()]
    out = []
    for row in rows:
        case_id = f"math-mrmath-{row['id']}"
        debatable = REVIEWED.get(case_id)
        if debatable is None and len(set(boxed(row["model_output"]))) > 1:
            debatable = "several different boxes and the annotators' label takes one"
        out.append({"id": case_id, "source": repo, "commit": commit, "file": path, "model": row["generator"],
                    "dataset": "math", "question": row["question"], "completion": row["model_output"],
                    "reference": row["ground_truth_answer"],
                    "label": row["model_output_answer_correctness"] == "correct",
                    "label_source": "model_output_answer_correctness (human annotation)", "debatable": debatable})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    cases = (gsm_cases(args.mirrors) + kojima_cases(args.mirrors) + ps_cases(args.mirrors) + tora_cases(args.mirrors)
             + minerva_cases(args.mirrors) + mrmath_cases(args.mirrors))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    debatable = sum(1 for c in cases if c["debatable"])
    correct = sum(c["label"] for c in cases)
    print(f"{len(cases)} cases ({debatable} debatable, {correct} labelled correct) -> {args.out}")


if __name__ == "__main__":
    main()
