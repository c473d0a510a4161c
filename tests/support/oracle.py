"""An oracle teacher: an OpenAI-compatible server that writes realistic chains of thought and
knows which of them are right.

It is given the seeds (problem text -> true reference, and the kind of answer) and finds the seed
by its problem text inside the user message. Each choice is drawn from a configurable mix of
labels (`right`, `wrong`, `truncated`, `hedged`); the truth of every completion is logged under
sha256 of its `message.content`: {seed, label, format, wrapper, form, strategy, final, reference}
(in `oracle.truth`, as JSON lines in `truth_path`, and at GET /truth).

RIGHT answers are written the many ways real teachers write them (the `format`: `\\boxed{x}`,
`#### x`, `The answer is x.`, `**Final Answer**`, Llama's `The final answer is: $\\boxed{x}$`...),
inside a `wrapper` (plain text, a `<think>` block, or DeepSeek's `reasoning_content` field), with
an equivalent surface `form` of the value (`1,234`, `$18.50`, `9 apples`, `\\frac{1}{2}` / `0.5` /
`1/2`, `50\\%`, `4e33`, `x = 5`, `3.50`...). WRONG answers are hard ones (`strategy`: off by one,
a small relative change, another base subscript or exponent, a number from the problem, a sign
flip, the right number inside the reasoning but a wrong final answer). HEDGED answers give two
candidates; TRUNCATED ones stop mid-reasoning with finish_reason "length", sometimes after the
right answer was already written (they must still be rejected).

Built on tests/support/fake_openai.py (raw asyncio, honours `n`):

    with Oracle(seeds, mix={"right": .6, "wrong": .2, "truncated": .1, "hedged": .1}) as srv:
        srv.base_url; srv.truth  # {sha256(content): {...}}
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support`
from support.fake_openai import FakeOpenAI, _response  # noqa: E402

DEFAULT_MIX = {"right": 0.6, "wrong": 0.2, "truncated": 0.1, "hedged": 0.1}
KINDS = ("number", "money", "percent", "fraction", "time", "sci", "base", "latex")


@dataclass(frozen=True)
class TruthSeed:
    problem: str  # the problem text exactly as it reaches the prompt
    reference: str  # the TRUE final answer in a canonical form (not what the source column holds)
    kind: str = "number"  # one of KINDS: which equivalent forms and wrong answers make sense
    unit: str | None = None  # "apples", "cm": a right answer may carry it


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


# -- numbers ------------------------------------------------------------------------------------

_NUM_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")
_FRAC_RE = re.compile(r"^(-)?\\[dt]?frac\{(\d+)\}\{(\d+)\}$")
_SCI_RE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*\\(?:times|cdot)\s*10\^\{?(-?\d+)\}?$")
_BASE_RE = re.compile(r"^([0-9A-Z]+)_\{?(\d+)\}?$")
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


def decimal_of(text: str) -> Decimal | None:
    try:
        d = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def num_text(d: Decimal) -> str:
    """Plain decimal text, no exponent, no trailing zeros: 18, 3.5, 0.0000673."""
    s = format(d.normalize(), "f")
    return s if "." not in s else (s.rstrip("0").rstrip(".") or "0")


def _thousands(d: Decimal) -> str:
    s = num_text(d)
    sign, s = ("-", s[1:]) if s.startswith("-") else ("", s)
    whole, _, frac = s.partition(".")
    return sign + f"{int(whole):,}" + ("." + frac if frac else "")


def _latex_frac(f: Fraction, cmd: str = "frac") -> str:
    sign = "-" if f < 0 else ""
    return f"{sign}\\{cmd}{{{abs(f.numerator)}}}{{{f.denominator}}}"


def _terminating(f: Fraction) -> bool:
    d = f.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


# -- equivalent forms of the right value: (form name, prose text, latex text) -----------------

Form = tuple[str, str, str]


def _number_forms(d: Decimal, seed: TruthSeed) -> list[Form]:
    s = num_text(d)
    forms: list[Form] = [("plain", s, s)]
    if abs(d) >= 1000:
        t = _thousands(d)
        forms += [("thousands", t, t.replace(",", "{,}")), ("thousands_thinspace", t.replace(",", "\u202f"),
                                                             t.replace(",", "\\,"))]
    if d < 0:
        forms.append(("unicode_minus", "\u2212" + s[1:], "\u2212" + s[1:]))
    if 0 < d < 1:
        forms.append(("leading_dot", s[1:], s[1:]))
    if d != d.to_integral_value():
        forms.append(("trailing_zero", s + "0", s + "0"))
        f = Fraction(str(d))
        if seed.kind == "number" and f.denominator <= 16:  # 2.5 as 5/2; nobody writes $18.50 as 37/2
            forms += [("frac", f"${_latex_frac(f)}$", _latex_frac(f)), ("dfrac", f"${_latex_frac(f, 'dfrac')}$",
                                                                       _latex_frac(f, "dfrac")),
                      ("slash", f"{f.numerator}/{f.denominator}", f"{f.numerator}/{f.denominator}")]
            if f > 1:  # 2 1/2: how word-problem teachers write 2.5
                w, r = divmod(f.numerator, f.denominator)
                forms.append(("mixed_number", f"{w} {r}/{f.denominator}", f"{w}\\frac{{{r}}}{{{f.denominator}}}"))
    else:
        forms.append(("trailing_zero", s + ".0", s + ".0"))
    if seed.unit:
        forms += [("unit", f"{s} {seed.unit}", f"{s} \\text{{ {seed.unit}}}"),
                  ("unit_thinspace", f"{s} {seed.unit}", f"{s}\\,\\text{{{seed.unit}}}"),
                  ("unit_in_text", f"{s} {seed.unit}", f"\\text{{{s} {seed.unit}}}")]
    if seed.kind == "money":
        money = f"{d:.2f}" if d != d.to_integral_value() else s
        forms += [("currency", f"${money}", f"\\${money}"), ("currency_word", f"{money} dollars", f"{money}")]
    if seed.kind == "percent":
        forms += [("percent", f"{s}%", f"{s}\\%"), ("percent_word", f"{s} percent", f"{s}\\%")]
    if seed.kind == "number" and d == d.to_integral_value() and not seed.unit:
        forms.append(("assignment", f"$x = {s}$", f"x = {s}"))
    return forms


def right_forms(seed: TruthSeed) -> list[Form]:
    ref = seed.reference.strip()
    if seed.kind in ("number", "money", "percent"):
        d = decimal_of(ref)
        if d is not None:
            return _number_forms(d, seed)
    if seed.kind == "fraction" and (m := _FRAC_RE.match(ref)):
        f = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
        forms = [("frac", f"${_latex_frac(f)}$", _latex_frac(f)), ("dfrac", f"${_latex_frac(f, 'dfrac')}$",
                                                                  _latex_frac(f, "dfrac")),
                 ("slash", f"{f.numerator}/{f.denominator}", f"{f.numerator}/{f.denominator}")]
        if _terminating(f):
            dec = num_text(Decimal(f.numerator) / Decimal(f.denominator))
            forms.append(("decimal", dec, dec))
        return forms
    if seed.kind == "time" and _TIME_RE.match(ref):
        return [("plain", ref, ref), ("time_text", ref, f"\\text{{{ref}}}")]
    if seed.kind == "sci" and (m := _SCI_RE.match(ref)):
        mant, exp = m.group(1), int(m.group(2))
        expanded = num_text(Decimal(mant) * (Decimal(10) ** exp))
        forms = [("sci_times", f"${ref}$", ref), ("sci_cdot", f"${mant} \\cdot 10^{{{exp}}}$", f"{mant} \\cdot 10^{{{exp}}}"),
                 ("sci_e", f"{mant}e{exp}", f"{mant}e{exp}"),
                 ("sci_unicode", f"{mant} \u00d7 10^{exp}", f"{mant} \\times 10^{{{exp}}}")]
        if 0 <= exp <= 12:
            forms.append(("sci_expanded", expanded, expanded))
        return forms
    if seed.kind == "base" and (m := _BASE_RE.match(ref)):
        digits, base = m.group(1), m.group(2)
        return [("base", f"${digits}_{base}$", f"{digits}_{base}"), ("base_braces", f"${digits}_{{{base}}}$",
                                                                     f"{digits}_{{{base}}}")]
    # any other LaTeX: verbatim, \dfrac, without \left \right; numbers get the number forms too
    d = decimal_of(ref)
    if d is not None and re.fullmatch(r"-?\d+(\.\d+)?", ref):
        return _number_forms(d, TruthSeed(seed.problem, ref, "number", seed.unit))
    prose = ref if re.fullmatch(r"[\w .,-]+", ref) else f"${ref}$"
    forms = [("latex", prose, ref)]
    if "\\frac" in ref:
        v = ref.replace("\\frac", "\\dfrac")
        forms.append(("dfrac", f"${v}$", v))
    if "\\left" in ref:
        v = re.sub(r"\\(?:left|right)(?![A-Za-z])\s*", "", ref)
        forms.append(("no_left_right", f"${v}$", v))
    if (m := re.fullmatch(r"\\text\{([^{}]+)\}", ref)):
        forms.append(("text_bare", m.group(1), m.group(1)))
    if (m := re.fullmatch(r"(\d+)\^\\circ", ref)):
        forms += [("degrees_symbol", f"{m.group(1)}\u00b0", f"{m.group(1)}^{{\\circ}}"),
                  ("degrees_word", f"{m.group(1)} degrees", f"{m.group(1)}\\text{{ degrees}}")]
    if (m := re.fullmatch(r"[a-z]\s*=\s*(.+)", ref)):
        forms.append(("drop_assignment", m.group(1), m.group(1)))
    tight = re.sub(r"\s*([,+=()\[\]]|(?<!\\)-)\s*", r"\1", ref)
    if tight != ref and "\\text" not in ref:
        forms.append(("no_spaces", f"${tight}$", tight))
    if (m := re.search(r"(?<![\d}])\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", ref)):  # not 1\frac{4}{5}
        a, b = (x if re.fullmatch(r"\d+|\\pi|[a-z]", x) else f"({x})" for x in m.groups())
        v = ref[:m.start()] + f"{a}/{b}" + ref[m.end():]
        forms.append(("slash", f"${v}$", v))
    if (m := re.search(r"\\sqrt\{(\d)\}", ref)):
        v = ref[:m.start()] + f"\\sqrt{m.group(1)}" + ref[m.end():]
        forms.append(("sqrt_no_braces", f"${v}$", v))
    return forms


# -- wrong values: (strategy, prose, latex) -----------------------------------------------------

def _problem_numbers(problem: str) -> list[Decimal]:
    return [d for d in (decimal_of(m) for m in _NUM_RE.findall(problem)) if d is not None]


def _bump_last_digit(d: Decimal, rng: random.Random) -> Decimal:
    """.0000673 -> .0000672 (or 674): a change in the last significant place."""
    exp = d.normalize().as_tuple().exponent
    step = Decimal(1).scaleb(min(int(exp), 0))
    return d + (step if rng.random() < 0.5 or d - step <= 0 else -step)


def wrong_values(seed: TruthSeed, rng: random.Random) -> list[tuple[str, str, str]]:
    ref = seed.reference.strip()
    out: list[tuple[str, str, str]] = []
    d = decimal_of(ref) if seed.kind in ("number", "money", "percent", "latex") else None
    if d is not None and re.fullmatch(r"-?\d+(\.\d+)?", ref):
        whole = d == d.to_integral_value()
        cands = [("off_by_one", d + rng.choice((1, -1)) if whole else _bump_last_digit(d, rng))]
        if whole and abs(d) >= 100:
            cands.append(("small_relative", d + max(1, int(abs(d) / 100)) * rng.choice((1, -1))))
        elif not whole:
            cands.append(("small_relative", _bump_last_digit(d, rng)))
        nums = [n for n in _problem_numbers(seed.problem) if n != d]
        if nums:
            cands.append(("problem_number", rng.choice(nums)))
        if d != 0:
            cands.append(("sign_flip", -d))
        cands.append(("right_in_reasoning", d + rng.randint(2, 9)))
        for name, v in cands:
            if v != d:
                s = num_text(v)
                out.append((name, s, s))
        return out
    m = _FRAC_RE.match(ref)
    if seed.kind == "fraction" and m:
        p, q, neg = int(m.group(2)), int(m.group(3)), bool(m.group(1))
        f = Fraction(p, q) * (-1 if neg else 1)
        for name, g in (("off_by_one", Fraction(p + 1, q) * (-1 if neg else 1)), ("reciprocal", 1 / f if f else None),
                        ("sign_flip", -f), ("right_in_reasoning", f + 1)):
            if g is not None and g != f:
                out.append((name, f"${_latex_frac(g)}$", _latex_frac(g)))
        return out
    m = _TIME_RE.match(ref)
    if seed.kind == "time" and m:
        h, mi = int(m.group(1)), int(m.group(2))
        for name, (hh, mm) in (("off_by_ten_minutes", (h + (mi + 10) // 60, (mi + 10) % 60)), ("off_by_one_hour", (h % 12 + 1, mi))):
            t = f"{hh}:{mm:02d}"
            if t != ref:
                out.append((name, t, t))
        return out
    m = _SCI_RE.match(ref)
    if seed.kind == "sci" and m:
        mant, exp = m.group(1), int(m.group(2))
        out.append(("exponent", f"${mant} \\times 10^{{{exp + 1}}}$", f"{mant} \\times 10^{{{exp + 1}}}"))
        out.append(("off_by_one", f"${num_text(Decimal(mant) + 1)} \\times 10^{{{exp}}}$",
                    f"{num_text(Decimal(mant) + 1)} \\times 10^{{{exp}}}"))
        return out
    m = _BASE_RE.match(ref)
    if seed.kind == "base" and m:
        digits, base = m.group(1), int(m.group(2))
        out.append(("base_subscript", f"${digits}_{base + 1}$", f"{digits}_{base + 1}"))
        last = int(digits[-1], 36)
        other = digits[:-1] + "0123456789ABCDEFGHIJ"[(last + 1) % base]
        out.append(("off_by_one", f"${other}_{base}$", f"{other}_{base}"))
        return out
    # LaTeX: another exponent, another integer, a sign flip, another word
    def add(name: str, v: str) -> None:
        if v != ref:
            out.append((name, v if re.fullmatch(r"[\w .,-]+", v) else f"${v}$", v))

    exp = re.search(r"\^\{?(\d+)\}?", ref)
    if exp:
        add("exponent", ref[:exp.start()] + "^{" + str(int(exp.group(1)) + 1) + "}" + ref[exp.end():])
    ints = list(re.finditer(r"\d+", ref))
    if ints:
        k = ints[-1]
        add("off_by_one", ref[:k.start()] + str(int(k.group()) + 1) + ref[k.end():])
    if "\\text{" in ref:
        add("other_word", re.sub(r"\\text\{[^}]*\}", r"\\text{Bob}", ref, count=1))
    if "," not in ref and "\\text" not in ref and "=" not in ref:
        add("sign_flip", ref[1:].strip() if ref.startswith("-") else f"-({ref})" if re.search(r"[+\-]", ref) else "-" + ref)
    inner = re.sub(r"^\\left\s*|\\right\s*", "", ref.strip())
    if "," in inner and "\\begin" not in ref:  # a tuple or a list: only its first part
        first = inner.strip("()[] ").split(",")[0].strip()
        if first:
            add("partial", first)
    if not out:
        add("unrelated", str(rng.randint(2, 99)))
    return out


# -- chains of thought --------------------------------------------------------------------------

_OPENERS = ("Let me read the problem carefully.", "First, let's identify what we know.",
            "We need to work through this step by step.", "Okay, so let me think about this.",
            "Let's break the problem into parts.")
_LINKERS = ("Next,", "Then", "Now", "After that,", "So", "Also,")
_CLOSERS = ("Let me double-check the arithmetic.", "That matches the conditions of the problem.",
            "Checking each step again, everything is consistent.", "This seems right.")


def reasoning_text(seed: TruthSeed, rng: random.Random, mention: str | None = None, words: int = 0) -> str:
    """A chain of thought over the problem's numbers: restatement, arithmetic steps, a check.
    `mention` (a value) is stated inside it, as real traces state intermediate results."""
    nums = [n for n in _problem_numbers(seed.problem)][:6] or [Decimal(rng.randint(2, 30))]
    lines = [rng.choice(_OPENERS)]
    first = seed.problem.strip().split(". ")[0][:160]
    lines.append(f"The problem says: \"{first}\".")
    for i in range(rng.randint(2, 5)):
        a = rng.choice(nums)
        b = Decimal(rng.randint(2, 12))
        op, val = rng.choice((("+", a + b), ("\\times", a * b), ("-", a - b)))
        sentence = rng.choice((f"{rng.choice(_LINKERS)} we compute ${num_text(a)} {op} {num_text(b)} = {num_text(val)}$.",
                               f"{rng.choice(_LINKERS)} {num_text(a)} {'plus' if op == '+' else 'times' if op != '-' else 'minus'} "
                               f"{num_text(b)} gives {num_text(val)}.",
                               f"Step {i + 1}: we take {num_text(a)} and combine it with {num_text(b)}, which is {num_text(val)}."))
        lines.append(sentence)
    if mention is not None:
        lines.append(rng.choice((f"Putting it together, the result is {mention}.", f"This gives us {mention}.",
                                 f"So the quantity we want equals {mention}.")))
    lines.append(rng.choice(_CLOSERS))
    while words and sum(len(x.split()) for x in lines) < words:
        lines.insert(-1, f"{rng.choice(_LINKERS)} note that {num_text(rng.choice(nums))} is used once more here.")
    return "\n".join(lines) if rng.random() < 0.5 else " ".join(lines)


# how the final answer is written: format name -> (uses latex text?, writer)
def _formats() -> dict[str, tuple[bool, Callable[[str], str]]]:
    return {
        "boxed": (True, lambda x: f"Therefore, the answer is \\boxed{{{x}}}."),
        "boxed_bare": (True, lambda x: f"\\boxed{{{x}}}"),
        "dollar_boxed": (True, lambda x: f"So the final result is $\\boxed{{{x}}}$."),
        "display_boxed": (True, lambda x: f"Hence\n\\[\n\\boxed{{{x}}}\n\\]"),
        "hashes": (False, lambda x: f"#### {x}"),
        "answer_is": (False, lambda x: f"The answer is {x}."),
        "bold_answer": (False, lambda x: f"**Answer:** {x}"),
        "answer_colon": (False, lambda x: f"Answer: {x}"),
        "final_answer_block": (False, lambda x: f"**Final Answer**\n\n{x}"),
        "final_answer_colon": (False, lambda x: f"Final answer: {x}"),
        "llama": (True, lambda x: f"The final answer is: $\\boxed{{{x}}}$"),
        "placeholder_then_answer_is": (False, lambda x: f"The answer is {x}."),
        "minerva": (True, lambda x: f"Final Answer: The final answer is ${x}$. I hope it is correct."),
        "bold_value": (False, lambda x: f"So the answer is **{x}**."),
        "answer_tag": (False, lambda x: f"<answer>{x}</answer>"),
        "boxed_then_chatter": (True, lambda x: f"\\boxed{{{x}}}\n\nLet me know if you have any other questions!"),
        "answer_is_colon": (False, lambda x: f"The answer is: {x}"),
        "answer_dollar_boxed": (True, lambda x: f"Answer: $\\boxed{{{x}}}$"),
        "boxed_twice": (True, lambda x: f"So we get $\\boxed{{{x}}}$.\n\n**Final Answer**\n\\[\n\\boxed{{{x}}}\n\\]"),
        "bold_boxed": (True, lambda x: f"**Final answer: $\\boxed{{{x}}}$**"),
        "answer_colon_newline": (False, lambda x: f"Answer:\n{x}"),
    }


FORMATS = tuple(_formats())
WRAPPERS = ("plain", "think", "reasoning_content")


@dataclass
class Completion:
    content: str
    reasoning_content: str | None
    finish_reason: str
    truth: dict[str, Any]


def write_completion(seed: TruthSeed, seed_key: Any, label: str, rng: random.Random) -> Completion:
    """One completion of `label` for `seed`, with its truth."""
    formats = _formats()
    fmt = rng.choice(FORMATS)
    wrapper = rng.choice(WRAPPERS)
    truth: dict[str, Any] = {"seed": seed_key, "label": label, "format": fmt, "wrapper": wrapper, "form": None,
                             "strategy": None, "final": None, "reference": seed.reference}
    forms = right_forms(seed)
    form, prose, latex = rng.choice(forms)
    mention = prose if rng.random() < 0.5 else None
    finish = "stop"
    if label == "right":
        if fmt == "hashes" and form in ("frac", "dfrac"):
            prose = latex  # "#### \frac{1}{2}", not "#### $\frac{1}{2}$"
        value = latex if formats[fmt][0] else prose
        truth.update(form=form, final=value)
        answer = formats[fmt][1](value)
        others = [f for f in forms if f[2] != latex]
        if fmt == "boxed_twice" and others and rng.random() < 0.5:  # \boxed{0.5} then \boxed{\frac{1}{2}}
            other = rng.choice(others)
            truth.update(format="boxed_twice_equivalent", form=f"{form}+{other[0]}")
            answer = f"So we get $\\boxed{{{other[2]}}}$.\n\n**Final Answer**\n\\[\n\\boxed{{{latex}}}\n\\]"
    elif label == "wrong":
        strategy, wprose, wlatex = rng.choice(wrong_values(seed, rng))
        value = wlatex if formats[fmt][0] else wprose
        truth.update(form="plain", strategy=strategy, final=value)
        answer = formats[fmt][1](value)
        # the right number stated inside the reasoning, then a slip
        if strategy == "right_in_reasoning":
            mention = prose if rng.random() < 0.5 else f"\\boxed{{{latex}}}"
        else:
            mention = None
    elif label == "hedged":
        strategy, wprose, wlatex = rng.choice(wrong_values(seed, rng))
        a, b = (prose, wprose) if rng.random() < 0.5 else (wprose, prose)
        la, lb = (latex, wlatex) if a == prose else (wlatex, latex)
        style = rng.choice(("either_or", "two_boxed", "could_be", "or_boxed", "boxed_list", "alternatively"))
        fmt = style
        answer = {"either_or": f"The answer is either {a} or {b}.",
                  "two_boxed": f"One reading gives \\boxed{{{la}}}, the other gives \\boxed{{{lb}}}.",
                  "could_be": f"The answer could be {a} or {b}, I'm not sure which.",
                  "or_boxed": f"\\boxed{{{la}}} or \\boxed{{{lb}}}",
                  "boxed_list": f"The possible values are \\boxed{{{la}, {lb}}}.",
                  "alternatively": f"The answer is {a}. Alternatively, if we read the question differently, the answer is {b}."}[style]
        truth.update(format=style, strategy=strategy, final=answer)
    elif label == "truncated":
        wrapper = rng.choice(("plain", "think"))  # content must hold the cut text
        finish = "length"
        body = reasoning_text(seed, rng, mention, words=rng.randint(40, 120))
        roll = rng.random()
        if roll < 0.2:  # the answer is complete, but the model hit max_tokens right there
            fmt = "cut_after_full_answer"
            body += "\n\n" + formats["boxed"][1](latex)
        elif roll < 0.6:
            fmt = "cut_after_right_answer"
            body += f"\nSo the answer is \\boxed{{{latex}}}. Wait, let me double-check the second step, because"
        else:
            fmt = "cut_mid_reasoning"
            cut = body.split(" ")
            body = " ".join(cut[: max(8, int(len(cut) * rng.uniform(0.4, 0.9)))])
        truth.update(format=fmt, wrapper=wrapper, final=None)
        content = ("<think>\n" + body) if wrapper == "think" else body
        return Completion(content, None, finish, truth)
    else:
        raise ValueError(f"unknown label {label!r}")
    reasoning = reasoning_text(seed, rng, mention)
    if fmt == "placeholder_then_answer_is":
        reasoning = rng.choice(("I need to put my final answer within \\boxed{}.", "Remember: final answer in \\boxed{}.")) + "\n" + reasoning
    # the summary names the problem: the content (whose sha256 keys the truth) is then unique to its seed
    last = reasoning.replace("\n", " ").split(". ")[-2 if ". " in reasoning else -1][:200].strip().rstrip(".")
    head = " ".join(seed.problem.split()[:14])
    summary = rng.choice((f"For \"{head}...\": {last}", f"{last}. (Problem: {head}...)"))
    if wrapper == "plain":
        content, reasoning_content = reasoning + "\n\n" + answer, None
    elif wrapper == "think":
        content, reasoning_content = f"<think>\n{reasoning}\n</think>\n\n{summary}.\n\n{answer}", None
    else:
        content, reasoning_content = f"{summary}.\n\n{answer}", reasoning
    truth["wrapper"] = wrapper
    return Completion(content, reasoning_content, finish, truth)


class Oracle(FakeOpenAI):
    """The fake server with the oracle's answers; see the module docstring."""

    def __init__(self, seeds: list[TruthSeed] | dict[Any, TruthSeed], mix: dict[str, float] | None = None,
                 truth_path: str | Path | None = None, seed: int = 0, **settings: Any):
        super().__init__(seed=seed, **settings)
        items = seeds.items() if isinstance(seeds, dict) else enumerate(seeds)
        self.seeds: dict[Any, TruthSeed] = dict(items)
        self.mix = dict(mix or DEFAULT_MIX)
        self.truth: dict[str, dict[str, Any]] = {}
        self.conflicts = 0  # two completions with the same content and different labels
        self.unknown = 0  # prompts whose problem matched no seed
        self._index = {_norm(s.problem): k for k, s in self.seeds.items()}
        self._by_length = sorted(self._index, key=len, reverse=True)
        self._counter: dict[Any, int] = {}
        self._truth_lock = threading.Lock()
        self._truth_file = open(truth_path, "a", encoding="utf-8") if truth_path else None

    def find_seed(self, user: str) -> Any:
        """The seed whose problem text the user message holds (the longest such problem)."""
        text = _norm(user)
        parts = user.split("\n\n")
        for i in range(len(parts)):
            key = self._index.get(_norm("\n\n".join(parts[i:])))
            if key is not None:
                return key
        for problem in self._by_length:
            if problem in text:
                return self._index[problem]
        return None

    def _label(self, rng: random.Random) -> str:
        labels = list(self.mix)
        return rng.choices(labels, weights=[self.mix[k] for k in labels])[0]

    def _record(self, content: str, truth: dict[str, Any]) -> None:
        key = sha256(content)
        with self._truth_lock:
            old = self.truth.get(key)
            if old is not None and old["label"] != truth["label"]:
                self.conflicts += 1
            self.truth[key] = truth
            if self._truth_file:
                self._truth_file.write(json.dumps({"sha256": key, **truth}, default=str) + "\n")
                self._truth_file.flush()

    def handle(self, conn, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if method == "GET" and path.startswith("/truth"):
            conn.send(_response(200, json.dumps(self.truth, default=str).encode()))
        else:
            super().handle(conn, method, path, headers, body)

    def _completion_body(self, req: dict, messages: list, prompt: str, n: int) -> tuple[bytes, int]:
        k = 1 if self.settings.ignore_n else n
        user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), prompt)
        key = self.find_seed(user)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
        choices, completion_tokens = [], 0
        for i in range(k):
            if key is None:
                self.unknown += 1
                done = Completion("I could not find this problem.", None, "stop",
                                  {"seed": None, "label": "unknown", "format": None, "wrapper": "plain"})
            else:
                count = self._counter.get(key, 0)
                self._counter[key] = count + 1
                rng = random.Random(f"{self.settings.seed}:{key}:{count}")
                done = write_completion(self.seeds[key], key, self._label(rng), rng)
            self._record(done.content, done.truth)
            message: dict[str, Any] = {"role": "assistant", "content": done.content}
            if done.reasoning_content is not None:
                message["reasoning_content"] = done.reasoning_content
            tokens = len(done.content.split()) + len((done.reasoning_content or "").split())
            completion_tokens += tokens
            choices.append({"index": i, "message": message, "finish_reason": done.finish_reason, "logprobs": None})
        self._ids += 1
        return json.dumps({
            "id": f"chatcmpl-oracle-{self._ids}", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model", "oracle"), "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, separators=(",", ":")).encode(), prompt_tokens + completion_tokens

    def stop(self) -> None:
        super().stop()
        if self._truth_file:
            self._truth_file.close()
            self._truth_file = None
