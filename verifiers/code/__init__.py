"""The code verifier: a completion's program scored by running unit tests in a sandbox (`get_verifier("code")`).

References, in the formats datasets use:

* **HumanEval**: ``{"prompt": ..., "test": "def check(candidate): ...", "entry_point": "fn"}`` (Chen et al. 2021,
  arXiv 2107.03374). Each ``assert`` in ``check`` is one test (``assert True`` is not a test).
* **MBPP**: a list of ``assert`` strings, or ``{"test_list": [...], "test_setup_code" / "test_imports": ...}``
  (Austin et al. 2021, arXiv 2108.07732). Each string is one test.
* **stdin/stdout**: ``[{"input": ..., "output": ...}, ...]`` or ``{"inputs": [...], "outputs": [...]}`` (APPS,
  CodeContests style). Each case is one test; outputs compare line by line with equal line counts (a prefix of the
  expected output fails), tokens as text or as floats within 1e-6.

The program is the last fenced code block of the completion (```` ```python ```` or a bare fence), else the raw
completion. For HumanEval, when the program does not define the entry point it is taken as the continuation of the
prompt (prompt + completion); when it does, the prompt's imports and helper functions are prepended.

`score` is the fraction of tests passed (graded); `passed` is True when all pass. A job that tampered with the
sandbox's result channel scores 0 whatever it passed (`detail["tamper"]`). How tests run, and what the sandbox
does and does not contain, is in `verifiers/code/sandbox.py` (threat model) and README.
"""

from __future__ import annotations

import ast
import functools
import re
from typing import Any

from ..base import SignalSpec, Verdict, Verifier
from ..registry import register_verifier
from .sandbox import Limits, SandboxPool, SandboxUnavailable, TIERS, detect_tiers

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
MAX_PROGRAM_CHARS = 64_000


def extract_program(completion: str) -> str:
    """The last fenced block tagged python/py/python3 or untagged, else the whole completion."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(completion or "")]
    code = [b for lang, b in blocks if lang in ("", "python", "py", "python3")]
    return (code[-1] if code else completion or "").strip("\n")


def _defines(program: str, name: str) -> bool:
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


@functools.lru_cache(maxsize=1024)
def _prompt_header(prompt: str, entry: str) -> str:
    """The HumanEval prompt without the entry point's stub: its imports and helper functions."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    keep = [n for n in tree.body if not (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry)]
    return "\n".join(ast.get_source_segment(prompt, n) or "" for n in keep)


def build_job(program: str, reference: Any) -> dict:
    """The sandbox job for a program and a reference in any supported format. Raises ValueError on an unknown
    format (the verifier turns it into a zero-score verdict with the message)."""
    ref = reference
    if isinstance(ref, str):
        import json

        try:
            ref = json.loads(ref)
        except ValueError:
            raise ValueError("code reference is a string that is not JSON: pass a dict or a list") from None
    if isinstance(ref, dict) and {"test", "entry_point"} <= ref.keys():
        entry, prompt = ref["entry_point"], ref.get("prompt", "")
        full = (_prompt_header(prompt, entry) + "\n\n" + program) if _defines(program, entry) else prompt + program
        return {"mode": "call", "program": full, "prelude": prompt, "test": ref["test"], "entry": entry}
    if isinstance(ref, dict) and "test_list" in ref:
        setup = "\n".join(s for s in (ref.get("test_setup_code") or "", "\n".join(ref.get("test_imports") or []))
                          if s)
        return {"mode": "assert", "program": (setup + "\n" + program) if setup else program,
                "asserts": list(ref["test_list"]), "setup": setup}
    if isinstance(ref, list) and ref and all(isinstance(t, str) for t in ref):
        return {"mode": "assert", "program": program, "asserts": list(ref)}
    if isinstance(ref, dict) and {"inputs", "outputs"} <= ref.keys():
        ref = [{"input": i, "output": o} for i, o in zip(ref["inputs"], ref["outputs"])]
    if isinstance(ref, list) and ref and all(isinstance(t, dict) and "input" in t for t in ref):
        cases = [{"input": _text(t["input"]), "output": _text(t.get("output", ""))} for t in ref]
        return {"mode": "stdio", "program": program, "cases": cases}
    raise ValueError("unknown code reference format: expected HumanEval {prompt, test, entry_point}, MBPP assert "
                     "strings / {test_list}, or stdin/stdout cases [{input, output}]")


def _text(x) -> str:
    return x if isinstance(x, str) else "\n".join(map(str, x)) if isinstance(x, list) else str(x)


@register_verifier("code")
class CodeVerifier(Verifier):
    """Runs a completion's program against unit tests in the sandbox (verifiers/code/sandbox.py).

    Args:
        timeout: wall seconds per completion, all its tests together (the job is killed after it).
        memory_mb: address-space limit of the candidate process above the sandbox zygote's (MiB).
        workers: sandbox workers (one candidate process each at a time); None = one per CPU core.
        tier: 'auto' (strongest available) or one of 'rlimits', 'seccomp', 'landlock', 'bwrap'.
        require_tier: the weakest tier accepted; a weaker machine raises SandboxUnavailable at the first use
            (default 'landlock': on a machine without Landlock, lowering it lets the sandbox read the trainer's
            files, answers included).

    Verdict: score = tests passed / tests (float in [0, 1]); passed = all passed (and no tampering);
    answer_class = the pass pattern ("code:1101"), so completions that behave alike share a class;
    detail = {"tests": [bool], "tamper": bool, "timed_out": bool, "error": str | None, "tier": str}.
    """

    name = "code"
    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="moderate")

    def __init__(self, *, timeout: float = 10.0, memory_mb: int = 1024, workers: int | None = None,
                 tier: str = "auto", require_tier: str = "landlock"):
        import os

        n = workers or max(1, os.cpu_count() or 1)
        super().__init__(max_workers=n)
        if require_tier not in TIERS:
            raise ValueError(f"require_tier must be one of {TIERS}, got {require_tier!r}")
        self.timeout, self.memory_mb, self.workers = float(timeout), int(memory_mb), n
        self.tier, self.require_tier = tier, require_tier
        self._pool: SandboxPool | None = None
        self.tamper_count = 0

    @property
    def pool(self) -> SandboxPool:
        if self._pool is None:
            self._pool = SandboxPool(workers=self.workers, tier=self.tier, require_tier=self.require_tier,
                                     limits=Limits(timeout=self.timeout, memory_mb=self.memory_mb))
        return self._pool

    def _verify(self, completion: str, reference: Any, *, prompt: str | None) -> Verdict:
        program = extract_program(completion)
        if len(program) > MAX_PROGRAM_CHARS:
            return Verdict(0.0, False, None, detail={"reason": "program_too_long", "chars": len(program)})
        if not program.strip():
            return Verdict(0.0, False, None, detail={"reason": "no_code"})
        job = build_job(program, reference)
        res = self.pool.run(job)
        tests = [bool(t) for t in res.get("tests", [])]
        tamper = bool(res.get("tamper"))
        if tamper:
            with self._stats_lock:
                self.tamper_count += 1
        detail = {"tests": tests, "tamper": tamper, "timed_out": bool(res.get("timed_out")),
                  "error": res.get("error"), "tier": self.pool.active_tier, "mode": job["mode"]}
        if res.get("sandbox_failure"):
            raise RuntimeError(f"sandbox failure: {res.get('error')}")
        if not tests:
            return Verdict(0.0, False, None, detail=detail)
        score = 0.0 if tamper else sum(tests) / len(tests)
        return Verdict(score, (not tamper) and all(tests), "code:" + "".join("1" if t else "0" for t in tests),
                       detail=detail)

    def identity(self) -> str:
        return f"code-sandbox(timeout={self.timeout},memory_mb={self.memory_mb})"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_pool"] = None  # worker processes do not travel; the copy starts its own on first use
        return state


__all__ = ["CodeVerifier", "SandboxPool", "SandboxUnavailable", "Limits", "TIERS", "build_job", "detect_tiers",
           "extract_program"]
