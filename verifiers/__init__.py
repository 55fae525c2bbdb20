"""Verifiers for RLVR training: the :class:`Verifier` protocol, a registry and the math verifier.

Name clash: the import name ``verifiers`` is also used by PrimeIntellect's ``verifiers`` package.
The two cannot be installed in the same environment; whichever comes first on ``sys.path`` wins.

Usage::

    from verifiers import get_verifier
    v = get_verifier("math")
    v.verify("... so the answer is \\boxed{\\frac{1}{2}}", "0.5").score  # 1.0
    v.verify_batch([(completion, reference), ...])                     # verdicts in order

Your own verifier: subclass :class:`Verifier` (set ``name`` and ``signal``, implement ``_verify``) and
either pass ``"pkg.module:Class"`` to :func:`get_verifier` or expose the class under the entry-point group
``rlvr.verifiers`` (``tests/plugin_example`` is a complete package). For TRL's ``GRPOTrainer``:
``verifiers.integrations.trl.reward_func(v)``.
"""

from .base import SignalSpec, Verdict, Verifier, VerifierTimeout
from .math_verifier import MathVerifier, extract_answer
from .registry import UnknownVerifierError, get_verifier, list_verifiers, register_verifier
from .self_consistency import LengthBonusVerifier, MajorityVoteVerifier, PromptSplitVerifier, answer_class_of

__all__ = [
    "LengthBonusVerifier",
    "MajorityVoteVerifier",
    "MathVerifier",
    "PromptSplitVerifier",
    "SignalSpec",
    "UnknownVerifierError",
    "Verdict",
    "Verifier",
    "VerifierTimeout",
    "answer_class_of",
    "extract_answer",
    "get_verifier",
    "list_verifiers",
    "register_verifier",
]
