"""Pure-Python half of the math verifier: answer extraction, normalisation, answer structure, exact numbers.

Imported by the main process and by the sympy worker (:mod:`verifiers._sympy_backend`); it never imports
sympy, so everything here costs microseconds. The comparison of two parsed answers
(:func:`compare_nodes`) is generic over a *leaf* comparator: the main process passes :func:`fast_leaf`,
which decides plain numbers, multiple-choice letters and words and answers ``None`` ("needs sympy")
otherwise; the worker passes a comparator that falls back to sympy.
"""

from __future__ import annotations

import contextvars
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Callable, Iterable, Optional

MAX_NESTING = 40          # brackets deeper than this are refused (reason "too_deep")
MAX_RESULT_DIGITS = 10_000  # literal powers/factorials with a longer value are refused (reason "too_large")

# ================================================================================================
# extraction
# ================================================================================================

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
# GSM8K's "#### 42": only when what follows looks like an answer, not a markdown heading ("#### Step 2").
_HASHES = re.compile(r"^[ \t]*####[ \t]*([-+$\\(\[{.\d€£][^\n]*)$", re.M)
# the same marker inside the last line ("... so 8 meals. #### 8"): a heading is never mid-line
_HASHES_INLINE = re.compile(r"(?<=\S)[ \t]+####[ \t]*([-+$\\(\[{.\d€£][^\n]*)$")
# "A: 18" as the last line (the GSM8K paper's released solutions), "... 15 + 3 = 18. A: 18"
_A_LINE = re.compile(r"(?:^|(?<=[.!?:]\s)|(?<=[.!?:]))[ \t>*]*A[ \t]*[:\uff1a][ \t*]*(\S[^\n]*)$")
# "Answer: 42" inside the last line ("So the total is 42. Answer: 42"); at a line start it counts anywhere
_ANSWER_INLINE = re.compile(r"(?<![\w-])answer[ \t*]*[:\uff1a][ \t*]*(\S[^\n]*)$", re.I)
_PHRASE = re.compile(
    r"(?:\bthe\s+(?:final\s+|correct\s+|right\s+|best\s+)?(?:answer|option|choice)(?:\s*\([^()\n]{1,40}\))?"
    r"(?:\s+to\s+(?:the|this)\s+(?:question|problem))?\s+is\b[ \t]*:?"
    r"|\bfinal\s+answer\b[ \t*]*(?:is\b[ \t]*:?|[:\uff1a])"
    r"|\bfinal\s+answer\b[ \t*]*(?=\n)"
    r"|^[ \t>*#]*answer[ \t*]*[:\uff1a])"
    r"[ \t*]*([^\n]*)",
    re.I | re.M,
)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_LAST_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_LAST_LINE_MAX = 40
_MD = re.compile(r"^(?:[\s>*#_`]|-\s)*|[\s*_`]*$")  # markdown quotes, bullets, bold; not a minus sign


def balanced_group(text: str, start: int) -> Optional[str]:
    """Content from ``start`` up to the ``}`` that closes an already-open ``{``; ``None`` if unbalanced.

    A backslash escapes the next character (``\\{`` and ``\\}`` never count).
    """
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _boxes(text: str) -> tuple[list[str], bool]:
    """Contents of the top-level ``\\boxed{}``/``\\fbox{}`` groups, and whether the last one is usable."""
    contents: list[str] = []
    end = -1
    last_ok = True
    for match in _BOX.finditer(text):
        if match.start() < end:  # nested inside the previous box
            continue
        content = balanced_group(text, match.end())
        if content is None:
            last_ok = False
            end = len(text)
            continue
        end = match.end() + len(content) + 1
        last_ok = bool(content.strip())
        if content.strip():
            contents.append(content.strip())
    return contents, last_ok


def unclosed_box(text: str) -> Optional[str]:
    """Content of a last ``\\boxed{`` that is never closed, up to the end of ``text`` (a closing ``$`` and
    trailing punctuation dropped); ``None`` when the last box is closed or empty. Only for references: a
    completion's unclosed box stays refused (it may be cut off)."""
    matches = list(_BOX.finditer(text))
    if not matches or balanced_group(text, matches[-1].end()) is not None:
        return None
    rest = re.sub(r"[\s$.]+$", "", text[matches[-1].end():]).strip()
    return rest or None


def _distinct(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(_dedupe_key(value), value)
    return list(seen.values())


def _dedupe_key(value: str) -> str:
    return re.sub(r"\s+|\$|\\[,;:! ]|\\boxed|[{}]", "", value).lower().rstrip(".")


# a math-span delimiter: a dollar sign that is not TeX's escaped dollar ("$\$3.25$" is one span around "\$3.25")
_DELIMITER_DOLLAR = re.compile(r"(?<!\\)\$")


def _clean_phrase_value(value: str) -> str:
    value = value.strip().strip("*").strip()
    value = re.sub(r"^(?:that|simply)\s+", "", value, flags=re.I)
    if value.startswith("$") and len(_DELIMITER_DOLLAR.findall(value)) >= 2:  # "$\frac{1}{2}$. Done" -> the span
        inner = value.lstrip("$")
        close = _DELIMITER_DOLLAR.search(inner)  # none in "$$5" (a display span opened and not closed here)
        value = inner[: close.start()] if close else inner
    else:
        value = _SENTENCE_END.split(value)[0]
    value = value.strip().rstrip(".").strip().strip("*").strip()
    span = re.fullmatch(r"\\\((.*)\\\)|\\\[(.*)\\\]", value, re.S)
    if span:
        value = (span.group(1) if span.group(1) is not None else span.group(2)).strip()
    return value


def _phrase_answer(text: str, after: int = 0) -> Optional[str]:
    return _phrase_parts(text, after)[0]


# a currency sign before a number ("$18 every day"), not the opening of a math span ("$18$")
_CURRENCY_DOLLAR = re.compile(r"\$(?=\d[\d,]*(?:\.\d+)?(?![\d$]|[.,]\d))")


def _without_currency(value: str) -> str:
    return _CURRENCY_DOLLAR.sub("", value)


def _phrase_parts(text: str, after: int = 0) -> tuple[Optional[str], str]:
    """The value of the last answer phrase and how it was read: ``clean`` (the phrase gives the value itself),
    ``prose_number`` (a sentence whose only number is the value: "Janet makes $18 every day."), ``prose``
    (a sentence without one number), or ``none``."""
    matches = list(_PHRASE.finditer(text, after))
    if not matches:
        return None, "none"
    match = matches[-1]
    value = match.group(1)
    if not _clean_phrase_value(value):  # "**Final Answer**\n\n$42$": the answer is on the next line
        rest = text[match.end():].lstrip("\n")
        lines = [line for line in rest.split("\n") if line.strip()]
        value = lines[0] if lines else ""
    return _phrase_value(value)


_FORMULA = re.compile(r"[+*^<>×÷\\]|\d\s*/|/\s*\d|\d[a-zA-Z]\b|\b[a-zA-Z]\s*-\s*\d")  # "miles/hour" is a unit


def _names_things(s: str) -> bool:
    """Two or more words that are neither math nor units beside a number ("Tommy raises 221"): a sentence."""
    words = [w for w in re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}", s) if w.lower() not in _MATH_WORDS | _UNITS]
    return len(words) >= 2 and bool(re.search(r"\d", s))


def _phrase_value(value: str) -> tuple[Optional[str], str]:
    odd = len(_DELIMITER_DOLLAR.findall(value)) % 2
    value = _clean_phrase_value(_without_currency(value) if odd else value)
    for _ in range(3):  # "Final Answer: The final answer is 42. I hope it is correct."
        inner = list(_PHRASE.finditer(value))
        if not inner or not _clean_phrase_value(inner[-1].group(1)):
            break
        value = _clean_phrase_value(inner[-1].group(1))
    words = _without_currency(re.sub(r"\$[^$\d]*\$", "", value))  # "$f(x)$" names a thing; "$19$" is a number
    if value and "$" not in words and "\\" not in words and (is_prose(words) or _names_things(words)):
        number = None
        if "=" in words:  # "Total = 2 bolts + 1 bolt = 3 bolts": its last side
            last_side = words.rsplit("=", 1)[1]
            number = None if _FORMULA.search(last_side) else _prose_number(last_side)
        elif not _FORMULA.search(words):  # "x^2 + 2x + 1 for all real x" is no sentence with one number
            number = _prose_number(words)
        return (number, "prose_number") if number else (value, "prose")
    return (value or None), ("clean" if value else "none")


# an answer stated in prose: "Therefore, there are 12 such sequences." (one number, no hedge)
_PROSE_NUMBER = re.compile(r"(?<![\w.^_])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*%)?(?![\w.^_/])")
_CONCLUSION = re.compile(r"^(?:therefore|thus|so|hence|finally|in\s+conclusion|in\s+total|altogether)\b", re.I)
# chat-template tokens and boilerplate after the answer ("I hope it is correct. <|im_start|>user")
_TAIL_NOISE = re.compile(
    r"(?:\s*(?:<\|[a-z_]{1,20}\|>(?:user|assistant)?|I\s+hope\s+it\s+is\s+correct\.?"
    r"|(?:I\s+)?hope\s+(?:this|that)\s+helps[.!]*))+\s*$", re.I)


# the numbers of the question being graded (set by ``extract`` for one call): a prose answer that restates them
# ("Kylar needs to pay $64 for 16 glasses.") states the one number that is new
_QUESTION_NUMBERS: contextvars.ContextVar[frozenset] = contextvars.ContextVar("question_numbers", default=frozenset())


def question_numbers(question: Optional[str]) -> frozenset:
    """The values of the plain numbers written in a question."""
    if not question:
        return frozenset()
    values = (as_number(m.replace(",", "")) for m in _LAST_NUMBER.findall(question))
    return frozenset(v for v in values if v is not None)


def _prose_number(sentence: str) -> Optional[str]:
    """The only number of a prose sentence without hedging words, else ``None``. Numbers the question gives are
    left out when the sentence restates them beside one new number."""
    if _HEDGE_WORD.search(sentence) or re.search(r"\bnot\b|\bn't\b", sentence, re.I):
        return None
    numbers = [n.strip() for n in _PROSE_NUMBER.findall(sentence)]
    if len({as_number(n.replace(",", "").rstrip("%").strip()) for n in numbers} - {None}) == 1 \
            and len({n.endswith("%") for n in numbers}) == 1:
        numbers = numbers[:1]  # "remove 15 toys ... by 15 pounds": one value, said twice
    if len(numbers) > 1 and _QUESTION_NUMBERS.get():
        given = _QUESTION_NUMBERS.get()
        new = [n for n in numbers if as_number(n.replace(",", "").rstrip("%").strip()) not in given]
        numbers = new if len(new) == 1 else numbers
    return numbers[0] if len(numbers) == 1 else None


_TOTAL_END = re.compile(r"\b(?:in\s+total|altogether|in\s+all)\s*$", re.I)


def _conclusion_sentence(text: str, after: int) -> Optional[str]:
    """The number of a last sentence that starts "Therefore/Thus/So ..." or ends "in total/altogether/in all"
    ("... so he has 44 quilt blocks in total.") and lies after position ``after``."""
    body = text.rstrip().rstrip(".").rstrip()
    cut = max((m.end() for m in re.finditer(r"[.!?:]\s+|\n|\s(?=(?:Therefore|Thus|Hence|So)\b)", body)), default=0)
    sentence = _without_currency(body[max(cut, after):].strip())
    if not (_CONCLUSION.match(sentence) or _TOTAL_END.search(sentence)) or "$" in sentence or "\\" in sentence or len(sentence) > 200 \
            or not is_prose(sentence):
        return None
    return _prose_number(sentence)


# a value stated at the end of a prose sentence: "... which is 1,000.99 m²", "No, it's not 10, it's 12."
_STATED_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)"
_STATED_NUMBER_RE = re.compile(r"(?<![\w.,^_/])" + _STATED_NUMBER + r"(?![\d^_/])")
_COPULA = re.compile(r"\b(?:is|are|was|were|equals|makes|comes\s+to)\b|(?<=\w)'s\b|(?<!\d):(?!\d)", re.I)
# a belief is a hedge here ("I think it is 5"), and a bare formula ("Thus x = 42") is no prose statement
_BELIEF = re.compile(r"\b(?:think|guess|believe|suppose|assume|seems?|likely|probably|roughly|about|around)\b", re.I)
_NEGATED_NUMBER = re.compile(r"\b(?:not|isn't|aren't|wasn't|weren't)\s+[$€£¥₹]?" + _STATED_NUMBER + r"(?![\d])", re.I)
_CORRECTION_LEAD = re.compile(r"^(?:no|not|nope)\b[\s,!:]*(?=(?:it|that|this|the)\b)", re.I)
_NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|cannot|wrong|incorrect|false)\b|n't\b", re.I)
# a sentence that sets a condition or a task ("when n is 5", "we need ... is 5") states no result
_CONDITION_WORD = re.compile(
    r"\b(?:when|whenever|if|unless|until|once|where|suppose|assume|let|given|need|needs|find|compute|calculate)\b",
    re.I,
)
# what may follow the value: a currency or unit sign and at most three words that are not arithmetic or
# comparison words ("5 apples", "2,74 $", "1,000.99m²", "12 sq ft")
_STATED_TAIL = re.compile(r"(?:\s*[$€£¥₹%°²³])*(?:\s*[a-zA-Zµ²³/^]+\.?){0,3}\s*[.!]*")
_TAIL_STOP = re.compile(
    r"\b(?:than|times|more|less|fewer|greater|bigger|smaller|larger|higher|lower|off|per|of|or|and|plus|minus|"
    r"over|divided|multiplied|if|when|where|for|at|to|from|by|with)\b",
    re.I,
)
# what may lie between an earlier value and the final one: a restatement ("10, which is", "10 it's")
_RESTATEMENT = re.compile(r"\s*(?:[a-zA-Z²³$€£%]{1,8}\b\s*){0,2},?\s*(?:which|that|it|this|i\.e\.)?\s*", re.I)


_PRONOUN_COPULA = re.compile(r"\b(?:it|that|this|which)(?:\s+(?:is|was)\b|'s\b)", re.I)


def _stated_value(text: str, after: int) -> Optional[str]:
    """The value a last prose sentence (after position ``after``, no LaTeX) states at its end: the only number
    after its last copula ("is", "it's", ":"), followed by nothing but a unit, a currency sign or a short
    noun. Earlier numbers must be negated ("not 10") or restated by the final clause ("10, which is 12");
    any other negation, a hedge, or a condition refuses."""
    body = _TAIL_NOISE.sub("", text).rstrip()
    finished = body.endswith((".", "!"))  # "It is 4." is a sentence; "it is 4" may be cut off
    body = body.rstrip(".!").rstrip()
    cut = max((m.end() for m in re.finditer(r"[.!?]\s+|\n", body)), default=0)
    sentence = body[max(cut, after):].strip()
    if not sentence or len(sentence) > 200 or "\\" in sentence or not re.search(r"\d", sentence):
        return None
    if _HEDGE_WORD.search(sentence) or _BELIEF.search(sentence) or _CONDITION_WORD.search(sentence) \
            or re.search(_GLUED_CONNECTIVE, sentence, re.I):
        return None
    if not any(w.lower() not in _MATH_WORDS for w in re.findall(r"[a-zA-Z]{3,}", sentence)) \
            and not (_PRONOUN_COPULA.search(sentence) and finished):
        return None  # a formula ("y=4"), not a sentence ("It is 4.")
    copulas = list(_COPULA.finditer(sentence))
    if not copulas:
        return None
    clause_start = copulas[-1].end()
    clause = sentence[clause_start:]
    numbers = list(_STATED_NUMBER_RE.finditer(clause))
    if len(numbers) != 1:
        return None
    value = numbers[0]
    lead, tail = clause[:value.start()], clause[value.end():]
    if not re.fullmatch(r"\s*(?:\*\*)?\s*[$€£¥₹]?\s*", lead) or not _STATED_TAIL.fullmatch(tail) \
            or _TAIL_STOP.search(tail) or _NEGATION.search(clause):
        return None
    before = sentence[:copulas[-1].start()]
    remaining = _CORRECTION_LEAD.sub("", _NEGATED_NUMBER.sub(" ", before).strip())
    if _NEGATION.search(remaining):
        return None
    earlier = list(_STATED_NUMBER_RE.finditer(before))
    if earlier and not _NEGATED_NUMBER.search(before[max(0, earlier[-1].start() - 12):]):
        between = before[earlier[-1].end():]
        if not _RESTATEMENT.fullmatch(between) or _TAIL_STOP.search(between):
            return None
    percent = "%" if re.match(r"\s*(?:%|percent\b|per\s+cent\b)", tail, re.I) else ""
    return value.group(0).lstrip("+") + percent


_MATH_SPAN = re.compile(r"^(?:\$\$?(.+?)\$?\$|\\\[(.+?)\\\]|\\\((.+?)\\\))$")
_ANSWER_LIKE = re.compile(
    r"[-+]?\s*(?:\$\s*)?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?\s*(?:%|percent|pct)?"  # 42, 3/4, 50%
    r"|[a-zA-Z]\s*=\s*[-+]?\s*(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?"      # x = 5
    r"|\(?[A-J]\)|[A-Ja-j]"                                                      # (B), B, b
)


def _last_line_answer(text: str) -> Optional[str]:
    """The last non-empty line when it is nothing but a short answer (``42``, ``$\\frac{1}{2}$``)."""
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if not lines:
        return None
    line = _MD.sub("", lines[-1]).strip()
    line = re.sub(r"^(?:answer|result)\s*[:=]\s*", "", line, flags=re.I).strip()
    line = line.lstrip("=").strip().rstrip(".").strip()
    if not line or len(line) > _LAST_LINE_MAX:
        return None
    span = _MATH_SPAN.match(line)
    if span:
        inner = next(g for g in span.groups() if g is not None).strip()
        return inner or None
    if _ANSWER_LIKE.fullmatch(line):
        return line
    unit = _NUMBER_WITH_UNIT.fullmatch(line)  # "33 eggs", "$18 per day" is no answer ("per" is arithmetic)
    if unit and not _TAIL_STOP.search(unit.group(2)) and not _NEGATION.search(unit.group(2)) \
            and not _FUNCTION_WORD.search(unit.group(2)):
        return unit.group(1).replace("$", "").strip() + ("%" if re.match(r"\s*%", unit.group(2)) else "")
    return None


# "10 in python", "5 is it": words that make a phrase, not a unit after a number
_FUNCTION_WORD = re.compile(r"\b(?:in|on|is|are|was|were|be|the|a|an|it|its|this|that|these|those|we|i|you|he|she|"
                            r"they|so|then|as|because|since|but|also|too|here|there|now|not|no)\b", re.I)
_NUMBER_WITH_UNIT = re.compile(r"((?:\$\s*)?[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
                               r"(\s*%?(?:\s*[a-zA-Z][a-zA-Z'-]*\.?){1,3})")


def _last_nonempty_line(text: str) -> str:
    lines = [line for line in text.strip().split("\n") if line.strip()]
    return lines[-1] if lines else ""


def _last_sentence(text: str, after: int) -> str:
    body = _TAIL_NOISE.sub("", text).rstrip()
    cut = max((m.end() for m in re.finditer(r"[.!?]\s+|\n", body.rstrip(".!").rstrip())), default=0)
    return body[max(cut, after):].strip()


_CHOICE_IN_TEXT = re.compile(r"\(([A-J])\)|\*\*([A-J])\*\*|\b(?:option|choice)\s+\(?([A-J])\b\)?", re.I)


def _choice_sentence(text: str, after: int) -> Optional[str]:
    """Not strict: a last sentence naming exactly one choice letter as "(D)", "**D**" or "option D" ("I think
    it's (D).", "The man's rate is 6 kmph. (B)"); a hedge ("(B) or (C)", "maybe") refuses."""
    sentence = _last_sentence(text, after)
    if len(sentence) > 200 or _HEDGE_WORD.search(sentence) or _NEGATION.search(sentence) \
            or re.search(r"\d", re.sub(r"\(\s*[A-Ja-j]\s*\)", "", sentence)):
        return None  # "(C)" beside a number is a label ("by (2), 5 apples"), not a choice
    letters = {next(g for g in m.groups() if g) for m in _CHOICE_IN_TEXT.finditer(sentence)}
    letters = {x for x in letters if x.isupper() or re.search(r"\((?i:" + x + r")\)", sentence)}
    return letters.pop().upper() if len(letters) == 1 else None


_EQUATION_TAIL = re.compile(r"=\s*((?:\$\s*)?[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
                            r"(\s*%?(?:\s*[a-zA-Z][a-zA-Z'-]*){0,3})\s*[.!]?\s*$")


def _last_equation_line(text: str, after: int) -> Optional[str]:
    """Not strict: a last line (after the last math span) that computes its value: "Total cost = 500 + 800 + 130
    = 1430", "200 - 100 = 100 pounds of laundry": the number after its last ``=``, followed by at most a unit."""
    line = _last_nonempty_line(_TAIL_NOISE.sub("", text))
    if text.rfind(line) < after or "\\" in line or _HEDGE_WORD.search(line) or _RETRACTION.search(line):
        return None
    m = _EQUATION_TAIL.search(line)
    if not m or _EQUATION_TAIL_STOP.search(m.group(2)) or re.search(r"[<>]|==|!=", line) \
            or re.search(_GLUED_CONNECTIVE, line, re.I):
        return None
    left = line[:m.start()]
    if len(_LAST_NUMBER.findall(left)) < 2 or not _COMPUTATION.search(left):
        return None  # "Thus x = 42" states, it does not compute: no answer here
    return m.group(1).replace("$", "").strip() + ("%" if re.match(r"\s*%", m.group(2)) else "")


_COMPUTATION = re.compile(r"[-+*/×÷]|\bx\b|\\times|\\cdot")
_EQUATION_TAIL_STOP = re.compile(
    r"\b(?:than|more|less|fewer|greater|plus|minus|over|divided|multiplied|or|and|if|when)\b", re.I)


# a completion that takes back what it wrote ("18 + 53 = 71. However, I made an error ..."): its last unmarked
# value is no answer
_RETRACTION = re.compile(
    r"\b(?:however|but\s+wait|made\s+(?:an?\s+)?(?:error|mistake)s?|mistake|miscalculat\w*|incorrect|"
    r"let\s+me\s+(?:re|double|check|correct)\w*|re-?(?:check|calculate|compute|evaluate|consider|do)\w*|"
    r"correction)\b|(?:^|(?<=[.!?:]\s)|(?<=\n))\s*(?:wait|hmm|actually|oops)\b",
    re.I,
)


# "x=1orx=-1" (the spaces of "\text{ or }" lost): a connective glued between a value and the next assignment
_GLUED_CONNECTIVE = r"(?<=[\d)\]}])(?:or|and)(?=(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?'*(?:\([^()=]*\))?\s*=)"
_CONNECTIVES = re.compile(_GLUED_CONNECTIVE + r"|\b(?:and|or)\b", re.I)

# non-strict extraction: the last math span of the text
_SPAN_TOKEN = re.compile(r"(?<!\\)\$\$|(?<!\\)\$|\\\[|\\\]|\\\(|\\\)")
_SPAN_CLOSER = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
_HEDGE_WORD = re.compile(r"\b(?:or|either|maybe|possibly|perhaps|probably|might)\b", re.I)
_BARE_LINE_MAX = 80
# a clause that states where a value is reached: its math span is a condition, not the answer
_CONDITION = re.compile(
    r"[,;]\s*(?:which\s+(?:occurs|happens|holds|is\s+(?:attained|achieved|reached))\s+|"
    r"(?:attained|achieved|reached|occurring)\s+)?(?:when|where|if|at|for|with)\b",
    re.I,
)


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of the math spans, in one linear pass over the delimiters. ``$`` counts only
    when it occurs an even number of times (an odd count means a currency sign)."""
    tokens = list(_SPAN_TOKEN.finditer(text))
    dollars = sum(len(t.group(0)) for t in tokens if t.group(0).startswith("$"))
    spans: list[tuple[int, int, str]] = []
    opener = None
    for token in tokens:
        tok = token.group(0)
        if tok.startswith("$") and dollars % 2:
            continue
        if opener is None:
            if tok in _SPAN_CLOSER:
                opener = token
        elif tok == _SPAN_CLOSER[opener.group(0)]:
            content = text[opener.end():token.start()].strip()
            if content:
                spans.append((opener.start(), token.end(), content))
            opener = None
    return spans


def _last_math_span(text: str) -> Optional["Extraction"]:
    """The last ``$...$``/``$$...$$``/``\\(...\\)``/``\\[...\\]`` span. Refused when the line hedges before
    it ("maybe $5$", reason ``hedged``); several spans on that line joined by "or" are several answers."""
    spans = _math_spans(text)
    if not spans:
        return None
    start = spans[-1][0]
    if text.startswith("$", start) and not text.startswith("$$", start) and "\n\n" in spans[-1][2]:
        return None  # two currency signs ("$12 + ... ($8.50)\n\nMarie ordered ..."), not a math span
    line_start = text.rfind("\n", 0, start) + 1
    line = [sp for sp in spans if sp[0] >= line_start]
    if _HEDGE_WORD.search(text[line_start:line[0][0]]):
        return Extraction(None, "last_math", reason="hedged")
    if any(_HEDGE_WORD.search(text[p[1]:q[0]]) for p, q in zip(line, line[1:])):
        return _several([sp[2] for sp in line], "last_math")
    if len(line) >= 2 and _CONDITION.search(text[line[-2][1]:line[-1][0]]):
        return Extraction(line[-2][2], "last_math")  # "is $0$, which occurs when $a = b = c$"
    return Extraction(spans[-1][2], "last_math")


def _bare_math_line(text: str) -> Optional[str]:
    """The last non-empty line when it is nothing but LaTeX math (``\\frac{10}{9}``, ``x \\geq 5``)."""
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if not lines:
        return None
    line = _MD.sub("", lines[-1]).strip().rstrip(".").strip()
    if not line or len(line) > _BARE_LINE_MAX or line.endswith(("=", ":")):
        return None
    plain = re.sub(r"\\(?:text|mathrm|textbf)\s*\{[^{}]*\}", " ", line)
    plain = _CONNECTIVES.sub(" ", re.sub(r"\\[a-zA-Z]+", " ", plain))  # "x = 1 or x = -1" is still math
    if re.search(r"[a-zA-Z]{2,}", plain) or not re.search(r"\d|\\[a-zA-Z]", line):
        return None
    return line


@dataclass(frozen=True)
class Extraction:
    """Result of :func:`extract`.

    Attributes:
        answer: the extracted answer text, or ``None``. When a completion gives several *different*
            final answers (boxes or answer tags), they are joined with ``", "`` and ``multiple`` is set;
            the comparison then treats them as a list, which matches only a multi-answer reference.
        format: the rule that decided (``boxed``, ``answer_tag``, ``hashes``, ``phrase``, ``last_line``,
            ``last_math``, ``bare_math``, ``last_number``) or ``None``.
        multiple: several different final answers were given.
        reason: why no answer was extracted (``empty_or_unbalanced_box``, ``empty_answer_tag``,
            ``hedged``, ``retracted``, ``no_answer``), else ``None``.
        values: with ``multiple``, the different answers one by one (the verifier merges those of equal
            value: ``\\boxed{0.5}``, i.e. ``\\boxed{\\frac{1}{2}}`` is one answer).
    """

    answer: Optional[str]
    format: Optional[str]
    multiple: bool = False
    reason: Optional[str] = None
    values: tuple = ()


def extract(text: str, fallback_last_number: bool = False, strict: bool = True,
            question: Optional[str] = None) -> Extraction:
    """Extract the final answer of a completion. See :func:`verifiers.extract_answer` for the rules.

    ``strict`` (the default here) uses only the marked forms and a last line that is a short answer; with
    ``strict=False`` an unmarked completion also gives its last math span (``last_math``) or a last line
    that is nothing but LaTeX (``bare_math``). ``question``: the prompt, whose numbers a prose answer may
    restate beside its own."""
    token = _QUESTION_NUMBERS.set(question_numbers(question))
    try:
        return _extract(text, fallback_last_number, strict)
    finally:
        _QUESTION_NUMBERS.reset(token)


def _extract(text: str, fallback_last_number: bool, strict: bool) -> Extraction:
    text = _TAIL_NOISE.sub("", text)
    boxes, last_ok = _boxes(text)
    if boxes or not last_ok:
        if not last_ok:
            return Extraction(None, "boxed", reason="empty_or_unbalanced_box")
        last_box = list(_BOX.finditer(text))[-1]
        box_end = last_box.end() + len(balanced_group(text, last_box.end()) or "") + 1
        # boxed steps, then "The final answer is $10,455$." (a clean final phrase wins); a remark that restates
        # a value in prose ("the answer is 221 in another convention") is one more answer beside the box
        later, kind = _phrase_parts(text, box_end) if _PHRASE.search(text, box_end) else (None, "none")
        wordy = re.search(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}", re.sub(r"\\text\{[^{}]*\}", "", later or ""))
        if later and kind == "clean" and wordy:
            number = _prose_number(later)  # "the answer is 221 in another convention": a remark, not clean
            later, kind = (number, "prose_number") if number else (None, "prose")
        if later and kind == "clean":
            return Extraction(later, "phrase")
        if later and kind == "prose_number":
            return _several(boxes + [later], "boxed")
        return _several(boxes, "boxed")
    tags = _ANSWER_TAG.findall(text)
    if tags:
        if not tags[-1].strip():
            return Extraction(None, "answer_tag", reason="empty_answer_tag")
        return _several([t.strip() for t in tags if t.strip()], "answer_tag")
    hashes = [h.strip().rstrip(".").strip() for h in _HASHES.findall(text)]
    if hashes and hashes[-1]:
        return _several([h for h in hashes if h], "hashes")
    last_line = _last_nonempty_line(text)
    inline = _HASHES_INLINE.search(last_line)
    if inline and inline.group(1).strip().rstrip(".").strip():
        return Extraction(inline.group(1).strip().rstrip(".").strip(), "hashes")
    for marker in (_A_LINE, _ANSWER_INLINE):  # "A: 18" / "... Answer: 42" ending the solution
        m = marker.search(last_line)
        if m:
            value, kind = _phrase_value(m.group(1))
            if value and kind != "prose":
                return Extraction(value, "phrase")
    phrase, kind = _phrase_parts(text)
    if phrase and kind == "prose" and not strict:  # "Answer:\nA has 160, B has 80.\n\nTotal: 160 + 80 = 240"
        later = _last_equation_line(text, list(_PHRASE.finditer(text))[-1].end())
        if later:
            return Extraction(later, "prose_number")
    if phrase:
        return Extraction(phrase, "phrase")
    last = _last_line_answer(text)
    if last:
        return Extraction(last, "last_line")
    if not strict:
        spans = _math_spans(text)
        after = spans[-1][1] if spans else 0
        for rule in (_conclusion_sentence, _stated_value, _choice_sentence, _last_equation_line):
            found = rule(text, after)
            if found:
                return Extraction(found, "prose_number")
        span = _last_math_span(text)
        if span is not None and span.answer is not None and _RETRACTION.search(text, spans[-1][1]):
            return Extraction(None, "last_math", reason="retracted")
        if span is not None and (span.answer is not None or span.reason == "hedged"):
            return span
        bare = _bare_math_line(text)
        if bare:
            return Extraction(bare, "bare_math")
    if fallback_last_number:
        numbers = _LAST_NUMBER.findall(text)
        if numbers:
            return Extraction(numbers[-1], "last_number")
    return Extraction(None, None, reason="no_answer")


def _several(values: list[str], fmt: str) -> Extraction:
    distinct = _distinct(values)
    if len(distinct) == 1:
        return Extraction(distinct[0], fmt)
    return Extraction(", ".join(distinct), fmt, multiple=True, values=tuple(distinct))


# ================================================================================================
# normalisation
# ================================================================================================

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": r"\times ", "\u00b7": r"\cdot ", "\u22c5": r"\cdot ",
    "\u03c0": r"\pi ", "\u221a": r"\sqrt", "\u00b1": r"\pm ", "\u2264": r"\le ", "\u2265": r"\ge ",
    "\u221e": r"\infty ", "\u00f7": "/", "\u2260": r"\ne ", "\u222a": r"\cup ", "\u2208": r"\in ",
    "\u2205": r"\emptyset ", "\u2009": " ", "\u202f": " ", "\u00a0": " ", "\u2248": r"\approx ",
}
_LEFT_RIGHT = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])\s*")
_SPACING = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits)(?![a-zA-Z])|\\[!,;: ]|\\quad\b|\\qquad\b|~")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree\b|\^\s*\{\s*o\s*\}")
_PERCENT = re.compile(r"\\%|%|\\percent\b|(?<=\d)\s*(?:pct|percent|per\s+cent)\b", re.I)
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|boldsymbol|bm|operatorname|textsf|mathsf|emph)\s*\{([^{}]*)\}")
_FRAC_CMDS = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_HALF_SHORT = re.compile(r"\\frac\s*\{([^{}]+)\}\s*(\d)")
_FRAC_NUM_SHORT = re.compile(r"\\frac\s*(\d|\\[a-zA-Z]+|(?<=\s)[a-zA-Z])\s*\{")  # \frac3{4}, \frac\pi{2}
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d+|[a-zA-Z])(?![\d{])")
_CURRENCY = re.compile(r"^(?:\\\$|\$|€|£|¥|₹|usd\s*|rs\.?\s*|eur\s*)", re.I)
_IN_PREFIX = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*\\in\s+")
_HEDGE_PREFIX = re.compile(r"^(?:one\s+of|either|any\s+of|possibly|maybe|perhaps)\b[\s:]*", re.I)
_APPROX_PREFIX = re.compile(r"^(?:approximately|approx\.?|about|around|roughly|\\approx|≈)\s*", re.I)
_NUM_WORDS_PREFIX = re.compile(r"^(?:option|choice|answer)\s*[:\s]\s*(?=\(?[A-Ja-j]\)?$)", re.I)


_BOXED_OPEN = re.compile(r"\\boxed\s*\{")
_MATH_DELIMS = re.compile(r"\\[()\[\]]")
_LE = re.compile(r"\\(?:le|leq|leqslant)(?![a-zA-Z])|<=")
_GE = re.compile(r"\\(?:ge|geq|geqslant)(?![a-zA-Z])|>=")
# MATH writes thousands as 32,\!349 (and \$16,\!386.20, 32{,}\!349); a list keeps a space: 32, 349
_MATH_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,)\\!\s?(?=\d{3}(?!\d))")
# JSON-escaped LaTeX: "\\frac", "\\left(" (two backslashes before a command name; a row break "\\" is never
# followed by the letters of one of these commands)
_DOUBLED_CMD = re.compile(
    r"(?<!\\)\\\\(?=(?:left|right|frac|dfrac|tfrac|cfrac|sqrt|pi|boxed|text|mathrm|mathbf|cdot|times|infty|"
    r"circ|pm|neq|leq|geq|le|ge|ne|in|cup|cap|begin|end)(?![a-zA-Z]))"
)
_NOT_EQUAL = re.compile(r"(?<![\d!<>=])\s*!=\s*|\\neq(?![a-zA-Z])")  # x != 3 (not the factorial 3!=6)
_SPACED_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_SPACED_THOUSANDS_HEAD = re.compile(r"^[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?(?=\s+[a-zA-Z]|$)")
_PLAIN_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Normalized:
    """A normalised answer string with the presentation marks it carried.

    Attributes:
        text: the math content, e.g. ``"50"`` for ``"$50\\%$."``.
        percent: a ``%`` sign was present.
        hedge: a hedging prefix was present ("one of", "either", "possibly").
    """

    text: str
    percent: bool = False
    hedge: bool = False


def _unwrap_text_commands(s: str) -> str:
    for _ in range(4):  # nested \text{\textbf{..}}
        new = _TEXT_CMD.sub(lambda m: " " + m.group(1) + " ", s)
        if new == s:
            break
        s = new
    return s


def normalize(text: str) -> Normalized:
    """Strip presentation from an answer: math delimiters, ``\\left``/``\\right``, spacing commands,
    ``\\text{}`` wrappers, degree signs, ``%`` (kept as a flag), currency signs, units after a number,
    markdown, a trailing period, a leading ``x \\in``, hedging and "approximately" prefixes. Also repairs
    ``\\frac12`` and ``\\sqrt2``, maps ``\\dfrac``/``\\tfrac`` to ``\\frac`` and common Unicode math signs
    to LaTeX."""
    s = _DOUBLED_CMD.sub(r"\\", text) if "\\\\" in text else text
    s = s.replace("\\\\", "\x03")  # a row break \\ must not read as the spacing command "\ "
    if "\x03" in s:
        s = re.sub(r"\x03\s*\[\s*-?\d*\.?\d+\s*(?:pt|em|ex|mm|cm|in|mu|bp)\s*\]", "\x03", s)  # \\[2pt]
    for char, repl in _UNICODE.items():
        if char in s:
            s = s.replace(char, repl)
    s = _MATH_THOUSANDS.sub(",", s)  # MATH's 32,\!349
    s = s.replace("\\$", "$").strip()
    s = s.strip("*").strip()
    s = _BOXED_OPEN.sub("{", s)
    s = s.replace("$", "")
    s = _LEFT_RIGHT.sub("", s)
    s = _MATH_DELIMS.sub("", s)  # \( \) \[ \] math delimiters (intervals use plain brackets)
    s = s.replace(r"\{", "\x01").replace(r"\}", "\x02")  # protect set braces from the \text unwrapping
    s = _unwrap_text_commands(s)
    s = s.replace("\x01", r"\{").replace("\x02", r"\}")
    s = _SPACING.sub(" ", s).replace("{,}", ",")
    s = _FRAC_CMDS.sub(r"\\frac", s)
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_NUM_SHORT.sub(r"\\frac{\1}{", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _NOT_EQUAL.sub(r" \\ne ", s)
    s = _LE.sub(r"\\le ", s)
    s = _GE.sub(r"\\ge ", s)
    s = s.replace(r"\lt", "<").replace(r"\gt", ">")
    s = _DEGREES.sub("", s)
    percent = bool(_PERCENT.search(s))
    s = _PERCENT.sub("", s)
    s = " ".join(s.split())
    hedge = False
    for _ in range(2):
        s, n_hedge = _HEDGE_PREFIX.subn("", s)
        s, _n = _APPROX_PREFIX.subn("", s)
        hedge = hedge or bool(n_hedge)
    s = _NUM_WORDS_PREFIX.sub("", s)
    s = _IN_PREFIX.sub("", s)
    s = _CURRENCY.sub("", s).strip()
    s = s.rstrip(" .;:").strip()
    s = _SPACED_THOUSANDS_HEAD.sub(lambda m: m.group(0).replace(" ", ""), s)  # 1 000 cm
    s = _strip_units(s)
    s = _strip_outer_braces(s)
    if _SPACED_THOUSANDS.fullmatch(s):  # 1 000 000
        s = s.replace(" ", "")
    return Normalized(s.replace("\x03", "\\\\"), percent, hedge)


_MATH_WORDS = frozenset({
    "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "abs", "pi", "inf", "infty",
    "infinity", "oo", "and", "or", "mod", "pmod", "floor", "ceil", "arcsin", "arccos", "arctan", "sinh",
    "cosh", "tanh", "e", "i", "x", "y", "z", "n", "k", "m", "gcd", "lcm", "choose", "binom", "max", "min",
    "times", "cdot", "frac", "dfrac", "to", "for", "if", "else", "when",
})
_UNITS = frozenset({
    "cm", "mm", "km", "kg", "mg", "ml", "m", "g", "s", "h", "hr", "hrs", "min", "mins", "ft", "in", "yd", "mi",
    "lb", "lbs", "oz", "mph", "sec", "l", "kmh", "kph", "kw", "w", "v", "j", "pa", "cm^2", "m^2", "km^2",
    "cm^3", "m^3", "km/h", "m/s", "cm2", "m2", "units", "unit", "sq", "deg", "degrees", "degree",
})
_NUMERIC_HEAD = re.compile(
    r"^([-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:\s*/\s*\d+)?(?:\s*\\times\s*10\^\{?-?\d+\}?)?"
    r"|[-+]?\\frac\{[^{}]+\}\{[^{}]+\})"
    r"(\s*)([a-zA-Z][a-zA-Z .'/^\d-]*)$"
)


def _strip_units(s: str) -> str:
    """``5 cm`` -> ``5``, ``12 apples`` -> ``12``, ``2 inequalities`` -> ``2``; ``3 pi``, ``2 n`` and ``5x`` stay."""
    match = _NUMERIC_HEAD.match(s)
    if not match:
        return s
    head, gap, tail = match.groups()
    tail_key = re.sub(r"\s+", "", tail.lower()).rstrip(".")
    words = [w.lower() for w in re.findall(r"[a-zA-Z]+", tail)]
    if tail_key in _UNITS:
        return head.strip() if gap or len(tail_key) >= 2 else s
    if gap and words and all(len(w) >= 2 and w not in _MATH_WORDS for w in words):
        return head.strip()
    return s


def _strip_outer_braces(s: str) -> str:
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}" and balanced_group(s, 1) == s[1:-1]:
        s = s[1:-1].strip()
    return s


# ================================================================================================
# exact numbers (the fast path)
# ================================================================================================

_NUM_BODY = r"(?:\d+(?:\.\d*)?|\.\d+)"
_RE_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")  # 1000,99 / 1,22 / 0,111 when not thousands
_RE_DECIMAL = re.compile(r"[+-]?" + _NUM_BODY + r"(?:[eE][+-]?\d{1,3})?")  # 1e999999999 is left to sympy
_RE_SLASH = re.compile(r"([+-]?)\s*(\d+)\s*/\s*(\d+)")
_RE_FRAC = re.compile(r"([+-]?)\s*\\frac\s*\{\s*([+-]?)\s*(\d+)\s*\}\s*\{\s*([+-]?)\s*(\d+)\s*\}")
_RE_MIXED = re.compile(r"([+-]?)\s*(\d+)\s*(?:\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}|\s(\d+)\s*/\s*(\d+))")
_RE_SCI = re.compile(r"([+-]?" + _NUM_BODY + r")\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?")
_RE_POW = re.compile(r"([+-]?)\s*(\d+)\s*\^\s*\{?\s*(\d+)\s*\}?")


def as_number(text: str) -> Optional[Fraction]:
    """Exact value of a plain number, or ``None``. No sympy involved.

    Accepts integers (``-4``, ``1,000``), decimals (``0.5``, ``.5``, ``5.``), scientific notation (``3e5``,
    ``3.0 \\times 10^{5}``, ``3\\cdot10^{-2}``), fractions (``3/4``, ``\\frac{3}{4}``, ``-\\frac{3}{4}``),
    mixed numbers (``2 1/2``, ``2\\frac{1}{2}``, both 5/2; only with a proper fraction) and small integer
    powers (``2^{10}``, at most :data:`MAX_RESULT_DIGITS` digits).
    """
    s = text.strip()
    if not s or len(s) > 200:
        return None
    if s[0] in "+-":
        s = s[0] + s[1:].lstrip()
    try:
        if _RE_DECIMAL.fullmatch(s):
            value = Decimal(s)
            if abs(value.as_tuple().exponent) > 400:
                return None
            return Fraction(value)
        if _RE_THOUSANDS.fullmatch(s):
            return Fraction(Decimal(s.replace(",", "")))
        if m := _RE_FRAC.fullmatch(s):
            sign = -1 if (m.group(1) == "-") ^ (m.group(2) == "-") ^ (m.group(4) == "-") else 1
            return sign * Fraction(int(m.group(3)), int(m.group(5)))
        if m := _RE_SLASH.fullmatch(s):
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) == "-" else value
        if m := _RE_MIXED.fullmatch(s):
            num, den = (m.group(3), m.group(4)) if m.group(3) is not None else (m.group(5), m.group(6))
            num, den = int(num), int(den)
            if not 0 < num < den:
                return None
            value = int(m.group(2)) + Fraction(num, den)
            return -value if m.group(1) == "-" else value
        if m := _RE_SCI.fullmatch(s):
            exponent = int(m.group(2))
            if abs(exponent) > 400:
                return None
            return Fraction(Decimal(m.group(1))) * Fraction(10) ** exponent
        if m := _RE_POW.fullmatch(s):
            base, exponent = int(m.group(2)), int(m.group(3))
            if base > 1 and exponent * math.log10(base) > MAX_RESULT_DIGITS:
                return None
            value = Fraction(base) ** exponent
            return -value if m.group(1) == "-" else value
    except (ZeroDivisionError, ValueError, InvalidOperation, ArithmeticError):
        return None
    return None


_ARITH_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(\\frac|\\times|\\cdot|\\div)(?![a-zA-Z])|([-+*/(){}]))")
_ARITH_HINT = re.compile(r"[-+*/(){}]|\\frac|\\times|\\cdot|\\div")
_ARITH_MAX_TOKENS = 120
_ARITH_MAX_DEPTH = 20


def arithmetic_value(text: str) -> Optional[Fraction]:
    """Exact value of rational arithmetic on plain numbers (``\\frac{1}{2} + 2/3``, ``1000 - 101 + 1``,
    ``(3 \\times 4) / 6``), else ``None``. Only ``+ - * / \\times \\cdot \\div``, parentheses, braces and
    ``\\frac{}{}`` of such terms; anything else (powers, implicit products, letters, a division by zero) gives
    ``None`` and is left to sympy, which computes the same exact rational."""
    s = text.strip()
    if not s or len(s) > 300 or not _ARITH_HINT.search(s):
        return None
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        m = _ARITH_TOKEN.match(s, pos)
        if not m or m.end() == pos:
            if s[pos:].strip():
                return None
            break
        pos = m.end()
        if m.group(1) is not None:
            tokens.append(("num", m.group(1)))
        else:
            tokens.append(("op", m.group(2) or m.group(3)))
        if len(tokens) > _ARITH_MAX_TOKENS:
            return None
    if len(tokens) < 2:
        return None
    i = 0

    def peek() -> Optional[str]:
        return tokens[i][1] if i < len(tokens) and tokens[i][0] == "op" else None

    def expect(op: str) -> None:
        nonlocal i
        if peek() != op:
            raise ValueError(op)
        i += 1

    def expr(depth: int) -> Fraction:
        nonlocal i
        if depth > _ARITH_MAX_DEPTH:
            raise ValueError("deep")
        value = term(depth)
        while peek() in ("+", "-"):
            op = peek()
            i += 1
            rhs = term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(depth: int) -> Fraction:
        nonlocal i
        value = unary(depth)
        while peek() in ("*", "/", "\\times", "\\cdot", "\\div"):
            op = peek()
            i += 1
            rhs = unary(depth)
            value = value / rhs if op in ("/", "\\div") else value * rhs
        return value

    def unary(depth: int) -> Fraction:
        nonlocal i
        op = peek()
        if op in ("+", "-"):
            i += 1
            value = unary(depth + 1)
            return -value if op == "-" else value
        return atom(depth)

    def atom(depth: int) -> Fraction:
        nonlocal i
        if i >= len(tokens):
            raise ValueError("end")
        kind, tok = tokens[i]
        if kind == "num":
            i += 1
            return Fraction(Decimal(tok))
        if tok in ("(", "{"):
            i += 1
            value = expr(depth + 1)
            expect(")" if tok == "(" else "}")
            return value
        if tok == "\\frac":
            i += 1
            expect("{")
            num = expr(depth + 1)
            expect("}")
            expect("{")
            den = expr(depth + 1)
            expect("}")
            return num / den
        raise ValueError(tok)

    try:
        value = expr(0)
    except (ValueError, ZeroDivisionError, InvalidOperation, ArithmeticError, RecursionError):
        return None
    return value if i == len(tokens) else None


def number_value(text: str) -> Optional[Fraction]:
    """:func:`as_number`, else :func:`arithmetic_value`: the exact value of a plain number or of rational
    arithmetic on plain numbers."""
    value = as_number(text)
    return value if value is not None else arithmetic_value(text)


def decimal_places(text: str) -> Optional[int]:
    """Digits after the point of a plain decimal literal (``"3.14"`` -> 2), else ``None``."""
    m = re.fullmatch(r"[+-]?\d*\.(\d+)", text.strip().replace(",", ""))
    return len(m.group(1)) if m else None


def terminates(value: Fraction) -> bool:
    """Whether ``value`` has a finite decimal form (its denominator has no prime factor but 2 and 5)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


DECIMAL_MIN_SIGNIFICANT = 6  # a decimal this precise names one value; a shorter one (3.14) is the rounding of many


def rounds_to_decimal(value: Fraction, reference_text: str) -> bool:
    """The decimal-reference rule for a rational answer: a reference printed with ``d`` decimals and at least
    ``DECIMAL_MIN_SIGNIFICANT`` significant digits (``0.333333``, a float's ``repr`` such as
    ``0.3333333333333333``) accepts an exact answer with no finite decimal form within half a unit of its last
    digit (``1/3``; ``10/3`` for ``3.33333333``). A shorter decimal is compared exactly against rationals (``22/7``
    is not ``3.14``, ``1/3`` is not ``0.333``), and a value with a finite decimal form always is (``49/20`` is not
    ``2.5``). Irrational answers round to any decimal reference (the sympy comparison: ``\\pi`` is ``3.14``)."""
    places = decimal_places(reference_text)
    if not places or terminates(value) or significant_digits(reference_text) < DECIMAL_MIN_SIGNIFICANT:
        return False
    reference = as_number(reference_text)
    return reference is not None and abs(value - reference) <= decimal_tolerance(reference_text)


def significant_digits(text: str) -> int:
    return len(re.sub(r"^[+-]?0*\.?0*", "", text.strip().replace(",", "")).replace(".", ""))


def decimal_tolerance(text: str) -> Fraction:
    """What a decimal reference stands for: half a unit of its last digit (``3.14``: 0.005), or a whole unit when
    it has 15+ significant digits, the printout of a binary float (``repr(2/3)`` is ``0.6666666666666666``: the
    shortest string that reads back as the same float, not the correctly rounded one)."""
    places = decimal_places(text) or 0
    unit = Fraction(1, 10 ** places)
    return unit if significant_digits(text) >= 15 else unit / 2


def format_number(value: Fraction) -> str:
    """Canonical string of an exact number: ``"-4"``, ``"1/2"``."""
    return str(value)


# ================================================================================================
# guards against pathological answers (checked before sympy)
# ================================================================================================

_FACTORIAL = re.compile(r"(\d+)\s*!|\\?\(\s*(\d+)\s*\\?\)\s*!|\{\s*(\d+)\s*\}\s*!")


def nesting_depth(text: str) -> int:
    """Maximum bracket nesting of ``()[]{}`` in ``text``."""
    depth = best = 0
    for char in text:
        if char in "([{":
            depth += 1
            best = max(best, depth)
        elif char in ")]}":
            depth = max(depth - 1, 0)
    return best


def _literal_digits(expr: str) -> Optional[float]:
    """log10 of a literal power tower like ``9^{9^{9^9}}`` or ``10^{100}``; ``None`` if not one."""
    s = expr.strip()
    while s.startswith("{") and s.endswith("}") and balanced_group(s, 1) == s[1:-1]:
        s = s[1:-1].strip()
    if re.fullmatch(r"\d+", s):
        return math.log10(int(s)) if int(s) > 0 else 0.0
    m = re.match(r"(\d+)\s*\^\s*", s)
    if not m:
        return None
    base = int(m.group(1))
    rest = s[m.end():]
    if rest.startswith("{"):
        inner = balanced_group(rest, 1)
        if inner is None or len(inner) + 2 != len(rest):
            return None
        exponent_log = _literal_digits(inner)
    elif re.fullmatch(r"\d", rest):  # 9^9: only one digit belongs to the exponent
        exponent_log = math.log10(int(rest)) if int(rest) > 0 else 0.0
    else:
        return None
    if exponent_log is None:
        return None
    if base <= 1:
        return 0.0
    if exponent_log > 300:
        return math.inf
    return (10.0 ** exponent_log) * math.log10(base)


def too_large(text: str) -> Optional[str]:
    """A reason string when ``text`` would make sympy compute something huge or recurse deeply.

    Returns ``"too_deep"`` (nesting above :data:`MAX_NESTING`), ``"too_large"`` (a literal factorial or
    power tower with more than :data:`MAX_RESULT_DIGITS` digits), or ``None``.
    """
    if nesting_depth(text) > MAX_NESTING:
        return "too_deep"
    for m in _FACTORIAL.finditer(text):
        n = int(next(g for g in m.groups() if g is not None))
        if n > 3000:  # 3000! has 9131 digits
            return "too_large"
    for m in re.finditer(r"\d\s*[eE]\s*[+-]?\s*(\d{5,})", text):  # 1e999999999
        if int(m.group(1)) > MAX_RESULT_DIGITS:
            return "too_large"
    for m in re.finditer(r"[})]\s*!", text):  # {10^{4}}! or (10^4)!
        operand = _group_before(text, m.start())
        digits = _literal_digits(operand) if operand is not None else None
        if digits is not None and digits > math.log10(3000):
            return "too_large"
    for m in re.finditer(r"\d+\s*\^", text):
        digits = _literal_digits(_power_span(text, m.start()))
        if digits is not None and digits > MAX_RESULT_DIGITS:
            return "too_large"
    return None


def _group_before(text: str, end: int) -> Optional[str]:
    """Content of the bracket group closing at ``text[end]`` (``}`` or ``)``), or ``None``."""
    close = text[end]
    open_ = "{" if close == "}" else "("
    depth = 0
    for i in range(end, -1, -1):
        if text[i] == close:
            depth += 1
        elif text[i] == open_:
            depth -= 1
            if depth == 0:
                return text[i + 1:end]
    return None


def _power_span(text: str, start: int) -> str:
    m = re.match(r"\d+\s*\^\s*", text[start:])
    end = start + m.end()
    if end < len(text) and text[end] == "{":
        inner = balanced_group(text, end + 1)
        return text[start:] if inner is None else text[start:end + len(inner) + 2]
    m2 = re.match(r"\d", text[end:])
    return text[start:end + (1 if m2 else 0)]


# ================================================================================================
# answer structure
# ================================================================================================

@dataclass(frozen=True)
class Node:
    """A parsed answer.

    ``kind`` is one of: ``scalar`` (one expression, ``text``), ``text`` (words, ``text`` is the lowercase
    key), ``empty``, ``tuple`` (ordered ``items``), ``pair`` (``(a, b)``: a point or an open interval),
    ``interval`` (``items`` = two endpoints, ``closed`` = (left, right)), ``set`` (unordered ``items``;
    ``bare`` when it was a plain list such as ``1, 2`` rather than ``\\{1, 2\\}``), ``union`` (``items``
    joined by ``\\cup``), ``matrix`` (``rows``), ``eq`` (``items`` = the sides of ``a = b [= c]``),
    ``rel`` (an inequality, ``text``), ``record`` (assignments ``x=1, y=2``; ``items`` = (name, Node)
    pairs), ``alt`` (reference alternatives: any may match).
    """

    kind: str
    text: str = ""
    items: tuple = ()
    percent: bool = False
    closed: tuple = (False, False)
    bare: bool = False
    rows: tuple = ()


_OPEN = "([{"
_CLOSE = ")]}"


def _top_level_split(s: str, pattern: re.Pattern) -> list[str]:
    """Split ``s`` at matches of ``pattern`` that lie outside every bracket pair."""
    depth = 0
    parts, last = [], 0
    i = 0
    n = len(s)
    while i < n:
        char = s[i]
        if char == "\\" and i + 1 < n and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif depth == 0:
            if char == "," and _thousands_comma(s, i):
                i += 1
                continue
            m = pattern.match(s, i)
            if m and m.end() > i:
                parts.append(s[last:i])
                last = i = m.end()
                continue
        i += 1
    parts.append(s[last:])
    return parts


_LIST_SEP = re.compile(
    r"\s*(?:,|;|\\quad|\\qquad|\s(?:and|or)\s|(?<=[)\]])or(?=[(\[])|\\text\s*\{\s*(?:and|or)\s*\}|\\(?:land|lor|vee|wedge)\b"
    r"|" + _GLUED_CONNECTIVE + r")\s*",
    re.I,
)
_COMMA_SEP = re.compile(r"\s*[,;]\s*")
_CUP_SEP = re.compile(r"\s*\\cup\s*|\s*\\union\s*|\s+U\s+")
_EQ_SEP = re.compile(r"\s*(?<![<>!\\])=(?!=)\s*")
_REL = re.compile(r"<|>|\\le\b|\\ge\b|\\ne\b|\\neq\b")
# one environment: its body never closes it (two matrices joined by "+" are arithmetic, not one matrix)
_MATRIX = re.compile(r"\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?((?:(?!\\end\{\1\}).)*)\\end\{\1\}", re.S)
_MATRIX_ENV = re.compile(r"\\begin\{[pbBvV]?matrix\}")
_ASSIGN_LHS = re.compile(
    r"(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?[\w,]+\}?|_\d)?'*(?:\s*\([a-zA-Z0-9_,\s]*\))?"
)
_WORDS = re.compile(r"[a-z][a-z' -]*")  # applied after word-final punctuation is removed (no backtracking)
# a choice letter alone or followed by its option's text: "(B) 42", "B) 42", "B. 42", "B: 42", "B is correct";
# not a letter in a formula ("B + 3", "E*2", "C \\cdot 5")
_CHOICE = re.compile(r"\(\s*([A-J])\s*\)(?:\s*.*)?|([A-J])\s*[.:)](?:\s+.*)?|([A-J])"
                     r"|([A-J])\s+(?=[a-zA-Z]{2})(?!(?:and|or|cdot|times)\b).*", re.S)
_REALS = (r"\mathbb{R}", r"\mathbb R", r"\R", r"\Bbb{R}", "(-\\infty,\\infty)")
_YES_NO_LEAD = re.compile(r"(?:yes|no|true|false)\b\s*[,.;:!]\s*\w", re.I)
_YES_NO = {"yes": "yes", "no": "no", "true": "yes", "false": "no", "correct": "yes", "incorrect": "no"}


def _thousands_comma(s: str, i: int) -> bool:
    """The comma at ``s[i]`` separates thousands (``1,234``), not list items (``1, 234`` / ``1,2``)."""
    lo = i
    while lo > 0 and (s[lo - 1].isdigit() or s[lo - 1] == ","):
        lo -= 1
    hi = i
    while hi + 1 < len(s) and (s[hi + 1].isdigit() or s[hi + 1] == ","):
        hi += 1
    if lo > 0 and (s[lo - 1].isalpha() or s[lo - 1] in "._^"):
        return False
    return bool(re.fullmatch(r"[1-9]\d{0,2}(?:,\d{3})+", s[lo:hi + 1]))


def _encloses(s: str) -> bool:
    """``s[0]`` is an opening bracket whose partner is ``s[-1]`` (any of ``([{`` / ``)]}``)."""
    depth = 0
    for i, char in enumerate(s):
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


def text_key(s: str) -> str:
    """Lowercase words without punctuation: the key text answers are compared by."""
    s = re.sub(r"\\[a-zA-Z]+", " ", s.lower())
    s = re.sub(r"[^a-z0-9\s-]", " ", s)
    return " ".join(s.split())


def is_prose(s: str) -> bool:
    """A sentence rather than a formula: three or more words of 3+ letters that are not math words
    (``"No integer solutions"``, ``"The function is periodic, with a period of 8"``)."""
    plain = re.sub(r"\\(?:begin|end)\s*\{[^{}]*\}|\\[a-zA-Z]+", " ", s)  # \begin{pmatrix} is no word
    words = [w for w in re.findall(r"[a-zA-Z]{3,}", plain) if w.lower() not in _MATH_WORDS]
    return len(words) >= 3


def is_words(s: str) -> bool:
    """Plain words such as ``"no solution"`` (sympy would read ``blue`` as ``b*l*u*e``)."""
    lowered = s.lower().strip()
    if not _WORDS.fullmatch(re.sub(r"[.,!?;:](?=\s|$)", "", lowered)):
        return False
    words = re.findall(r"[a-z]+", lowered)
    return any(len(w) >= 3 and w not in _MATH_WORDS for w in words) or lowered in _YES_NO


def parse_answer(raw: str, *, reference: bool = False) -> Node:
    """Parse an answer string into a :class:`Node` (structure only; leaves stay strings).

    With ``reference=True`` a few reference-only forms are understood as well: ``A, or equivalently B``
    and ``A, or approximately B`` (either is accepted), ``N (i.e., ...)`` (the comment is dropped),
    ``X is the only possible value`` and ``... is equal to X`` (the value ``X``).
    """
    if _PLAIN_NUMBER.fullmatch(raw):  # nothing to normalise: the common case costs microseconds
        return Node("scalar", text=raw)
    if reference:
        alternatives = _reference_alternatives(raw)
        if len(alternatives) > 1:
            return Node("alt", items=tuple(parse_answer(a) for a in alternatives))
        raw = _reference_core(alternatives[0])
    norm = normalize(raw)
    node = _parse(norm.text, norm.percent, 0)
    if node.kind == "set" and _DECIMAL_COMMA.fullmatch(norm.text):  # "1000,99": a list, or a decimal comma
        node = Node("set", items=node.items, bare=True, text=norm.text.replace(",", "."), percent=norm.percent)
    if norm.hedge and node.kind != "set":
        node = Node("set", items=(node, Node("text", text="<hedge>")), bare=True)
    return node


_ALT_SPLIT = re.compile(r",?\s+or\s+(?:equivalently|approximately|an\s+equivalent\s+form\s+such\s+as)\s+", re.I)
_ONLY_VALUE = re.compile(r"^(.+?)\s+is\s+the\s+only\s+(?:possible\s+)?(?:value|solution|answer)\.?$", re.I)
_EQUAL_TO = re.compile(r"^[A-Za-z ,]*?\b(?:is\s+equal\s+to|equals|is)\s+(\S.{0,40}?)\.?$", re.I)


def _reference_alternatives(raw: str) -> list[str]:
    parts = [p.strip() for p in _ALT_SPLIT.split(raw.strip()) if p.strip()]
    return parts or [raw]


def _drop_comment(s: str) -> str:
    """``"100 (i.e., all values)"`` -> ``"100"``; the comment may contain nested parentheses."""
    for m in re.finditer(r"\s*\((?=\s*(?:i\.e\.|e\.g\.|no\s|none\s|all\s))", s, re.I):
        start = m.end() - 1
        if start > 0 and _encloses(s[start:].rstrip(" .")):
            return s[:m.start()].strip()
    return s


def _sentence_value(s: str) -> str:
    """``"The limit exists and is equal to 3"`` -> ``"3"`` when what follows "is" is math, not words."""
    if len(s.split()) >= 3 and (m := _EQUAL_TO.match(s)):
        value = m.group(1)
        if all(w.lower() in _MATH_WORDS for w in re.findall(r"(?<!\\)\b[a-zA-Z]{2,}", value)):
            return value
    return s


def _reference_core(raw: str) -> str:
    s = raw.strip()
    if len(s) > 300:  # a long text is not one of these short forms (and the regexes are quadratic)
        return s
    s = _drop_comment(s)
    if m := _ONLY_VALUE.match(s):
        s = m.group(1)
    return _sentence_value(s)


def _parse(s: str, percent: bool, depth: int) -> Node:
    s = _strip_outer_braces(s.strip())
    if not s:
        return Node("empty")
    if depth > 8:
        return Node("scalar", text=s, percent=percent)
    if s[:1] in "([" and s[-1:] in ")]" and _MATRIX.fullmatch(s[1:-1].strip()):  # [\begin{array}..\end{array}]
        s = s[1:-1].strip()
    matrix = _MATRIX.fullmatch(s)
    if matrix:
        body = matrix.group(2).strip()
        rows = tuple(
            tuple(_parse(cell, False, depth + 1) for cell in row.split("&"))
            for row in re.split(r"\\\\", body) if row.strip()
        )
        if rows and len({len(r) for r in rows}) == 1:
            return Node("matrix", rows=rows)
    if s in _REALS or text_key(s) in ("all real numbers", "all reals", "the real numbers", "real numbers"):
        return Node("interval", items=(Node("scalar", text=r"-\infty"), Node("scalar", text=r"\infty")))
    if _YES_NO_LEAD.match(s):  # "no, it cannot"
        return Node("text", text=text_key(s))
    if re.search(r"[a-zA-Z]\s+(?:is|equals)\s", s):
        value = _sentence_value(s)  # "The limit is 3"
        if value != s:
            return _parse(value, percent, depth + 1)
    if is_prose(s):
        return Node("text", text=text_key(s))
    parts = _top_level_split(s, _CUP_SEP)
    if len(parts) > 1 and all(p.strip() for p in parts):
        return Node("union", items=tuple(_parse(p, False, depth + 1) for p in parts))
    if not _RE_THOUSANDS.fullmatch(s):
        parts = [p for p in _top_level_split(s, _LIST_SEP)]
        if len(parts) > 1:
            items = [_parse(p, percent, depth + 1) for p in parts if p.strip()]
            return _group_list(items)
    if s.startswith(r"\{") and s.endswith(r"\}"):
        inner = s[2:-2].strip()
        if not inner:
            return Node("set", items=())
        return Node("set", items=tuple(_parse(p, False, depth + 1) for p in _top_level_split(inner, _COMMA_SEP)))
    if s in (r"\emptyset", r"\varnothing", "{}", r"\{\}"):
        return Node("set", items=())
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        inner = _top_level_split(s[1:-1], _COMMA_SEP)
        if len(inner) >= 2 and all(p.strip() for p in inner):
            items = tuple(_parse(p, False, depth + 1) for p in inner)
            if len(items) == 2 and s[0] == "(" and s[-1] == ")":
                return Node("pair", items=items)
            if len(items) == 2:
                return Node("interval", items=items, closed=(s[0] == "[", s[-1] == "]"))
            return Node("tuple", items=items)
    if s.count(r"\pm") == 1 and not _EQ_SEP.search(s):
        plus, minus = s.replace(r"\pm", "+"), s.replace(r"\pm", "-")
        plus = re.sub(r"^\+\s*", "", plus)
        return Node("set", items=(_parse(plus, percent, depth + 1), _parse(minus, percent, depth + 1)), bare=True)
    sides = _top_level_split(s, _EQ_SEP)
    if len(sides) >= 2:
        nodes = tuple(_parse(p, False, depth + 1) for p in sides)
        names = [assignment_name(n) for n in nodes[:-1]]
        if len(nodes) >= 3 and all(names) and len(set(names)) == len(names):  # x = y = 0
            return Node("record", items=tuple((name, nodes[-1]) for name in names))
        return Node("eq", items=nodes, text=s)
    if _REL.search(s) and not is_words(s):
        return Node("rel", text=s)
    if is_words(s):
        return Node("text", text=text_key(s))
    if _SPACED_THOUSANDS.fullmatch(s):  # an item of a list: "1 000, 2 000"
        s = s.replace(" ", "")
    return Node("scalar", text=s, percent=percent)


def assignment_name(node: Node) -> Optional[str]:
    """``"x"`` for the left side of ``x = 3``, ``"f(x)"`` for ``f(x) = x^2``; ``None`` otherwise."""
    if node.kind != "scalar":
        return None
    text = node.text.strip()
    if _ASSIGN_LHS.fullmatch(text) and as_number(text) is None:
        if text.startswith("\\") and not re.fullmatch(r"\\[a-zA-Z]+(?:_.*)?", text):
            return None
        return re.sub(r"\s+", "", text)
    return None


def _group_list(items: list[Node]) -> Node:
    """A list of answers: assignments are grouped into records (``x=1, y=2``), the rest is a bare set."""
    assigned = {assignment_name(i.items[0]) for i in items if i.kind == "eq" and len(i.items) >= 2}
    if len(assigned) == 1 and None not in assigned and any(i.kind != "eq" for i in items):
        # "x = \pm 1, \pm 2": the same variable throughout -> its values
        items = [i.items[-1] if i.kind == "eq" else i for i in items]
    if items and all(i.kind == "eq" and len(i.items) >= 2 and assignment_name(i.items[0]) for i in items):
        records: list[dict] = []
        for item in items:
            name = assignment_name(item.items[0])
            if not records or name in records[-1]:
                records.append({})
            records[-1][name] = item.items[-1]
        nodes = [Node("record", items=tuple(r.items())) for r in records]
        if len(nodes) == 1:
            return nodes[0]
        if all(len(r) == 1 for r in records) and len({next(iter(r)) for r in records}) == 1:
            return _group_list([next(iter(r.values())) for r in records])
        return Node("set", items=tuple(nodes), bare=True)
    flat: list[Node] = []
    for item in items:
        if item.kind == "set" and item.bare:
            flat.extend(item.items)
        else:
            flat.append(item)
    return Node("set", items=tuple(flat), bare=True)


# ================================================================================================
# comparison (tri-state: True / False / None = "cannot tell without sympy")
# ================================================================================================

Leaf = Callable[[Node, Node], Optional[bool]]


@dataclass
class Outcome:
    """Result of :func:`compare_nodes`: ``equal`` is True/False/None; ``reason`` explains a rejection."""

    equal: Optional[bool]
    reason: Optional[str] = None


def _all3(values: Iterable[Optional[bool]]) -> Optional[bool]:
    unknown = False
    for value in values:
        if value is False:
            return False
        if value is None:
            unknown = True
    return None if unknown else True


def _any3(values: Iterable[Optional[bool]]) -> Optional[bool]:
    unknown = False
    for value in values:
        if value is True:
            return True
        if value is None:
            unknown = True
    return None if unknown else False


def _dedupe_nodes(items: tuple) -> list[Node]:
    seen: dict = {}
    for item in items:
        seen.setdefault(repr(item), item)
    return list(seen.values())


MAX_UNORDERED = 64  # larger lists are matched textually first; a remainder above this is left to the worker


def _match_unordered(a_items: list[Node], r_items: list[Node], eq) -> Optional[bool]:
    if len(a_items) != len(r_items):
        return False
    if len(a_items) > MAX_UNORDERED:  # pair identical items first, so the quadratic search stays small
        remaining = list(r_items)
        rest = []
        for a in a_items:
            if a in remaining:
                remaining.remove(a)
            else:
                rest.append(a)
        if len(rest) > MAX_UNORDERED:
            return None
        a_items, r_items = rest, remaining
    unused = list(range(len(r_items)))
    unknown = False
    for a in a_items:
        found = None
        for j in unused:
            result = eq(a, r_items[j])
            if result is True:
                found = j
                break
            if result is None:
                unknown = True
        if found is None:
            return None if unknown else False
        unused.remove(found)
    return True


def _ordered(a_items, r_items, eq) -> Optional[bool]:
    if len(a_items) != len(r_items):
        return False
    return _all3(eq(a, r) for a, r in zip(a_items, r_items))


def is_tautology(node: Node) -> bool:
    """An equation whose sides are textually identical (``2=2``, ``x = x``)."""
    if node.kind != "eq":
        return False
    keys = {re.sub(r"\s+", "", side.text or repr(side)) for side in node.items}
    return len(keys) == 1


def has_letters(text: str) -> bool:
    """Whether ``text`` mentions a variable (letters outside LaTeX commands; ``\\pi`` is a constant)."""
    return bool(re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", text)))


def names_a_quantity(text: str) -> bool:
    """Left side of ``<quantity> = <number>`` that names what was asked (``a_{1964} \\bmod 4``,
    ``L_u - L_v``, ``f(3)``, ``a + b``) rather than an equation still to solve (``2x``, ``x^2 - 5x + 6``)."""
    plain = re.sub(r"\\(?:bmod|pmod|mod)\b", " mod ", text)
    if re.search(r"_|\bmod\b|[a-zA-Z]\s*\(", plain):
        return True
    letters = set(re.findall(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", plain)))
    return len(letters) >= 2


_SEGMENT = r"[A-Z]{1,4}'*"  # AB, ABC, P'
_LABEL_ATOM = (
    r"(?:" + _SEGMENT
    + r"|(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?'*(?:\s*\([^()]*\))?"                    # V_1, f(3), \alpha
    + r"|(?:m\s*)?\\(?:angle|measuredangle|triangle)\s*\{?\s*" + _SEGMENT + r"\s*\}?"   # \angle ABC
    + r"|\\(?:overline|overarc|widehat|hat|vec)\s*\{\s*" + _SEGMENT + r"\s*\}"           # \overline{AB}
    + r")"
)
_LABEL_ATOM_RE = re.compile(_LABEL_ATOM)
_LABEL_FRAC = re.compile(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def _label_part(text: str) -> bool:
    text = text.strip()
    if len(text) >= 2 and text[0] == "|" and text[-1] == "|":  # |AB|
        text = text[1:-1].strip()
    return bool(_LABEL_ATOM_RE.fullmatch(text))


def is_label(text: str) -> bool:
    """Whether ``text`` only names a quantity: a variable, a segment ``AB``, ``|AB|``, ``\\angle ABC``, a
    ratio of names ``V_1:V_2``/``AB/CD`` or ``\\frac{NO}{BO}``, a value ``f(3)``."""
    text = text.strip()
    if len(text) > 100:
        return False
    frac = _LABEL_FRAC.fullmatch(text)
    if frac:
        return _label_part(frac.group(1)) and _label_part(frac.group(2))
    parts = re.split(r"[:/]", text)
    return len(parts) <= 4 and all(_label_part(p) for p in parts)


def label_value(node: Node) -> Optional[Node]:
    """The value of a labelled answer ``<label> = <value>``: ``AB = 4``, ``|AB| = 1``, ``V_1:V_2 = 11:21``,
    ``\\frac{NO}{BO} = \\frac{1}{\\sqrt6}`` give their constant right side; ``(p, q) = (3, 2)`` gives the
    record ``p=3, q=2``. ``None`` when the left side is not a label or the value still has variables."""
    if node.kind != "eq" or len(node.items) != 2:
        return None
    lhs, rhs = node.items
    if lhs.kind in ("pair", "tuple") and rhs.kind in ("pair", "tuple") and len(lhs.items) == len(rhs.items):
        names = [assignment_name(i) for i in lhs.items]
        if all(names) and len(set(names)) == len(names):
            return Node("record", items=tuple(zip(names, rhs.items)))
        return None
    if lhs.kind != "scalar" or not is_label(lhs.text) or assignment_name(lhs):
        return None
    if rhs.kind == "scalar" and has_letters(rhs.text):
        return None
    return rhs


def _chain_numbers(node: Node) -> Optional[bool]:
    """Fast check that all sides of a constant equation chain are equal; ``None`` if sympy is needed."""
    values = [number_value(side.text) if side.kind == "scalar" else None for side in node.items]
    if any(v is None for v in values):
        return None
    return all(v == values[0] for v in values)


def _label_key(node: Node) -> str:
    return re.sub(r"\s+|\|", "", node.items[0].text)


_LINEAR_TERM = re.compile(
    r"\s*([-+])?\s*(\d+(?:\.\d+)?|\.\d+|\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\})?\s*(?:\*|\\cdot)?\s*([a-df-hj-zA-Z])?\s*"
)


def linear_form(text: str) -> Optional[tuple[dict, Fraction]]:
    """``({variable: coefficient}, constant)`` of a linear expression with rational coefficients such as
    ``5x - 7y + \\frac{1}{2}z + 4`` (single-letter variables other than ``e`` and ``i``), else ``None``."""
    s = text.strip()
    if not s or len(s) > 200:
        return None
    coefficients: dict[str, Fraction] = {}
    constant = Fraction(0)
    pos, first = 0, True
    while pos < len(s):
        m = _LINEAR_TERM.match(s, pos)
        if not m or m.end() == pos or (m.group(1) is None and not first):
            return None
        sign, number, num, den, var = m.groups()
        if number is None and var is None:
            return None
        try:
            value = Fraction(int(num), int(den)) if num is not None else \
                Fraction(Decimal(number)) if number is not None else Fraction(1)
        except (ZeroDivisionError, InvalidOperation):
            return None
        if sign == "-":
            value = -value
        if var is None:
            constant += value
        else:
            coefficients[var] = coefficients.get(var, Fraction(0)) + value
        pos, first = m.end(), False
    return {k: c for k, c in coefficients.items() if c}, constant


def _linear_equation(node: Node) -> Optional[tuple[dict, Fraction]]:
    """``lhs - rhs`` of a two-sided linear equation with at least one variable, else ``None``."""
    if node.kind != "eq" or len(node.items) != 2 or not all(i.kind == "scalar" for i in node.items):
        return None
    forms = [linear_form(i.text) for i in node.items]
    if any(f is None for f in forms):
        return None
    (lc, lk), (rc, rk) = forms
    if not re.search(r"[a-zA-Z]", node.items[0].text + node.items[1].text):
        return None
    diff = {v: lc.get(v, Fraction(0)) - rc.get(v, Fraction(0)) for v in set(lc) | set(rc)}
    return {v: c for v, c in diff.items() if c}, lk - rk


def linear_identity(node: Node) -> bool:
    """A linear equation with variables whose sides are equal for every value (``2x + 1 = 1 + 2x``)."""
    form = _linear_equation(node)
    return form is not None and not form[0] and form[1] == 0


def linear_eq_leaf(a: Node, r: Node) -> Optional[bool]:
    """Two linear equations (``5x - 7y + 11z + 4 = 0``): equal when ``lhs - rhs`` of one is a non-zero constant
    multiple of the other's, exactly as the sympy comparison decides it; ``None`` when either is not linear."""
    fa, fr = _linear_equation(a), _linear_equation(r)
    if fa is None or fr is None:
        return None
    (ca, ka), (cr, kr) = fa, fr
    if not ca or not cr:  # an identity, or no variable left: never equal to an equation
        return False
    if set(ca) != set(cr):
        return False
    var = next(iter(ca))
    ratio = ca[var] / cr[var]
    return all(ca[v] == ratio * cr[v] for v in ca) and ka == ratio * kr


def is_matrix_arithmetic(node: Node) -> bool:
    """A scalar leaf that computes with matrices (``A + B``, ``2A``, ``AB`` with explicit matrices)."""
    return node.kind == "scalar" and bool(_MATRIX_ENV.search(node.text))


def compare_nodes(a: Node, r: Node, leaf: Leaf, *, eq_leaf: Optional[Callable] = None,
                  set_leaf: Optional[Callable] = None, chain_leaf: Optional[Callable] = None,
                  matrix_leaf: Optional[Callable] = None) -> Outcome:
    """Compare answer ``a`` with reference ``r``.

    ``leaf(a, r)`` compares two ``scalar``/``text`` nodes; ``eq_leaf(a, r)`` two non-assignment
    equations, ``set_leaf(a, r)`` interval/union/inequality structures and ``chain_leaf(a)`` whether all
    sides of a constant equation are equal (all three default to "unknown").
    Rules: tuples, pairs and matrices compare in order; sets and plain lists unordered; intervals need
    equal endpoints and equal open/closed ends; a list of several answers never equals a single reference
    (reason ``multiple_answers``); matrix arithmetic (``A + B`` with explicit matrices) against a matrix goes
    to ``matrix_leaf(a, r)``, which evaluates it (default "unknown"). Equations: ``x = 5``, ``f(1) = 5`` and ``a_{n} \\bmod 4 = 5`` stand for
    their right side; a consistent computation ``1000 - 101 + 1 = 900`` for its last side; identical
    sides (``2 = 2``, ``x = x``) are refused (reason ``tautology``), a false constant equation
    (``2 + 2 = 5``, reason ``false_equation``) and an equation still to solve (``2x = 10``, reason
    ``equation_not_assignment``) never equal a value.
    """
    unknown = lambda *args: None  # noqa: E731
    # a decimal comma ("1000,99", "0,111") is read as a decimal only against a single number
    if a.kind == "set" and a.text and r.kind == "scalar" and as_number(r.text) is not None:
        a = Node("scalar", text=a.text, percent=a.percent)
    elif r.kind == "set" and r.text and a.kind == "scalar" and as_number(a.text) is not None:
        r = Node("scalar", text=r.text, percent=r.percent)
    eq_leaf = eq_leaf or unknown
    set_leaf = set_leaf or unknown
    chain_leaf = chain_leaf or _chain_numbers
    matrix_leaf = matrix_leaf or unknown

    def eq(x: Node, y: Node) -> Optional[bool]:
        return _cmp(x, y).equal

    def _cmp(x: Node, y: Node) -> Outcome:
        if y.kind == "alt":
            return Outcome(_any3(eq(x, alt) for alt in y.items))
        if y.kind == "eq" and len(y.items) >= 3 and x.kind != "eq" and as_number(y.items[-1].text) is not None:
            return _cmp(x, y.items[-1])  # a reference chain "a = b = 0" stands for its last, numeric side
        if x.kind == "empty" or y.kind == "empty":
            return Outcome(False)
        if x.kind == "eq" and is_tautology(x):
            return Outcome(False, "tautology")
        # assignments stand for their value
        if x.kind == "eq" and y.kind == "eq":
            xn, yn = assignment_name(x.items[0]), assignment_name(y.items[0])
            if xn and yn and xn == yn:
                return _cmp(x.items[-1], y.items[-1])
            xv, yv = label_value(x), label_value(y)
            if xv is not None and yv is not None:
                if xv.kind == "record" or _label_key(x) == _label_key(y):
                    return _cmp(xv, yv)
            elif xv is not None and yn:  # "(p, q) = (3, 2)" against "p = 3" is a record against one name
                return _cmp(xv, y)
            if len(x.items) == 2 and len(y.items) == 2:
                return Outcome(eq_leaf(x, y))
            return Outcome(False)
        if x.kind == "eq":
            if assignment_name(x.items[0]):
                return _cmp(x.items[-1], y)
            value = label_value(x)
            if value is not None:  # "AB = 4", "(p, q) = (3, 2)"
                return _cmp(value, y)
            if len(x.items) == 2 and assignment_name(x.items[1]):  # "5 = x"
                return _cmp(x.items[0], y)
            last = x.items[-1]
            sides = x.items[:-1]
            if last.kind == "scalar" and not has_letters(last.text) and all(i.kind == "scalar" for i in sides):
                if all(names_a_quantity(i.text) for i in sides):  # "p \bmod 1979 = 0"
                    return _cmp(last, y)
                if not any(has_letters(i.text) for i in sides):  # "1000 - 101 + 1 = 900"
                    consistent = chain_leaf(x)
                    if consistent is None:
                        return Outcome(None)
                    return _cmp(last, y) if consistent else Outcome(False, "false_equation")
            return Outcome(False, "equation_not_assignment")
        if y.kind == "eq":
            if assignment_name(y.items[0]):
                return _cmp(x, y.items[-1])
            value = label_value(y)
            if value is not None:  # a labelled reference "AB = 4, CD = 5" stands for its values
                return _cmp(x, value)
            return Outcome(False)
        if x.kind == "record" and len(x.items) == 1:
            return _cmp(x.items[0][1], y)
        if y.kind == "record" and len(y.items) == 1:
            return _cmp(x, y.items[0][1])
        if y.kind == "record":
            if x.kind == "record":
                xd, yd = dict(x.items), dict(y.items)
                if set(xd) != set(yd):
                    return Outcome(False)
                return Outcome(_all3(eq(xd[k], yd[k]) for k in yd))
            if x.kind in ("pair", "tuple") or (x.kind == "set" and x.bare):
                return Outcome(_ordered(list(x.items), [v for _, v in y.items], eq))
            return Outcome(False)
        if x.kind == "record":
            if y.kind in ("pair", "tuple"):
                return Outcome(_ordered([v for _, v in x.items], list(y.items), eq))
            return Outcome(False)
        # several answers against one
        if x.kind == "set" and y.kind != "set":
            items = _dedupe_nodes(x.items)
            if len(items) == 1 and x.bare:
                return _cmp(items[0], y)
            if x.bare and y.kind in ("pair", "tuple"):
                return Outcome(_ordered(list(x.items), list(y.items), eq))
            if y.kind in ("union", "interval", "pair", "rel"):
                return Outcome(set_leaf(x, y))
            return Outcome(False, "multiple_answers" if len(items) > 1 else None)
        if y.kind == "set" and x.kind != "set":
            items = _dedupe_nodes(y.items)
            if len(items) == 1 and y.bare:
                return _cmp(x, items[0])
            if y.bare and x.kind in ("pair", "tuple"):
                return Outcome(_ordered(list(x.items), list(y.items), eq))
            if x.kind in ("union", "interval", "pair", "rel"):
                return Outcome(set_leaf(x, y))
            return Outcome(False)
        if x.kind == "set" and y.kind == "set":
            xi, yi = _dedupe_nodes(x.items), _dedupe_nodes(y.items)
            return Outcome(_match_unordered(xi, yi, eq))
        # ordered structures
        if x.kind in ("pair", "tuple") and y.kind in ("pair", "tuple"):
            return Outcome(_ordered(list(x.items), list(y.items), eq))
        shaped = ("matrix", "pair", "tuple")
        if (is_matrix_arithmetic(x) and y.kind in shaped) or (is_matrix_arithmetic(y) and x.kind in shaped):
            return Outcome(matrix_leaf(x, y))  # "A + B" against the matrix it evaluates to
        if x.kind == "matrix" or y.kind == "matrix":
            return Outcome(_compare_matrix(x, y, eq))
        if x.kind in ("pair", "interval") and y.kind in ("pair", "interval"):
            x_closed = x.closed if x.kind == "interval" else (False, False)
            y_closed = y.closed if y.kind == "interval" else (False, False)
            if x_closed != y_closed:
                return Outcome(False)
            return Outcome(_ordered(list(x.items), list(y.items), eq))
        if x.kind == "union" and y.kind == "union":
            structural = _match_unordered(list(x.items), list(y.items), eq)
            return Outcome(True if structural else set_leaf(x, y))
        if {x.kind, y.kind} & {"union", "interval", "rel"}:
            if x.kind == "rel" and y.kind == "rel" and re.sub(r"\s", "", x.text) == re.sub(r"\s", "", y.text):
                return Outcome(True)
            if {x.kind, y.kind} <= {"union", "interval", "rel", "pair"}:
                return Outcome(set_leaf(x, y))
            return Outcome(False)
        if x.kind in ("pair", "tuple") or y.kind in ("pair", "tuple"):
            return Outcome(False)
        if x.kind in ("scalar", "text") and y.kind in ("scalar", "text"):
            return Outcome(leaf(x, y))
        return Outcome(False)

    outcome = _cmp(a, r)
    if outcome.equal is False and outcome.reason is None and a.kind == "set" and r.kind != "set" \
            and len(_dedupe_nodes(a.items)) > 1:
        outcome.reason = "multiple_answers"
    return outcome


def _compare_matrix(x: Node, y: Node, eq) -> Optional[bool]:
    def cells(node: Node) -> Optional[tuple[tuple[int, int], list[Node]]]:
        if node.kind == "matrix":
            return (len(node.rows), len(node.rows[0])), [c for row in node.rows for c in row]
        if node.kind in ("pair", "tuple"):
            return (len(node.items), 1), list(node.items)
        return None

    cx, cy = cells(x), cells(y)
    if cx is None or cy is None:
        return False
    (shape_x, items_x), (shape_y, items_y) = cx, cy
    vector = lambda s: 1 in s  # noqa: E731 -- a row or column vector equals the tuple of its entries
    if shape_x != shape_y and not (vector(shape_x) and vector(shape_y) and len(items_x) == len(items_y)
                                   and (x.kind != "matrix" or y.kind != "matrix")):
        return False
    return _ordered(items_x, items_y, eq)


# ================================================================================================
# the fast leaf: numbers, percent, multiple choice, words
# ================================================================================================

def percent_pairs(a: Fraction, a_pct: bool, r: Fraction, r_pct: bool, percent_context: bool) -> list:
    """(answer value, reference value) pairs that count as equal under the percent rule.

    A ``%`` sign is a unit mark: ``50%`` equals the reference ``50``, and, being one half, also ``0.5``.
    A bare answer equals a percent reference ``50%`` when it is ``50`` or ``0.5``; when the question asks
    for a percentage (``percent_context``), a bare reference ``50`` is read as ``50%``. A bare answer
    ``0.5`` never equals a bare reference ``50`` otherwise, and ``0.5%`` never equals ``50%``.
    """
    pairs = [(a, r)]
    ref_is_percent = r_pct or percent_context
    if a_pct and not ref_is_percent:
        pairs.append((a / 100, r))
    if ref_is_percent and not a_pct:
        pairs.append((a, r / 100))
    return pairs


_REF_LETTER = re.compile(r"\(?\s*([A-J])\s*\)?")


def choice_letter(text: str) -> Optional[str]:
    """``"B"`` for ``B``, ``(B)``, ``B)``, ``(b)``, ``B. 42``, ``(B) 42``; ``None`` otherwise."""
    m = _CHOICE.fullmatch(text.strip())
    if m:
        return next(g for g in m.groups() if g).upper()
    m = re.fullmatch(r"\(\s*([a-j])\s*\)(?:\s+.*)?", text.strip(), re.S)
    return m.group(1).upper() if m else None


_TIME = re.compile(r"(\d{1,2}):([0-5]\d)")
_ZERO = r"[+-]?0+(?:\.0*)?"
_UNDEFINED = re.compile(  # case-insensitive: NaN
    r"(?<![a-zA-Z])(?:zoo|nan)(?![a-zA-Z])"                # sympy's names
    r"|[/:]\s*" + _ZERO + r"(?![\d.])"                                                  # 1/0, 12:00
    r"|\\frac\s*\{[^{}]*\}\s*\{\s*" + _ZERO + r"\s*\}",                                 # \frac{1}{0}
    re.I,
)


def is_undefined_literal(text: str) -> bool:
    """A literal undefined value: a division by a literal zero (``1/0``, ``\\frac{2}{0}``, ``12:00`` read as a
    ratio) or sympy's ``zoo``/``nan``. Such a value equals nothing, not even itself."""
    return bool(_UNDEFINED.search(text))


def _times_equal(a_text: str, r_text: str) -> Optional[bool]:
    """Clock times ``h:mm``: compared as times when either would be a ratio with a zero denominator."""
    ma, mr = _TIME.fullmatch(a_text), _TIME.fullmatch(r_text)
    if not (ma and mr) or not (ma.group(2) == "00" or mr.group(2) == "00"):
        return None
    return (int(ma.group(1)), ma.group(2)) == (int(mr.group(1)), mr.group(2))


def _space_key(text: str) -> str:
    """``text`` without whitespace, except between two digits (``2 1/2`` is not ``21/2``)."""
    return re.sub(r"(?<!\d)\s+|\s+(?!\d)", "", text)


def fast_leaf(a: Node, r: Node, percent_context: bool = False) -> Optional[bool]:
    """Compare two leaves without sympy; ``None`` when sympy is needed. Clock times with ``:00`` compare as
    times; any other undefined literal (:func:`is_undefined_literal`) equals nothing."""
    a_text, r_text = a.text.strip(), r.text.strip()
    if a.kind == "scalar" and r.kind == "scalar":
        times = _times_equal(a_text, r_text)
        if times is not None:
            return times and a.percent == r.percent
    if is_undefined_literal(a_text) or is_undefined_literal(r_text):
        return False
    # multiple choice: the reference is one capital letter A-J, optionally in parentheses
    ref_letter = _REF_LETTER.fullmatch(r_text) if r.kind == "scalar" else None
    if ref_letter:
        letter = choice_letter(a_text) if a.kind == "scalar" else None
        if letter is not None:
            return letter == ref_letter.group(1)
        if a.kind == "text":
            return False
    if a.kind == "text" or r.kind == "text":
        return _text_equal(a, r)
    if _space_key(a_text) == _space_key(r_text) and a.percent == r.percent:
        return True
    a_num = as_number(a_text)
    if a_num is None:
        a_num = arithmetic_value(a_text)  # "\\frac{1}{2} + \\frac{1}{72}": exact, as sympy would compute it
    r_num = as_number(r_text) if a_num is not None else None
    if a_num is not None and r_num is None:
        r_num = arithmetic_value(r_text)
    if a_num is not None and r_num is not None:
        if any(x == y for x, y in percent_pairs(a_num, a.percent, r_num, r.percent, percent_context)):
            return True
        return not (a.percent or r.percent or percent_context) and rounds_to_decimal(a_num, r_text)
    if not (a.percent or r.percent or percent_context) and not re.search(r"[A-Z]", a_text + r_text):
        la = linear_form(a_text)  # "x + 1" against "1 + x": polynomial identity, as sympy decides it
        lr = linear_form(r_text) if la is not None else None
        if la is not None and lr is not None and (la[0] or lr[0]):
            return la == lr
    return None


def _text_equal(a: Node, r: Node) -> bool:
    a_key = a.text if a.kind == "text" else text_key(a.text)
    r_key = r.text if r.kind == "text" else text_key(r.text)
    if r_key in _YES_NO:
        first = a_key.split(" ")[0] if a_key else ""
        return _YES_NO.get(first) == _YES_NO[r_key]
    return a_key == r_key


def answer_class(node: Node, leaf_class: Callable[[Node], str]) -> str:
    """Canonical string of a parsed answer, built from ``leaf_class`` of its leaves."""
    def cls(n: Node) -> str:
        if n.kind in ("scalar",):
            return leaf_class(n)
        if n.kind == "text":
            return n.text
        if n.kind == "empty":
            return ""
        if n.kind == "set":
            inner = sorted({cls(i) for i in n.items})
            return "{" + ", ".join(inner) + "}"
        if n.kind in ("pair", "tuple"):
            return "(" + ", ".join(cls(i) for i in n.items) + ")"
        if n.kind == "interval":
            return ("[" if n.closed[0] else "(") + ", ".join(cls(i) for i in n.items) + ("]" if n.closed[1] else ")")
        if n.kind == "union":
            return " U ".join(sorted(cls(i) for i in n.items))
        if n.kind == "matrix":
            return "[" + "; ".join(", ".join(cls(c) for c in row) for row in n.rows) + "]"
        if n.kind == "eq":
            name = assignment_name(n.items[0])
            if name:
                return cls(n.items[-1])
            return " = ".join(cls(i) for i in n.items)
        if n.kind == "record":
            if len(n.items) == 1:
                return cls(n.items[0][1])
            return "(" + ", ".join(f"{k}={cls(v)}" for k, v in n.items) + ")"
        if n.kind == "rel":
            return re.sub(r"\s+", "", n.text)
        if n.kind == "alt":
            return cls(n.items[0])
        return n.text

    return cls(node)


def fast_leaf_class(node: Node) -> Optional[str]:
    """Class of a scalar leaf when it is a plain number (``"1/2"``) or rational arithmetic on plain numbers
    (``"1/2 + 1/3"`` -> ``"5/6"``, the class sympy gives it); else ``None``."""
    value = number_value(node.text)
    if value is not None:
        return format_number(value) + ("%" if node.percent else "")
    return None
