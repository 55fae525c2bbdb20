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
