"""Answers and references read as plain values, exactly and without sympy.

Numbers (signs, currency, thousands separators, decimals, fractions, mixed numbers, scientific
notation, percent, degrees, multiplier and number words, units that are dropped), clock times,
numbers in a base, choice letters and short texts. ``fast_verdict`` compares two of them and says
which rule decided; what it cannot read is left to math-verify in ``factory.checks.math``.
The parser uses the same readings to tell whether two boxed answers are one value written twice.
Pure, bounded string work: safe to run in any process on any input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

PASSED = "passed"
FAILED = "failed"

# --------------------------------------------------------------------------- normalisation
# (shared by the worker and by callers: cheap string work, no sympy)

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_NUMBER_WITH_UNIT = re.compile(r"^([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*([A-Za-z][A-Za-z.\- ]*)$")
_MATH_WORDS = {"pi", "sqrt", "times", "cdot", "mod", "and", "or", "sin", "cos", "tan", "log", "ln", "exp",
               "sec", "csc", "cot", "arcsin", "arccos", "arctan", "frac", "e",
               # number words change the value: "3 thousand" is not 3
               "hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion", "billions",
               "trillion", "dozen", "dozens", "half", "halves", "third", "thirds", "quarter", "quarters",
               "fourth", "fourths", "fifth", "fifths", "tenth", "tenths", "hundredths", "thousandths",
               "squared", "cubed", "percent", "factorial", "over", "plus", "minus", "i"}


_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+"))
_SUPERSCRIPT_RUN_RE = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_SUBSCRIPT_RUN_RE = re.compile("[₀₁₂₃₄₅₆₇₈₉]+")
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5), "⅗": (3, 5),
           "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8), "⅐": (1, 7),
           "⅑": (1, 9), "⅒": (1, 10)}
_VULGAR_RE = re.compile("(\\d?)\\s*([" + "".join(_VULGAR) + "])")
# √2, √(x+1), √{2}, ∛8: the radicand is a number, a letter or a group
_RADICAL_RE = re.compile(r"([√∛∜])\s*(\d+(?:\.\d+)?|\\?[A-Za-z]|\([^()]*\)|\{[^{}]*\})")
_SYMBOLS = {"×": "\\times", "·": "\\cdot", "⋅": "\\cdot", "∙": "\\cdot", "÷": "\\div", "∞": "\\infty",
            "∪": "\\cup", "∩": "\\cap", "∈": "\\in", "≤": "\\le", "≥": "\\ge", "≠": "\\neq", "π": "\\pi",
            "±": "\\pm", "≈": "\\approx", "∖": "\\setminus", "ℝ": "\\mathbb{R}"}
_SYMBOL_RE = re.compile("[" + "".join(_SYMBOLS) + "]")
# an unbraced signed exponent: "10^-3", "e^-x", "2^−3" (teachers mean 10^{-3}; LaTeX reads 10^{-}3)
_SIGNED_EXPONENT_RE = re.compile(r"\^\s*([-+])\s*(\d+(?:\.\d+)?|\\[A-Za-z]+|[A-Za-z])")
# "\in {7, 9}": braces after \in are a set, not a LaTeX group
_IN_GROUP_RE = re.compile(r"(\\in\s*)(?<!\\)\{([^{}\\]*)\}")


def plain_math_as_latex(s: str) -> str:
    """Plain-text math written as LaTeX: Unicode operators and powers (``x²``, ``3√2``, ``(-∞, 5] ∪ [7, ∞)``,
    ``1·10⁻³``, ``1½``), unbraced signed exponents (``10^-3`` -> ``10^{-3}``), ``4*pi`` and ``\\in {7, 9}``."""
    if not s.isascii():
        s = s.replace("\u2212", "-").replace("\u2009", " ").replace("\u202f", " ").replace("\xa0", " ")
        s = _SUPERSCRIPT_RUN_RE.sub(lambda m: "^{" + "".join(_SUPERSCRIPTS[c] for c in m.group(0)) + "}", s)
        s = _SUBSCRIPT_RUN_RE.sub(lambda m: "_{" + "".join(_SUBSCRIPTS[c] for c in m.group(0)) + "}", s)
        s = _VULGAR_RE.sub(lambda m: m.group(1) + "\\frac{%d}{%d}" % _VULGAR[m.group(2)], s)
        s = _RADICAL_RE.sub(_radical, s)
        s = _SYMBOL_RE.sub(_symbol, s)
        s = re.sub(r" {2,}", " ", s).replace("( ", "(").replace("[ ", "[").replace(" )", ")").replace(" ]", "]").strip()
    if "^" in s:
        s = _SIGNED_EXPONENT_RE.sub(r"^{\1\2}", s)
    if "\\in" in s:
        s = _IN_GROUP_RE.sub(r"\1\\{\2\\}", s)
    if "pi" in s:
        s = _BARE_PI_RE.sub(r"\\pi", s)
    return s


_BARE_PI_RE = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")
_ATOMS = {"∞", "π", "ℝ"}


def _radical(m: re.Match) -> str:
    body = m.group(2)
    if body[0] in "({":
        body = body[1:-1]
    return {"√": "\\sqrt", "∛": "\\sqrt[3]", "∜": "\\sqrt[4]"}[m.group(1)] + "{" + body.strip() + "}"


def _symbol(m: re.Match) -> str:
    c = m.group(0)
    if c in _ATOMS:  # "\infty" must not run into a following letter or digit
        nxt = m.string[m.end():m.end() + 1]
        return _SYMBOLS[c] + (" " if nxt.isalnum() else "")
    return " " + _SYMBOLS[c] + " "


# 0.\overline{3}, 0.7\overline{2}, 0.\dot{3}, and (whole answers only) 0.(3): a repeating decimal is exact
_REPEAT_TAIL = r"(?:\\overline\s*\{\s*(\d+)\s*\}|\\overline\s*(\d)|\\(?:dot|bar)\s*\{\s*(\d)\s*\}|\\dot\s*(\d)"
_REPEATING_RE = re.compile(r"(\d*)\.(\d*)" + _REPEAT_TAIL + r")")
_REPEATING_WHOLE_RE = re.compile(r"(\d*)\.(\d*)" + _REPEAT_TAIL + r"|\((\d{1,12})\))")


def _repeating_value(m: re.Match) -> Fraction:
    whole, fixed = m.group(1) or "0", m.group(2)
    rep = next(g for g in m.groups()[2:] if g)
    k, n = len(fixed), len(rep)
    return int(whole) + Fraction(int(fixed or "0"), 10**k) + Fraction(int(rep), (10**n - 1) * 10**k)


def _repeating_as_fractions(s: str) -> str:
    if "\\overline" not in s and "\\dot" not in s and "\\bar" not in s:
        return s

    def frac(m: re.Match) -> str:
        v = _repeating_value(m)
        return "\\frac{%d}{%d}" % (v.numerator, v.denominator)

    return _REPEATING_RE.sub(frac, s)


_REL = r"(<=|>=|<|>|\\[lg]eq?slant(?![A-Za-z])|\\[lg]eq?(?![A-Za-z])|\\[lg]t(?![A-Za-z]))"
_SET_BUILDER_RE = re.compile(
    r"^(?:\\left)?\\\{\s*([A-Za-z])\s*(?:\\in\s*\\mathbb\s*\{?R\}?\s*)?(?:\\mid|\\vert|\||:|\\colon)\s*(.+?)\s*(?:\\right)?\\\}$")
_OR_RE = re.compile(r"\s*(?:\\(?:text|textrm|mathrm|mbox)\s*\{\s*or\s*\}|\bor\b|\\lor\b|\\vee\b)\s*")
_CHAIN_RE = re.compile(r"^(.+?)\s*" + _REL + r"\s*([A-Za-z])\s*" + _REL + r"\s*(.+)$")
_ONE_SIDE_RE = re.compile(r"^(.+?)\s*" + _REL + r"\s*(.+)$")


def _rel_dir(op: str) -> tuple[str, bool]:
    """("<" or ">", strict?) of a relation written as <, \\le, \\geqslant, >= ..."""
    less = op.startswith("<") or op.startswith("\\l")
    strict = op in ("<", ">", "\\lt", "\\gt")
    return ("<" if less else ">"), strict


def _bound_ok(b: str, var: str) -> bool:
    b = b.strip()
    # a number or an expression of constants (\frac{1}{2}, -\sqrt{2}, \pi): no variable, no other relation
    return bool(b) and not re.search(r"[<>=,;]|\\(?:le|ge|lt|gt|neq)", b) and not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", b))


def inequalities_as_interval(s: str) -> str | None:
    """``x \\le -3 \\text{ or } x \\ge 4`` / ``\\{x \\mid 3 < x < 11\\}`` -> ``(-\\infty, -3] \\cup [4, \\infty)`` /
    ``(3, 11)``; None when ``s`` is not one variable bounded by constants (pieces joined by "or" only:
    "and" is left alone)."""
    if "<" not in s and ">" not in s and "\\l" not in s and "\\g" not in s:
        return None
    body = s.strip()
    m = _SET_BUILDER_RE.match(body)
    var = None
    if m:
        var, body = m.group(1), m.group(2)
    pieces = []
    for part in _OR_RE.split(body):
        part = part.strip()
        c = _CHAIN_RE.match(part)
        if c and c.group(3) == (var or c.group(3)) and _bound_ok(c.group(1), c.group(3)) and _bound_ok(c.group(5), c.group(3)):
            var = c.group(3)
            (d1, s1), (d2, s2) = _rel_dir(c.group(2)), _rel_dir(c.group(4))
            if d1 != d2:
                return None
            lo, hi, lo_strict, hi_strict = c.group(1), c.group(5), s1, s2
            if d1 == ">":
                lo, hi, lo_strict, hi_strict = hi, lo, s2, s1
            pieces.append(("(" if lo_strict else "[") + lo.strip() + ", " + hi.strip() + (")" if hi_strict else "]"))
            continue
        o = _ONE_SIDE_RE.match(part)
        if not o:
            return None
        left, op, right = o.group(1).strip(), o.group(2), o.group(3).strip()
        d, strict = _rel_dir(op)
        if re.fullmatch(r"[A-Za-z]", left) and left == (var or left) and _bound_ok(right, left):
            var, bound = left, right
        elif re.fullmatch(r"[A-Za-z]", right) and right == (var or right) and _bound_ok(left, right):
            var, bound, d = right, left, ("<" if d == ">" else ">")
        else:
            return None
        if d == "<":
            pieces.append("(-\\infty, " + bound + (")" if strict else "]"))
        else:
            pieces.append(("(" if strict else "[") + bound + ", \\infty)")
    return " \\cup ".join(pieces) if pieces else None


def normalize_answer(a: str) -> str:
    """Light, safe clean-up of a final answer or reference before math-verify parses it.

    Plain-text math becomes LaTeX (``x²``, ``3√2``, ``(-∞, 5] ∪ [7, ∞)``, ``10^-3`` -> ``10^{-3}``: in LaTeX
    ``10^-1`` is ``10^{-}1``, and math-verify reads it as 10), repeating decimals become fractions, and an
    inequality or set-builder answer (``x \\le -3 \\text{ or } x \\ge 4``) becomes the interval it names.
    """
    a = plain_math_as_latex(a.strip())
    a = _repeating_as_fractions(a)
    a = inequalities_as_interval(a) or a
    if "**" in a and "\\" not in a:  # Python syntax (DeepMind mathematics): 5*r**2 - 36*r is 5r^2 - 36r
        a = re.sub(r"\*\*\s*(\w+|\([^()]*\))", r"^{\1}", a).replace("*", " \\cdot ")
    # LaTeX thin spaces / grouped commas in numbers: 10,\!080  11{,}111  1\,000
    a = a.replace("{,}", ",").replace(",\\!", ",").replace("\\!", "")
    a = _UNESCAPED_DOLLAR.sub("", a).strip()
    a = a.rstrip(".").strip()
    core = a[2:].strip() if a.startswith("\\$") else a
    if _THOUSANDS.match(core):
        return core.replace(",", "")
    m = _NUMBER_WITH_UNIT.match(core)
    if m:  # "18 dollars", "5 apples per day" -> the number (but not "3 pi", "2 sqrt 3")
        words = m.group(2).lower().replace(".", " ").replace("-", " ").split()
        if words and len(words[0]) >= 2 and not any(w in _MATH_WORDS for w in words):
            return m.group(1).replace(",", "") if _THOUSANDS.match(m.group(1)) else m.group(1)
    return a


# --------------------------------------------------------------------------- plain values (no sympy)
# Numbers, percents, clock times, base-n numerals, choice letters and words are decided here, exactly,
# before math-verify: math-verify compares floats to ~6 digits (".0000673" == ".0000672"), reads
# "2516_9" as 2516 and "4e33" as a symbol product. Pure string work and bounded Fraction arithmetic:
# safe to run in the parent process.

_MAX_EXP = 400          # 10^e beyond this is left to math-verify (in a worker with a deadline)
_MAX_DIGITS = 400
_REL_TOL = Fraction(1, 10**9)

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?: \d{3})+(?![\d,.])|\d+(?:\.\d+)?|\.\d+)"
_NUM_RE = re.compile(_NUM)
_SIGN_RE = re.compile(r"[-+]\s*")
_CURRENCY_RE = re.compile(
    r"(?:\\(?:text|textrm|mathrm|mbox)\s*\{\s*(?:\\\$|US\\?\$|USD|EUR|GBP|INR|CAD|AUD|Rs\.?|€|£|¥|₹)\s*\}"
    r"|\\\$|\$|US\\?\$|USD|EUR|GBP|INR|CAD|AUD|Rs\.?|€|£|¥|₹|\\euro|\\pounds|\\textdollar|\\textsterling|\\yen)\s*"
)
_MIXED_RE = re.compile(r"(\d+)\s*\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_MIXED_SLASH_RE = re.compile(r"(\d+)\s+(\d+)\s*/\s*(\d+)(?![\d.])")
_FRAC_RE = re.compile(r"\\frac\s*\{\s*([-+]?)\s*(" + _NUM + r")\s*\}\s*\{\s*([-+]?)\s*(" + _NUM + r")\s*\}")
_FRAC_SHORT_RE = re.compile(r"\\frac\s*(\d)\s*(\d)(?!\d)")
_SLASH_RE = re.compile(r"(" + _NUM + r")\s*/\s*(" + _NUM + r")")
_SCI_RE = re.compile(
    r"\s*(?:[eE]([-+]?\d+)|(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*(?:\{\s*([-+]?\d+)\s*\}|(\d)))(?![\d.])"
)
_POW10_RE = re.compile(r"10\s*\^\s*(?:\{\s*([-+]?\d+)\s*\}|(\d))")
_CLOCK_RE = re.compile(
    r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:\\text\s*\{\s*)?(am|pm|a\.m\.?|p\.m\.?)?\s*\}?$", re.I
)
_BASE_RE = re.compile(r"^\(?([0-9A-Za-z]+)\)?\s*_\s*(?:\{\s*(?:\\text\s*\{)?\s*(\d{1,2})\s*\}?\s*\}|(\d))$")
_PERCENT_RE = re.compile(r"^\s*(?:\\%|%|\\text\s*\{\s*\\?%\s*\}|\\?\s*percent\b|\\text\s*\{\s*percent\s*\})")
_DEGREE_RE = re.compile(r"^\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\^\s*\{\s*\\text\s*\{\s*o\s*\}\s*\})")
_MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_UNIT_TOKEN_RE = re.compile(
    r"\s*(?:\\(?:text|textrm|mathrm|mbox|textnormal|operatorname|textit|mathit)\s*\{([^{}]*)\}"
    r"|\(([^()]*)\)|([A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'.]*)|(\^\s*\{?\s*[23]\s*\}?)|(/)|(-)|(~))"
)
_SINGLE_LETTER_UNITS = set("mgsLlhKVWJN")
_NOT_UNITS = _MATH_WORDS | {"and", "or", "not", "is", "are", "x", "y", "z", "n", "k", "to", "of", "the", "i", "e",
                            "if", "then", "else", "for", "all", "sqrt", "infty", "infinity", "undefined", "none",
                            "no", "yes", "true", "false", "ln", "log", "exp", "dozen", "dozens",
                            # prose that changes or doubts the value: "42 divided by 6", "42 is wrong"
                            "by", "divided", "multiplied", "than", "less", "more", "greater", "fewer", "except",
                            "instead", "wrong", "incorrect", "not", "nor", "but", "maybe", "perhaps", "approximately",
                            "about", "around", "roughly", "nearly", "almost", "least", "most", "between", "from",
                            "remainder", "r", "with", "without", "power", "root", "squared", "cubed", "th", "st",
                            "nd", "rd", "digit", "digits", "base", "mod", "modulo"}


@dataclass(frozen=True, slots=True)
class PlainValue:
    """A value read exactly from a whole answer/reference string."""

    kind: str                        # "number" | "clock" | "base" | "choice" | "text"
    value: Fraction | None = None    # number: as written (percent: the written number, 50 for 50%)
    places: int | None = None        # number: decimal places as written (None: not a decimal literal)
    fraction: bool = False           # number: written as a fraction (exact, any precision)
    percent: bool = False
    alts: tuple = ()                 # number: other readings ("7 dozen": 7 and 84)
    unit: str = ""                   # number: the unit words that were dropped
    key: Any = None                  # clock (h, m, s, ampm) / base (digits, base) / choice letter / text key


def _unwrap(s: str) -> str:
    """Drop wrappers that span the whole string: \\boxed{}, \\text{}, \\textbf{}, ** **, ( ) of a choice."""
    for _ in range(6):
        before = s
        s = s.strip().rstrip(".;,").strip()
        if len(s) >= 4 and s.startswith("**") and s.endswith("**"):
            s = s[2:-2]
        m = re.match(r"\\(?:boxed|fbox|text|textbf|textrm|mathrm|mathbf|mbox|textnormal|textit|emph)\s*\{", s)
        if m and s.endswith("}"):
            end = brace_end(s, m.end() - 1)
            if end == len(s):
                s = s[m.end():-1]
        if s == before:
            return s
    return s


def brace_end(s: str, i: int) -> int:
    """``s[i] == '{'``: index just past the matching ``}``, or -1 when unbalanced.
    ``\\{`` and ``\\}`` are literal braces in LaTeX and do not group."""
    depth = 0
    j = i
    while j < len(s):
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


_SPACING_RE = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad|\\thinspace|\\enspace")
_SIZING_RE = re.compile(r"\\(?:displaystyle|textstyle|left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![A-Za-z])")
_DIGIT_GROUP_RE = re.compile(r"(?<=\d)(?:\{,\}|,\\!|\\,|\\!|\\ |\\;)(?=\d{3}(?!\d))")
_VAR_EQ_RE = re.compile(r"^[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?\s*=\s*(?!=)")


def clean_value_text(s: str) -> str:
    """Delimiters, spacing, sizing and wrappers off; ``x = 5`` -> ``5``; Unicode minus -> ``-``."""
    s = plain_math_as_latex(s)
    s = _DIGIT_GROUP_RE.sub(lambda m: "," if "," in m.group(0) else "", s)
    s = s.replace("{,}", ",")
    s = _SIZING_RE.sub("", s)
    s = _SPACING_RE.sub(" ", s)
    s = _UNESCAPED_DOLLAR.sub("", s)
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _unwrap(s)
    s = _VAR_EQ_RE.sub("", s, count=1)
    return _unwrap(s).strip()


def _to_fraction(num: str) -> tuple[Fraction, int | None] | None:
    num = num.replace(",", "").replace(" ", "")
    if len(num) > _MAX_DIGITS:
        return None
    places = len(num) - num.index(".") - 1 if "." in num else None
    return Fraction(num), places


_SMALL_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS_WORDS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_NUMBER_WORDS_RE = re.compile(
    r"(?i)(?:(?:" + "|".join(sorted({*_SMALL_WORDS, *_TENS_WORDS, *_MULTIPLIERS}, key=len, reverse=True))
    + r"|and|a)\b[\s-]*)+")


def _read_number_words(s: str, pos: int):
    """(value, end) of an English number in words at ``s[pos:]`` ("seventy-two", "one hundred and five",
    "a thousand"), or None. Only whole numbers: "two thirds" is not read (left to the judge)."""
    m = _NUMBER_WORDS_RE.match(s, pos)
    if not m:
        return None
    words = re.findall(r"[a-z]+", m.group(0).lower())
    while words and words[-1] in ("and", "a"):
        words.pop()
    if not words or not any(w in _SMALL_WORDS or w in _TENS_WORDS for w in words) and words[0] != "a":
        return None
    total = current = 0
    last = None
    for w in words:
        if w in _SMALL_WORDS or w in _TENS_WORDS:
            v = _SMALL_WORDS.get(w, _TENS_WORDS.get(w))
            # "twenty five" adds; "five twenty", "twelve three" are not one number
            if last in ("small", "tens") and not (last == "tens" and v < 10):
                return None
            current += v
            last = "tens" if w in _TENS_WORDS else "small"
        elif w == "a":
            if last is not None:
                return None
            current, last = 1, "a"
        elif w == "and":
            if last not in ("scale", "hundred"):
                return None
        elif w == "hundred":
            current, last = max(current, 1) * 100, "hundred"
        else:
            total, current, last = total + max(current, 1) * _MULTIPLIERS[w], 0, "scale"
    if last == "a":
        return None
    end = m.start() + len(re.match(r"(?i)(?:[a-z]+[\s-]*){%d}" % len(words), m.group(0)).group(0).rstrip(" -\t"))
    return Fraction(total + current), end


def _read_number(s: str, pos: int = 0):
    """(value, places, fraction?, end) of the number at ``s[pos:]``, or None."""
    words = _read_number_words(s, pos) if s[pos:pos + 1].isalpha() else None
    if words is not None:
        return words[0], 0, False, words[1]
    for rx in (_MIXED_RE, _MIXED_SLASH_RE):
        m = rx.match(s, pos)
        if m and int(m.group(3)) != 0:
            return Fraction(int(m.group(1))) + Fraction(int(m.group(2)), int(m.group(3))), None, True, m.end()
    m = _FRAC_RE.match(s, pos)
    if m:
        n, d = _to_fraction(m.group(2)), _to_fraction(m.group(4))
        if n and d and d[0] != 0:
            v = n[0] / d[0] * (-1 if m.group(1) == "-" else 1) * (-1 if m.group(3) == "-" else 1)
            return v, None, True, m.end()
        return None
    m = _FRAC_SHORT_RE.match(s, pos)
    if m and m.group(2) != "0":
        return Fraction(int(m.group(1)), int(m.group(2))), None, True, m.end()
    m = _SLASH_RE.match(s, pos)
    if m:
        n, d = _to_fraction(m.group(1)), _to_fraction(m.group(2))
        if n and d and d[0] != 0:
            return n[0] / d[0], None, True, m.end()
        return None
    m = _POW10_RE.match(s, pos)
    if m:
        e = int(m.group(1) or m.group(2))
        if abs(e) > _MAX_EXP:
            return None
        return Fraction(10) ** e, (max(0, -e) if e < 0 else None), False, m.end()
    m = _REPEATING_WHOLE_RE.match(s, pos)
    if m:  # 0.\overline{3}, 0.7\overline{2}, 0.(3): exact, like a fraction
        return _repeating_value(m), None, True, m.end()
    m = _NUM_RE.match(s, pos)
    if not m:
        return None
    got = _to_fraction(m.group(0))
    if got is None:
        return None
    v, places = got
    end = m.end()
    e = _SCI_RE.match(s, end)
    if e:
        exp = int(e.group(1) or e.group(2) or e.group(3))
        if abs(exp) > _MAX_EXP:
            return None
        v *= Fraction(10) ** exp
        places = max(0, (places or 0) - exp)
        end = e.end()
    return v, places, False, end


def _unit_words(tail: str) -> list[str] | None:
    """The words of a unit tail (``\\text{ cm}^2``, ``km/h``, ``(apples)``, ``dollars``), None if not one."""
    words: list[str] = []
    pos = 0
    tail = tail.rstrip(".")
    while pos < len(tail):
        m = _UNIT_TOKEN_RE.match(tail, pos)
        if not m or m.end() == pos:
            return None if tail[pos:].strip() else words
        for g in (m.group(1), m.group(2), m.group(3)):
            if g is not None:
                inner = g.replace("~", " ").replace("\\", " ").replace("/", " ").replace("-", " ").replace(".", " ")
                for w in inner.split():
                    if not re.fullmatch(r"[A-Za-zÀ-ÿ']+|\^?\{?[23]\}?|s", w):
                        return None
                    words.append(w)
        pos = m.end()
    return words


def _unit_ok(words: list[str]) -> bool:
    letters = [w for w in words if w[0].isalpha()]
    if not letters:
        return False
    for w in letters:
        lw = w.lower().strip("'")
        if lw in _NOT_UNITS:
            return False
        if len(lw) == 1 and w not in _SINGLE_LETTER_UNITS:
            return False
    return True


def read_plain_value(text: str) -> PlainValue | None:
    """An exact reading of a whole answer as a plain value, or None (leave it to math-verify).

    Numbers take a sign, a currency prefix (``\\$``, ``USD``, ``€``), thousands separators, decimals,
    ``\\frac{a}{b}``, ``a/b``, mixed numbers (``2\\frac{1}{2}``, ``2 1/2``), scientific notation
    (``4e33``, ``4 \\times 10^{33}``), a percent sign, degrees, a multiplier word (``3 thousand``),
    and unit words (``cm^2``, ``km/h``, ``(apples)``, ``dollars``), which are dropped.
    """
    s = clean_value_text(text)
    if not s or len(s) > 300:
        return None
    m = _CLOCK_RE.match(s)
    if m:
        h, mi, sec = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        ampm = (m.group(4) or "").lower().replace(".", "")
        if mi < 60 and sec < 60 and h <= 24:
            if ampm == "pm" and h < 12:
                h += 12
            elif ampm == "am" and h == 12:
                h = 0
            return PlainValue("clock", key=(h, mi, sec, bool(ampm)))
    m = _BASE_RE.match(s)
    if m and re.search(r"\d", m.group(1)):
        return PlainValue("base", key=(m.group(1).lower().lstrip("0") or "0", int(m.group(2) or m.group(3))))
    pos = 0
    neg = False
    for _ in range(2):  # "-\$5" and "\$-5"
        sm = _SIGN_RE.match(s, pos)
        if sm:
            neg ^= sm.group(0)[0] == "-"
            pos = sm.end()
        cm = _CURRENCY_RE.match(s, pos)
        if cm:
            pos = cm.end()
    got = _read_number(s, pos)
    if got is None:
        return None
    v, places, frac, end = got
    if neg:
        v = -v
    tail = s[end:]
    percent = False
    pm = _PERCENT_RE.match(tail)
    if pm:
        percent, tail = True, tail[pm.end():]
    else:
        dm = _DEGREE_RE.match(tail)
        if dm:
            tail = tail[dm.end():]
    tail = tail.strip()
    alts: tuple = ()
    unit = ""
    if tail:
        words = _unit_words(tail)
        if not words:
            return None
        first = words[0].lower()
        mult = _MULTIPLIERS.get(first.rstrip("s"))
        if mult:  # "3 thousand" is 3000, never 3
            v *= mult
            places = None
            words = words[1:]
        elif first in ("dozen", "dozens"):  # "7 dozen" answers both "how many dozen" (7) and "how many" (84)
            alts = (v * 12,)
            words = words[1:]
        if words and not _unit_ok(words):
            return None
        unit = " ".join(words)
    return PlainValue("number", v, places, frac, percent, alts, unit)


_CHOICE_RE = re.compile(r"^(?:\\text(?:bf)?\s*\{\s*)?\(?([A-J])\)?(?:\s*\})?$")
_CHOICE_ANSWER_RE = re.compile(
    # "B", "(B) 42", "B) 42", "B. 42", "B: 42", "Option B"; never "A circle" (the article)
    r"^(?:(?:option|choice|answer)\s*:?\s*)?(?:\\text(?:bf)?\s*\{\s*)?\(?([A-J])\)?(?:\s*\})?"
    r"(?:$|\s*[.):]\s*(\S.*)$|(?<=[)}])\s+(\S.*)$)", re.I | re.S
)
# a choice reference written with its value (NuminaMath): "C: 70", "\textbf{(B)}\ 60", "(B) 60", "B. 60"
_LABELLED_CHOICE_RE = re.compile(
    r"^(?:\\(?:text|textbf|mathrm|mathbf)\s*\{\s*\(?([A-J])\)?\s*\}|\(([A-J])\)|([A-J])\s*[:.)])\s*(\S.*)$", re.S
)
# "(D), though A is also defensible": the text beside the letter names another choice
_OTHER_CHOICE_RE = re.compile(
    r"(?i:\b(?:or|though|although|also|alternatively|maybe|perhaps|possibly|otherwise|unless|but)\b).*?"
    r"(?:\([A-J]\)|\b[A-J]\b)|(?i:\band\b)\s*\([A-J]\)|^[,;&]|,\s*\([A-J]\)", re.S
)
# ARC's numeric answer keys: "Option 1", "3. $4,829", "(2) 160", "3: 16 envelopes" against the key "3"
_NUMERIC_KEY_RE = re.compile(r"^\(?([1-9])\)?$")
_NUMBERED_OPTION_RE = re.compile(
    r"^(?:(?:option|choice)\s*:?\s*\(?([1-9])\)?(?:[.):]?\s+(\S.*))?|\(([1-9])\)\s+(\S.*)|([1-9])[.):]\s+(\S.*))$",
    re.I | re.S,
)


def read_choice(text: str, answer: bool = False) -> str | None:
    """The choice letter of ``B``, ``(B)``, ``\\text{(B)}``; for an answer also ``B) 42``, ``Option B``."""
    if not answer:
        m = _CHOICE_RE.match(clean_value_text(text))
        return m.group(1).upper() if m else None
    got = read_choice_parts(text)
    return got[0] if got is not None else None


def read_choice_parts(text: str) -> tuple[str, str] | None:
    """(letter, the text written beside it or "") of an answer ``B``, ``(B) 42``, ``\\textbf{(C)}\\ 70``,
    ``Option B``; None when it is not a choice."""
    s = clean_value_text(text)
    m = _CHOICE_ANSWER_RE.match(s)
    if not m:
        return None
    letter = m.group(1)
    # an answer's letter must be a capital (or in parentheses): "a" alone is a variable
    if not letter.isupper() and "(" not in s[:3] and not re.match(r"(?:\\text(?:bf)?\s*\{\s*)?[a-j][):]", s):
        return None  # "d) 315" is marked as a choice; "d" alone may be a variable
    return letter.upper(), (m.group(2) or m.group(3) or "").strip()


_LABEL_STARTS = frozenset("\\(ABCDEFGHIJ")


def read_labelled_choice(text: str) -> tuple[str, str] | None:
    """(letter, value) of a choice reference written with its value: ``C: 70``, ``\\textbf{(B)}\\ 60``,
    ``(B) 60``; None otherwise (a bare ``B`` is ``read_choice``'s)."""
    if text.lstrip("$* ")[:1] not in _LABEL_STARTS:  # the fast path: most references are numbers
        return None
    s = clean_value_text(text)
    if len(s) < 3 or s[0] not in _LABEL_STARTS:
        return None
    m = _LABELLED_CHOICE_RE.match(s)
    if not m or _OTHER_CHOICE_RE.search(m.group(4)) or re.match(r"(?i:and|or)\b", m.group(4)):
        return None  # "(A) and (C)", "(A), (C)": more than one choice
    return (m.group(1) or m.group(2) or m.group(3)), m.group(4).strip()


def labelled_choice_values(predicted: str, reference: str) -> tuple[str, str] | None:
    """(answer value, reference value) still to compare when ``reference`` is a choice written with its value
    (``B: \\frac{\\sqrt3}{2}``) and the answer is the same letter with a value beside it, or a value alone;
    None otherwise (``fast_verdict`` decides letters)."""
    ref = read_labelled_choice(reference)
    if ref is None:
        return None
    got = read_choice_parts(predicted)
    if got is None:
        return predicted, ref[1]
    return (got[1], ref[1]) if got[0] == ref[0] and got[1] else None


def _choice_with_value_verdict(predicted: str, ref: tuple[str, str]) -> tuple[str, str] | None:
    """A choice reference written with its value: the letter decides; a value beside a right letter must
    not contradict it; a value alone may match the reference's value (it is the option's content)."""
    letter, value = ref
    got = read_choice_parts(predicted)
    if got is None:
        sub = fast_verdict(predicted, value)
        if sub is None or sub[1].startswith("text_"):
            return sub if sub is None else (FAILED, f"text_unequal: the reference is choice ({letter}) {value}, "
                                                    f"the answer is not a choice letter")
        return sub[0], sub[1] + f" (the value of choice ({letter}))"
    a_letter, beside = got
    if beside and _OTHER_CHOICE_RE.search(beside):
        return FAILED, f"choice_unequal: the answer names another choice too: {beside[:40]!r}"
    if a_letter != letter:
        return FAILED, f"choice_unequal: ({a_letter}) vs ({letter})"
    if not beside:
        return PASSED, f"choice_equal: ({letter})"
    sub = fast_verdict(beside, value)
    if sub is None:
        return None  # the worker compares the values (labelled_choice_values)
    if sub[0] == PASSED or sub[1].startswith("text_"):  # words beside the letter: the letter decides
        return PASSED, f"choice_equal: ({letter})"
    return FAILED, f"choice_unequal: ({letter}) written with {beside[:40]!r}, the reference's ({letter}) is {value[:40]!r}"


def _numbered_option_verdict(predicted: str, key: str) -> tuple[str, str] | None:
    """ARC's numeric keys: "Option 1", "3. $4,829", "(2) 160" answer key "3" by their number, never by value."""
    m = _NUMBERED_OPTION_RE.match(clean_value_text(predicted))
    if not m:
        return None
    number = m.group(1) or m.group(3) or m.group(5)
    beside = m.group(2) or m.group(4) or m.group(6) or ""
    if beside and _OTHER_CHOICE_RE.search(beside):
        return FAILED, f"choice_unequal: the answer names another choice too: {beside[:40]!r}"
    return (PASSED, f"choice_equal: option {key}") if number == key else (FAILED, f"choice_unequal: option {number} vs {key}")


# --------------------------------------------------------------------------- options in the problem
# A bare choice reference ("C", ARC's "3") against an answer that is an option's VALUE ("27", "**$4,829**"):
# the options are in the seed's problem text (the source's jinja put them there). They are read
# conservatively: one run of consecutive labels (A, B, C... or 1, 2, 3...) of at least 3 options, in one
# layout; anything else (two runs, a broken run, an empty or huge option) reads as no options at all.

_MAX_PROBLEM_CHARS = 100_000
_MAX_OPTION_CHARS = 1_000
_MAX_OPTIONS = 26
# one option label and the punctuation around it; the group that matched names the layout
_OPTION_MARK_RE = re.compile(
    # AMC: $\textbf{(A)}\ 12 \qquad \textbf{(B)}\ 15$, \text{(A) }, \mathrm{A.}
    r"\\(?:textbf|text|textrm|mathrm|mathbf|mbox|bf)\s*\{\s*(?P<tex>\(\s*[A-Za-z]\s*\)|[A-Za-z]\s*[.:)])"
    r"(?:\s|\\[ ,;!]|~)*\}"
    # the others only after a space, the start, $ , ; * or > (never inside a word or a formula: "P(A)")
    r"|(?<![^\s$,;*>])(?:"
    r"\*\*(?P<bold>\(\s*(?:[A-Za-z]|\d{1,2})\s*\)|(?:[A-Za-z]|\d{1,2})\s*[.:)])\*\*"
    r"|\((?P<paren>[A-Za-z]|\d{1,2})\)"
    r"|\[(?P<bracket>[A-Za-z]|\d{1,2})\]"
    r"|(?P<close>[A-Za-z]|\d{1,2}) ?\)"
    r"|(?P<dot>[A-Za-z]|\d{1,2})\.(?=[\s$])"
    r"|(?P<colon>[A-Za-z]|\d{1,2}):(?=[\s$]))"
)
_LINE_PREFIX_CHARS = " \t>*-•$"
_OPTION_JUNK_RE = re.compile(r"(?<!\\)\$|\\q?quad(?![A-Za-z])|\\[ ,;!]|\\\\|~")


@dataclass(frozen=True, slots=True)
class _Mark:
    index: int        # 0 for A / a / 1
    start: int
    end: int
    line_start: bool  # only blanks, bullets or a $ before it on its line


def _option_marks(problem: str) -> dict[tuple[str, str], list[_Mark]]:
    """(label kind, layout) -> the labels of that layout, in order. Digits and lower-case letters count only
    at the start of a line (or as "(a)" / "a)"): "3. " and "b. " are common in prose."""
    out: dict[tuple[str, str], list[_Mark]] = {}
    begin = scanned = 0  # where the current line begins, found incrementally: linear on one huge line too
    for m in _OPTION_MARK_RE.finditer(problem):
        style = m.lastgroup
        raw = m.group(style)
        label = re.search(r"[A-Za-z]|\d{1,2}", raw).group(0)
        kind = "digit" if label.isdigit() else "upper" if label.isupper() else "lower"
        index = int(label) - 1 if kind == "digit" else ord(label.upper()) - ord("A")
        newline = problem.rfind("\n", scanned, m.start())
        begin, scanned = (newline + 1 if newline >= 0 else begin), m.start()
        line_start = m.start() - begin <= 12 and not problem[begin:m.start()].strip(_LINE_PREFIX_CHARS)
        if kind == "digit" and not line_start:
            continue
        if kind == "lower" and not line_start and style not in ("paren", "close"):
            continue
        layout = style + ":" + re.sub(r"\s+", "", raw).replace(label, "X")
        out.setdefault((kind, layout), []).append(_Mark(index, m.start(), m.end(), line_start))
    return out


def _runs(marks: list[_Mark]) -> list[list[_Mark]]:
    """Maximal runs of consecutive labels that start at A (or 1) and have at least 3 options."""
    runs, cur = [], []
    for mk in marks:
        if cur and mk.index == cur[-1].index + 1:
            cur.append(mk)
            continue
        if len(cur) >= 3:
            runs.append(cur)
        cur = [mk] if mk.index == 0 else []
    if len(cur) >= 3:
        runs.append(cur)
    return runs


def _option_texts(problem: str, run: list[_Mark], labels: str) -> tuple[tuple[str, str], ...] | None:
    """(label, option text) of a run, None when an option is empty or too long to be one."""
    one_per_line = all(mk.line_start for mk in run)
    out = []
    for i, mk in enumerate(run):
        end = run[i + 1].start if i + 1 < len(run) else len(problem)
        end = min(end, mk.end + 4 * _MAX_OPTION_CHARS)
        if one_per_line or i + 1 == len(run):
            line_end = problem.find("\n", mk.end, end)
            end = end if line_end < 0 else line_end
        text = _OPTION_JUNK_RE.sub(" ", problem[mk.end:end]).strip().strip(",;*").strip()
        if not text or len(text) > _MAX_OPTION_CHARS:
            return None
        label = str(mk.index + 1) if labels == "digit" else chr(ord("A") + mk.index)
        out.append((label, text))
    return tuple(out)


def _read_options(problem: str) -> tuple[tuple[str, str], ...]:
    if not problem or len(problem) > _MAX_PROBLEM_CHARS:
        return ()
    by_kind: dict[str, set] = {}
    runs = 0
    for (kind, layout), marks in _option_marks(problem).items():
        for run in _runs(marks):
            if layout.startswith(("dot:", "colon:")) and not run[0].line_start:
                continue  # "Mr. A. Smith met B. Jones and C. Brown": prose; "A. 12  B. 15  C. 18" starts a line
            runs += 1
            if runs > 4:
                return ()  # run after run: a pattern, not one set of options
            if len(run) > _MAX_OPTIONS:
                return ()  # a long numbered list, not options
            texts = _option_texts(problem, run, kind)
            if texts is None:
                return ()  # "(A), (B) and (C)" in a sentence: labels without options
            by_kind.setdefault(kind, set()).add(texts)
    # upper-case letters first: "(1) ... (2) ... (3)" statements above "A. 0  B. 1  C. 2" options are common
    for kind in ("upper", "lower", "digit"):
        found = by_kind.get(kind)
        if found:
            return next(iter(found)) if len(found) == 1 else ()  # two different runs: which one is the options?
    return ()


_OPTIONS_CACHE: dict[str, tuple[tuple[str, str], ...]] = {}


def read_options(problem: str) -> dict[str, str]:
    """Label -> option text of the multiple-choice options written in a problem, {} when there are none or the
    reading is ambiguous. Layouts: ``A. 12`` / ``A) 12`` / ``(A) 12`` / ``A: 12`` / ``[A] 12`` / ``**A.** 12``, one a
    line or inline (``Options: A) 12, B) 15, C) 18``; ``A. 12  B. 15`` only from the start of a line), AMC's ``$\\textbf{(A)}\\ 12 \\qquad \\textbf{(B)}\\ 15 …$``,
    MathQA's ``a ) 38 , b ) 27.675``, ARC's ``1. 12`` (numbers only at the start of a line). Letter labels are
    returned in upper case. Exactly one run of consecutive labels from A (or 1), 3 to 26 long, all in one layout:
    two different runs, a run with an empty option or an option over 1,000 characters, a longer list or a problem
    over 100,000 characters give {}. Pure and bounded (linear regular expressions)."""
    if not isinstance(problem, str):
        return {}
    got = _OPTIONS_CACHE.get(problem)
    if got is None:
        got = _read_options(problem)
        if len(_OPTIONS_CACHE) > 512:  # the samples of one seed come together: a small cache is enough
            _OPTIONS_CACHE.clear()
        _OPTIONS_CACHE[problem] = got
    return dict(got)


_LOWER_KEY_RE = re.compile(r"\(?([a-j])\)?")
_LABEL_LETTER_RE = re.compile(r"[A-Ja-j]")


def _bare_label(reference: str) -> tuple[str, bool] | None:
    """(label, numeric?) of a bare choice reference: ``C``, ``(C)``, ``\\text{C}``, ARC's ``3``, MathQA's ``c``."""
    r = reference.strip()
    if len(r) > 40:
        return None
    key = _NUMERIC_KEY_RE.match(r)
    if key is not None:
        return key.group(1), True
    if not _LABEL_LETTER_RE.search(r):  # "18", "0.5": most references, ruled out before any cleaning
        return None
    label = read_choice(r)
    if label is None:
        m = _LOWER_KEY_RE.fullmatch(r)
        label = m.group(1).upper() if m is not None else None
    return (label, False) if label is not None else None


def option_reference(predicted: str, reference: str, problem: str | None) -> tuple[str, dict[str, str]] | None:
    """(the reference's label, the problem's options) when ``predicted`` is to be judged as the VALUE of an
    option (``option_label``), None otherwise. Reads the problem only for a bare label and an answer that is not one."""
    if not problem or not isinstance(predicted, str) or not isinstance(reference, str):
        return None
    bare = _bare_label(reference)
    if bare is None or read_choice_parts(predicted) is not None:
        return None
    options = read_options(problem)
    label = _option_label(predicted, bare, options)
    return (label, options) if label is not None else None


def option_label(predicted: str, reference: str, options: dict[str, str]) -> str | None:
    """The label of a bare choice reference (``C``, ``(C)``, ``\\text{C}``, ARC's ``3``, MathQA's ``c``) that
    ``options`` hold, when ``predicted`` is not itself a label but may be an option's value (``27``,
    ``**$4,829**``); None otherwise: ``C``, ``(C) 27``, ``Option 3``, ``3. $4,829`` keep ``fast_verdict``'s rules."""
    if not options or not isinstance(predicted, str) or not isinstance(reference, str):
        return None
    bare = _bare_label(reference)
    if bare is None or read_choice_parts(predicted) is not None:
        return None
    return _option_label(predicted, bare, options)


def _option_label(predicted: str, bare: tuple[str, bool], options: dict[str, str]) -> str | None:
    label, numeric = bare
    if label not in options:
        return None
    letter = _bare_label(clean_value_text(predicted))
    if letter is not None and not letter[1]:  # a letter in any dress (MathQA's `c`, `\text{b}`, `**c**`): a label
        return None
    if numeric:
        a = clean_value_text(predicted)
        key = _NUMERIC_KEY_RE.match(a)
        # "3" is a label when the options have a 3 ("1. 12 … 4. 20"), a value otherwise
        if (key is not None and key.group(1) in options) or _NUMBERED_OPTION_RE.match(a):
            return None
    return label


def option_value_verdict(predicted: str, label: str, options: dict[str, str], compare=None,
                         reference: str | None = None) -> tuple[str, str] | None:
    """(status, "<rule>: detail") of an answer given as an option's value (``option_reference``): it passes iff it
    equals, by ``compare`` (``fast_verdict`` here, ``check_pair`` in a worker), the option of ``label`` and no other
    option; equal to another option (or to two) is ``choice_unequal``; equal to none is ``text_unequal`` (a judge
    that sees the problem may look again), except for a numeric key (``3``): then ``compare(predicted, reference)``
    decides as before (a math problem's numbered list is no set of options, and its answer 3 may be "3 apples").
    None while a comparison ``compare`` could not decide still matters."""
    compare = compare or fast_verdict
    matched, undecided = [], False
    for other, text in options.items():
        got = compare(predicted, text)
        if got is None:
            undecided = True
        elif got[0] == PASSED:
            matched.append(other)
    others = [o for o in matched if o != label]
    if others:
        if label in matched:
            return FAILED, (f"choice_unequal: the answer is the value of options ({label}) and ({others[0]}) alike: "
                            f"it names neither")
        return FAILED, f"choice_unequal: the answer is the value of option ({others[0]}), the reference is ({label})"
    if undecided:
        return None
    if label in matched:
        return PASSED, f"choice_equal: the answer is the value of option ({label})"
    if label.isdigit() and reference is not None:
        return compare(predicted, reference)
    return FAILED, f"text_unequal: the reference is choice ({label}); the answer is the value of none of the options"


# words: letters, spaces, and hyphens only inside a word ("well-known"; "p - q" is math)
_TEXT_RE = re.compile(r"^[A-Za-zÀ-ÿ']+(?:-[A-Za-zÀ-ÿ']+)*(?: [A-Za-zÀ-ÿ']+(?:-[A-Za-zÀ-ÿ']+)*)*$")


def _text_key(text: str) -> str | None:
    """A case/space/LaTeX-insensitive key for a word answer (``\\text{Monday}``), None if not words."""
    s = clean_value_text(text)
    s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mbox|textit|mathbf)\s*\{([^{}]*)\}", r"\1", s).strip().rstrip(".")
    s = re.sub(r"\s+", " ", s)
    if not _TEXT_RE.match(s) or len(s) < 2:
        return None
    words = s.lower().split()
    if max(len(w) for w in words) < 2:  # "p q", "x y": products of symbols, not words
        return None
    if len(words) > 1 and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


def _num_eq(a: Fraction, b: Fraction) -> bool:
    return a == b or abs(a - b) <= _REL_TOL * max(abs(a), abs(b))


def _round(v: Fraction, places: int) -> set[Fraction]:
    q = Fraction(1, 10**places)
    scaled = v / q
    lo = math.floor(scaled)
    out = {Fraction(round(scaled)) * q}  # half-even
    out.add(Fraction(lo + (1 if scaled - lo >= Fraction(1, 2) else 0)) * q)  # half-up
    return out


def _significant_digits(v: Fraction, places: int) -> int:
    digits = str(abs(v.numerator * 10**places // v.denominator)) if v else "0"
    return len(digits.lstrip("0"))


def compare_plain(answer: PlainValue, reference: PlainValue) -> tuple[bool, str] | None:
    """(equal, "<rule>: detail") for two plain values, None when the kinds cannot be compared here."""
    a, r = answer, reference
    if a.kind == "clock" or r.kind == "clock":
        if a.kind != r.kind:
            return None
        (ah, am, as_, ap), (rh, rm, rs, rp) = a.key, r.key
        # "3:45" against "3:45 PM": the 12-hour reading; "3:45 AM" against "15:45": the 24-hour one
        if not (ap and rp) and not ((ap and rh > 12) or (rp and ah > 12)):
            ah, rh = ah % 12, rh % 12
        same = (ah, am, as_) == (rh, rm, rs)
        return same, ("numeric_equal: same time" if same else "numeric_unequal: different times")
    if a.kind == "base" or r.kind == "base":
        if a.kind == r.kind:
            if a.key[1] != r.key[1]:
                return False, f"base_mismatch: base {a.key[1]} answer, base {r.key[1]} reference"
            same = a.key[0] == r.key[0]
            return same, ("numeric_equal: same base-%d digits" if same else "numeric_unequal: base-%d digits differ") % r.key[1]
        plain, based = (a, r) if a.kind == "number" else (r, a)
        if plain.kind != "number" or plain.percent or plain.value.denominator != 1 or plain.value < 0:
            return False, "base_mismatch: a base-n numeral against a non-integer"
        same = str(plain.value.numerator) == based.key[0]
        return same, ("numeric_equal: same digits, base %d implied" if same else
                      "numeric_unequal: digits differ from the base-%d numeral") % based.key[1]
    if a.kind != "number" or r.kind != "number":
        return None
    a_vals = [a.value, *a.alts] + ([a.value / 100] if a.percent else [])
    r_vals = [r.value] + ([r.value / 100] if r.percent else [])
    for x in a_vals:
        for y in r_vals:
            if _num_eq(x, y):
                return True, f"numeric_equal: {_show(x)}"
    # a reference rounded to its own decimal places: "0.33" for 1/3, "3.14" for 3.14159
    if r.places and _significant_digits(r.value, r.places) >= 2:
        if a.fraction or (a.places is not None and a.places >= r.places + 2):
            for x in a_vals:
                for y in r_vals:
                    if y in _round(x, r.places):
                        return True, f"numeric_equal: {_show(x)} rounds to the reference's {r.places} decimal places"
    return False, f"numeric_unequal: {_show(a.value)} vs {_show(r.value)}"


def _show(v: Fraction) -> str:
    d = v.denominator
    twos_fives = d
    for f in (2, 5):
        while twos_fives % f == 0:
            twos_fives //= f
    if d == 1:
        s = str(v.numerator)
    elif twos_fives == 1 and d < 10**30:  # a terminating decimal: show it as one
        places = max(len(str(d)) - 1, 1)
        while Fraction(round(v * 10**places), 10**places) != v:
            places += 1
        s = f"{float(v):.{places}f}" if places < 15 else f"{v.numerator}/{d}"
    else:
        s = f"{v.numerator}/{v.denominator}"
    return s if len(s) <= 40 else f"{float(v):.6g}"


def fast_verdict(predicted: str, reference: str) -> tuple[str, str] | None:
    """(status, "<rule>: detail") decided without sympy, or None: choices, plain values, words.

    Pure and bounded (no sympy, no big powers): the pool runs it in the parent process, so
    most numeric answers never wait for a worker.
    """
    ref_choice = read_choice(reference)
    if ref_choice is None:
        labelled = read_labelled_choice(reference)
        if labelled is not None:
            return _choice_with_value_verdict(predicted, labelled)
        key = _NUMERIC_KEY_RE.match(reference.strip())
        if key is not None:
            numbered = _numbered_option_verdict(predicted, key.group(1))
            if numbered is not None:
                return numbered
    parts = read_choice_parts(predicted)
    got = parts[0] if parts is not None else None
    if ref_choice is not None and parts is not None and parts[1] and _OTHER_CHOICE_RE.search(parts[1]):
        return FAILED, f"choice_unequal: the answer names another choice too: {parts[1][:40]!r}"
    if ref_choice is None and got is not None and re.fullmatch(r"\s*\(?[a-j]\)?\s*", reference):
        # MathQA writes its choices in lower case: "b" is choice (B) when the answer is a marked choice
        # ("D) 980", "(a) 96", "\text{d) } 315"); a bare "b" against "b" is equal either way
        ref_choice = reference.strip().strip("()").upper()
    if ref_choice is not None:
        if got is not None:
            return ((PASSED, f"choice_equal: ({got})") if got == ref_choice
                    else (FAILED, f"choice_unequal: ({got}) vs ({ref_choice})"))
    rb, ab = read_bool(reference), read_bool(predicted)
    if rb is not None and ab is not None:
        return (PASSED, f"bool_equal: {rb}") if rb == ab else (FAILED, f"bool_unequal: {ab} vs {rb}")
    listed = _compare_lists(predicted, reference)
    if listed is not None:
        return listed
    r = read_plain_value(reference)
    if r is not None:
        if r.kind == "number" and "or" in predicted:
            split = _or_split_values(predicted)
            if split is not None:
                return FAILED, "numeric_unequal: the answer gives %d different values joined by 'or'" % split
        a = read_plain_value(predicted)
        if a is not None:
            got = compare_plain(a, r)
            if got is not None:
                same, detail = got
                return (PASSED if same else FAILED), detail
    if ref_choice is None and re.fullmatch(r"\s*\(?[a-j]\)?\s*", reference) and read_plain_value(predicted):
        ref_choice = reference.strip().strip("()").upper()  # "b" against a number: a choice, not a variable
    if ref_choice is not None:
        # "42" for reference (B) may be option B's value: only a judge that sees the options can tell
        return FAILED, f"text_unequal: the reference is choice ({ref_choice}), the answer is not a choice letter"
    rk = _text_key(reference)
    if rk is not None and rk not in _NOT_UNITS_TEXT:
        ak = _text_key(predicted)
        if ak is not None:
            return (PASSED, f"text_equal: {rk!r}") if ak == rk else (FAILED, f"text_unequal: {ak!r} vs {rk!r}")
    return None


def _or_split_values(predicted: str) -> int | None:
    """How many different plain values ``18 \\text{ points} \\text{ or } 180`` joins by "or" (None: not such a
    list, or one value written twice): math-verify reads only the first of them."""
    parts = [p for p in _OR_RE.split(clean_value_text(predicted)) if p.strip()]
    if len(parts) < 2:
        return None
    values = [read_plain_value(p) for p in parts]
    if any(v is None or v.kind != "number" for v in values):
        return None
    distinct = {v.value for v in values}
    return len(distinct) if len(distinct) > 1 else None


_BOOLS = {"true": True, "yes": True, "correct": True, "false": False, "no": False, "incorrect": False}


def read_bool(text: str) -> bool | None:
    """True / False / Yes / No (TheoremQA's references are booleans; teachers answer either word)."""
    s = clean_value_text(text)
    s = re.sub(r"^\\(?:text|textbf|mathrm)\s*\{(.*)\}$", r"\1", s).strip().strip("*.").strip().lower()
    return _BOOLS.get(s)


_LIST_ITEM_SPLIT = re.compile(r",(?![^()\[\]{}]*[)\]}])")


def _items(text: str) -> list[str] | None:
    """The items of a flat list answer: "[4, 10]", "4, 10", "\\{4, 10\\}" -> ["4", "10"] (None: not a list)."""
    s = clean_value_text(text).strip()
    if s[:1] == "[" and s[-1:] == "]":
        s = s[1:-1]
    elif s.startswith(("(", "\\{", "\\left")):
        return None  # a point or a set: math-verify knows those
    parts = [p.strip() for p in _LIST_ITEM_SPLIT.split(s)]
    return parts if len(parts) >= 2 and all(parts) else None


def _compare_lists(predicted: str, reference: str) -> tuple[str, str] | None:
    """A list reference written Python-style ("[4, 10]", TheoremQA) against "4, 10" or "[4, 10]": item by
    item, in order, when every item is a plain value; None when either side is not such a list."""
    if "[" not in reference:
        return None
    r, a = _items(reference), _items(predicted)
    if r is None or a is None:
        return None
    rv, av = [read_plain_value(x) for x in r], [read_plain_value(x) for x in a]
    if any(v is None for v in rv + av):
        return None
    if len(rv) != len(av):
        return FAILED, f"list_unequal: {len(av)} items vs {len(rv)}"
    for i, (x, y) in enumerate(zip(av, rv)):
        got = compare_plain(x, y)
        if got is None:
            return None
        if not got[0]:
            return FAILED, f"list_unequal: item {i + 1}: {got[1]}"
    return PASSED, f"list_equal: {len(rv)} items"


# single words that are math, not text: left to math-verify ("pi", "e", "infinity")
_NOT_UNITS_TEXT = {"pi", "infinity", "infty", "e", "i"}



# --------------------------------------------------------------------------- units



def strip_units(text: str) -> str:
    """The bare value of a reference written with a unit or currency, else ``text`` untouched.

    ``9 (apples)`` -> ``9``, ``$1,200`` -> ``1200``, ``\\$18.50`` -> ``18.50``, ``1.6 \\mathrm{~cm}`` -> ``1.6``,
    ``5\\text{ cm}^2`` -> ``5``, ``30 km/h`` -> ``30``, ``USD 40`` -> ``40``, ``€3`` -> ``3``, ``12 dollars`` -> ``12``.
    Untouched: anything that is not one number plus unit words (``x^2+1``, ``\\frac{3}{4}``, ``(1, 2)``,
    ``\\text{Monday}``, ``3\\pi``, ``2\\sqrt{3}``), percents (``50\\%``), degrees, powers (``10^{3}``) and
    words that change the value (``3 thousand``, ``7 dozen``). Pure string work (no sympy).
    """
    if not isinstance(text, str):
        return text
    try:
        s = clean_value_text(text)
        if not s or len(s) > 300 or _CLOCK_RE.match(s) or _BASE_RE.match(s):
            return text
        pos, sign, currency = 0, "", False
        for _ in range(2):
            sm = _SIGN_RE.match(s, pos)
            if sm:
                sign = "" if (sign == "-") == (sm.group(0)[0] == "-") else "-"
                pos = sm.end()
            cm = _CURRENCY_RE.match(s, pos)
            if cm:
                currency, pos = True, cm.end()
        got = _read_number(s, pos)
        if got is None:
            return text
        literal = s[pos:got[3]].strip()
        tail = s[got[3]:].strip()
        if tail:
            words = _unit_words(tail)
            if not words or not _unit_ok(words) or words[0].lower().rstrip("s") in _MULTIPLIERS:
                return text
        grouped = bool(_THOUSANDS.match(literal) or re.fullmatch(r"\d{1,3}(?: \d{3})+", literal))
        if not (tail or currency or grouped):
            return text
        return sign + (literal.replace(",", "").replace(" ", "") if grouped else literal)
    except Exception:  # noqa: BLE001 - a cleaning helper never stops a load
        return text
