"""Parse a teacher completion into its reasoning and its FINAL answer.

The reasoning comes from a ``<think>…</think>`` block or from a separate reasoning field
(``reasoning_content``). The final answer is searched only in the text *after* the
reasoning: a number met inside the reasoning is never an answer, and an unclosed
``<think>`` means the whole completion is reasoning (no answer).

Answer forms, in priority order (math):

- the LAST ``\\boxed{…}`` / ``\\fbox{…}`` (nested braces, ``\\boxed 5``);
- the last ``#### …`` line (GSM8K style);
- the last "The (final) answer is …" / "Final answer: …" (to the end of the sentence or line).

For code seeds (``domain="code"``): the last fenced code block; an unclosed fence at the end
counts only when the completion was not truncated.

Hedged answers ("either 18 or 20", "18 or 20", several different boxed answers after the
reasoning) give ``answer=None`` with ``error="hedged_answer"``.

Pure Python and regex; work on huge inputs is capped (only the last ``ANSWER_SCAN_CHARS``
characters after the reasoning are scanned for the answer), and nothing here raises on odd
input (bytes that are not UTF-8, lone surrogates, NULs, megabytes of text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Parsed", "parse", "ANSWER_SCAN_CHARS", "CODE_SCAN_CHARS"]

# only this many characters at the end of the answer region are scanned for the final answer
ANSWER_SCAN_CHARS = 32_768
# code answers are longer: the last fenced block is searched in this many characters
CODE_SCAN_CHARS = 262_144
# an extracted math answer longer than this is not a final answer (it is prose or garbage)
MAX_ANSWER_CHARS = 2_000

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# errors
NO_ANSWER = "no_answer"
UNCLOSED_THINK = "unclosed_think"
HEDGED = "hedged_answer"
UNCLOSED_CODE = "unclosed_code_block"


@dataclass(frozen=True, slots=True)
class Parsed:
    reasoning: str | None
    answer: str | None
    think_closed: bool
    answer_source: str | None  # "boxed" | "hashes" | "answer_is" | "code_block" | None
    truncated: bool
    error: str | None


# --------------------------------------------------------------------------- helpers

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_HASHES_RE = re.compile(r"(?m)^[ \t>*]*#{4}(?!#)[ \t]*(.*)$")
_ANSWER_IS_RE = re.compile(
    r"(?i)(?:\b(?:the\s+)?(?:final\s+)?answer\s+(?:is|would\s+be|will\s+be)\b\s*:?"
    r"|\bfinal\s+answer\s*[:：])"
    r"[ \t]*"
)
# end of a prose answer: a newline, or a sentence end (., !, ?, ;) followed by space or end
_SENTENCE_END_RE = re.compile(r"\n|[.!?;](?=\s|$)")
_ALTERNATIVE_RE = re.compile(r"(?i)[ \t]*,?[ \t]*(?:or|and\s*/\s*or)\b")
_FENCE_RE = re.compile(r"(?m)^[ \t]*```")

_HEDGE_WORDS_RE = re.compile(
    r"(?i)\b(?:either|maybe|perhaps|possibly|probably|might\s+be|could\s+be|not\s+sure|unsure|"
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
    )\s*(?:\\?%|\\circ|\^\s*\{?\\circ\}?|\\text\s*\{[^{}]*\}|[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})?)?\s*[.,]?\s*$""",
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


def _balanced(s: str, i: int) -> int:
    """``s[i] == '{'``: index just past the matching ``}``, or -1 when unbalanced.

    ``\\{`` and ``\\}`` are literal braces in LaTeX and do not group.
    """
    depth = 0
    n = len(s)
    j = i
    while j < n:
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


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


_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"))


def _strip_answer(a: str) -> str:
    a = a.strip()
    for _ in range(4):
        before = a
        a = a.strip().rstrip(".;,").strip()
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
    """A loose key to tell whether two boxed answers are 'the same'."""
    a = _strip_answer(a)
    a = a.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    a = re.sub(r"\\left|\\right|\\[,;:! ]|\s+|\$", "", a)
    return a.rstrip(".")


def _hedged(a: str) -> bool:
    if _HEDGE_WORDS_RE.search(a):
        return True
    if "or" not in a.lower() and "\\lor" not in a:
        return False
    parts = [p for p in _OR_SPLIT_RE.split(a) if p.strip()]
    if len(parts) < 2:
        return False
    # "x < -2 or x > 3" is a solution set, not a hedge; "18 or 20" is a hedge
    return all(_SIMPLE_VALUE_RE.match(p) for p in parts)


def _answer_is(region: str) -> str | None:
    last = None
    for m in _ANSWER_IS_RE.finditer(region):
        last = m
    if last is None:
        return None
    rest = region[last.end():]
    rest = rest.lstrip(" \t")
    if rest.startswith("\n"):
        # "The final answer is:\n\n42"
        rest = rest.lstrip()
    if not rest:
        return None
    # math delimiters first: the sentence end may be inside them
    if rest.startswith("**"):
        rest = rest[2:].lstrip(" \t")
    for lo, hi in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(lo):
            k = rest.find(hi, len(lo))
            if k < 0:
                return None  # unclosed math: truncated or garbage
            after = rest[k + len(hi):]
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
        if c and not _HEADING_RE.match(c):
            last = c
    return last


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


def _parse(text, reasoning_field, domain, finish_reason) -> Parsed:
    text = _as_text(text)
    field = _as_text(reasoning_field)
    truncated = finish_reason == "length"

    reasoning: str | None = None
    think_closed = False
    region = text  # where the final answer may be

    if field.strip():
        reasoning = field
        think_closed = True

    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        head = text[:close]
        op = head.find(THINK_OPEN)
        inner = head[op + len(THINK_OPEN):] if op >= 0 else head
        inner = inner.replace(THINK_OPEN, "").replace(THINK_CLOSE, "").strip()
        reasoning = (field + "\n" + inner) if (field.strip() and inner) else (inner or reasoning)
        think_closed = True
        region = text[close + len(THINK_CLOSE):]
    # an opening <think> in the answer region (or with no </think> at all) never closed
    op = region.find(THINK_OPEN)
    if op >= 0:
        tail = region[op + len(THINK_OPEN):].strip()
        reasoning = ((reasoning + "\n") if reasoning else "") + tail if tail else reasoning
        return Parsed(reasoning or None, None, False, None, truncated, UNCLOSED_THINK)

    if domain == "code":
        scan = region[-CODE_SCAN_CHARS:]
        code, err = _last_code_block(scan, truncated)
        return Parsed(reasoning, code, think_closed, "code_block" if code else None, truncated, err)

    scan = region[-ANSWER_SCAN_CHARS:]

    answer: str | None = None
    source: str | None = None
    if "\\boxed" in scan or "\\fbox" in scan:
        boxes = _boxed_all(scan)
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
            if later is not None and re.search(r"[\d\\]", later):
                key, lkey = _norm_key(answer), _norm_key(later)
                if lkey and key not in lkey:
                    return Parsed(reasoning, None, think_closed, "boxed", truncated, HEDGED)
    if answer is None and "####" in scan:
        answer = _hashes(scan)
        source = "hashes" if answer is not None else None
    if answer is None:
        low = scan.lower()
        if "answer" in low:
            answer = _answer_is(scan)
            source = "answer_is" if answer is not None else None

    if answer is not None:
        answer = _strip_answer(answer)
        if not answer or len(answer) > MAX_ANSWER_CHARS:
            return Parsed(reasoning, None, think_closed, None, truncated, NO_ANSWER)
        if _hedged(answer):
            return Parsed(reasoning, None, think_closed, source, truncated, HEDGED)
        return Parsed(reasoning, answer, think_closed, source, truncated, None)
    return Parsed(reasoning, None, think_closed, None, truncated, NO_ANSWER)
