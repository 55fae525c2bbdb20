"""Verifiers used by the trainer tests: they give a random tiny model reward variance (so gradients exist)."""

from verifiers import SignalSpec, Verdict, Verifier


class LengthVerifier(Verifier):
    """score = (len(completion) mod 5) / 4: graded and varied, so groups of random text rarely tie."""

    name = "toy_length"
    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        return Verdict(score=(len(completion) % 5) / 4, passed=None, answer_class=completion[:3] or None)


class FailingVerifier(Verifier):
    """Raises on every item: each verdict is an error with score 0 (a broken verifier, for VERIFIER_FAULT)."""

    name = "toy_failing"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        raise RuntimeError("reference service unavailable")


class SleepyVerifier(Verifier):
    """A plug-in that never answers in time: `_verify` sleeps an hour (a hung judge endpoint, a deadlock)."""

    name = "toy_sleepy"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        import time

        time.sleep(3600)
        return Verdict(score=1.0, passed=True, answer_class="late")


class FirstCompletionVerifier(Verifier):
    """Closed but undeclared: 1 when a completion's answer equals its group's first completion's answer. It never
    reads the reference and declares source='external' (the loop the passive closure ratio did not see)."""

    name = "toy_first_completion"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        return Verdict(score=1.0, passed=True, answer_class=completion or None)

    def verify_groups(self, items, group_size):
        out = []
        for s in range(0, len(items), group_size):
            group = items[s:s + group_size]
            first = group[0]["completion"] if isinstance(group[0], dict) else group[0][0]
            for it in group:
                c = it["completion"] if isinstance(it, dict) else it[0]
                out.append(Verdict(score=float(c == first), passed=c == first, answer_class=c or None))
        return out


class ColonAnswerVerifier(Verifier):
    """A broken extraction: reads only `answer: X`, which no completion of the recipe writes (tags or boxed), so every
    right answer scores 0; the kind of silent format mismatch canaries exist to catch."""

    name = "toy_colon_answer"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        import re

        m = re.search(r"answer:\s*(\S+)", completion)
        ok = bool(m) and m.group(1) == str(reference)
        return Verdict(score=float(ok), passed=ok, answer_class=m.group(1) if m else None)


class AlwaysRightVerifier(Verifier):
    """An unparseable gold scoring 1.0: every completion passes."""

    name = "toy_always_right"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        return Verdict(score=1.0, passed=True, answer_class=completion[:8] or None)


class ReferenceMatchesPrompt(Verifier):
    """Passes when the reference is the value of the prompt's arithmetic ("Calculate 7 + 5." -> "12"), whatever the
    completion says: a stand-in for a model that answers everything right, so a pass rate measures how many
    references fit their prompts (the train/held-out consistency check's subject) on a tiny random model."""

    name = "toy_reference_matches_prompt"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        import re

        m = re.search(r"Calculate\s+([-+()\d\s]+)\.", prompt or "")
        ok = bool(m) and str(eval(m.group(1))) == str(reference).strip()  # digits, signs, parentheses only
        return Verdict(score=float(ok), passed=ok, answer_class=str(reference))
