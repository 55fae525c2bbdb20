"""Rubric verifier: a weighted list of criteria, each checked by a rule or by a judge model.

A rubric turns "is this answer good?" into several checkable criteria with weights, and the reward is their
weighted mean ("Rubrics as Rewards", Gunjal et al. 2025, arXiv 2507.17746). Criteria that a rule can decide
(a regex, a substring, a Python predicate) are decided by the rule; the others are put to a judge model as one
yes/no question each (LLM-as-a-judge: Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot
Arena", arXiv 2306.05685). A yes/no answer is read from the judge's next-token probabilities rather than from a
sampled token, so the score is graded and deterministic (G-Eval weights scores by token probabilities: Liu et al.
2023, arXiv 2303.16634).

Criterion format (a dict; exactly one of ``regex``, ``contains``, ``predicate``, ``judge``)::

    {"name": "cites", "weight": 2, "regex": "\\[\\d+\\]"}                 # 1 if re.search finds it
    {"name": "polite", "contains": "please", "ignore_case": true}         # 1 if the substring occurs
    {"name": "short", "predicate": "my_pkg.checks:is_short"}              # fn(completion, prompt, reference)
    {"name": "correct", "weight": 3, "judge": "Is the final answer 42?"}  # judge, yes/no
    {"name": "clarity", "judge": "How clear is the explanation?", "scale": [1, 10]}  # judge, a number

Optional keys: ``name`` (default ``"criteria[i]"``/``"reference[i]"``), ``weight`` (default 1.0, >= 0),
``negate`` (score becomes 1 - score: "does not mention X"), ``ignore_case`` (regex/contains), ``scale``
(judge: ``[low, high]``, asks for a number instead of yes/no).
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import json
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any, Callable, Optional, Sequence

from .base import SignalSpec, Verdict, Verifier
from .registry import register_verifier
from .self_consistency import answer_class_of

YES_TOKENS = ("Yes", " Yes", "yes", " yes")
NO_TOKENS = ("No", " No", "no", " no")

DEFAULT_TEMPLATE = (
    "You are grading a response against one criterion of a rubric.\n\n"
    "Question:\n{prompt}\n\n"
    "Response:\n{completion}\n\n"
    "Criterion: {criterion}\n\n"
    "Does the response satisfy the criterion? Answer Yes or No."
)
DEFAULT_NUMBER_TEMPLATE = (
    "You are grading a response against one criterion of a rubric.\n\n"
    "Question:\n{prompt}\n\n"
    "Response:\n{completion}\n\n"
    "Criterion: {criterion}\n\n"
    "How well does the response satisfy the criterion? Reply with a single number from {low} to {high}."
)
_TEMPLATE_FIELDS = {"prompt": "", "completion": "", "criterion": "", "reference": "", "low": 0, "high": 1}
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_CHECKS = ("regex", "contains", "predicate", "judge")
_CRITERION_KEYS = {"name", "weight", "negate", "ignore_case", "scale", *_CHECKS}


class JudgeError(RuntimeError):
    """A judge could not give a score (endpoint unreachable after retries, no number in its reply, ...).
    Raised inside :meth:`RubricVerifier._verify`, so it becomes a zero-score verdict with ``error`` set."""


# ------------------------------------------------------------------------------------------- criteria


@dataclass(frozen=True)
class Criterion:
    """One parsed criterion. ``kind`` is ``"regex"``, ``"contains"``, ``"predicate"`` or ``"judge"``; ``check`` is
    the compiled pattern, the substring, the callable, or the judge's question; ``scale`` is ``(low, high)`` for a
    judge asked for a number, else ``None``."""

    name: str
    weight: float
    kind: str
    check: Any
    negate: bool = False
    ignore_case: bool = False
    scale: Optional[tuple[float, float]] = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)


def _load_predicate(path: str) -> Callable:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"must be 'package.module:function', got {path!r}")
    fn = importlib.import_module(module_name)
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"{path!r} is not callable")
    return fn


def parse_criteria(raw: Any, *, field_name: str = "criteria", allow_predicates: bool = True) -> list[Criterion]:
    """Validate and parse a list of criterion dicts (format in the module docstring).

    Args:
        raw: a list (or tuple) of dicts.
        field_name: how errors name the list (``"criteria"`` for the constructor's, ``"reference"`` for an
            item's); also the prefix of default names (``"criteria[0]"``).
        allow_predicates: ``False`` refuses ``predicate`` criteria (a reference comes from data, and an import
            path from data could name any function).

    Raises:
        ValueError: not a list, an item not a dict, an unknown key, not exactly one check, a weight that is not a
            finite number >= 0, a bad regex/substring/predicate/scale, duplicate names. The message names the
            criterion (``criteria[1] 'tone'``) and the field.
    """
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"rubric {field_name} must be a list of criteria, got {type(raw).__name__}")
    out: list[Criterion] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"rubric {field_name}[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: a criterion must be a dict, got {type(item).__name__}")
        name = item.get("name", f"{field_name}[{i}]")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
        if "name" in item:
            where = f"{where} {name!r}"
        unknown = sorted(set(item) - _CRITERION_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(_CRITERION_KEYS)}")
        checks = [k for k in _CHECKS if k in item]
        if len(checks) != 1:
            raise ValueError(f"{where}: needs exactly one of {list(_CHECKS)}, got {checks or 'none'}")
        kind = checks[0]
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{where}: field 'weight' must be a finite number >= 0, got {weight!r}")
        for flag in ("negate", "ignore_case"):
            if not isinstance(item.get(flag, False), bool):
                raise ValueError(f"{where}: field {flag!r} must be true or false, got {item[flag]!r}")
        ignore_case = item.get("ignore_case", False)
        if ignore_case and kind not in ("regex", "contains"):
            raise ValueError(f"{where}: field 'ignore_case' only applies to regex and contains criteria")
        if "scale" in item and kind != "judge":
            raise ValueError(f"{where}: field 'scale' only applies to judge criteria")
        value, scale = item[kind], None
        if kind == "regex":
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: field 'regex' must be a non-empty string, got {value!r}")
            try:
                check = re.compile(value, re.IGNORECASE if ignore_case else 0)
            except re.error as e:
                raise ValueError(f"{where}: field 'regex' does not compile: {e}") from None
        elif kind == "contains":
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: field 'contains' must be a non-empty string, got {value!r}")
            check = value
        elif kind == "predicate":
            if not allow_predicates:
                raise ValueError(f"{where}: field 'predicate' is only accepted in the constructor's criteria, "
                                 f"not in a reference (data must not name functions to import)")
            if callable(value):
                check = value
            elif isinstance(value, str):
                try:
                    check = _load_predicate(value)
                except (ImportError, AttributeError, ValueError) as e:
                    raise ValueError(f"{where}: field 'predicate' {value!r}: {type(e).__name__}: {e}") from None
            else:
                raise ValueError(f"{where}: field 'predicate' must be 'pkg.module:function' or a callable, "
                                 f"got {type(value).__name__}")
        else:
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: field 'judge' must be the question to ask (a non-empty string), "
                                 f"got {value!r}")
            check = value
            if "scale" in item:
                s = item["scale"]
                ok = (isinstance(s, (list, tuple)) and len(s) == 2
                      and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in s))
                if not ok or not s[0] < s[1]:
                    raise ValueError(f"{where}: field 'scale' must be [low, high] with low < high, got {s!r}")
                scale = (float(s[0]), float(s[1]))
        if name in seen:
            raise ValueError(f"{where}: duplicate criterion name {name!r}")
        seen.add(name)
        out.append(Criterion(name, float(weight), kind, check, item.get("negate", False), ignore_case, scale,
                             dict(item)))
    return out


def _split_reference(reference: Any) -> tuple[Optional[list], Optional[str]]:
    """``(per-item criteria or None, reference text or None)``; see :class:`RubricVerifier` for the formats."""
    if reference is None:
        return None, None
    if isinstance(reference, str):
        s = reference.strip()
        if s[:1] in ("{", "["):
            try:
                parsed = json.loads(s)
            except ValueError as e:
                if s.startswith("{") and '"criteria"' in s:
                    raise ValueError(f"rubric reference looks like a JSON rubric but does not parse: {e}") from None
                return None, reference
            if (isinstance(parsed, dict) and "criteria" in parsed) or (
                    isinstance(parsed, list) and parsed and all(isinstance(c, dict) for c in parsed)):
                return _split_reference(parsed)
        return None, reference
    if isinstance(reference, dict):
        unknown = sorted(set(reference) - {"criteria", "reference"})
        if unknown or "criteria" not in reference:
            raise ValueError(f"rubric reference dict takes the fields 'criteria' (required) and 'reference', "
                             f"got {sorted(reference)}")
        text = reference.get("reference")
        return reference["criteria"], None if text is None else str(text)
    if isinstance(reference, (list, tuple)):
        return list(reference), None
    return None, str(reference)


def _config_digest(obj: Any) -> str:
    def default(o: Any) -> str:
        if callable(o):
            return f"{getattr(o, '__module__', '?')}:{getattr(o, '__qualname__', repr(o))}"
        return repr(o)

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- identity


# ------------------------------------------------------------------------------------------- judges


class Judge(abc.ABC):
    """Base of the two judges: renders the question and turns the reply into a score in ``[0, 1]``.

    Args:
        template: yes/no prompt, a ``str.format`` template with the fields ``{prompt}``, ``{completion}``,
            ``{criterion}`` and ``{reference}`` (``""`` when absent). Default :data:`DEFAULT_TEMPLATE`.
        number_template: for criteria with a ``scale``; also ``{low}`` and ``{high}``. Default
            :data:`DEFAULT_NUMBER_TEMPLATE`.
    """

    kind: str = "?"
    deterministic: bool = True

    def __init__(self, *, template: str | None = None, number_template: str | None = None) -> None:
        self.template = DEFAULT_TEMPLATE if template is None else template
        self.number_template = DEFAULT_NUMBER_TEMPLATE if number_template is None else number_template
        for key, t in (("template", self.template), ("number_template", self.number_template)):
            if not isinstance(t, str):
                raise ValueError(f"rubric judge: field {key!r} must be a string, got {type(t).__name__}")
            try:
                t.format(**_TEMPLATE_FIELDS)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"rubric judge: field {key!r} is not a valid template ({type(e).__name__}: {e}); "
                                 f"fields: {sorted(_TEMPLATE_FIELDS)}") from None

    def render(self, criterion: Criterion, completion: str, prompt: str | None, reference: str | None) -> str:
        fields = {"prompt": prompt or "", "completion": completion, "criterion": criterion.check,
                  "reference": reference or ""}
        if criterion.scale is None:
            return self.template.format(**fields, low=0, high=1)
        return self.number_template.format(**fields, low=_fmt(criterion.scale[0]), high=_fmt(criterion.scale[1]))

    def score(self, criterion: Criterion, completion: str, prompt: str | None,
              reference: str | None) -> tuple[float, dict]:
        """``(score in [0, 1], detail)`` for one judge criterion; raises :class:`JudgeError` when it cannot."""
        text = self.render(criterion, completion, prompt, reference)
        if criterion.scale is None:
            return self._yes_no(text)
        reply = self._generate(text)
        return _scale_number(reply, criterion.scale)

    @abc.abstractmethod
    def _yes_no(self, text: str) -> tuple[float, dict]:
        """p(yes) / (p(yes) + p(no)) for a rendered yes/no question, and diagnostics."""

    @abc.abstractmethod
    def _generate(self, text: str) -> str:
        """The judge's text reply to a rendered question (number criteria)."""

    @abc.abstractmethod
    def identity(self) -> str:
        """What the verdicts depend on: model path and weights hash, or endpoint and served model."""

    @abc.abstractmethod
    def models(self) -> tuple[str, ...]:
        """Paths / served names of the judge's model(s), for the monitor's judge-is-policy check."""

    def config(self) -> dict:
        return {"kind": self.kind, "template": self.template, "number_template": self.number_template}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _scale_number(reply: str, scale: tuple[float, float]) -> tuple[float, dict]:
    """First number in ``reply`` mapped linearly from ``[low, high]`` to ``[0, 1]`` and clipped."""
    m = _NUMBER.search(reply)
    if m is None:
        raise JudgeError(f"no number in the judge's reply {reply[:80]!r}")
    value = float(m.group())
    low, high = scale
    raw = (value - low) / (high - low)
    return min(1.0, max(0.0, raw)), {"reply": reply, "value": value, "clipped": not 0.0 <= raw <= 1.0}


def weights_sha256(model: Any) -> str:
    """sha256 (hex) over a torch module's ``state_dict``: for each entry in name order, its name, dtype and shape,
    then its raw bytes (the tensors as loaded, so the dtype matters). Tied weights appear under each name."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class LocalJudge(Judge):
    """A frozen local Hugging Face causal LM as judge.

    Loaded once, at construction (and again after unpickling): ``AutoModelForCausalLM.from_pretrained(path,
    local_files_only=True)``, eval mode, ``requires_grad_(False)``, every call under ``torch.inference_mode``; the
    weights hash (:func:`weights_sha256`) is computed at load. Nothing is downloaded.

    Prompting: the rendered question is wrapped by the tokenizer's chat template (one user message, generation
    prompt added) and tokenized without adding special tokens, when the tokenizer has a chat template and
    ``use_chat_template``; otherwise the raw text is tokenized with special tokens.

    Yes/no score (one forward pass, no sampling)::

        score = p(yes) / (p(yes) + p(no))

    where ``p(yes)`` is the next-token probability summed over the single-token encodings of :data:`YES_TOKENS`
    (``"Yes"``, ``" Yes"``, ``"yes"``, ``" yes"``), ``p(no)`` likewise over :data:`NO_TOKENS`; computed as
    ``sigmoid(logsumexp(logits[yes]) - logsumexp(logits[no]))``, which is the same quantity without underflow.
    ``detail`` has ``p_yes`` and ``p_no``. With a ``scale``: greedy decoding of up to ``max_new_tokens`` tokens,
    the first number in the reply mapped from ``[low, high]`` to ``[0, 1]`` and clipped (:class:`JudgeError` when
    there is none).

    Args:
        model: a local HF folder or an alias of ``rlvr.models.resolve_model`` (resolved the same way as the
            policy's ``model:``, so the same value gives the same path string).
        device: ``"cpu"``, ``"cuda"``, ...; default ``"cuda"`` when available, else ``"cpu"``.
        dtype: torch dtype name; default ``"bfloat16"`` on CUDA, ``"float32"`` on CPU.
        use_chat_template, max_new_tokens, template, number_template: see above and :class:`Judge`.

    Raises:
        ValueError: a tokenizer without any single-token encoding of yes or of no, a bad option.
        rlvr.errors.ModelError / OSError: the model cannot be resolved or loaded offline.
    """

    kind = "local"
    deterministic = True

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = None,
                 use_chat_template: bool = True, max_new_tokens: int = 8, template: str | None = None,
                 number_template: str | None = None) -> None:
        super().__init__(template=template, number_template=number_template)
        if not isinstance(model, str) or not model:
            raise ValueError(f"rubric judge: field 'model' must be a path or alias, got {model!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"rubric judge: field 'max_new_tokens' must be an int >= 1, got {max_new_tokens!r}")
        self.model_ref, self.device, self.dtype = model, device, dtype
        self.use_chat_template, self.max_new_tokens = use_chat_template, max_new_tokens
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from verifiers.registry import resolve_model_path

        self.path = resolve_model_path(self.model_ref)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = self.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"rubric judge: field 'dtype' {dtype!r} is not a torch dtype")
        tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True, dtype=getattr(torch, dtype))
        model.to(device).eval().requires_grad_(False)
        self.yes_ids = _single_token_ids(tok, YES_TOKENS)
        self.no_ids = _single_token_ids(tok, NO_TOKENS)
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"rubric judge {self.path}: the tokenizer has no single-token yes/no "
                             f"({YES_TOKENS} / {NO_TOKENS})")
        self._tok, self._model, self._device = tok, model, device
        self.weights_sha256 = weights_sha256(model)

    def encode(self, text: str) -> list[int]:
        """Token ids of the judge's input for a rendered question (chat template rule above)."""
        tok = self._tok
        if self.use_chat_template and getattr(tok, "chat_template", None):
            chat = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
            return tok(chat, add_special_tokens=False)["input_ids"]
        return tok(text)["input_ids"]

    def _yes_no(self, text: str) -> tuple[float, dict]:
        import torch

        ids = self.encode(text)
        with self._lock, torch.inference_mode():
            logits = self._model(torch.tensor([ids], device=self._device)).logits[0, -1].float()
            logp = torch.log_softmax(logits, -1)
            ly, ln = torch.logsumexp(logp[self.yes_ids], 0), torch.logsumexp(logp[self.no_ids], 0)
            score = float(torch.sigmoid(ly - ln))
        return score, {"p_yes": float(ly.exp()), "p_no": float(ln.exp())}

    def _generate(self, text: str) -> str:
        import torch

        ids = self.encode(text)
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else self._tok.eos_token_id
        with self._lock, torch.inference_mode():
            out = self._model.generate(torch.tensor([ids], device=self._device), do_sample=False,
                                       max_new_tokens=self.max_new_tokens, pad_token_id=pad,
                                       attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self._device))
        return self._tok.decode(out[0, len(ids):], skip_special_tokens=True)

    def identity(self) -> str:
        return f"hf:{self.path}@sha256:{self.weights_sha256}"

    def models(self) -> tuple[str, ...]:
        return (self.path,)

    def config(self) -> dict:
        return {**super().config(), "use_chat_template": self.use_chat_template,
                "max_new_tokens": self.max_new_tokens}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for k in ("_lock", "_tok", "_model"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._load()


def _single_token_ids(tok: Any, variants: Sequence[str]) -> list[int]:
    ids = []
    for v in variants:
        enc = tok.encode(v, add_special_tokens=False)
        if len(enc) == 1 and enc[0] not in ids:
            ids.append(enc[0])
    return ids


Transport = Callable[[str, str, Optional[bytes], dict, float], tuple[int, bytes]]


def urllib_transport(method: str, url: str, body: bytes | None, headers: dict, timeout_s: float) -> tuple[int, bytes]:
    """The default HTTP transport: ``(status, body bytes)``; an HTTP error status is returned, not raised; network
    failures and timeouts raise ``OSError`` (``urllib.error.URLError``, ``TimeoutError``). ``timeout_s`` bounds
    each socket operation (connect, each read), not the whole exchange."""
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointJudge(Judge):
    """An OpenAI-compatible chat endpoint as judge (a vLLM server, ...): ``POST {base_url}/chat/completions``.

    Yes/no: ``max_tokens=1``, ``temperature=0``, ``logprobs=true``, ``top_logprobs``; ``score = p(yes) / (p(yes) +
    p(no))`` with ``p(yes)`` summed over the top tokens whose stripped, lower-cased text is ``"yes"`` (``"no"``
    likewise), as for :class:`LocalJudge` (``detail["method"] = "logprobs"``). When the server returns no
    logprobs, or neither word is among the top tokens, the reply text decides: 1.0 if it starts with "yes", 0.0
    with "no" (``"text"``), else :class:`JudgeError`. With a ``scale``: ``max_tokens=max_new_tokens``, the first
    number of the reply. Declared non-deterministic (servers batch, so even greedy replies can vary).

    Each request is tried ``1 + retries`` times: connection errors, timeouts and HTTP 408/409/425/429/5xx are
    retried after ``backoff_s * 2**k`` seconds (k = 0, 1, ...); other 4xx and malformed replies are not. Then
    :class:`JudgeError` names the URL, the attempts and the last error.

    Identity: ``"openai:<base_url>#model=<name>"`` with the model name the server reports: the ``model`` field of
    its latest completion, else (before the first) its ``GET /models`` listing (the configured ``model`` when it is
    listed, else the first listed), else the configured name. Each call to :meth:`identity` makes at most that
    one ``GET`` (while no completion has been seen), with a single attempt.

    Args:
        base_url: e.g. ``"http://127.0.0.1:8000/v1"``.
        model: the model name to request; ``None`` asks the server's ``/models`` for its first model.
        timeout_s: socket timeout of each attempt, seconds.
        retries: extra attempts after the first. backoff_s: first back-off, seconds.
        top_logprobs: how many top tokens to ask for (yes/no). max_new_tokens: reply budget with a scale.
        api_key_env: name of an environment variable holding a bearer token (never the key itself).
        transport: ``fn(method, url, body, headers, timeout_s) -> (status, body)``; default :func:`urllib_transport`.
        template, number_template: see :class:`Judge`; sent as one user message.
    """

    kind = "endpoint"
    deterministic = False

    def __init__(self, base_url: str, *, model: str | None = None, timeout_s: float = 30.0, retries: int = 2,
                 backoff_s: float = 0.5, top_logprobs: int = 20, max_new_tokens: int = 8,
                 api_key_env: str | None = None, transport: Transport | None = None, template: str | None = None,
                 number_template: str | None = None) -> None:
        super().__init__(template=template, number_template=number_template)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"rubric judge: field 'base_url' must be an http(s) URL, got {base_url!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"rubric judge: field 'timeout_s' must be > 0, got {timeout_s!r}")
        if not (isinstance(retries, int) and retries >= 0):
            raise ValueError(f"rubric judge: field 'retries' must be an int >= 0, got {retries!r}")
        if not (isinstance(backoff_s, (int, float)) and backoff_s >= 0):
            raise ValueError(f"rubric judge: field 'backoff_s' must be >= 0, got {backoff_s!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s, self.retries, self.backoff_s = float(timeout_s), retries, float(backoff_s)
        self.top_logprobs, self.max_new_tokens, self.api_key_env = top_logprobs, max_new_tokens, api_key_env
        self.transport = transport or urllib_transport
        self.reported_model: str | None = None

    # -- HTTP
    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env and os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        return headers

    def request(self, method: str, path: str, payload: dict | None = None, *, attempts: int | None = None) -> dict:
        """One JSON request with retries; returns the decoded reply. Raises :class:`JudgeError`."""
        url = f"{self.base_url}{path}"
        body = None if payload is None else json.dumps(payload).encode()
        attempts = self.retries + 1 if attempts is None else attempts
        last = "no attempt"
        for k in range(attempts):
            if k:
                time.sleep(self.backoff_s * 2 ** (k - 1))
            try:
                status, data = self.transport(method, url, body, self._headers(), self.timeout_s)
            except (OSError, HTTPException) as e:
                reason = getattr(e, "reason", None)
                last = f"{type(e).__name__}: {reason if reason is not None else e}"
                continue
            if status in _RETRY_STATUS:
                last = f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
                continue
            if not 200 <= status < 300:
                raise JudgeError(f"judge endpoint {url}: HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
            try:
                return json.loads(data)
            except ValueError:
                raise JudgeError(f"judge endpoint {url}: reply is not JSON: {data[:200]!r}") from None
        raise JudgeError(f"judge endpoint {url} failed after {attempts} attempt(s): {last}")

    def _listed_models(self, attempts: int | None = None) -> list[str]:
        reply = self.request("GET", "/models", attempts=attempts)
        return [m["id"] for m in reply.get("data", []) if isinstance(m, dict) and "id" in m]

    def _model_name(self) -> str:
        if self.model is None:
            listed = self._listed_models()
            if not listed:
                raise JudgeError(f"judge endpoint {self.base_url}/models lists no model; set the judge's 'model'")
            self.model = listed[0]
        return self.model

    def _chat(self, text: str, **params) -> dict:
        payload = {"model": self._model_name(), "messages": [{"role": "user", "content": text}],
                   "temperature": 0, **params}
        reply = self.request("POST", "/chat/completions", payload)
        try:
            choice = reply["choices"][0]
            choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge endpoint {self.base_url}: reply has no choices[0].message.content: "
                             f"{json.dumps(reply)[:200]}") from None
        if isinstance(reply.get("model"), str):
            self.reported_model = reply["model"]
        return choice

    def _yes_no(self, text: str) -> tuple[float, dict]:
        choice = self._chat(text, max_tokens=1, logprobs=True, top_logprobs=self.top_logprobs)
        content = choice["message"]["content"] or ""
        p_yes = p_no = 0.0
        try:
            for t in choice["logprobs"]["content"][0]["top_logprobs"]:
                word = str(t["token"]).strip().lower()
                if word in ("yes", "no"):
                    p = math.exp(float(t["logprob"]))
                    p_yes, p_no = (p_yes + p, p_no) if word == "yes" else (p_yes, p_no + p)
        except (KeyError, IndexError, TypeError, ValueError):
            pass
        if p_yes + p_no > 0:
            return p_yes / (p_yes + p_no), {"method": "logprobs", "p_yes": p_yes, "p_no": p_no}
        word = content.strip().lower()
        if word.startswith("yes") or word.startswith("no"):
            return (1.0 if word.startswith("yes") else 0.0), {"method": "text", "reply": content}
        raise JudgeError(f"judge reply is neither yes nor no: {content[:80]!r}")

    def _generate(self, text: str) -> str:
        return self._chat(text, max_tokens=self.max_new_tokens)["message"]["content"] or ""

    def identity(self) -> str:
        if self.reported_model is None:
            try:
                listed = self._listed_models(attempts=1)
                if listed:
                    self.reported_model = self.model if self.model in listed else listed[0]
            except JudgeError:
                pass
        return f"openai:{self.base_url}#model={self.reported_model or self.model}"

    def models(self) -> tuple[str, ...]:
        return tuple(m for m in (self.reported_model or self.model,) if m)

    def config(self) -> dict:
        return {**super().config(), "max_new_tokens": self.max_new_tokens}


def make_judge(spec: Any) -> Judge:
    """A :class:`Judge` from a recipe's ``judge:`` value: a ``Judge`` instance; a dict with ``base_url`` (and the
    other :class:`EndpointJudge` arguments); a dict with ``model`` (and the other :class:`LocalJudge` arguments);
    or a string (a local model path or alias).

    Raises:
        ValueError: another type, a dict with neither ``base_url`` nor ``model``, or an unknown field (named).
    """
    if isinstance(spec, Judge):
        return spec
    if isinstance(spec, str):
        return LocalJudge(spec)
    if not isinstance(spec, dict):
        raise ValueError(f"rubric judge must be a dict, a model path or a Judge, got {type(spec).__name__}")
    if "base_url" in spec:
        cls, allowed = EndpointJudge, {"base_url", "model", "timeout_s", "retries", "backoff_s", "top_logprobs",
                                       "max_new_tokens", "api_key_env", "transport", "template", "number_template"}
    elif "model" in spec:
        cls, allowed = LocalJudge, {"model", "device", "dtype", "use_chat_template", "max_new_tokens", "template",
                                    "number_template"}
    else:
        raise ValueError(f"rubric judge needs 'base_url' (an OpenAI-compatible endpoint) or 'model' (a local HF "
                         f"model), got fields {sorted(spec)}")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"rubric judge: unknown field(s) {unknown}; known for {cls.__name__}: {sorted(allowed)}")
    kwargs = dict(spec)
    first = kwargs.pop("base_url" if cls is EndpointJudge else "model")
    return cls(first, **kwargs)


# ------------------------------------------------------------------------------------------- verifier


@register_verifier("rubric")
class RubricVerifier(Verifier):
    """Weighted mean of per-criterion scores in ``[0, 1]``; criteria checked by rules or by a judge model.

    ``score = sum_i w_i * s_i / sum_i w_i`` over the item's criteria (format in the module docstring): a regex or
    substring criterion scores 1.0 when it matches the completion, else 0.0; a predicate returns a bool (1.0/0.0)
    or a number in ``[0, 1]``; a judge criterion scores as :class:`LocalJudge` / :class:`EndpointJudge` say;
    ``negate`` turns ``s`` into ``1 - s``. ``passed`` is always ``None``: a rubric is graded. ``answer_class`` is
    the completion's extracted answer class (``answer_class_of``), as for ``length_bonus``. ``detail`` is
    ``{"criteria": [{"name", "weight", "kind", "score", ...}], "rubric": "constructor" | "reference" | "merged"}``,
    with the judge's ``p_yes``/``p_no`` (or ``reply``/``value``) in judge entries and ``matched`` in rule entries.

    Where criteria come from, and precedence:
        - ``criteria=`` at construction: used for every item.
        - the item's reference, when it is a dict ``{"criteria": [...], "reference": "gold text"}``, a list of
          criterion dicts, or a string holding either as JSON (datasets give references as strings); any other
          reference (plain text, a number) is only the ``{reference}`` text for the judge's template and for
          predicates.
        - both: the reference's criteria are appended to the constructor's, and a reference criterion with the
          same ``name`` as a constructor one replaces it (in its place). So the reference wins on a name clash.
        - a reference may not use ``predicate`` (data must not name functions to import), and its judge criteria
          use the constructor's ``judge``.

    Args:
        criteria: the rubric for every item, a list of criterion dicts (validated here, so a bad recipe fails at
            start-up).
        judge: the judge for ``judge`` criteria: ``{"model": "<local HF folder or alias>", ...}`` (a
            :class:`LocalJudge`, loaded here), ``{"base_url": "http://host:8000/v1", "model": ..., ...}`` (an
            :class:`EndpointJudge`), or a :class:`Judge`. See :func:`make_judge`.
        max_workers: threads for :meth:`verify_batch` (judge calls are made one at a time per local judge).

    Signal: graded; ``source="judge"`` and ``cost="expensive"`` whenever a judge is configured (the reference may
    ask it), else ``"external"`` and ``"cheap"``; deterministic unless the judge is an endpoint (rules, predicates
    and a local judge's forward pass or greedy decoding give the same verdict for the same inputs).

    :meth:`identity`: ``"rubric:config=<16 hex>"`` (a digest of the constructor's criteria and the judge's
    templates) and, with a judge, ``";judge=<judge identity>"`` (``hf:<resolved path>@sha256:<weights hash>`` or
    ``openai:<base_url>#model=<served model>``), which changes with the judge's weights or served model
    (SIGNAL_DRIFT). :meth:`judge_models` gives the judge's model path / served name, which the monitor's
    CLOSED_LOOP check compares with the policy's model path (same string or same folder).

    Raises (construction): ValueError for a bad criterion (named, with the field), a judge criterion without a
    ``judge``, weights that are all 0, or a bad judge field. At verification, the same problems in a reference's
    criteria, no criteria at all, a non-``str`` completion, a predicate's bad return value and :class:`JudgeError`
    become zero-score verdicts with ``error`` set.
    """

    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

    def __init__(self, *, criteria: Sequence[dict] | None = None, judge: Any = None, max_workers: int = 1) -> None:
        super().__init__(max_workers=max_workers)
        self.criteria = parse_criteria(criteria, field_name="criteria") if criteria is not None else []
        self.judge = make_judge(judge) if judge is not None else None
        if self.criteria:
            self._check_rubric(self.criteria)
        self.signal = SignalSpec(kind="graded", deterministic=self.judge is None or self.judge.deterministic,
                                 source="judge" if self.judge is not None else "external",
                                 cost="expensive" if self.judge is not None else "cheap")
        self._config_digest = _config_digest({"criteria": [c.raw for c in self.criteria],
                                              "judge": self.judge.config() if self.judge else None})

    def _check_rubric(self, criteria: list[Criterion]) -> None:
        if self.judge is None:
            for c in criteria:
                if c.kind == "judge":
                    raise ValueError(f"rubric criterion {c.name!r}: field 'judge' needs a judge; pass "
                                     f"judge={{'model': ...}} or judge={{'base_url': ...}} to the rubric verifier")
        if not any(c.weight > 0 for c in criteria):
            raise ValueError(f"rubric: at least one criterion needs a weight > 0, got weights "
                             f"{ {c.name: c.weight for c in criteria} }")

    def rubric_for(self, reference: Any) -> tuple[list[Criterion], Optional[str], str]:
        """``(criteria, reference text, origin)`` for one item, following the precedence above. Raises ValueError."""
        raw, text = _split_reference(reference)
        if raw is None:
            crits, origin = list(self.criteria), "constructor"
        else:
            extra = parse_criteria(raw, field_name="reference", allow_predicates=False)
            by_name = {c.name: c for c in extra}
            crits = [by_name.pop(c.name, c) for c in self.criteria] + [c for c in extra if c.name in by_name]
            origin = "merged" if self.criteria else "reference"
        if not crits:
            raise ValueError("rubric: no criteria: pass criteria= to the verifier or give them in the reference")
        self._check_rubric(crits)
        return crits, text, origin

    def _rule(self, c: Criterion, completion: str, prompt: str | None, text: str | None) -> tuple[float, dict]:
        if c.kind == "regex":
            hit = c.check.search(completion) is not None
            return float(hit), {"matched": hit}
        if c.kind == "contains":
            hit = (c.check.casefold() in completion.casefold()) if c.ignore_case else (c.check in completion)
            return float(hit), {"matched": hit}
        value = c.check(completion, prompt, text)
        if isinstance(value, bool):
            return float(value), {}
        if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
            return float(value), {}
        raise ValueError(f"rubric criterion {c.name!r}: predicate returned {value!r}; it must return a bool or a "
                         f"number in [0, 1]")

    def _score(self, crits: list[Criterion], completion: Any, prompt: str | None, text: str | None,
               origin: str) -> Verdict:
        if not isinstance(completion, str):
            raise TypeError(f"completion must be str, got {type(completion).__name__}")
        entries, total, weight = [], 0.0, 0.0
        for c in crits:
            if c.kind == "judge":
                s, extra = self.judge.score(c, completion, prompt, text)
            else:
                s, extra = self._rule(c, completion, prompt, text)
            if c.negate:
                s = 1.0 - s
            entries.append({"name": c.name, "weight": c.weight, "kind": c.kind, "score": s, **extra})
            total += c.weight * s
            weight += c.weight
        score = min(1.0, max(0.0, total / weight))
        return Verdict(score, None, answer_class_of(completion), detail={"criteria": entries, "rubric": origin})

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        crits, text, origin = self.rubric_for(reference)
        return self._score(crits, completion, prompt, text, origin)

    def _quick(self, completion, reference, *, prompt=None) -> Verdict | None:
        crits, text, origin = self.rubric_for(reference)
        if any(c.kind in ("judge", "predicate") for c in crits):
            return None
        return self._score(crits, completion, prompt, text, origin)

    def identity(self) -> str:
        base = f"rubric:config={self._config_digest}"
        if self.judge is None:
            return base
        return f"{base};judge={self.judge.identity()}"

    def judge_models(self) -> list[str]:
        """The judge's model path / served model name (the monitor compares them with the policy's)."""
        return list(self.judge.models()) if self.judge is not None else []

    def __repr__(self) -> str:
        judge = f", judge={self.judge.kind}" if self.judge else ""
        return f"RubricVerifier(criteria={len(self.criteria)}{judge}, max_workers={self.max_workers})"
