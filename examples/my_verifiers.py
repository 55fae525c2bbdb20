"""A complete plug-in verifier to copy: put this file in the folder you run `rlvr train` from and name the class in
the recipe, e.g.

    rlvr train recipes/basic_arithmetic.yaml 'verifiers=[{name: my_verifiers:Within10}]'

rlvr imports `my_verifiers` from the current folder (as `python -m` would), checks the class, runs its canaries
before step 1 and keys its metrics by `name` (`rewards/within10/mean`).
"""

from __future__ import annotations

import re

from verifiers import SignalSpec, Verdict, Verifier

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Within10(Verifier):
    """Passes when the last number in the completion's <answer>...</answer> (or, without tags, in the whole
    completion) is within 10% of the numeric reference: a tolerant grader, e.g. for estimates.

    `rel_tol` declares the tolerance: rlvr's canaries then test it with a wrong answer outside the band (-79 ->
    -63) instead of one inside it (-78), so a correct tolerant verifier is not reported as accepting wrong answers.
    """

    name = "within10"  # metric keys rewards/within10/*, canary rule canary:within10
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")
    rel_tol = 0.10

    def _verify(self, completion: str, reference, *, prompt: str | None) -> Verdict:
        tagged = re.findall(r"<answer>(.*?)</answer>", completion, flags=re.S)
        numbers = _NUMBER.findall(tagged[-1] if tagged else completion)
        if not numbers:
            return Verdict(score=0.0, passed=False, answer_class=None, detail={"extracted": None})
        got, want = float(numbers[-1]), float(str(reference).replace(",", ""))
        ok = abs(got - want) <= self.rel_tol * abs(want)
        return Verdict(score=float(ok), passed=ok, answer_class=numbers[-1], detail={"extracted": numbers[-1]})
