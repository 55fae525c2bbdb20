"""Build ``benchmarks/data/math_field_tests.jsonl``: the math-grading test cases of other public projects.

Usage:
    python benchmarks/build_math_field_tests.py [--mirrors /work/.mirror]

Each source project's test files are read from a local git snapshot (``<mirrors>/<owner>+<name>/repo``, a bare
git directory) at a pinned commit and parsed with :mod:`ast`. Only *facts* are taken: the (prediction,
reference, expected verdict) triples that the tests assert, with the call options the test passes (for
math-verify: ``match_types``, ``precision``, ``strict``, ``allow_set_relation_comp``). No code of those
projects is copied or run. Values are read with a small literal evaluator (constants, tuples, lists, dicts,
``+``/``*`` on strings, f-strings over ``math.*`` of constants).

Every case records its source repository, file, commit, test function, the prediction, the reference, the
expected verdict, and ``debatable`` with a reason when the verdict follows a convention on which published
graders differ (numeric tolerance, an extraction policy, strict vs lenient symbol matching, set/relation
asymmetry, a grader quirk the test pins). The rules are listed in ``DEBATABLE`` below, each with its reason;
they are decided from the case, never from what any verifier answers.

CI has no network: the JSONL is committed, and this script only regenerates it where the snapshots exist.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "data" / "math_field_tests.jsonl"

# (repository, commit, [test files]) -- the commits the committed JSONL was built from
SOURCES = [
    ("huggingface/Math-Verify", "5d148cfaaf99214c2e4ffb4bc497ab042c592a7a",
     ["tests/test_all.py", "tests/test_boxed.py", "tests/test_numina_cases.py", "tests/test_open_thoughts.py",
      "tests/test_strict.py", "tests/test_yujianll.py"]),
    ("hendrycks/math", "985bdc1696e88e8643f081a0ff4719da39f2ae2a", ["modeling/math_equivalence_test.py"]),
    ("volcengine/verl", "87d81599d", ["tests/utils/reward_score/test_numeric_canonicalization_on_cpu.py"]),
    ("Ascend/MindSpeed-RL", "05a90d77cb6cfad8999e2aee21068284db959579",
     ["tests/ut/utils/test_grader.py", "tests/ut/models/test_math_dapo.py", "tests/ut/models/test_verifier.py"]),
    ("PrimeIntellect-ai/verifiers", "a60a606ecc4d309247edf9ff92c3eabca362781f", ["tests/test_math_rubric.py"]),
]

# grader functions whose (prediction, reference) argument order the source defines
PRED_FIRST = {"math_equal", "math_equal_subprocess", "is_equiv", "is_correct_minerva", "is_correct_strict_box",
              "verify", "compute_score", "accuracy_reward", "base_model_accuracy_reward"}
GOLD_FIRST = {"compare_strings"}
GOLD_NAMES = ("gold", "gt", "answer", "ground_truth", "label", "test_out", "reference")
PRED_NAMES = ("pred", "prediction", "completion", "solution_str", "test_in", "model_output")


class NotLiteral(Exception):
    pass


def literal(node: ast.AST, env: dict | None = None):
    """Value of a literal expression (see the module docstring); raises ``NotLiteral`` otherwise."""
    env = env or {}
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return [literal(e, env) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {literal(k, env): literal(v, env) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in env:
        return env[node.value.id][literal(node.slice, env)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -literal(node.operand, env)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = literal(node.left, env), literal(node.right, env)
        return left + right if isinstance(node.op, ast.Add) else left * right
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            isinstance(node.func.value, ast.Name) and node.func.value.id == "math" and not node.keywords:
        return getattr(math, node.func.attr)(*[literal(a, env) for a in node.args])
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(value.value)
            else:
                spec = "".join(literal(v, env) for v in value.format_spec.values) if value.format_spec else ""
                parts.append(format(literal(value.value, env), spec))
        return "".join(parts)
    raise NotLiteral(ast.dump(node)[:80])


def git_show(git_dir: Path, commit: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def verdict_of(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value > 0
    raise NotLiteral(repr(value))


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return None


def _find_calls(tree: ast.AST, names) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) in names]


# ---- parametrised tests: @pytest.mark.parametrize("gold,pred,expected", [...]) ---------------------------

def parametrized_cases(func: ast.FunctionDef) -> list[dict]:
    out = []
    for deco in func.decorator_list:
        if not (isinstance(deco, ast.Call) and _call_name(deco) == "parametrize"):
            continue
        try:
            names = literal(deco.args[0])
            rows = deco.args[1].elts
        except (NotLiteral, IndexError, AttributeError):
            continue
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        for row in rows:
            try:
                values = literal(row)
            except NotLiteral:
                continue
            values = values if len(names) > 1 else [values]
            out.append(dict(zip(names, values)))
    return out


def harness_options(func: ast.FunctionDef, params: dict) -> dict:
    """The options the test passes to its comparison helper (``compare_strings`` / ``verify(parse(...))``)."""
    opts: dict = {}
    for call in _find_calls(func, {"compare_strings"}):
        for kw in call.keywords:
            if isinstance(kw.value, ast.Name) and kw.value.id in params:
                opts[kw.arg] = params[kw.value.id]
            else:
                try:
                    opts[kw.arg] = literal(kw.value)
                except NotLiteral:
                    pass
        opts.setdefault("match_types", ["latex", "expr"])
        opts["helper"] = "compare_strings"
    if not opts and _find_calls(func, {"parse"}):
        opts["helper"] = "verify(parse(gold), parse(pred))"
    return opts


def _pick(d: dict, names) -> object:
    for name in names:
        if name in d:
            return d[name]
    return None


def from_parametrize(func: ast.FunctionDef) -> list[dict]:
    cases = []
    for params in parametrized_cases(func):
        if "test_case" in params and isinstance(params["test_case"], dict):
            params = {**params, **params.pop("test_case")}
        gold, pred = _pick(params, GOLD_NAMES), _pick(params, PRED_NAMES)
        if not isinstance(gold, str) or not isinstance(pred, str):
            continue
        expected = _pick(params, ("expected", "result"))
        if expected is None:  # the verdict is asserted in the body (``is True``, ``== 1.0``) or by the name
            expected = body_verdict(func)
        if expected is None:
            continue
        cases.append({"reference": gold, "prediction": pred, "expected": verdict_of(expected),
                      "harness": harness_options(func, params)})
    return cases


def body_verdict(func: ast.FunctionDef):
    for node in ast.walk(func):
        if isinstance(node, ast.Assert):
            test = node.test
            if isinstance(test, ast.Compare) and len(test.comparators) == 1:
                try:
                    value = literal(test.comparators[0])
                except NotLiteral:
                    continue
                if isinstance(value, (bool, int, float)) and _find_calls(test.left, PRED_FIRST | {"score_rollout"}):
                    return verdict_of(value)
                if isinstance(value, (int, float)) and isinstance(test.left, ast.Subscript):
                    return verdict_of(value)
    if "invalid" in func.name:
        return False
    if "valid" in func.name:
        return True
    return None


# ---- unparametrised tests: literal calls to the grader, verdict from the assertion ------------------------

def from_calls(func: ast.FunctionDef) -> list[dict]:
    env: dict = {}
    results: dict = {}  # variable name -> (pred, gold, call)
    cases = []
    for stmt in ast.walk(func):
        if isinstance(stmt, ast.Assign):
            target = stmt.targets[0]
            call = stmt.value if _call_name(stmt.value) in PRED_FIRST else None
            if call is not None:
                try:
                    pred, gold = literal(call.args[0], env), literal(call.args[1], env)
                except (NotLiteral, IndexError, KeyError, TypeError):
                    continue
                first = target.elts[0] if isinstance(target, ast.Tuple) else target
                if isinstance(first, ast.Name):
                    results[first.id] = (pred, gold, call)
                continue
            if isinstance(target, ast.Name):
                try:
                    env[target.id] = literal(stmt.value, env)
                except NotLiteral:
                    pass
        elif isinstance(stmt, ast.Assert) or (isinstance(stmt, ast.Expr) and
                                              _call_name(stmt.value) in ("assertTrue", "assertFalse")):
            case = _assert_case(stmt.test if isinstance(stmt, ast.Assert) else stmt.value, env, results)
            if case:
                cases.append(case)
    return cases


def _call_options(call: ast.Call) -> dict:
    opts = {"helper": _call_name(call)}
    if opts["helper"] in GOLD_FIRST:
        opts["match_types"] = ["latex", "expr"]
    for kw in call.keywords:
        try:
            opts[kw.arg] = literal(kw.value)
        except NotLiteral:
            pass
    return opts


def _assert_case(test: ast.AST, env: dict, results: dict):
    negate = False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test, negate = test.operand, True
    if isinstance(test, ast.Call) and _call_name(test) in ("assertTrue", "assertFalse"):
        negate = _call_name(test) == "assertFalse"
        test = test.args[0]
    expected, subject = (not negate), test
    if isinstance(test, ast.Compare) and len(test.comparators) == 1:
        try:
            value = literal(test.comparators[0])
        except NotLiteral:
            return None
        if isinstance(value, list) and len(value) == 1:  # batched rewards: ``f([completion], [label]) == [1.0]``
            value = value[0]
        if not isinstance(value, (bool, int, float)):
            return None
        expected, subject = verdict_of(value), test.left
        if isinstance(test.ops[0], (ast.NotEq, ast.IsNot)):
            expected = not expected
    if isinstance(subject, ast.Name) and subject.id in results:
        pred, gold, call = results[subject.id]
    elif _call_name(subject) in PRED_FIRST | GOLD_FIRST:
        call = subject
        try:
            pred, gold = literal(call.args[0], env), literal(call.args[1], env)
            if _call_name(call) in GOLD_FIRST:
                pred, gold = gold, pred
        except (NotLiteral, IndexError, KeyError, TypeError):
            return None
    else:
        return None
    if isinstance(pred, list) and isinstance(gold, list) and len(pred) == len(gold) == 1:
        pred, gold = pred[0], gold[0]
    if not isinstance(pred, str) or not isinstance(gold, str):
        return None
    return {"reference": gold, "prediction": pred, "expected": expected, "harness": _call_options(call)}


def cases_of_file(text: str) -> list[tuple[str, dict]]:
    tree = ast.parse(text)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            found = from_parametrize(node) if any(isinstance(d, ast.Call) and _call_name(d) == "parametrize"
                                                  for d in node.decorator_list) else []
            if not found:
                found = from_calls(node)
            out.extend((node.name, case) for case in found)
    return out


# ---- debatable cases: the expected verdict follows a convention on which graders differ -------------------

def debatable(case: dict) -> str | None:
    h, gold, pred, exp = case["harness"], case["reference"], case["prediction"], case["expected"]
    if h.get("strict") is False:
        return "non-default lenient mode (strict=False): f(x) and f(y) equal only when variable names are ignored"
    if h.get("allow_set_relation_comp"):
        return "non-default option allow_set_relation_comp=True (a relation reference equal to a set answer)"
    if h.get("precision") not in (None, 6) and re.search(r"\d\.\d{3,}", gold + pred):
        return f"numeric tolerance: the verdict is set by float_rounding={h['precision']}"
    if not exp and h.get("helper") == "compare_strings" and re.search(r"(\$|\\\()\s*\n", pred):
        return "extraction policy: inline math split over lines is refused by this test"
    boxed = re.search(r"\\boxed\{([^{}]*)\}", pred)
    if h.get("helper") == "compute_score" and h.get("strict_box_verify") is False and exp is False and boxed \
            and "Answer" not in pred and re.sub(r"\s", "", boxed.group(1)) == re.sub(r"\s", "", gold):
        return "grader quirk pinned by the test: Minerva mode reads only 'Answer: X', so a right boxed answer fails"
    if h.get("helper") == "is_equiv" and re.fullmatch(r"[^,]+(?:,[^,]+)+", gold) and not exp \
            and sorted(x.strip().lstrip("0") for x in gold.split(",")) == sorted(x.strip().lstrip("0") for x in pred.split(",")):
        return "order of a bare comma list: MATH's string match keeps it, graders that read a list of answers " \
            "as a set ignore it"
    if {gold.strip(), pred.strip()} == {"1", "1.0001"}:
        return "numeric tolerance: 1 vs 1.0001 equal only under a relative tolerance of 1e-4"
    if re.fullmatch(r"[+-]?0\d+", re.sub(r"\\boxed\{(.*)\}", r"\1", gold).strip()):
        return "zero-padded integers (033 = 33): graders differ (AIME-style answers are 000-999)"
    return None


# Single cases whose pinned verdict is a convention (or a quirk) and not a fact graders share, by
# (source, reference, prediction), each with its reason. Judged by reading the case, not by any verifier's output.
CURATED = {
    ("huggingface/Math-Verify", "$\\frac{1}{12}$", "$0.0833333333333333$"):
        "a rounded decimal against an exact rational: exact graders (rlvr's documented policy, sympy equality) "
        "reject it, tolerance graders accept it",
    ("huggingface/Math-Verify", "$(\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5} \\end{pmatrix})$",
     "$\\begin{pmatrix}0.33\\\\0.2 \\end{pmatrix}$"):
        "a rounded decimal (0.33) against an exact rational (1/3): graders differ on tolerance",
    ("huggingface/Math-Verify", "$1 - \\frac{1}{\\mathrm{e}}$", "$1 + \\frac{1}{\\mathrm{e}}$"):
        "the pinned verdict contradicts arithmetic (1 - 1/e != 1 + 1/e); the test records a quirk of its grader",
    ("huggingface/Math-Verify", "\\boxed{1} no no no no no \\boxed{2}", "$\\boxed{1,2}$"):
        "a reference with several boxes: its last box (MATH's last_boxed_only_string) or all of them",
    ("huggingface/Math-Verify", "$10/9$", "Answer $ \\frac{1}{2} \\$ = \\frac{10}{9} $"):
        "the answer is a false constant equation (1/2 = 10/9; the escaped \\$ inside the span is what the test "
        "checks): graders that read an equation by its last side accept it, graders that check a constant "
        "equation reject it (rlvr's hand-written set labels 2+2=5 against 5 as wrong)",
}


def build(mirrors: Path) -> list[dict]:
    rows: list[dict] = []
    seen: set = set()
    for repo, commit, files in SOURCES:
        git_dir = mirrors / repo.replace("/", "+") / "repo"
        if not git_dir.exists():
            raise SystemExit(f"missing snapshot {git_dir} (fetch {repo} first)")
        full = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", commit], check=True,
                              capture_output=True, text=True).stdout.strip()
        for path in files:
            for test, case in cases_of_file(git_show(git_dir, full, path)):
                key = (repo, case["reference"], case["prediction"], case["expected"],
                       json.dumps({k: v for k, v in case["harness"].items() if k != "helper"}, sort_keys=True))
                if key in seen:  # the same assertion repeated (pause-token variants, duplicated rows)
                    continue
                seen.add(key)
                reason = CURATED.get((repo, case["reference"], case["prediction"])) or debatable(case)
                rows.append({"id": len(rows), "source": repo, "path": path, "commit": full, "test": test,
                             "reference": case["reference"], "prediction": case["prediction"],
                             "expected": case["expected"], "harness": case["harness"],
                             "debatable": reason is not None, "debatable_reason": reason})
    # the same pair asserted with both verdicts (under different options): the verdict is the option's
    flips: dict = {}
    for row in rows:
        flips.setdefault((row["source"], row["reference"], row["prediction"]), set()).add(row["expected"])
    for row in rows:
        options = {"strict", "allow_set_relation_comp"} & set(row["harness"])
        if len(flips[(row["source"], row["reference"], row["prediction"])]) == 2 and options:
            row["debatable"] = True
            row["debatable_reason"] = row["debatable_reason"] or "the source asserts both verdicts for this pair, " \
                "under different options"
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = build(args.mirrors)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    by_source: dict = {}
    for row in rows:
        n, d = by_source.get(row["source"], (0, 0))
        by_source[row["source"]] = (n + 1, d + row["debatable"])
    for source, (n, d) in by_source.items():
        print(f"{source}: {n} cases ({d} debatable)")
    print(f"wrote {len(rows)} cases to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
