"""Parse a teacher completion into its reasoning and its FINAL answer.

The reasoning comes from a separate reasoning field (``reasoning_content`` / ``reasoning``) or from
delimiters in the text, in every family reasoning models write:

- special tokens, counted anywhere, as ``<think>`` always was: ``<think>…</think>`` (R1, QwQ, Qwen3),
  ``<|begin_of_thought|>…<|end_of_thought|>`` (OpenThoughts, Bespoke-Stratos, OpenThinker), ``[THINK]…[/THINK]``
  (Magistral), ``<seed:think>…</seed:think>`` (Seed-OSS; its ``<seed:cot_budget_reflect>`` notes are never
  answers), ``◁think▷…◁/think▷`` (Kimi). The block ends at the LAST closing token; a lone closing token means
  the chat template opened the block in the prompt (Qwen3 / R1-distill ``</think>``); an opening token after
  the block is a second block that never closed. The family met first in the text is the one read.
- plain-word tags ``<thinking>``, ``<thought>``, ``<reasoning>`` (Claude-style prompts, TRL GRPO's
  ``<reasoning>…</reasoning><answer>…</answer>``): only when the completion STARTS with the tag (after
  whitespace), since answers contain such words ("```xml\n<thinking>"); the block ends at the last closing tag
  outside code (fenced or inline), a ``</think>`` closes it too, and a later opening tag outside code where a
  sentence starts is a block that never closed. A lone closing word tag is text.
- gpt-oss harmony leaked into the content: ``<|channel|>analysis<|message|>…<|end|><|start|>assistant
  <|channel|>final<|message|>…<|return|>`` (analysis and commentary are reasoning, the last final message
  is the answer region), or the same with its special tokens dropped ("analysis…assistantfinal…").
- ``<|begin_of_solution|>…<|end_of_solution|>``: the last such block is the answer region; one never
  closed is the answer when the model stopped on its own, and no answer when the length limit cut it.

The final answer is searched only in the text *after* the reasoning: a number met inside the reasoning is
never an answer, and a block that never closed means the whole completion is reasoning (no answer:
``unclosed_think``, or ``truncated_in_reasoning`` with ``finish_reason="length"``; ``think_closed`` is
False). ``think_closed`` is True when a delimited block closed or a reasoning field was given.

Answer forms, in priority order (math):

- an ``<answer>…</answer>`` block (R1-style output): when there is one, only the last non-empty block
  is searched for the forms below, and its whole content is the answer when none is found;
- the LAST ``\\boxed{…}`` / ``\\fbox{…}`` (nested braces, ``\\boxed 5``);
- the last ``#### …`` line (GSM8K style);
- the last explicit answer marker: "The (final) answer is …", "Final answer: …", "**Answer:** 42",
  "Answer: 42", "ANSWER: 42", "\\text{Answer: } 42", "**Final Answer**" / "**Final Answer:**" with the answer
  on the next line (Gemini's "**Final Answer:**\\n$$ 65 $$") (to the end of the sentence or line; "$20." with
  no closing "$" is a dollar amount, not math);
- last resort: the single bold value on the last non-empty line ("She makes **$18** a day."), or a last line
  that is all bold and holds a value (gpt-oss finals: "**eight**", "**C**", "**D) $39**", "**x = -6, y = 6**";
  never a heading or a remark: "**Step 2**", "**Let me know!**"), else
  the one value of a closing sentence that starts with a conclusion word ("Therefore, Janet makes $18
  every day."; never one with two values, a question or a word that changes or doubts the value).

Empty and placeholder boxes (``\\boxed{}``, ``\\boxed{ANSWER}``, ``\\boxed{...}``, ``\\boxed{your answer}``)
are dropped first: they are format reminders, and never hide or contradict a later "#### 5" or
"The answer is 5". Within one form the LAST occurrence wins; a later, different answer after the
last box ("\\boxed{20}. Wait, actually the answer is 18.") is a hedge, not a correction.
"5 and 7" (two plain values) becomes the list "5, 7": never compared as 5. Two final answers with
different values and a second reading offered between them ("The answer is 199. Alternatively, if we
read the question differently, the answer is 200.") are a hedge; one value written twice in two forms
("\\boxed{x = 100}" … "\\boxed{100.0}") is not.

For code seeds (``domain="code"``): the last fenced code block; an unclosed fence at the end
counts only when the completion was not truncated.

Hedged answers ("either 18 or 20", "18 or 20", "\\boxed{18 \\text{ points} \\text{ or } 180\\ \\mathrm{points}}",
several different boxed answers after the reasoning) give ``answer=None`` with ``error="hedged_answer"``, and so
does a second reading offered from the final answer on: "(If instead the other reading is meant, then 10.)",
"…, the answer is seven; otherwise it is 8.", "(D), though A. $4,829 is also defensible". The same value again is
one answer: "18 (or eighteen)", "18 either way", "otherwise it is also 7", "we still get 18".

``split_reasoning(text, reasoning_field)`` gives the split itself, ``(reasoning, answer_region)``: the export
writes the teacher's own final (OpenThoughts' solution, gpt-oss's final message) from it.

Pure Python and regex; work on huge inputs is capped (only the last ``ANSWER_SCAN_CHARS``
characters after the reasoning are scanned for the answer), and nothing here raises on odd
input (bytes that are not UTF-8, lone surrogates, NULs, megabytes of text).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import NamedTuple

from factory.values import brace_end as _balanced
from factory.values import read_plain_value

__all__ = ["Parsed", "parse", "split_reasoning", "last_boxed", "is_placeholder", "ANSWER_SCAN_CHARS", "CODE_SCAN_CHARS"]

# only this many characters at the end of the answer region are scanned for the final answer
ANSWER_SCAN_CHARS = 32_768
# code answers are longer: the last fenced block is searched in this many characters
CODE_SCAN_CHARS = 262_144
# an extracted math answer longer than this is not a final answer (it is prose or garbage)
MAX_ANSWER_CHARS = 2_000
MAX_TAGGED_ANSWER_CHARS = 16_000  # what <answer>...</answer> may hold (reasoning-gym's move lists, grids)

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# errors
NO_ANSWER = "no_answer"
UNCLOSED_THINK = "unclosed_think"
# the length limit hit inside the reasoning: a <think> never closed, or a reasoning field with no answer after it
TRUNCATED_IN_REASONING = "truncated_in_reasoning"
HEDGED = "hedged_answer"
UNCLOSED_CODE = "unclosed_code_block"


@dataclass(frozen=True, slots=True)
class Parsed:
    reasoning: str | None
    answer: str | None
    think_closed: bool
    # "boxed" | "hashes" | "answer_is" | "bold" | "answer_tag" | "conclusion" | "final_block" | "code_block" | None
    answer_source: str | None
    truncated: bool
    error: str | None


# --------------------------------------------------------------------------- helpers

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_HASHES_RE = re.compile(r"(?m)^[ \t>*]*#{4}(?!#)[ \t]*(.*)$")
# explicit answer markers: "the (final) answer is", "Final answer:", "**Answer:** 42", "ANSWER: 42",
# "\text{Answer: } 42", "**Final Answer**" on its own line (the answer on the next line)
_ANSWER_IS_RE = re.compile(
    r"(?i)(?:\b(?:the\s+)?(?:final\s+|correct\s+)?answer\s+(?:is|would\s+be|will\s+be)\b\s*:?"
    r"|\b(?:final\s+)?answer\s*(?:\*\*|\})?\s*[:：](?:[ \t]*\})?[ \t]*(?:\*\*(?=[ \t]*\S))?"
    r"|\bfinal\s+answer[ \t]*(?:\*\*|\})?[ \t]*(?=\n))"
    r"[ \t]*"
)
# end of a prose answer: a newline, or a sentence end (., !, ?, ;) followed by space or end
_SENTENCE_END_RE = re.compile(r"\n|[.!?;](?=\s|$)")
_ALTERNATIVE_RE = re.compile(r"(?i)[ \t]*,?[ \t]*(?:or|and\s*/\s*or)\b")
_FENCE_RE = re.compile(r"(?m)^[ \t]*```")

_HEDGE_WORDS_RE = re.compile(
    r"(?i)\b(?:either(?!\s+way)|maybe|perhaps|possibly|probably|might\s+be|could\s+be|not\s+sure|unsure|"
    r"approximately\s+or)\b"
)
_OR_SPLIT_RE = re.compile(
    r"\s*(?:\\(?:text|textrm|textnormal|mathrm|mbox)\s*\{\s*or\s*\}|\bor\b|\\lor\b)\s*", re.I
)
# a "simple value": a number, fraction, short expression without relations
_SIMPLE_VALUE_RE = re.compile(
    r"""^\s*[-+−]?\s*(?:\\\$|\$)?\s*(?:
        \d[\d,]*(?:\.\d+)?                              # 18, 1,000, 3.5
      | \.\d+
      | \\[dt]?frac\s*\{[^{}]*\}\s*\{[^{}]*\}           # \frac{1}{2}
      | \\[dt]?frac\s*\d\s*\d                           # \frac12
      | \d+\s*/\s*\d+                                   # 1/2
      | [A-Za-z]                                        # a single letter / choice
      | \(\s*[A-Ea-e]\s*\)                              # (B)
      | \\sqrt\s*\{[^{}]*\}|\d*\s*\\pi
    )\s*(?:\\?%|\\circ|\^\s*\{?\\circ\}?|[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})?
      | (?:\\[,;:!\ ]\s*)*\\(?:text|textrm|mathrm|mbox)\s*\{[^{}]*\}   # 18 \text{ points}, 180\ \mathrm{points}
    )?\s*[.,]?\s*$""",
    re.X,
)


def _as_text(x) -> str:
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).decode("utf-8", errors="replace")
    try:
        return str(x)
    except Exception:  # noqa: BLE001 - a parser never raises on odd input
        return ""


_BOX_ARG_RE = re.compile(r"[ \t]*([^\s${}\\]+|\\[A-Za-z]+)")


def _boxed_all(s: str) -> list[str | None]:
    """Contents of every ``\\boxed``/``\\fbox`` in ``s``, in order (None: unbalanced)."""
    out: list[str | None] = []
    pos = 0
    while True:
        m = _BOX_RE.search(s, pos)
        if m is None:
            return out
        j = m.end()
        n = len(s)
        while j < n and s[j] in " \t":
            j += 1
        if j < n and s[j] == "{":
            end = _balanced(s, j)
            if end < 0:
                out.append(None)
                return out
            out.append(s[j + 1 : end - 1])
            pos = end
        else:
            # \boxed 5  /  \boxed5: one TeX token (a run of non-space characters here)
            a = _BOX_ARG_RE.match(s, m.end())
            if a is None:
                out.append(None)
                pos = m.end()
            else:
                out.append(a.group(1).rstrip(".,;"))
                pos = a.end()


# what prompts and templates put in a box to show the format: never an answer
_PLACEHOLDERS = frozenset({
    "", "answer", "your answer", "final answer", "your final answer", "the answer", "the final answer",
    "ans", "answer here", "your answer here", "...", "…", "\\ldots", "\\cdots", "\\dots", "?", "??", "???",
    "<answer>", "[answer]", "{answer}", "(answer)", "__", "___",
    "your_answer", "final_answer", "your result", "<your answer>",
})


def is_placeholder(content: str | None) -> bool:
    """True for a box that holds no answer: empty, ``ANSWER``, ``...``, ``your answer``, ``\\text{answer}``."""
    if content is None:
        return True
    c = content.strip().strip("$").strip()
    m = re.fullmatch(r"\\(?:text|textbf|mathrm|mathbf|textit|mbox)\s*\{(.*)\}", c, re.S)
    if m:
        c = m.group(1).strip()
    c = re.sub(r"\s+", " ", c).lower().strip(" :")
    return c in _PLACEHOLDERS


def last_boxed(text: str) -> str | None:
    """Content of the LAST non-empty, non-placeholder ``\\boxed{…}`` / ``\\fbox{…}`` in ``text``.

    Nested braces are matched (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); ``\\boxed 5`` (one
    token) counts. Empty boxes and format placeholders (``\\boxed{}``, ``\\boxed{ANSWER}``,
    ``\\boxed{...}``, ``\\boxed{your answer}``) are skipped, and so is a box cut off by the end of
    the text. None when no box holds an answer. The content is returned as written (stripped).
    Never raises.
    """
    try:
        s = _as_text(text)
        for c in reversed(_boxed_all(s)):
            if c is not None and not is_placeholder(c):
                return c.strip()
    except Exception:  # noqa: BLE001 - a parser never raises on odd input
        pass
    return None


_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"))


def _strip_answer(a: str) -> str:
    a = a.strip()
    for _ in range(4):
        before = a
        a = a.strip().rstrip(".;,").strip()
        if a.endswith("$") and not a.endswith("\\$") and a.count("$") % 2:  # "$\text{Answer: } 42$"
            a = a[:-1].strip()
        if a.startswith("**") != a.endswith("**"):  # a bold marker cut by the sentence end
            a = a.strip("*").strip()
        for lo, hi in _WRAPPERS:
            if len(a) >= len(lo) + len(hi) and a.startswith(lo) and a.endswith(hi):
                a = a[len(lo) : len(a) - len(hi)].strip()
        # a boxed inside the answer (nested \boxed{\boxed{5}}, or "$\boxed{5}$")
        if a.startswith(("\\boxed", "\\fbox")):
            inner = _boxed_all(a)
            if len(inner) == 1 and inner[0] is not None:
                m = _BOX_RE.match(a)
                # only when the box spans the whole answer
                rest = a[m.end():].strip()
                if rest.startswith("{") and _balanced(rest, 0) == len(rest):
                    a = inner[0].strip()
        if a == before:
            break
    return a


def _norm_key(a: str) -> str:
    """A key to tell whether two final answers are 'the same': one value written twice in two forms
    ("x = 100" / "100.0", "3470_{9}" / "3470_9", "18\\,\\text{fruits}" / "\\text{18 fruits}") has one key."""
    v = read_plain_value(_strip_answer(a))
    if v is not None and v.kind == "number":  # "52\\%" and "52.0" are one answer written twice
        return f"={v.value}"
    if v is not None and v.kind in ("base", "clock", "choice"):
        return f"={v.kind}:{v.key}"
    a = _strip_answer(a)
    a = re.sub(r"^[A-Za-z]\s*=\s*(?!=)", "", a)
    a = re.sub(r"^\\(?:text|textbf|mathrm|mbox)\s*\{(.*)\}$", r"\1", a)
    a = a.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    a = re.sub(r"\\left|\\right|\\[,;:! ]|\s+|\\?\$|\{,\}", "", a)
    # the same value written twice: "\$18" / "18", "1,000" / "1000", "30^\circ" / "30", "12\text{ cm}" / "12"
    a = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", a)
    a = re.sub(r"(?<=[\d}])(?:\\(?:text|mbox|mathrm)\{[^{}]*\}(?:\^\{?[23]\}?)?|\^\{?\\circ\}?|°)$", "", a)
    a = re.sub(r"(?<=\d)\.0+$", "", a)
    return a.rstrip(".")


# "30 (or 3.0 if the problem means …)", "$\frac{14}{3}$ (if we include the first case) / …"
_CONDITIONAL_RE = re.compile(r"(?i)\(\s*(?:or|if|assuming|depending|unless)\b|\bif\s+(?:we|the|you|it|one)\b"
                             r"|\bdepending\s+on\b")


def _hedged(a: str) -> bool:
    if _HEDGE_WORDS_RE.search(a) or _CONDITIONAL_RE.search(a):
        return True
    if "or" not in a.lower() and "\\lor" not in a:
        return False
    parts = [p for p in _OR_SPLIT_RE.split(a) if p.strip()]
    if len(parts) < 2:
        return False
    # "x < -2 or x > 3" is a solution set, not a hedge; "18 or 20" is a hedge
    return all(_SIMPLE_VALUE_RE.match(p) for p in parts)


_CURRENCY_DOLLAR_RE = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?(?![\d^_{}\\])")


def _is_currency(rest: str) -> bool:
    """``rest`` starts with a ``$`` that is a dollar sign: ``$20.`` with no closing ``$`` on the line,
    or ``$5 and $7`` (the next ``$`` opens another amount)."""
    if not rest.startswith("$") or rest.startswith("$$"):
        return False
    m = _CURRENCY_DOLLAR_RE.match(rest)
    if m is None:
        return False
    line = rest[1:].split("\n", 1)[0]
    k = line.find("$")
    if k < 0:
        return True
    # "$5$" is math; "$5 and $7" / "$5, or $7" is two amounts
    between = line[:k]
    after = line[k + 1:]
    return bool(re.search(r"[A-Za-z]{2,}|,\s", between)) or bool(re.match(r"\s?\d", after))


_AND_SPLIT_RE = re.compile(r"\s*(?:,\s*)?(?:\band\b|\\text\s*\{\s*and\s*\}|&)\s*")


def _and_list(a: str) -> str:
    """``5 and 7`` / ``$5 and $7`` -> ``5, 7``: a list of values, compared as a list (never as 5)."""
    if "and" not in a:
        return a
    parts = [p for p in _AND_SPLIT_RE.split(a) if p.strip()]
    if len(parts) >= 2 and all(_SIMPLE_VALUE_RE.match(p) and not re.search(r"[A-Za-z]{2,}", p) for p in parts):
        return ", ".join(p.strip().strip(".,") for p in parts)
    return a


def _find_closing(s: str, hi: str, start: int) -> int:
    """Index of the closing delimiter ``hi`` at or after ``start``; an escaped ``\\$`` is not one."""
    k = s.find(hi, start)
    while hi.startswith("$") and k > 0 and s[k - 1] == "\\":
        k = s.find(hi, k + 1)
    return k


# words that change or doubt the one value in a sentence ("12 fewer than", "not 6", "3 or 4")
_PROSE_DOUBT_RE = re.compile(
    r"(?i)\b(?:not|no|never|fewer|less|more|than|except|instead|wrong|incorrect|approximately|about|around|"
    r"roughly|nearly|almost|between|plus|minus|divided|multiplied|times|if|unless|or|and|but|maybe|perhaps|"
    # words that make another value of the one written: "half of 144", "twice 9", "the square of 4", "5 per box"
    r"half|halves|twice|double|doubled|triple|tripled|thrice|thirds?|quarters?|fourths?|fifths?|tenths?|"
    r"percent|of|per|each|squared|cubed|(?:square|cube)\s+(?:of|root)|roots?|sum|product|difference|quotient|"
    r"remainder|digits?|ratio)\b"
)
_TOTAL_OF_RE = re.compile(r"(?i)\b(?:a\s+)?total\s+of\b|\bout\s+of\b")
_MATH_SPAN_RE = re.compile(r"(?<!\\)\$([^$]+)(?<!\\)\$|\\\((.+?)\\\)")
_PROSE_NUMBER_RE = re.compile(r"(?<![\w.,])[-−]?(?:\\?\$)?\d[\d,]*(?:\.\d+)?(?:\\?%)?(?![\w])")


def _value_in_prose(a: str, prose_only: bool = True) -> str:
    """"The probability is $\\frac{3}{8}$" -> "\\frac{3}{8}"; "she has 12 marbles left" -> "12".

    Only for a sentence that starts with a word and holds exactly ONE value (one math span, or one
    number and no math) and no word that changes or doubts it; anything else is returned as is.
    """
    a = re.sub(r"(?i)^(?:a\s+)?total\s+of\s+", "", a.strip())  # "a total of 12 marbles"
    if (prose_only and not re.match(r"[A-Za-z]{2,}\s", a)) or _PROSE_DOUBT_RE.search(_TOTAL_OF_RE.sub(" ", a)):  # "B) 42": a choice
        return a
    spans = list(_MATH_SPAN_RE.finditer(a))
    if spans:
        if len(spans) == 1:
            rest = a[: spans[0].start()] + a[spans[0].end():]
            if not re.search(r"\d", rest):
                return (spans[0].group(1) or spans[0].group(2)).strip()
        return a
    if re.search(r"[=+*/^\\{}]", a.replace("\\$", "").replace("\\%", "")):
        return a
    nums = _PROSE_NUMBER_RE.findall(a.rstrip("."))
    return nums[0].rstrip(",") if len(nums) == 1 else a


_BOLD_RE = re.compile(r"\*\*([^*\n]{1,60})\*\*")
# a last line that is one bold span and nothing else ("**eight**", "**C**"): how gpt-oss ends its final message
_BOLD_LINE_RE = re.compile(r"^\*\*([^*\n]{1,80})\*\*[ \t]*[.!]?$")
# a choice on a bold line of its own: "C", "(B)", "D. 4", "D) $39", "Option 2" (never "A bit more")
_BOLD_CHOICE_RE = re.compile(r"^(?:[A-J]|\([A-J]\)(?:\s+\S.{0,40})?|[A-J][.:)]\s+\S.{0,40}"
                             r"|(?i:option|choice)\s+(?:[A-J]|\d{1,2}))$")
_BOLD_BOOL_RE = re.compile(r"(?i)^(?:yes|no|true|false)$")
# maths on a bold line: a digit or a maths sign, and no word of three letters or more ("**Step 2**", "**Case 3**")
_MATH_SIGN_RE = re.compile(r"[\d√∛π∞∈∉≤≥≠±∓=<>^_{}\\⅐-⅞½¼¾∪∩]")
_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")


def _bold_line_value(line: str) -> str | None:
    """The value of a last line that is a bold span and nothing else: a number (also in words), a choice,
    yes / no, or maths without prose; None for a heading or a remark ("**Step 2**", "**Let me know!**")."""
    m = _BOLD_LINE_RE.match(line.strip())
    if m is None:
        return None
    v = m.group(1).strip().rstrip(".").strip()
    if not v or v.endswith(":"):
        return None
    if _BOLD_CHOICE_RE.match(v) or _BOLD_BOOL_RE.match(v):
        return v
    if _MATH_SIGN_RE.search(v):
        return None if re.search(r"[A-Za-z]{3,}", _LATEX_COMMAND_RE.sub(" ", v)) else v
    if re.fullmatch(r"[A-Za-z][A-Za-z \-]*", v):  # "eight", "one hundred", "twenty-five"
        pv = read_plain_value(v)
        return v if pv is not None and pv.kind == "number" and not pv.unit else None
    return None


def _bold_last_line(region: str) -> str | None:
    """Last resort: the one bold value on the last non-empty line ("Janet makes **$18** a day."), or a last
    line that is all bold and holds a value ("**eight**", "**C**", "**x = -6, y = 6**")."""
    lines = [ln for ln in region.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    whole = _bold_line_value(lines[-1])
    if whole is not None:
        return whole
    spans = _BOLD_RE.findall(lines[-1])
    if len(spans) != 1:
        return None
    value = spans[0].strip().rstrip(".")
    return value if _SIMPLE_VALUE_RE.match(value) and re.search(r"\d", value) else None


_CONCLUSION_RE = re.compile(r"(?i)^(?:therefore|thus|so|hence|in\s+total|altogether|in\s+conclusion|finally)\b[,:]?\s+")


def _conclusion(region: str) -> str | None:
    """Last resort: the one value of a closing sentence that starts with a conclusion word
    ("Therefore, Janet makes $18 every day."); never a sentence with two values or a doubt."""
    lines = [ln.strip() for ln in region.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", lines[-1]) if x.strip()]
    last = sentences[-1] if sentences else ""
    if not _CONCLUSION_RE.match(last) or len(last) > 300 or "?" in last:
        return None
    body = _CONCLUSION_RE.sub("", last, count=1).rstrip(".").strip()
    value = _value_in_prose(body, prose_only=False)
    return value if value != body or _SIMPLE_VALUE_RE.match(value) else None


def _answer_is(region: str) -> str | None:
    last = None
    for m in _ANSWER_IS_RE.finditer(region):
        last = m
    if last is None:
        return None
    return _answer_after(region[last.end():])


def _answer_after(rest: str) -> str | None:
    """The value that follows an answer marker, to the end of its sentence or math span."""
    rest = rest.lstrip(" \t")
    if rest.startswith("\n"):
        # "The final answer is:\n\n42"
        rest = rest.lstrip()
    if not rest:
        return None
    # math delimiters first: the sentence end may be inside them
    if rest.startswith("**"):
        rest = rest[2:].lstrip(" \t")
        if rest.startswith("\n"):  # Gemini: "**Final Answer:**\n$$ 65 $$", the answer on the next line
            rest = rest.lstrip()
            if rest.startswith("**"):  # "**Final Answer:**\n**42**"
                rest = rest[2:].lstrip(" \t")
    if rest.startswith("}"):  # "\text{Answer: } 42"
        rest = rest[1:].lstrip(" \t")
    if _is_currency(rest):  # "The answer is $20." / "costs $5 and $7": a dollar sign, not math
        m = _SENTENCE_END_RE.search(rest)
        return rest[: m.start()] if m else rest
    for lo, hi in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(lo):
            k = _find_closing(rest, hi, len(lo))
            if k < 0:
                return None  # unclosed math: truncated or garbage
            after = rest[k + len(hi):]
            line = after.split("\n", 1)[0]
            if _CONDITIONAL_RE.search(line) or re.match(r"\s*/\s*\$", line):
                # "$\frac{14}{3}$ (if we include …) / $5$ (if not)": a conditional answer, to the hedge check
                return (rest[len(lo):k] + " " + line).replace("$", " ")
            if _ALTERNATIVE_RE.match(after):
                # "$18$ or $20$": the whole sentence, delimiters dropped, goes to the hedge check
                m = _SENTENCE_END_RE.search(after)
                whole = rest[len(lo):k] + (after[: m.start()] if m else after)
                return whole.replace("$", " ").replace("\\(", " ").replace("\\)", " ")
            return rest[len(lo):k].strip()
    m = _SENTENCE_END_RE.search(rest)
    ans = rest[: m.start()] if m else rest
    return ans


# "#### Step 2: …" / "#### Final Answer" are markdown headings, not GSM8K answers
_HEADING_RE = re.compile(r"^[A-Za-z]{2,}")


def _hashes(region: str) -> str | None:
    last = None
    for m in _HASHES_RE.finditer(region):
        c = m.group(1).strip()
        if c and (not _HEADING_RE.match(c) or c.strip("*. ").lower() in _BOOL_WORDS):
            last = c
    return last


_BOOL_WORDS = {"true", "false", "yes", "no"}


def _last_code_block(region: str, truncated: bool) -> tuple[str | None, str | None]:
    """(code, error) for the last fenced block in ``region``."""
    fences = [m for m in _FENCE_RE.finditer(region)]
    last_closed: str | None = None
    open_at: int | None = None
    for m in fences:
        if open_at is None:
            open_at = m.end()
        else:
            body = region[open_at:m.start()]
            # drop the info string ("python") on the opening line
            nl = body.find("\n")
            last_closed = body[nl + 1 :] if nl >= 0 else ""
            open_at = None
    if open_at is not None:
        if truncated:
            return None, UNCLOSED_CODE
        body = region[open_at:]
        nl = body.find("\n")
        code = body[nl + 1 :] if nl >= 0 else ""
        if code.strip():
            return code.rstrip() + "\n", None
        # an empty fence opened at the very end: the last closed block is the answer
    if last_closed is not None and last_closed.strip():
        return last_closed.rstrip() + "\n", None
    return None, NO_ANSWER


def _drop_placeholder_boxes(s: str) -> str:
    """``s`` without its empty/placeholder boxes: a format reminder ("put it in \\boxed{}") is not
    an answer, and must neither hide nor contradict a later "The answer is 5" or "#### 5"."""
    out: list[str] = []
    pos = 0
    for m in _BOX_RE.finditer(s):
        if m.start() < pos:
            continue
        j = m.end()
        while j < len(s) and s[j] in " \t":
            j += 1
        if j < len(s) and s[j] == "{":
            end = _balanced(s, j)
            if end < 0:  # cut off: nothing after it closes either (as _boxed_all)
                break
            if is_placeholder(s[j + 1 : end - 1]):
                out.append(s[pos : m.start()])
                pos = end
    if not out:
        return s
    out.append(s[pos:])
    return "".join(out)


_ANSWER_TAG_RE = re.compile(r"(?is)<answer>(.*?)(?:</answer>|$)")
# a second reading offered after a first final answer: "The answer is 199. Alternatively, … the answer is 200."
_ALTERNATIVE_READING_RE = re.compile(
    r"(?i)\b(?:alternatively|another\s+(?:interpretation|reading|possibility|possible\s+answer)"
    r"|(?:read|interpret)\w*\s+(?:it|this|that|the\s+(?:question|problem|wording))\s+(?:differently|otherwise)"
    r"|on\s+the\s+other\s+hand|if\s+instead|otherwise|could\s+also\s+be|might\s+also\s+be|or\s+possibly)\b"
)


def _answer_tag(region: str, truncated: bool) -> tuple[bool, str | None]:
    """(found, content) of the last non-empty ``<answer>…</answer>`` (R1-style output). An unclosed tag
    counts only when the completion ended on its own; empty or placeholder tags are format reminders."""
    if "<answer>" not in region.lower():
        return False, None
    found = None
    for m in _ANSWER_TAG_RE.finditer(region):
        body = m.group(1)
        closed = m.group(0).lower().endswith("</answer>")
        if body.strip() and not is_placeholder(body.strip()) and body.strip().lower() != "answer":
            found = body if (closed or not truncated) else None
    return found is not None, found


def _statements(scan: str) -> list[tuple[int, str]]:
    """(position, value) of every explicit final-answer statement: boxes, "####" lines, answer markers."""
    out: list[tuple[int, str]] = []
    for m in _BOX_RE.finditer(scan):
        j = m.end()
        while j < len(scan) and scan[j] in " \t":
            j += 1
        if j < len(scan) and scan[j] == "{":
            end = _balanced(scan, j)
            if end > 0 and not is_placeholder(scan[j + 1:end - 1]):
                out.append((m.start(), scan[j + 1:end - 1]))
    for m in _HASHES_RE.finditer(scan):
        c = m.group(1).strip()
        if c and (not _HEADING_RE.match(c) or c.strip("*. ").lower() in _BOOL_WORDS):
            out.append((m.start(), c))
    for m in _ANSWER_IS_RE.finditer(scan):
        v = _answer_after(scan[m.end():])
        if v and _is_value(v):
            out.append((m.start(), v))
    return sorted(out)


_LETTER_OR_BOOL_RE = re.compile(r"(?i)^\W*(?:\(?[A-J]\)|[A-J]|true|false|yes|no)\W*(?:\s.*)?$", re.S)


def _is_value(a: str) -> bool:
    """Does a later "the answer is …" state a value (a number, math, a choice letter, a yes/no) rather
    than prose ("… so our answer is correct")?"""
    a = a.strip()
    return bool(re.search(r"[\d\\]", a)) or bool(_LETTER_OR_BOOL_RE.match(a[:40])) and len(a) < 80


# "**Final Answer**", "### Final Answer", "Final answer:", "The final answer is": what follows is the answer
_FINAL_MARKER_RE = re.compile(r"(?i)(?:^|\n)[ \t>#*]*final\s+answer\b|\bthe\s+final\s+answer\s+(?:is|would\s+be)\b")


def _after_final_marker(scan: str) -> str:
    """The text from the last explicit final-answer marker on, when an answer follows it: drafts boxed
    before it are reasoning ("My first attempt gives \\boxed{40}. … **Final Answer** \\boxed{70}")."""
    last = None
    for m in _FINAL_MARKER_RE.finditer(scan):
        last = m
    if last is None or last.start() == 0:
        return scan
    tail = scan[last.start():]
    has_answer = (("\\boxed" in tail or "\\fbox" in tail) and _boxed_all(tail)) or _answer_is(tail) or _hashes(tail)
    if not has_answer:
        after = tail[last.end() - last.start():].strip(" \t*:#\n")
        has_answer = bool(after)
    return tail if has_answer else scan


# a second reading offered after the final answer, in its sentence or the next ones: "(If instead the other
# reading is meant, then 10.)", "…, the answer is seven; otherwise it is 8."
_SECOND_READING_RE = re.compile(
    r"(?i)\bif\s+(?:instead\b|(?:the\s+)?(?:other|alternative|second|another)\s+(?:reading|interpretation|meaning)\b"
    r"|[^.;\n]{0,80}?\b(?:is|are|was|were)\s+(?:meant|intended|interpreted)\b"
    r"|(?:you|we|one)\s+(?:mean|meant|intend|intended|interpret|interpreted)\b)"
    r"|\botherwise\b|\b(?:under|with|on)\s+the\s+other\s+(?:reading|interpretation)\b"
)
# what introduces the other reading's value ("then 10", "the answer would be 14", "it is 8", "we still get 18")
_SECOND_VALUE_RE = re.compile(
    r"(?i)(?:\bthen\b,?|\banswer\s+(?:is|would\s+be|becomes)\b:?|\bit\s+(?:is|would\s+be|becomes)\b|\bit's\b"
    r"|\bwe\s+(?:would\s+)?(?:still\s+)?(?:get|have)\b)[ \t]*(?:(?:also|still|instead)[ \t]+)?"
)
_CLAUSE_END_RE = re.compile(r"\n\s*\n|[.!?;](?=\s|$)|\)\s*$")
# "though (B) is also defensible": a second answer the model will not rule out
_ALSO_DEFENSIBLE_RE = re.compile(
    r"(?i)\b(?:is|are|seems?|would\s+be)\s+(?:also|equally)\s+(?:defensible|arguable|plausible|possible)\b"
    r"|\b(?:also|equally)\s+(?:defensible|arguable|plausible)\b"
)
_CLAUSE_START_RE = re.compile(r"(?i)[,;(]|\b(?:though|although|but|while)\b")


def _second_reading(tail: str, answer: str) -> bool:
    """Does the text from the final answer on offer a second reading with another value ("(If instead the other
    reading is meant, then 10.)", "; otherwise it is 8", "though (B) is also defensible")? The same value again
    ("otherwise it is also 7", "we still get 18") is no second reading, and neither is a remark with no value."""
    key = None
    for m in _SECOND_READING_RE.finditer(tail):
        clause = tail[m.end():]
        e = _CLAUSE_END_RE.search(clause)
        clause = clause[: e.start()] if e else clause[:300]
        v = _SECOND_VALUE_RE.search(clause)
        if v is None:
            continue
        other = _answer_after(tail[m.end() + v.end():])
        if not other:
            continue
        other = _strip_answer(other.rstrip(").").strip()).rstrip(")").strip()
        if not other or not (_is_value(other) or read_plain_value(other) is not None):
            continue
        key = key if key is not None else _norm_key(answer)
        if _norm_key(other) != key:
            return True
    for m in _ALSO_DEFENSIBLE_RE.finditer(tail):
        before = tail[max(0, m.start() - 120): m.start()]
        starts = list(_CLAUSE_START_RE.finditer(before))
        subject = before[starts[-1].end():] if starts else before
        if re.search(r"\d|\(\s*[A-J]\s*\)|\b[A-J]\b", subject):  # a value or a choice, not "a different approach"
            return True
    return False


# "18 (or eighteen)": the same value written twice is one answer; "18 either way": one answer for both readings
_SAME_VALUE_ASIDE_RE = re.compile(r"(?i)^(.*?\S)\s*\(\s*or\s+([^()]{1,60})\)\s*$", re.S)
_EITHER_WAY_RE = re.compile(r"(?i)[,\s]*\b(?:either\s+way|in\s+(?:either|both)\s+cases?)$")


def _drop_asides(a: str) -> str:
    if " way" in a or " case" in a:
        a = _EITHER_WAY_RE.sub("", a) or a
    if "(" in a and a.endswith(")"):
        m = _SAME_VALUE_ASIDE_RE.match(a)
        if m and _norm_key(m.group(1)) == _norm_key(m.group(2)):
            return m.group(1)
    return a


# words without which no second reading is offered: a cheap test before the regexes (parse runs very often)
_SECOND_READING_WORDS = ("if ", "if\n", "otherwise", "other reading", "other interpretation", "also ", "equally ")


def _may_offer_second_reading(scan: str) -> bool:
    low = scan.lower()
    return any(w in low for w in _SECOND_READING_WORDS)


def _statement_start(scan: str, source: str | None) -> int:
    """Where the final answer's statement starts in ``scan`` (its box, "####", answer marker or last line)."""
    if source == "boxed":
        return max(scan.rfind("\\boxed"), scan.rfind("\\fbox"), 0)
    rx = {"hashes": _HASHES_RE, "answer_is": _ANSWER_IS_RE}.get(source or "")
    if rx is not None:
        last = None
        for last in rx.finditer(scan):
            pass
        return last.start() if last else 0
    if source in ("bold", "conclusion"):
        return scan.rstrip().rfind("\n") + 1
    return 0


def _offers_alternatives(scan: str) -> bool:
    """Two final answers with different values, a second reading offered between them."""
    if not _ALTERNATIVE_READING_RE.search(scan):
        return False
    said = _statements(scan)
    for (p1, a1), (p2, a2) in zip(said, said[1:]):
        if _norm_key(a1) != _norm_key(a2) and _ALTERNATIVE_READING_RE.search(scan, p1, p2):
            return True
    return False


# --------------------------------------------------------------------------- reasoning delimiters

# special tokens of reasoning models (never written in plain prose or code): like <think>, they count
# anywhere, and a lone closing token means the chat template opened the block in the prompt
_TOKEN_BLOCKS = (
    (THINK_OPEN, THINK_CLOSE),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),  # OpenThoughts / Bespoke-Stratos / OpenThinker
    ("[THINK]", "[/THINK]"),  # Magistral / Mistral
    ("<seed:think>", "</seed:think>"),  # Seed-OSS
    ("◁think▷", "◁/think▷"),  # Kimi k1.5 / Kimi-VL-Thinking
)
# plain words an answer may well contain ("```xml\n<thinking>"): a reasoning block only when the
# completion STARTS with the opening tag (after whitespace)
_WORD_BLOCKS = (("<thinking>", "</thinking>"), ("<thought>", "</thought>"), ("<reasoning>", "</reasoning>"))
SOLUTION_OPEN = "<|begin_of_solution|>"
SOLUTION_CLOSE = "<|end_of_solution|>"
# Seed-OSS's budget notes ("I have used 129 tokens, …") hold numbers that are no answer
_SEED_BUDGET_RE = re.compile(r"(?s)<seed:cot_budget_reflect>.*?(?:</seed:cot_budget_reflect>|$)")
# gpt-oss harmony: "<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…"
# the header may hold a recipient and a constraint: "<|channel|>commentary to=functions.f <|constrain|>json<|message|>"
_HARMONY_HEADER_RE = re.compile(
    r"<\|channel\|>[ \t]*(\w+)(?:(?!<\|(?:message|channel)\|>).){0,300}?<\|message\|>", re.S)
_HARMONY_END_RE = re.compile(r"<\|(end|return|call|start|channel)\|>")
# the same with the special tokens dropped by the server: "analysisWe need … assistantfinalThe answer is 42."
_BARE_HARMONY_RE = re.compile(r"\s*(?:<\|start\|>)?(?:assistant)?analysis")
_BARE_HARMONY_FINAL = "assistantfinal"
_BARE_HARMONY_SWITCH_RE = re.compile(r"assistant(?:analysis|commentary)")
# a later word tag opens a block only where a sentence or a line may start ("3.<thinking>no wait"), never
# mid-sentence ("we use the <thinking> tag")
_AT_SENTENCE_START_RE = re.compile(r"(?:^|[\n.!?:])[ \t]*$")
_CANDIDATES_TRIED = 1_000  # closing tags tried from the end (a megabyte of "</thinking>" stays fast)


class _Block(NamedTuple):  # a tuple: parse runs tens of thousands of times a second
    """Where the reasoning ends: ``reasoning`` (its text, "" when none), ``closed`` (a delimited block was
    closed), ``region`` (where the final answer may be; None when the reasoning never closed), ``final`` (the
    region is a message that holds only the answer: a harmony final message)."""
    reasoning: str
    closed: bool
    region: str | None
    final: bool = False


def _token_block(text: str, op_tag: str, cl_tag: str) -> _Block | None:
    """The ``<think>`` rules for one pair of special tokens: the block ends at the LAST closing token
    (an opening one before it is optional: the template may have opened it); an opening token after
    that means a block that never closed. None when neither token is in ``text``."""
    close = text.rfind(cl_tag)
    inner, region = "", text
    if close >= 0:
        head = text[:close]
        op = head.find(op_tag)
        inner = head[op + len(op_tag):] if op >= 0 else head
        inner = inner.replace(op_tag, "").replace(cl_tag, "").strip()
        region = text[close + len(cl_tag):]
    op = region.find(op_tag)
    if op >= 0:
        tail = region[op + len(op_tag):].strip()
        return _Block("\n".join(x for x in (inner, tail) if x), False, None)
    if close < 0:
        return None
    return _Block(inner, True, region)


def _in_code(s: str, i: int, fences_after: int) -> bool:
    """Is ``s[i]`` inside a fenced block (an odd number of fences after it: the end of a completion is
    outside code, while an unclosed fence in the reasoning would flip a count from the start) or inside
    an inline `code` span on its line?"""
    if fences_after % 2:
        return True
    line_start = s.rfind("\n", max(0, i - 2_000), i) + 1
    return s.count("`", max(line_start, i - 2_000), i) % 2 == 1


def _word_block(s: str, op_tag: str, cl_tag: str) -> _Block:
    """A block opened by ``op_tag`` at the start of ``s``: it ends at the last closing tag outside code
    (a literal ``</thinking>`` inside the answer's code is not one); an opening tag after it, outside
    code and where a sentence starts, is a second block that never closed."""
    fences = [m.start() for m in _FENCE_RE.finditer(s)]

    def fences_after(i: int) -> int:
        return len(fences) - bisect_left(fences, i)

    start = len(op_tag)
    close = -1
    k = len(s)
    for _ in range(_CANDIDATES_TRIED):
        k = s.rfind(cl_tag, start, k)
        if k < 0:
            break
        if not _in_code(s, k, fences_after(k)):
            close = k
            break
    if close < 0:  # every closing tag is in code (an unclosed fence in the reasoning): the last one, as <think>
        close = s.rfind(cl_tag, start)
    if close < 0:
        return _Block(s[start:].replace(op_tag, "").strip(), False, None)
    inner = s[start:close].replace(op_tag, "").replace(cl_tag, "").strip()
    region = s[close + len(cl_tag):]
    pos = 0
    for _ in range(_CANDIDATES_TRIED):
        op = region.find(op_tag, pos)
        if op < 0:
            break
        at = close + len(cl_tag) + op
        if _AT_SENTENCE_START_RE.search(region, max(0, op - 200), op) and not _in_code(s, at, fences_after(at)):
            tail = region[op + len(op_tag):].strip()
            return _Block("\n".join(x for x in (inner, tail) if x), False, None)
        pos = op + len(op_tag)
    return _Block(inner, True, region)


def _harmony_block(text: str) -> _Block | None:
    """gpt-oss harmony messages: the analysis (and commentary) channels are reasoning, the last final
    message is the answer region. A message with no end token at the end of the text is unclosed."""
    msgs: list[tuple[str, str, bool]] = []  # (channel, body, closed)
    pos = 0
    while True:
        m = _HARMONY_HEADER_RE.search(text, pos)
        if m is None:
            break
        e = _HARMONY_END_RE.search(text, m.end())
        body = text[m.end(): e.start() if e else len(text)]
        msgs.append((m.group(1).lower(), body, e is not None))
        if e is None:
            break
        pos = e.end() if e.group(1) in ("end", "return", "call") else e.start()
    if not msgs:
        return None
    thought = "\n".join(b.strip() for c, b, _ in msgs if c != "final" and b.strip())
    channel, body, closed = msgs[-1]
    if channel == "final":
        before = "\n".join(b.strip() for _, b, _ in msgs[:-1] if b.strip())
        return _Block(before, any(c != "final" for c, _, _ in msgs[:-1]), body, True)
    return _Block(thought, True, "") if closed else _Block(thought, False, None)


def _bare_harmony_block(text: str) -> _Block | None:
    """Harmony with its special tokens dropped: "analysis…assistantfinal…" (both words needed)."""
    m = _BARE_HARMONY_RE.match(text) if "analysis" in text[:40] else None
    if m is None:
        return None
    k = text.rfind(_BARE_HARMONY_FINAL)
    if k < m.end():
        return None
    thought = _BARE_HARMONY_SWITCH_RE.sub("\n", text[m.end():k]).strip()
    return _Block(thought, True, text[k + len(_BARE_HARMONY_FINAL):], True)


def _reasoning_block(text: str) -> _Block | None:
    """The reasoning block of a completion in any delimiter family (None: no delimiter, plain text)."""
    s = text.lstrip()
    for op_tag, cl_tag in _WORD_BLOCKS:
        if s.startswith(op_tag):
            b = _word_block(s, op_tag, cl_tag)
            if b.region is None and THINK_CLOSE in s:  # "<thinking> … </think>": a mismatched close still closes
                return _token_block(s[len(op_tag):], THINK_OPEN, THINK_CLOSE)
            return b
    b = _bare_harmony_block(s)
    if b is not None:
        return b
    # no special token at all: a few scans, not one per family
    if not ("think>" in text or "<|" in text or "THINK]" in text or "think▷" in text):
        return None
    # the family met first in the text ("<think>" of R1, a template's lone closing token, a harmony header):
    # delimiters of another family quoted inside its reasoning are text
    first, pair = len(text) + 1, None
    for op_tag, cl_tag in _TOKEN_BLOCKS:
        for tag in (op_tag, cl_tag):
            k = text.find(tag, 0, first)
            if 0 <= k < first:
                first, pair = k, (op_tag, cl_tag)
    k = text.find("<|channel|>", 0, first)
    if k >= 0 and "<|message|>" in text:
        b = _harmony_block(text)
        if b is not None:
            return b
    if pair is None:
        return None
    b = _token_block(text, *pair)
    if b is not None and b.region is None and pair[0] == "<|begin_of_thought|>":
        # "<|begin_of_thought|> … <|begin_of_solution|>": the solution opens where the thought forgot to close
        k = text.find(SOLUTION_OPEN, first)
        if k >= 0:
            return _Block(text[first:k].replace(pair[0], "").replace(pair[1], "").strip(), True, text[k:])
    return b


def _answer_region(region: str, truncated: bool) -> str | None:
    """The answer region without format tokens: the last ``<|begin_of_solution|>`` block when there is
    one (None: it was cut off by the length limit), Seed-OSS budget notes dropped."""
    if "<seed:cot_budget_reflect>" in region:
        region = _SEED_BUDGET_RE.sub("", region)
    if "_of_solution|>" not in region:
        return region
    k = region.rfind(SOLUTION_OPEN)
    if k < 0:
        return region.replace(SOLUTION_CLOSE, "") if SOLUTION_CLOSE in region else region
    body = region[k + len(SOLUTION_OPEN):]
    e = body.find(SOLUTION_CLOSE)
    if e >= 0:
        return body[:e]
    return None if truncated else body


# --------------------------------------------------------------------------- parse


def parse(
    text: str | None,
    reasoning_field: str | None = None,
    domain: str = "math",
    finish_reason: str | None = None,
) -> Parsed:
    """Split a completion into reasoning and final answer; never raises on odd input."""
    try:
        return _parse(text, reasoning_field, domain, finish_reason)
    except Exception as e:  # noqa: BLE001 - defensive: a parser bug must not stop a run
        return Parsed(None, None, False, None, finish_reason == "length", f"parse_error: {type(e).__name__}")


class _Split(NamedTuple):
    """A completion split as parse reads it: ``region`` is where the final answer may be (None: there is none,
    ``error`` says why), ``final_block`` says it is a message or block that holds only the answer."""
    reasoning: str | None
    think_closed: bool
    region: str | None
    final_block: bool
    error: str | None


def _split(text: str, field: str, truncated: bool) -> _Split:
    reasoning: str | None = None
    think_closed = False
    region = text  # where the final answer may be

    if field.strip():
        reasoning = field
        think_closed = True

    block = _reasoning_block(text)
    if block is not None:
        # "" (not None): a delimited block that holds nothing is still a block (split_reasoning tells them apart)
        reasoning = "\n".join(x for x in (field if field.strip() else "", block.reasoning) if x)
        if block.region is None:  # an opening delimiter (<think>, [THINK], …) never closed: no answer
            return _Split(reasoning, False, None, False, TRUNCATED_IN_REASONING if truncated else UNCLOSED_THINK)
        think_closed = think_closed or block.closed
        region = block.region
    if truncated and reasoning and not region.strip():  # cut off before any answer began
        return _Split(reasoning, False, None, False, TRUNCATED_IN_REASONING)
    narrowed = _answer_region(region, truncated)
    if narrowed is None:  # a <|begin_of_solution|> cut off by the length limit
        return _Split(reasoning, think_closed, None, False, NO_ANSWER)
    # a block that holds only the answer (a harmony final message, a solution block): a lone value in it is the answer
    final_block = (block is not None and block.final) or narrowed is not region and SOLUTION_OPEN in region
    return _Split(reasoning, think_closed, narrowed, final_block, None)


def split_reasoning(text: str | None, reasoning_field: str | None = None,
                    finish_reason: str | None = None) -> tuple[str | None, str | None]:
    """``(reasoning, answer_region)`` of a completion, split exactly as ``parse`` splits it.

    ``reasoning``: the reasoning field and / or the delimited reasoning (``<think>``, OpenThoughts' thought,
    ``[THINK]``, ``◁think▷``, harmony's analysis, …); "" for an empty block (a lone ``</think>``); None when
    there is neither (plain chain of thought).
    ``answer_region``: the text the final answer is read from: after the reasoning block, OpenThoughts'
    solution block without its tokens, harmony's final message; the whole text when there is no reasoning
    block; None when there is none (a block that never closed, a solution cut off by the length limit).
    Never raises."""
    try:
        s = _split(_as_text(text), _as_text(reasoning_field), finish_reason == "length")
        return s.reasoning, s.region
    except Exception:  # noqa: BLE001 - a parser never raises on odd input
        return None, None


def _parse(text, reasoning_field, domain, finish_reason) -> Parsed:
    truncated = finish_reason == "length"
    reasoning, think_closed, region, final_block, error = _split(_as_text(text), _as_text(reasoning_field), truncated)
    reasoning = reasoning or None
    if error is not None:
        return Parsed(reasoning, None, think_closed, None, truncated, error)

    if domain == "code":
        scan = region[-CODE_SCAN_CHARS:]
        code, err = _last_code_block(scan, truncated)
        return Parsed(reasoning, code, think_closed, "code_block" if code else None, truncated, err)

    scan = region[-ANSWER_SCAN_CHARS:]
    tagged, tag = _answer_tag(scan, truncated)
    if tagged:  # "<think>…</think><answer>42</answer>": only the tag holds the final answer
        scan = tag
    elif "<answer>" in scan.lower():  # an answer tag cut off by the length limit
        return Parsed(reasoning, None, think_closed, None, truncated, NO_ANSWER)
    if _offers_alternatives(scan):
        return Parsed(reasoning, None, think_closed, None, truncated, HEDGED)
    if not tagged:
        scan = _after_final_marker(scan)

    answer: str | None = None
    source: str | None = None
    if "\\boxed" in scan or "\\fbox" in scan:
        scan = _drop_placeholder_boxes(scan)
        # empty and placeholder boxes ("\boxed{}", "\boxed{ANSWER}") are format reminders, not answers
        boxes = [b for b in _boxed_all(scan) if b is None or not is_placeholder(b)]
        if boxes:
            if boxes[-1] is None:  # cut inside the last box
                return Parsed(reasoning, None, think_closed, None, truncated, NO_ANSWER)
            keys = {_norm_key(b) for b in boxes if b is not None and b.strip()}
            if len(keys) > 1:
                return Parsed(reasoning, None, think_closed, "boxed", truncated, HEDGED)
            answer, source = boxes[-1], "boxed"
            # "\boxed{20}. Wait, actually the answer is 18.": a later, different answer
            after = scan[max(scan.rfind("\\boxed"), scan.rfind("\\fbox")):]
            later = _answer_is(after) if "answer" in after.lower() else None
            if later is None and "####" in after:
                later = _hashes(after)
            # only a later answer that looks like a value ("… so our answer is correct" is not)
            if later is not None and _is_value(later):
                key, lkey = _norm_key(answer), _norm_key(later)
                if lkey and (key != lkey if key.startswith("=") or lkey.startswith("=") else key not in lkey):
                    return Parsed(reasoning, None, think_closed, "boxed", truncated, HEDGED)
    if answer is None and "####" in scan:
        answer = _hashes(scan)
        source = "hashes" if answer is not None else None
    if answer is None:
        low = scan.lower()
        if "answer" in low:
            answer = _answer_is(scan)
            source = "answer_is" if answer is not None else None

    if answer is None and "**" in scan:
        answer = _bold_last_line(scan)
        source = "bold" if answer is not None else None
    if answer is None and not tagged:
        answer = _conclusion(scan)
        source = "conclusion" if answer is not None else None
    if answer is None and final_block and not tagged:  # "<|channel|>final<|message|>42"
        whole = _strip_answer(scan)
        if len(whole) <= 100 and _SIMPLE_VALUE_RE.match(whole) and (re.search(r"[\d\\]", whole)
                                                                   or _LETTER_OR_BOOL_RE.match(whole)):
            answer, source = whole, "final_block"
    if answer is None and tagged:  # the tag's content is the answer ("<answer>$11/36$</answer>")
        answer, source = tag.strip(), "answer_tag"

    if answer is not None:
        answer = _strip_answer(answer)
        # an explicit <answer> tag may hold a long answer (a move list, a grid); elsewhere length means prose
        if not answer or len(answer) > (MAX_TAGGED_ANSWER_CHARS if source == "answer_tag" else MAX_ANSWER_CHARS):
            return Parsed(reasoning, None, think_closed, None, truncated, NO_ANSWER)
        answer = _drop_asides(answer)
        if _hedged(answer) or (_may_offer_second_reading(scan)
                               and _second_reading(scan[_statement_start(scan, source):], answer)):
            return Parsed(reasoning, None, think_closed, source, truncated, HEDGED)
        if source in ("answer_is", "answer_tag"):  # after the hedge check: "probably 18" stays a hedge
            answer = _strip_answer(_value_in_prose(answer)) or answer
        answer = _and_list(answer)
        return Parsed(reasoning, answer, think_closed, source, truncated, None)
    return Parsed(reasoning, None, think_closed, None, truncated, NO_ANSWER)
