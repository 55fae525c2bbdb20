"""The code verifier: a completion's program scored by running unit tests in a sandbox (`get_verifier("code")`).

References, in the formats datasets use:

* **HumanEval**: ``{"prompt": ..., "test": "def check(candidate): ...", "entry_point": "fn"}`` (Chen et al. 2021,
  arXiv 2107.03374). Each ``assert`` in ``check`` is one test (``assert True`` is not a test; ``assert False`` is
  one that fails when reached), and, as in the original harness, the whole ``check`` must run to its end: any
  exception out of it (``raise AssertionError``, an error after the last assert) fails every test.
* **MBPP**: a list of ``assert`` strings, or ``{"test_list": [...], "test_setup_code" / "test_imports": ...}``
  (Austin et al. 2021, arXiv 2108.07732). Each string is one test: it passes when it runs to its end. The program's
  names reach the tests only as proxies for the names the tests use, never for a builtin's name.
* **stdin/stdout**: ``[{"input": ..., "output": ...}, ...]`` or ``{"inputs": [...], "outputs": [...]}`` (APPS,
  CodeContests style). Each case is one test; outputs compare line by line with equal line counts (a prefix of the
  expected output fails), tokens exactly as text, except where the expected token is a float literal (``0.3``,
  ``1e-9``): there any number within 1e-6 passes. Integer tokens always compare exactly.

The program is the last fenced code block of the completion (```` ```python ```` or a bare fence), else the raw
completion. For HumanEval, when the program does not define the entry point it is taken as the continuation of the
prompt (prompt + completion); when it does, the prompt's imports and helper functions are prepended.

`score` is the fraction of tests passed (graded); `passed` is True when all pass. A job that tampered with the
sandbox's result channel scores 0 whatever it passed (`detail["tamper"]`). How tests run, and what the sandbox
does and does not contain, is in `verifiers/code/sandbox.py` (threat model) and docs/verifiers.md.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import time
from typing import Any

from ..base import SignalSpec, Verdict, Verifier, _unpack_item
from ..registry import register_verifier
from .sandbox import Limits, SandboxPool, SandboxUnavailable, TIERS, detect_tiers

MAX_PROGRAM_CHARS = 64_000
MAX_COMPLETION_CHARS = 4 * MAX_PROGRAM_CHARS   # longer completions are not parsed at all (program_too_long)
_LANG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-")
_CODE_LANGS = ("", "python", "py", "python3")


def extract_program(completion: str) -> str:
    """The last fenced block tagged python/py/python3 or untagged, else the whole completion.

    A fence is three backticks, optional blanks, a tag (letters, digits, `_+-`), the rest of that line; the block
    runs to the next three backticks or the end of the text. Scanned with `str.find` in one pass, so the time is
    linear in the length (a backtracking regex took seconds on a 120 KB completion and held the GIL); `_verify`
    also refuses completions over MAX_COMPLETION_CHARS before calling this."""
    text = completion or ""
    last = None
    pos = 0
    while True:
        i = text.find("```", pos)
        if i < 0:
            break
        nl = text.find("\n", i + 3)
        if nl < 0:
            break
        j = i + 3
        while j < nl and text[j] in " \t":
            j += 1
        k = j
        while k < nl and text[k] in _LANG_CHARS:
            k += 1
        end = text.find("```", nl + 1)
        if text[j:k].lower() in _CODE_LANGS:
            last = (nl + 1, end if end >= 0 else len(text))
        if end < 0:
            break
        pos = end + 3
    return (text[last[0]:last[1]] if last else text).strip("\n")


def _clean_text(x, n: int = 500) -> str | None:
    """Error text for a verdict: None, or at most `n` characters of valid UTF-8."""
    if x is None:
        return None
    s = x if isinstance(x, str) else repr(type(x))
    return s[:n].encode("utf-8", "replace").decode("utf-8")


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
        job = self._prepare(completion, reference)
        if isinstance(job, Verdict):
            return job
        return self._verdict(job, self.pool.run(job))

    def _prepare(self, completion: str, reference: Any) -> dict | Verdict:
        """The sandbox job for a completion, or its verdict when there is nothing to run."""
        if len(completion or "") > MAX_COMPLETION_CHARS:
            return Verdict(0.0, False, None, detail={"reason": "program_too_long", "chars": len(completion)})
        program = extract_program(completion)
        if len(program) > MAX_PROGRAM_CHARS:
            return Verdict(0.0, False, None, detail={"reason": "program_too_long", "chars": len(program)})
        if not program.strip():
            return Verdict(0.0, False, None, detail={"reason": "no_code"})
        return build_job(program, reference)

    def _verdict(self, job: dict, res: dict) -> Verdict:
        tests = [bool(t) for t in res.get("tests", [])]
        tamper = bool(res.get("tamper"))
        if tamper:
            with self._stats_lock:
                self.tamper_count += 1
        error = _clean_text(res.get("error"))
        detail = {"tests": tests, "tamper": tamper, "timed_out": bool(res.get("timed_out")),
                  "error": error, "tier": self.pool.active_tier, "mode": job["mode"]}
        if res.get("sandbox_failure"):
            raise RuntimeError(f"sandbox failure: {error}")
        if not tests:
            return Verdict(0.0, False, None, detail=detail)
        score = 0.0 if tamper else sum(tests) / len(tests)
        return Verdict(score, (not tamper) and all(tests), "code:" + "".join("1" if t else "0" for t in tests),
                       detail=detail)

    def verify_batch(self, items) -> list[Verdict]:
        """As `Verifier.verify_batch` (one verdict per item, in order, never raising for an item), with the jobs
        sent to the sandbox pool as one batch (`SandboxPool.run_batch`): every worker is kept fed from this thread,
        with no thread per item. Each job still runs alone in its own fresh child and folder, under its own
        deadline. `elapsed_s` of a verdict run in the sandbox is its job's time from start to result."""
        calls = [_unpack_item(i, item) for i, item in enumerate(items)]
        if len(calls) <= 1:
            return [self.verify(c, r, prompt=p) for c, r, p in calls]
        verdicts: list[Verdict | None] = [None] * len(calls)
        jobs, where = [], []
        for i, (completion, reference, _prompt) in enumerate(calls):
            t0 = time.perf_counter()
            try:
                job = self._prepare(completion, reference)
            except Exception as exc:  # noqa: BLE001 - as Verifier.verify: a verdict, never a raise
                verdicts[i] = self._record(None, exc, time.perf_counter() - t0)
                continue
            if isinstance(job, Verdict):
                verdicts[i] = self._record(job, None, time.perf_counter() - t0)
            else:
                jobs.append(job)
                where.append(i)
        if jobs:
            try:
                results = self.pool.run_batch(jobs)
            except Exception as exc:  # noqa: BLE001 - no sandbox here (SandboxUnavailable) or a pool failure
                for i in where:
                    verdicts[i] = self._record(None, exc, 0.0)
                return verdicts  # type: ignore[return-value]
            for i, job, res in zip(where, jobs, results):
                try:
                    v = self._verdict(job, res)
                except Exception as exc:  # noqa: BLE001
                    verdicts[i] = self._record(None, exc, float(res.get("elapsed_s", 0.0)))
                else:
                    verdicts[i] = self._record(v, None, float(res.get("elapsed_s", 0.0)))
        return verdicts  # type: ignore[return-value]

    def _record(self, verdict: Verdict | None, exc: Exception | None, elapsed: float) -> Verdict:
        """A batch item's verdict counted in `stats` as `Verifier.verify` counts it (an exception: an error verdict)."""
        if exc is not None:
            verdict = Verdict(0.0, False, None, error=f"{type(exc).__name__}: {exc}")
        with self._stats_lock:
            self.stats["calls"] += 1
            if exc is not None:
                self.stats["errors"] += 1
        return dataclasses.replace(verdict, elapsed_s=elapsed)

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
