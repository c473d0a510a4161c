"""Second held-out fidelity set: 2025-2026 dataset shapes, reasoning-model styles and value forms nobody tuned for.

    .venv/bin/python benchmarks/heldout2.py              # write tests/support/heldout2/ if missing, build, filter, report
    .venv/bin/python benchmarks/heldout2.py --write      # regenerate the data and completions first (deterministic)
    .venv/bin/python benchmarks/heldout2.py --shapes deepscaler,gpqa --misses 5 --json out.json

Shapes (each a source in the layout of a public set, described with config keys only): MetaMathQA, Orca-Math,
OpenMathInstruct-2, DeepScaleR, Big-Math, Skywork-OR1, NuminaMath cn_k12 / amc_aime, Omni-MATH, MMLU, MMLU-Pro,
GPQA, ARC (numeric and letter keys), GSM8K with a units column, and an HF `save_to_disk` folder. A scripted
teacher answers every request with a completion written here in the manner of a 2025-2026 reasoning model
(OpenThoughts, Qwen3 in three deliveries, QwQ, DeepSeek-R1-0528, gpt-oss and its raw harmony channels, Magistral,
Phi-4-reasoning, Llama-Nemotron, Claude with <thinking>, TRL GRPO tags, Gemini 2.5, Kimi, Mistral Small). The truth
of each completion (right / wrong / truncated / hedged) is fixed when it is written, from values computed here.

Written without reading factory/parse.py, factory/values.py, factory/checks/, tests/test_parse.py,
tests/support/oracle.py, tests/support/shapes.py or the first held-out set's forms.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "tests" / "support" / "heldout2"
SHARED = Path("/work/shared/data")
SAMPLES = 4
LABEL_MIX = (("right", 0.56), ("wrong", 0.26), ("truncated", 0.09), ("hedged", 0.09))

# right by value, but a careful grader could argue: an approximation of an exact value, "0.333..." with an
# ellipsis, a choice's value without its letter, a line written as y = ... where f(x) was asked, radians for degrees
DEBATABLE_FORMS = ("approx", "ellipsis", "value_only", "y_equals", "radians")


# ------------------------------------------------------------------------------------------------
# truth: one seed's answer as data, so that every form (right or near miss) is written from a value
# ------------------------------------------------------------------------------------------------


@dataclass
class Truth:
    """kind: num | latex | choice | interval | set | tuple | matrix | poly | line | angle | pi | sqrt | pow10."""

    kind: str
    value: Any
    unit: str | None = None  # "apples", "minutes", "cm^2"
    money: bool = False
    percent: bool = False
    options: dict[str, str] = field(default_factory=dict)  # choice: label -> option text
    numbers: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], {}, False) or k == "value"}


@dataclass
class Seed:
    key: str  # text that appears verbatim in the rendered prompt
    truth: Truth
    problem: str


@dataclass
class Shape:
    name: str
    file: str
    rows: list[dict]
    seeds: list[Seed]
    source: dict
    note: str


def problem_numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in re.findall(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", text)][:10]


def counted_unit(question: str) -> str | None:
    m = re.search(r"[Hh]ow many ([a-z]+)", question)
    bad = {"more", "times", "of", "in", "are", "does", "did", "do", "is", "will", "total", "people's", "were", "was"}
    return m.group(1) if m and m.group(1) not in bad else None


def gsm8k_rows() -> list[dict]:
    return [json.loads(line) for line in open(SHARED / "gsm8k_train.jsonl", encoding="utf-8")]


def math500_rows() -> list[dict]:
    return [json.loads(line) for line in open(SHARED / "math500_test.jsonl", encoding="utf-8")]


def gsm8k_answer(row: dict) -> int:
    return int(row["answer"].split("####")[-1].strip().replace(",", ""))


def gsm8k_solution(row: dict) -> str:
    return re.sub(r"<<[^>]*>>", "", row["answer"].split("####")[0]).strip()


def gsm_truth(row: dict) -> Truth:
    q = row["question"]
    money = "$" in q and bool(re.search(r"[Hh]ow much", q))
    return Truth("num", str(gsm8k_answer(row)), unit=None if money else counted_unit(q), money=money,
                 percent=bool(re.search(r"[Ww]hat percent", q)), numbers=problem_numbers(q))


def math500_truth(row: dict) -> Truth:
    a = row["answer"].strip()
    nums = problem_numbers(row["problem"])
    if re.fullmatch(r"-?\d+", a):
        return Truth("num", a, numbers=nums)
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", a)
    if m:
        return Truth("num", str(Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)), numbers=nums)
    return Truth("latex", a, numbers=nums)


# ------------------------------------------------------------------------------------------------
# generated problems with structured answers (intervals, sets, tuples, matrices, ...)
# ------------------------------------------------------------------------------------------------

NAMES = ["Anouk", "Bashir", "Carmen", "Dmitri", "Esi", "Fumiko", "Goran", "Hiroshi", "Ines", "Jonas", "Kaveh", "Leilani"]


def gen_problem(kind: str, i: int, rng: random.Random) -> tuple[str, Truth, str]:
    """(problem, truth, canonical LaTeX reference) of one generated problem of a kind."""
    tag = f" (Problem {i + 1}.)"
    if kind == "interval":
        a = rng.randint(-9, 5)
        b = a + rng.randint(1, 8)
        if rng.random() < 0.5:
            return (f"Solve the inequality $(x - {a})(x - {b}) \\ge 0$. Express the answer in interval notation.{tag}".replace("- -", "+ "),
                    Truth("interval", {"a": a, "b": b, "mode": "out_closed"}), f"(-\\infty, {a}] \\cup [{b}, \\infty)")
        return (f"Solve the inequality $(x - {a})(x - {b}) < 0$. Express the answer in interval notation.{tag}".replace("- -", "+ "),
                Truth("interval", {"a": a, "b": b, "mode": "in_open"}), f"({a}, {b})")
    if kind == "set":
        a, b = sorted(rng.sample([v for v in range(-8, 10) if v], 2))
        return (f"Find all real numbers $x$ such that ${quadratic(-(a + b), a * b)} = 0$.{tag}",
                Truth("set", [a, b]), f"\\{{{a}, {b}\\}}")
    if kind == "tuple":
        x, y = rng.randint(-7, 9), rng.choice([v for v in range(-9, 9) if v])
        m1, m2 = rng.randint(2, 4), -rng.randint(2, 4)
        return (f"Find the point where the lines $y = {m1}x {sgn(y - m1 * x, True)}$ and $y = {m2}x {sgn(y - m2 * x, True)}$ "
                f"intersect. Give it as an ordered pair.{tag}", Truth("tuple", [x, y]), f"({x}, {y})")
    if kind == "matrix":
        A = [[rng.randint(-3, 4) for _ in range(2)] for _ in range(2)]
        B = [[rng.randint(-3, 4) for _ in range(2)] for _ in range(2)]
        C = [[sum(A[r][k] * B[k][c] for k in range(2)) for c in range(2)] for r in range(2)]
        if C[0][1] == C[1][0]:
            B[0][1] += 1
            C = [[sum(A[r][k] * B[k][c] for k in range(2)) for c in range(2)] for r in range(2)]
        if C[0][1] == C[1][0]:
            return gen_problem(kind, i, rng)
        return (f"Compute $\\begin{{pmatrix}} {mat_body(A)} \\end{{pmatrix}} \\begin{{pmatrix}} {mat_body(B)} \\end{{pmatrix}}$.{tag}",
                Truth("matrix", C), f"\\begin{{pmatrix}} {mat_body(C)} \\end{{pmatrix}}")
    if kind == "poly":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        if a + b == a * b:
            b += 1
        return (f"Expand $(x + {a})(x + {b})$.{tag}", Truth("poly", [a + b, a * b]), f"x^2 + {a + b}x + {a * b}")
    if kind == "line":
        m, c = rng.choice([v for v in range(-5, 7) if v not in (-1, 0, 1)]), rng.choice([v for v in range(-9, 10) if v])
        if m == c:
            c += 1
        x1, x2 = rng.randint(-3, 2), rng.randint(3, 6)
        return (f"A linear function $f$ satisfies $f({x1}) = {m * x1 + c}$ and $f({x2}) = {m * x2 + c}$. Find $f(x)$.{tag}",
                Truth("line", [m, c]), f"{m}x {sgn(c, True)}")
    if kind == "angle":
        A, B = rng.randint(25, 80), rng.randint(25, 70)
        return (f"In triangle $ABC$, $\\angle A = {A}^\\circ$ and $\\angle B = {B}^\\circ$. Find $\\angle C$ in degrees.{tag}",
                Truth("angle", 180 - A - B), f"{180 - A - B}^\\circ")
    if kind == "pi":
        r = rng.randint(2, 12)
        if rng.random() < 0.5:
            return (f"A circle has radius {r}. What is its area? Express your answer in terms of $\\pi$.{tag}",
                    Truth("pi", str(r * r)), f"{r * r}\\pi")
        return (f"A circle has diameter {r}. What is its circumference? Express your answer in terms of $\\pi$.{tag}",
                Truth("pi", str(r)), f"{r}\\pi")
    if kind == "sqrt":
        s = rng.randint(2, 11)
        if rng.random() < 0.5:
            return (f"A square has side length {s}. How long is its diagonal? Express your answer in simplest radical form.{tag}",
                    Truth("sqrt", {"c": str(s), "r": 2}), f"{s}\\sqrt{{2}}")
        c = Fraction(s, 2)
        ref = f"{c}\\sqrt{{3}}" if c.denominator == 1 else f"\\frac{{{s}\\sqrt{{3}}}}{{2}}"
        if s == 1:
            ref = "\\frac{\\sqrt{3}}{2}"
        return (f"An equilateral triangle has side length {s}. What is its height? Express your answer in simplest radical "
                f"form.{tag}", Truth("sqrt", {"c": str(c), "r": 3}), ref)
    if kind == "pow10":
        a, b = rng.randint(-9, -2), rng.randint(-4, 5)
        e = a + b
        if e == 0:
            b += 1
            e += 1
        return (f"Simplify $10^{{{a}}} \\cdot 10^{{{b}}}$.{tag}", Truth("pow10", e), f"10^{{{e}}}")
    if kind == "fraction":
        red, blue = rng.randint(2, 9), rng.randint(2, 9)
        p = Fraction(red, red + blue)
        if p.denominator in (2, 4, 5, 8, 10):
            blue += 1
            p = Fraction(red, red + blue)
        return (f"A bag holds {red} red and {blue} blue marbles. One marble is drawn at random. What is the probability "
                f"that it is red?{tag}", Truth("num", str(p)), frac_tex(p))
    if kind == "mixed":
        n, k = rng.randint(7, 40), rng.choice([3, 4, 6, 7, 9])
        if n % k == 0:
            n += 1
        x = Fraction(n, k)
        return (f"{rng.choice(NAMES)} shares {n} liters of juice equally among {k} jugs. How many liters go in each jug?{tag}",
                Truth("num", str(x), unit="liters"), frac_tex(x))
    if kind == "area":
        w, h = rng.randint(3, 19), rng.randint(3, 19)
        return (f"A rectangle measures {w} cm by {h} cm. What is its area in square centimeters?{tag}",
                Truth("num", str(w * h), unit="cm^2", numbers=[str(w), str(h), str(2 * (w + h))]), f"{w * h} \\text{{ cm}}^2")
    if kind == "big":
        d = rng.choice([2, 3, 4, 5, 6, 7, 10, 12, 15, 20])
        n = 86400 * d
        return (f"How many seconds are there in {d} days?{tag}", Truth("num", str(n), numbers=[str(d), "86400"]), f"{n}")
    if kind == "percent":
        whole = rng.choice([40, 80, 120, 200, 250, 400, 500, 800])
        pct = rng.choice([5, 10, 15, 20, 25, 30, 35, 40, 45, 60, 65, 75])
        part = whole * pct // 100
        return (f"{part} of the {whole} students in a school walk to school. What percent of the students walk to "
                f"school?{tag}", Truth("num", str(pct), percent=True, numbers=[str(part), str(whole)]), f"{pct}\\%")
    raise ValueError(kind)


def sgn(n: int, with_number: bool = True) -> str:
    """'+ 3' / '- 3': a term after the first."""
    return f"{'-' if n < 0 else '+'} {abs(n)}"


def quadratic(b: int, c: int) -> str:
    """x^2 + bx + c with its signs, a zero term dropped and a coefficient 1 left implicit."""
    out = "x^2"
    if b:
        out += f" {'-' if b < 0 else '+'} {abs(b) if abs(b) != 1 else ''}x"
    if c:
        out += f" {sgn(c)}"
    return out


def mat_body(M: list[list[int]], sep: str = " & ", row: str = " \\\\ ") -> str:
    return row.join(sep.join(str(v) for v in r) for r in M)


def frac_tex(x: Fraction, cmd: str = "\\frac") -> str:
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    return f"{sign}{cmd}{{{abs(x.numerator)}}}{{{x.denominator}}}"


GEN_KINDS = ["interval", "set", "tuple", "matrix", "poly", "line", "angle", "pi", "sqrt", "pow10", "fraction", "mixed",
             "area", "big", "percent"]


# ------------------------------------------------------------------------------------------------
# value forms: every way a model writes a value; a near miss is a perturbed value written the same ways
# ------------------------------------------------------------------------------------------------

WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen " \
        "eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
VULGAR = {(1, 2): "½", (1, 3): "⅓", (2, 3): "⅔", (1, 4): "¼", (3, 4): "¾", (1, 5): "⅕", (2, 5): "⅖", (3, 5): "⅗",
          (4, 5): "⅘", (1, 6): "⅙", (5, 6): "⅚", (1, 8): "⅛", (3, 8): "⅜", (5, 8): "⅝", (7, 8): "⅞", (1, 7): "⅐", (1, 9): "⅑"}
Form = tuple[str, str, str]  # (LaTeX for a box, plain text, form tag)


def words(n: int) -> str:
    if n < 20:
        return WORDS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + WORDS[n % 10])
    rest = n % 100
    return WORDS[n // 100] + " hundred" + ("" if rest == 0 else " " + words(rest))


def spaced(n: int, sep: str = " ") -> str:
    return f"{n:,}".replace(",", sep)


def repeating(x: Fraction) -> str | None:
    """0.1\\overline{6} for 1/6: the exact repeating decimal of a non-terminating fraction (None if it terminates)."""
    q = x.denominator
    while q % 2 == 0:
        q //= 2
    while q % 5 == 0:
        q //= 5
    if q == 1 or x < 0:
        return None
    whole, r = divmod(x.numerator, x.denominator)
    digits, seen = [], {}
    while r and r not in seen:
        seen[r] = len(digits)
        r *= 10
        digits.append(str(r // x.denominator))
        r %= x.denominator
    start = seen[r]
    return f"{whole}.{''.join(digits[:start])}\\overline{{{''.join(digits[start:])}}}"


def decimal_of(x: Fraction) -> str | None:
    for d in range(0, 10):
        s = x * 10 ** d
        if s.denominator == 1:
            v = abs(int(s))
            text = str(v).rjust(d + 1, "0")
            out = text if d == 0 else f"{text[:-d]}.{text[-d:]}"
            return ("-" if x < 0 else "") + out
    return None


def sci(n: int) -> tuple[str, int] | None:
    """(mantissa, exponent) of an integer with trailing zeros: 259200 -> ('2.592', 5)."""
    if abs(n) < 10000 or n % 100:
        return None
    e = len(str(abs(n))) - 1
    mant = decimal_of(Fraction(n, 10 ** e))
    return mant, e


def num_forms(t: Truth, x: Fraction) -> list[Form]:
    F: list[Form] = []
    if x.denominator == 1:
        n = int(x)
        F += [(str(n), str(n), "plain")] * 3
        if n < 0:
            F += [(f"−{-n}", f"−{-n}", "unicode_minus")]
        if 0 <= n < 1000 and not t.money and t.unit != "cm^2":
            F += [(f"\\text{{{words(n)}}}", words(n), "words")]
        if abs(n) >= 1000:
            F += [(spaced(n), spaced(n), "space_thousands"), (spaced(n, "\u202f"), spaced(n, "\u202f"), "nnbsp_thousands"),
                  (spaced(n, "~"), spaced(n), "tilde_thousands")]
        s = sci(n)
        if s:
            m, e = s
            F += [(f"{m} \\cdot 10^{{{e}}}", f"{m} · 10^{e}", "sci_cdot"), (f"{m} \\times 10^{{{e}}}", f"{m} × 10^{e}", "sci_times"),
                  (f"{m}e{e}", f"{m}e{e}", "sci_e")]
        if t.money:
            F += [(f"\\${n:,}", f"${n:,}", "dollar"), (f"\\$\\,{n}", f"$ {n}", "dollar_thin"), (f"{n:,} \\text{{ dollars}}", f"{n:,} dollars", "dollars_word"),
                  (f"\\text{{USD }}{n}", f"USD {n}", "usd"), (f"\\${n}.00", f"${n}.00", "dollar_cents")]
        if t.percent:
            F += [(f"{n} \\text{{ percent}}", f"{n} percent", "percent_word"), (f"{n}\\,\\%", f"{n} %", "percent_thin"),
                  (f"{n}\\%", f"{n}%", "percent_sign"), (f"{n} \\text{{ per cent}}", f"{n} per cent", "per_cent")]
        if t.unit == "cm^2":
            F += [(f"{n} \\text{{ cm}}^2", f"{n} cm²", "text_cm2"), (f"{n}\\,\\mathrm{{cm}}^2", f"{n} cm^2", "mathrm_cm2"),
                  (f"{n}~\\text{{cm}}^{{2}}", f"{n} square centimeters", "tilde_cm2")]
        elif t.unit:
            F += [(f"{n} \\text{{ {t.unit}}}", f"{n} {t.unit}", "unit_text"), (f"{n}\\ \\mathrm{{{t.unit}}}", f"{n} {t.unit}", "unit_mathrm")]
            if t.unit in ("minutes", "hours", "days"):
                F += [(f"{n} \\text{{ {t.unit[:3]}}}", f"{n} {t.unit[:3]}", "unit_abbrev")]
        return F
    p, q = x.numerator, x.denominator
    sign = "-" if p < 0 else ""
    ap = abs(p)
    F += [(frac_tex(x), f"{p}/{q}", "frac")] * 2
    F += [(frac_tex(x, "\\dfrac"), f"{p}/{q}", "dfrac"), (frac_tex(x, "\\tfrac"), f"{p}/{q}", "tfrac")]
    if ap < 10 and q < 10:
        F += [(f"{sign}\\frac{ap}{q}", f"{p}/{q}", "frac_nobraces"), (f"{sign}\\tfrac{ap}{q}", f"{p}/{q}", "tfrac_nobraces")]
    F += [(f"\\left({frac_tex(x)}\\right)", f"({p}/{q})", "left_right")]
    if ap > q:
        w, r = divmod(ap, q)
        F += [(f"{sign}{w}\\frac{{{r}}}{{{q}}}", f"{sign}{w} {r}/{q}", "mixed"), (f"{sign}{w}\\tfrac{{{r}}}{{{q}}}", f"{sign}{w} {r}/{q}", "mixed_tfrac")]
        if (r, q) in VULGAR:
            F += [(f"{sign}{w}{VULGAR[(r, q)]}", f"{sign}{w}{VULGAR[(r, q)]}", "mixed_unicode")]
    elif (ap, q) in VULGAR:
        F += [(sign + VULGAR[(ap, q)], sign + VULGAR[(ap, q)], "unicode_fraction")]
    d = decimal_of(x)
    if d:
        F += [(d, d, "decimal")]
    rep = repeating(x)
    if rep:
        F += [(rep, rep, "repeating")]
        approx = f"{float(x):.3f}"
        F += [(f"\\approx {approx}", f"≈ {approx}", "approx"), (f"{float(x):.3f}\\ldots", f"{float(x):.4f}...", "ellipsis")]
    if t.unit and t.unit != "cm^2":
        F += [(f"{frac_tex(x)} \\text{{ {t.unit}}}", f"{p}/{q} {t.unit}", "frac_unit")]
    return F


def interval_tex(a: int, b: int, mode: str, style: str) -> tuple[str, str]:
    inf = "\\infty"
    if mode.startswith("out"):
        L, R = ("]", "[") if mode.endswith("closed") else (")", "(")
        if style == "plain":
            return f"(-{inf}, {a}{L} \\cup {R}{b}, {inf})", f"(-∞, {a}{L} ∪ {R}{b}, ∞)"
        if style == "left_right":
            return f"\\left(-{inf}, {a}\\right{L} \\cup \\left{R}{b}, +{inf}\\right)", f"(-∞, {a}{L} ∪ {R}{b}, +∞)"
        if style == "tight":
            return f"(-{inf},{a}{L}\\cup{R}{b},{inf})", f"(-∞,{a}{L}∪{R}{b},∞)"
        if style == "x_in":
            return f"x \\in (-{inf}, {a}{L} \\cup {R}{b}, {inf})", f"x ∈ (-∞, {a}{L} ∪ {R}{b}, ∞)"
        le, ge = ("\\le", "\\ge") if mode.endswith("closed") else ("<", ">")
        ule, uge = ("≤", "≥") if mode.endswith("closed") else ("<", ">")
        if style == "inequality":
            return f"x {le} {a} \\text{{ or }} x {ge} {b}", f"x {ule} {a} or x {uge} {b}"
        return f"\\{{x \\mid x {le} {a} \\text{{ or }} x {ge} {b}\\}}", f"{{x | x {ule} {a} or x {uge} {b}}}"
    L, R = ("(", ")") if mode.endswith("open") else ("[", "]")
    lt = "<" if mode.endswith("open") else "\\le"
    ult = "<" if mode.endswith("open") else "≤"
    if style == "plain":
        return f"{L}{a}, {b}{R}", f"{L}{a}, {b}{R}"
    if style == "left_right":
        return f"\\left{L}{a}, {b}\\right{R}", f"{L}{a}, {b}{R}"
    if style == "tight":
        return f"{L}{a},{b}{R}", f"{L}{a},{b}{R}"
    if style == "x_in":
        return f"x \\in {L}{a}, {b}{R}", f"x ∈ {L}{a}, {b}{R}"
    if style == "inequality":
        return f"{a} {lt} x {lt} {b}", f"{a} {ult} x {ult} {b}"
    return f"\\{{x \\mid {a} {lt} x {lt} {b}\\}}", f"{{x | {a} {ult} x {ult} {b}}}"


def poly_tex(b: int, c: int, style: str) -> tuple[str, str]:
    bs, cs = sgn(b, True), sgn(c, True)
    if style == "braced":
        return f"x^{{2}} {bs}x {cs}", f"x^2 {bs}x {cs}"
    if style == "reversed":
        return f"{c} {bs}x + x^2", f"{c} {bs}x + x^2"
    if style == "unicode":
        return f"x² {bs}x {cs}", f"x² {bs}x {cs}"
    if style == "thin":
        return f"x^2 {bs}\\,x {cs}", f"x^2 {bs}x {cs}"
    if style == "cdot":
        return f"x^2 {bs} \\cdot x {cs}", f"x^2 {bs}*x {cs}"
    return f"x^2 {bs}x {cs}", f"x^2 {bs}x {cs}"


def forms_of(t: Truth, v: Any) -> list[Form]:
    """Every right way to write value v (the truth's own value, or a perturbed one for a near miss)."""
    k = t.kind
    if k == "num":
        return num_forms(t, Fraction(v))
    if k == "latex":
        F = [(v, f"${v}$", "verbatim")] * 4
        if "\\frac" in v and "\\dfrac" not in v:
            F += [(v.replace("\\frac", "\\dfrac"), f"${v}$", "dfrac")]
        F += [(f"\\displaystyle {v}", f"${v}$", "displaystyle")]
        if v.startswith("(") and v.endswith(")") and "\\left" not in v:
            F += [(f"\\left({v[1:-1]}\\right)", f"${v}$", "left_right")]
        return F
    if k == "choice":
        L, opt = v, t.options[v]
        num = L.isdigit()
        F = [(L, L, "label")] * 2 + [(f"({L})", f"({L})", "paren_label"), (f"\\text{{{L}}}", f"{L}", "text_label"),
                                     (f"{L}: {opt}", f"{L}. {opt}", "label_dot_value"), (f"\\text{{Option {L}}}", f"Option {L}", "option_word")]
        if not num:
            F += [(f"\\textbf{{({L})}}", f"({L})", "textbf_label"), (f"\\textbf{{({L})}}\\ {opt}", f"({L}) {opt}", "textbf_label_value"),
                  (f"\\mathrm{{{L}}}", f"{L}) {opt}", "mathrm_label")]
        F += [(opt, opt, "value_only")]
        return F
    if k == "interval":
        d = v
        return [(*interval_tex(d["a"], d["b"], d["mode"], s), f"interval_{s}") for s in
                ("plain", "plain", "left_right", "tight", "x_in", "inequality", "set_builder")]
    if k == "set":
        a, b = v
        return [(f"\\{{{a}, {b}\\}}", f"{{{a}, {b}}}", "braces"), (f"\\{{{b},{a}\\}}", f"{{{b}, {a}}}", "braces_swapped"),
                (f"x = {a} \\text{{ or }} x = {b}", f"x = {a} or x = {b}", "x_or"), (f"x \\in \\{{{a}, {b}\\}}", f"x ∈ {{{a}, {b}}}", "x_in_set"),
                (f"x_1 = {a},\\ x_2 = {b}", f"x₁ = {a}, x₂ = {b}", "subscripts"), (f"{a}, {b}", f"{a}, {b}", "bare_list"),
                (f"{b}, {a}", f"{b} and {a}", "bare_swapped")]
    if k == "tuple":
        x, y = v
        um = f"{y}".replace("-", "−")
        return [(f"({x}, {y})", f"({x}, {y})", "pair")] * 2 + [
            (f"\\left({x}, {y}\\right)", f"({x}, {y})", "left_right"), (f"({x},\\,{y})", f"({x}, {y})", "thin_comma"),
            (f"\\left( {x},\\ {y} \\right)", f"({x}, {um})", "unicode_minus_plain"), (f"x = {x},\\ y = {y}", f"x = {x}, y = {y}", "x_y_equations")]
    if k == "matrix":
        M = v
        return [(f"\\begin{{pmatrix}} {mat_body(M)} \\end{{pmatrix}}", None, "pmatrix")] * 2 + [
            (f"\\begin{{bmatrix}}{mat_body(M, '&', chr(92) * 2)}\\end{{bmatrix}}", None, "bmatrix_tight"),
            (f"\\left[\\begin{{array}}{{cc}} {mat_body(M)} \\end{{array}}\\right]", None, "array_brackets"),
            (f"\\begin{{pmatrix}}\n{mat_body(M, ' & ', ' ' + chr(92) * 2 + chr(10))}\n\\end{{pmatrix}}", None, "pmatrix_newlines")]
    if k == "poly":
        b, c = v
        return [(*poly_tex(b, c, s), f"poly_{s}") for s in ("plain", "plain", "braced", "reversed", "unicode", "thin", "cdot")]
    if k == "line":
        m, c = v
        cs = sgn(c, True)
        return [(f"{m}x {cs}", f"{m}x {cs}", "expr"), (f"f(x) = {m}x {cs}", f"f(x) = {m}x {cs}", "f_equals"),
                (f"{c} {sgn(m, True)}x", f"{c} {sgn(m, True)}x", "reordered"), (f"f(x)={m}x{cs.replace(' ', '')}", f"f(x)={m}x{cs.replace(' ', '')}", "tight"),
                (f"{m} x {cs}", f"{m} x {cs}", "spaced"), (f"y = {m}x {cs}", f"y = {m}x {cs}", "y_equals")]
    if k == "angle":
        n = v
        rad = Fraction(n, 180)
        return [(f"{n}^\\circ", f"{n}°", "circ")] * 2 + [
            (f"{n}^{{\\circ}}", f"{n}°", "circ_braced"), (f"{n}°", f"{n}°", "degree_sign"), (f"{n} \\text{{ degrees}}", f"{n} degrees", "degrees_word"),
            (f"\\angle C = {n}^\\circ", f"∠C = {n}°", "angle_equation"), (f"{n}", f"{n}", "bare_number"),
            (f"\\frac{{{rad.numerator}\\pi}}{{{rad.denominator}}}" if rad.numerator != 1 else f"\\frac{{\\pi}}{{{rad.denominator}}}",
             "", "radians")]
    if k == "pi":
        c = v
        return [(f"{c}\\pi", f"{c}π", "coef_pi")] * 2 + [
            (f"{c} \\pi", f"{c} π", "spaced_pi"), (f"{c}π", f"{c}π", "unicode_pi"), (f"\\pi \\cdot {c}", f"π·{c}", "pi_first"),
            (f"{c}\\cdot\\pi", f"{c}*pi", "cdot_pi"), (f"A = {c}\\pi", f"{c}π", "equation_pi"),
            (f"\\approx {float(Fraction(c)) * math.pi:.2f}", f"≈ {float(Fraction(c)) * math.pi:.2f}", "approx")]
    if k == "sqrt":
        c, r = Fraction(v["c"]), v["r"]
        if c.denominator == 1:
            n = int(c)
            F = [(f"{n}\\sqrt{{{r}}}", f"{n}√{r}", "coef_sqrt")] * 2 + [
                (f"{n}\\sqrt{r}", f"{n}√{r}", "sqrt_nobrace"), (f"{n} \\sqrt {{{r}}}", f"{n}√{r}", "sqrt_spaced"),
                (f"\\sqrt{{{n * n * r}}}", f"√{n * n * r}", "unsimplified"), (f"{n}√{r}", f"{n}√{r}", "unicode_sqrt"),
                (f"\\sqrt{{{r}}} \\cdot {n}", f"√{r}·{n}", "sqrt_first")]
            if n == 1:
                F = [f for f in F if f[2] != "unsimplified"]
            return F
        p, q = c.numerator, c.denominator
        coef = "" if p == 1 else str(p)
        return [(f"\\frac{{{coef}\\sqrt{{{r}}}}}{{{q}}}", f"{coef}√{r}/{q}", "frac_sqrt")] * 2 + [
            (f"\\dfrac{{{coef}\\sqrt{r}}}{{{q}}}", f"{coef}√{r}/{q}", "dfrac_sqrt_nobrace"),
            (f"\\frac{{{p}}}{{{q}}}\\sqrt{{{r}}}", f"({p}/{q})√{r}", "coef_frac_sqrt"),
            (f"{coef}\\sqrt{{{r}}}/{q}", f"{coef}√{r}/{q}", "slash_sqrt"),
            (f"\\frac{{{p * r}}}{{{q}\\sqrt{{{r}}}}}", f"{p * r}/({q}√{r})", "unrationalized")]
    if k == "pow10":
        e = v
        x = Fraction(10) ** e
        dec = decimal_of(x)
        F = [(f"10^{{{e}}}", f"10^{e}", "pow10")] * 2 + [
            (f"1 \\times 10^{{{e}}}", f"1 × 10^{e}", "one_times"), (f"1\\cdot 10^{{{e}}}", f"1·10^{e}", "one_cdot"),
            (frac_tex(x), f"{x.numerator}/{x.denominator}" if x.denominator > 1 else str(x), "as_fraction"),
            (f"10^{{{str(e).replace('-', '- ')}}}", f"10^({e})", "spaced_exponent"), (f"1e{e}", f"1e{e}", "e_notation")]
        if dec and len(dec) <= 12:
            F += [(dec, dec, "as_decimal")]
        return F
    raise ValueError(k)


def perturbed(t: Truth, rng: random.Random, other: Truth) -> tuple[Any, str]:
    """A near miss: (a value that is wrong by construction, cause)."""
    k, v = t.kind, t.value
    if k == "num":
        x = Fraction(v)
        cands = [(x + 1, "off_by_one"), (x - 1, "off_by_one")]
        if x.denominator == 1:
            n = int(x)
            cands += [(n * 10, "magnitude")]
            nums = [int(s) for s in t.numbers if re.fullmatch(r"\d+", s) and int(s) != n]
            if nums:
                cands.append((Fraction(rng.choice(nums)), "number_from_problem"))
            ds = str(abs(n))
            if len(ds) >= 3 and ds[-2] != ds[-3]:
                cands.append((Fraction(int(ds[:-3] + ds[-2] + ds[-3] + ds[-1]) * (1 if n >= 0 else -1)), "transposed_digits"))
        else:
            cands += [(1 / x, "reciprocal"), (Fraction(x.numerator + 1, x.denominator), "numerator_slip"),
                      (Fraction(x.numerator, x.denominator + 1), "denominator_slip")]
            if x > 1:
                cands += [(Fraction(int(x)), "whole_part_only")]
        cands = [(c, why) for c, why in cands if c != x]
        c, why = rng.choice(cands)
        return str(c), why
    if k == "latex":
        m = re.search(r"\d+", v)
        if m:
            return v[:m.start()] + str(int(m.group()) + 1) + v[m.end():], "digit_slip"
        return (other.value if other.kind == "latex" and other.value != v else "\\text{none}"), "other_answer"
    if k == "choice":
        return rng.choice([L for L in t.options if L != v]), "wrong_choice"
    if k == "interval":
        d = dict(v)
        flip = {"out_closed": "out_open", "in_open": "in_closed"}
        c = rng.choice(["brackets", "shift", "complement"])
        if c == "brackets":
            d["mode"] = flip[d["mode"]]
        elif c == "shift":
            d["b"] += 1
        else:
            d["mode"] = {"out_closed": "in_closed", "in_open": "out_open"}[d["mode"]]
        return d, f"interval_{c}"
    if k == "set":
        a, b = v
        c = rng.choice(["sign", "slip", "partial"])
        if c == "sign":
            return [a, -b] if -b != a else [-a, b], "set_sign"
        if c == "slip":
            return [a, b + 1] if b + 1 != a else [a, b + 2], "set_slip"
        return None, "set_partial"
    if k == "tuple":
        x, y = v
        c = rng.choice(["swapped", "sign", "slip"]) if x != y else rng.choice(["sign", "slip"])
        if c == "swapped":
            return [y, x], "tuple_swapped"
        if c == "sign":
            return ([x, -y] if y else [-x, y]), "tuple_sign"
        return [x, y + 1], "tuple_slip"
    if k == "matrix":
        M = [row[:] for row in v]
        if rng.random() < 0.5:
            return [[M[0][0], M[1][0]], [M[0][1], M[1][1]]], "matrix_transposed"
        M[1][1] += 1
        return M, "matrix_entry"
    if k == "poly":
        b, c = v
        opts = [([b, -c], "poly_sign"), ([b + 1, c], "poly_slip")]
        if b != c:
            opts.append(([c, b], "poly_swapped_coefficients"))
        return rng.choice(opts)
    if k == "line":
        m, c = v
        return rng.choice([([m, -c], "line_sign"), ([c, m], "line_swapped"), ([m, c + 1], "line_slip")])
    if k == "angle":
        n = v
        opts = [(n + 10, "angle_slip"), (180 - n, "angle_supplement")] + ([(90 - n, "angle_complement")] if n < 90 and 90 - n != n else [])
        return rng.choice([o for o in opts if o[0] != n])
    if k == "pi":
        c = Fraction(v)
        return rng.choice([(str(c * 2), "pi_double"), (str(c + 1), "pi_slip")])
    if k == "sqrt":
        c, r = Fraction(v["c"]), v["r"]
        return rng.choice([({"c": str(c), "r": r + 1 if r + 1 != 4 else r + 2}, "sqrt_radicand"),
                           ({"c": str(c * 2), "r": r}, "sqrt_double")])
    if k == "pow10":
        return rng.choice([(-v, "pow10_sign"), (v - 1, "pow10_slip")])
    raise ValueError(k)


def wrong_forms(t: Truth, rng: random.Random, other: Truth) -> tuple[list[Form], str]:
    w, cause = perturbed(t, rng, other)
    if t.kind == "set" and w is None:  # one root of two
        a = t.value[0]
        return [(f"x = {a}", f"x = {a}", "one_root"), (f"\\{{{a}\\}}", f"{{{a}}}", "one_root")], cause
    return [f for f in forms_of(t, w) if not any(d in f[2] for d in DEBATABLE_FORMS)], cause


def plainify(f: Form) -> Form:
    """A form without a plain writing (matrices, radians) is written in $...$ where a style wants plain text."""
    box, plain, tag = f
    return box, plain if plain else f"${box}$", tag


# ------------------------------------------------------------------------------------------------
# shapes
# ------------------------------------------------------------------------------------------------


def write_gen_problems(kinds: list[str], n: int, seed: str) -> list[tuple[str, Truth, str]]:
    rng = random.Random(seed)
    out, seen = [], set()
    for i in range(n):
        p, t, ref = gen_problem(kinds[i % len(kinds)], i, rng)
        if p in seen:
            continue
        seen.add(p)
        out.append((p, t, ref))
    return out


def shape_metamath(gsm: list[dict], m500: list[dict], rng: random.Random) -> Shape:
    """MetaMathQA: type, query, original_question, response ending in 'The answer is: 42'."""
    rows, seeds = [], []
    for r in rng.sample(gsm, 24):
        q = r["question"]
        rows.append({"type": "GSM_AnsAug", "query": q, "original_question": r["question"],
                     "response": gsm8k_solution(r) + f"\nThe answer is: {gsm8k_answer(r)}"})
        seeds.append(Seed(q, gsm_truth(r), q))
    for r in rng.sample(m500, 16):
        rows.append({"type": "MATH_AnsAug", "query": r["problem"], "original_question": r["problem"],
                     "response": "We compute step by step.\nThe answer is: " + r["answer"]})
        seeds.append(Seed(r["problem"], math500_truth(r), r["problem"]))
    return Shape("metamathqa", "metamathqa.jsonl", rows, seeds,
                 {"fields": {"problem": "query", "answer": "response"}, "answer_after": "The answer is:"},
                 "jsonl; reference after the last 'The answer is:' of `response` (GSM ints and MATH LaTeX)")


ORCA_ENDINGS = [
    ("Therefore, the answer is {a}.", False), ("So, {name} has {a} {unit} in the end.", False),
    ("The final count is {a} {unit}.", False), ("Thus, {a} {unit} are needed in total over the {k} days.", True),
    ("{name} ends up with {a} {unit} after {k} weeks.", True), ("Hence, {name} needs {a} {unit}.", False),
    ("In total, there are {a} {unit}.", False),
]


def shape_orca(gsm: list[dict], rng: random.Random) -> Shape:
    """Orca-Math-200k: question, answer (a worked text; its final sentence states the value, sometimes followed by other numbers)."""
    rows, seeds = [], []
    for i, r in enumerate(rng.sample(gsm, 40)):
        t = gsm_truth(r)
        a = f"${int(t.value):,}" if t.money else f"{int(t.value):,}"
        ending, _ = ORCA_ENDINGS[i % len(ORCA_ENDINGS)]
        sentence = ending.format(a=a, name=NAMES[i % len(NAMES)], unit=t.unit or "items", k=rng.randint(2, 9))
        rows.append({"question": r["question"], "answer": gsm8k_solution(r) + "\n\n" + sentence})
        seeds.append(Seed(r["question"], t, r["question"]))
    return Shape("orca_math", "orca_math.parquet", rows, seeds,
                 {"fields": {"problem": "question", "answer": "answer"}, "answer_regex": r"(-?\d[\d,]*(?:\.\d+)?)",
                  "strip_units": True},
                 "parquet; the answer is prose: reference = the last number (answer_regex), wrong where a number follows it")


def shape_openmath2(m500: list[dict], rng: random.Random) -> Shape:
    """OpenMathInstruct-2: problem, generated_solution (\\boxed{}), expected_answer, problem_source."""
    rows, seeds = [], []
    for p, t, ref in write_gen_problems(["set", "tuple", "poly", "line", "fraction", "mixed", "sqrt", "pi", "interval", "big"], 28, "om2"):
        expected = {"set": lambda: ", ".join(map(str, t.value)), "line": lambda: ref.replace(" ", "")}.get(t.kind, lambda: ref)()
        rows.append({"problem": p, "generated_solution": f"Working it out gives $\\boxed{{{expected}}}$.",
                     "expected_answer": expected, "problem_source": "augmented_math"})
        seeds.append(Seed(p, t, p))
    for r in rng.sample([r for r in m500 if not re.fullmatch(r"-?\d+", r["answer"])], 12):
        rows.append({"problem": r["problem"], "generated_solution": r["solution"], "expected_answer": r["answer"],
                     "problem_source": "math"})
        seeds.append(Seed(r["problem"], math500_truth(r), r["problem"]))
    return Shape("openmath2", "openmathinstruct2.parquet", rows, seeds,
                 {"fields": {"problem": "problem", "answer": "expected_answer"}},
                 "parquet; expected_answer column ('2, 5' for roots, '3x-4' for f(x), LaTeX)")


def deepscaler_ref(t: Truth, ref: str) -> str:
    """DeepScaleR writes \\dfrac, \\{ \\} sets, ^\\circ, 10^{-3}."""
    return ref.replace("\\frac", "\\dfrac")


def shape_deepscaler(m500: list[dict], rng: random.Random) -> Shape:
    """DeepScaleR-Preview: problem, answer (LaTeX), solution."""
    rows, seeds = [], []
    for p, t, ref in write_gen_problems(GEN_KINDS, 32, "dsr"):
        rows.append({"problem": p, "answer": deepscaler_ref(t, ref), "solution": ""})
        seeds.append(Seed(p, t, p))
    for r in rng.sample(m500, 8):
        rows.append({"problem": r["problem"], "answer": r["answer"], "solution": r["solution"]})
        seeds.append(Seed(r["problem"], math500_truth(r), r["problem"]))
    return Shape("deepscaler", "deepscaler.json", rows, seeds, {"fields": {"problem": "problem", "answer": "answer"}},
                 "json array; answer column in LaTeX (intervals, \\{\\}, pmatrix, \\dfrac{\\sqrt3}{2}, ^\\circ, 10^{-3})")


def shape_bigmath(gsm: list[dict], rng: random.Random) -> Shape:
    """Big-Math: problem, answer, source, domain, llama8b_solve_rate."""
    rows, seeds = [], []
    for p, t, ref in write_gen_problems(["area", "percent", "big", "angle", "pow10", "mixed", "matrix", "interval"], 24, "bigmath"):
        ref2 = str(t.value) if t.kind == "angle" else ref  # Big-Math drops the degree sign, keeps \text{ cm}^2
        rows.append({"problem": p, "answer": ref2, "source": "synthetic_math", "domain": ["Mathematics -> Algebra"],
                     "llama8b_solve_rate": round(rng.random(), 4)})
        seeds.append(Seed(p, t, p))
    for r in rng.sample(gsm, 16):
        t = gsm_truth(r)
        rows.append({"problem": r["question"], "answer": f"{int(t.value):,}" if rng.random() < 0.4 else t.value,
                     "source": "gsm8k", "domain": ["Mathematics -> Applied Mathematics"], "llama8b_solve_rate": round(rng.random(), 4)})
        seeds.append(Seed(r["question"], t, r["question"]))
    return Shape("bigmath", "big_math.parquet", rows, seeds,
                 {"fields": {"problem": "problem", "answer": "answer"}, "strip_units": True},
                 "parquet; answer strings ('84 \\text{ cm}^2', '1,234', '15\\%', pmatrix); strip_units, as the build's error advises")


def shape_skywork(m500: list[dict], rng: random.Random) -> Shape:
    """Skywork-OR1-RL-Data: prompt [{role, content}], reward_model {ground_truth: '["\\\\frac{1}{2}"]' (a JSON list in a string), style}."""
    rows, seeds = [], []
    items = [(p, t, ref) for p, t, ref in write_gen_problems(["sqrt", "fraction", "interval", "set", "poly", "pi", "tuple"], 24, "sky")]
    items += [(r["problem"], math500_truth(r), r["answer"]) for r in rng.sample(m500, 14)]
    for i, (p, t, ref) in enumerate(items):
        rows.append({"data_source": "train-math-deepscaler", "prompt": [{"role": "user", "content": p + "\nLet's think step by step and output the final answer within \\boxed{}."}],
                     "ability": "math", "reward_model": {"ground_truth": json.dumps([ref]), "style": "rule"},
                     "extra_info": {"index": i, "model_difficulty": {"DeepSeek-R1-Distill-Qwen-7B": rng.randint(0, 16)}}})
        seeds.append(Seed(p, t, p))
    return Shape("skywork_or1", "skywork_or1.parquet", rows, seeds,
                 {"fields": {"problem": "{{ prompt[0].content }}",
                             "answer": r'{{ reward_model.ground_truth[2:-2] | replace("\\\\", "\\") }}'}},
                 "parquet; ground_truth is a JSON list inside a string: jinja slices [2:-2] and un-doubles backslashes")


def mc_values(answer: int, rng: random.Random, k: int) -> list[int]:
    pool = sorted({answer + d for d in (-12, -6, -3, -2, -1, 1, 2, 3, 5, 9, 15)} | {answer * 2, max(1, answer // 2), answer * 10} - {answer})
    vals = rng.sample(pool, k - 1) + [answer]
    rng.shuffle(vals)
    return vals


def shape_numina_choice(gsm: list[dict], rng: random.Random) -> Shape:
    """NuminaMath-CoT cn_k12 / amc_aime: the choices inside `problem`; `solution` ends in \\boxed{C} / \\boxed{\\textbf{(B)}\\ 15}."""
    rows, seeds = [], []
    for i, r in enumerate(rng.sample(gsm, 40)):
        ans = gsm8k_answer(r)
        if i % 2 == 0:  # cn_k12
            vals = mc_values(ans, rng, 4)
            letters = "ABCD"
            opts = {letters[j]: str(v) for j, v in enumerate(vals)}
            problem = r["question"] + "\n" + "".join(f"\n{L}: {opts[L]}" for L in letters)
            L = letters[vals.index(ans)]
            box = rng.choice([L, f"\\text{{{L}}}", f"{L}: {ans}"])
            rows.append({"source": "cn_k12", "problem": problem, "solution": gsm8k_solution(r) + f"\n\nHence, the correct choice is $\\boxed{{{box}}}$."})
        else:  # amc_aime
            vals = mc_values(ans, rng, 5)
            letters = "ABCDE"
            opts = {letters[j]: str(v) for j, v in enumerate(vals)}
            problem = r["question"] + "\n\n" + "\\qquad".join(f"$\\textbf{{({L})}}\\ {opts[L]}" + "$" for L in letters)
            L = letters[vals.index(ans)]
            box = rng.choice([f"\\textbf{{({L})}}\\ {ans}", f"\\text{{({L})}}", L])
            rows.append({"source": "amc_aime", "problem": problem, "solution": gsm8k_solution(r) + f"\n\nThe answer is $\\boxed{{{box}}}$."})
        seeds.append(Seed(r["question"], Truth("choice", L, options=opts), problem))
    return Shape("numina_choice", "numina_cn_k12_amc.parquet", rows, seeds,
                 {"fields": {"problem": "problem", "answer": "solution"}, "answer_boxed": True},
                 "parquet; reference = last \\boxed{} of `solution`: 'C', '\\text{C}', 'C: 42', '\\textbf{(B)}\\ 15'")


def shape_omni(m500: list[dict], rng: random.Random) -> Shape:
    """Omni-MATH: domain (list), difficulty (float), problem, solution, answer, source."""
    rows, seeds = [], []
    for p, t, ref in write_gen_problems(["line", "set", "tuple", "angle", "interval", "sqrt", "pow10"], 26, "omni"):
        ans = f"f(x) = {ref}" if t.kind == "line" else f"x = {t.value[0]}, {t.value[1]}" if t.kind == "set" else ref
        if t.kind == "set" and rng.random() < 0.5:
            ans = f"x \\in \\{{{t.value[0]}, {t.value[1]}\\}}"
        rows.append({"domain": ["Mathematics -> Algebra -> Other"], "difficulty": round(rng.uniform(1, 9), 1), "problem": p,
                     "solution": "", "answer": f"${ans}$" if rng.random() < 0.3 else ans, "source": "china_national_olympiad"})
        seeds.append(Seed(p, t, p))
    for r in rng.sample([r for r in m500 if r["level"] >= 4], 12):
        rows.append({"domain": [f"Mathematics -> {r['subject']}"], "difficulty": float(r["level"]) + 2, "problem": r["problem"],
                     "solution": r["solution"], "answer": r["answer"], "source": "HMMT_2"})
        seeds.append(Seed(r["problem"], math500_truth(r), r["problem"]))
    return Shape("omni_math", "omni_math.jsonl", rows, seeds, {"fields": {"problem": "problem", "answer": "answer"}},
                 "jsonl; answers as equations ('f(x) = 3x - 4', 'x = 2, 5', 'x \\in \\{..\\}'), some in $...$")


def gsm_mc(gsm: list[dict], rng: random.Random, n: int, k: int, unit: bool) -> list[tuple[dict, list[str], int]]:
    out = []
    for r in rng.sample(gsm, n):
        ans = gsm8k_answer(r)
        vals = mc_values(ans, rng, k)
        u = counted_unit(r["question"]) if unit else None
        texts = [(f"${v:,}" if "$" in r["question"] else (f"{v} {u}" if u else str(v))) for v in vals]
        out.append((r, texts, vals.index(ans)))
    return out


def shape_mmlu(gsm: list[dict], rng: random.Random) -> Shape:
    """MMLU (cais/mmlu): question, subject, choices (list of 4), answer (int 0-3)."""
    rows, seeds = [], []
    for r, texts, idx in gsm_mc(gsm, rng, 36, 4, False):
        rows.append({"question": r["question"], "subject": "elementary_mathematics", "choices": texts, "answer": idx})
        seeds.append(Seed(r["question"], Truth("choice", "ABCD"[idx], options=dict(zip("ABCD", texts))), r["question"]))
    return Shape("mmlu", "mmlu.parquet", rows, seeds,
                 {"fields": {"problem": "{{ question }}\n{% for c in choices %}\n{{ 'ABCD'[loop.index0] }}. {{ c }}{% endfor %}",
                             "answer": "{{ 'ABCD'[answer] }}"}},
                 "parquet; choices list + int answer: letters by jinja")


def shape_mmlu_pro(gsm: list[dict], rng: random.Random) -> Shape:
    """MMLU-Pro: question_id, question, options (10), answer 'F', answer_index 5, cot_content, category, src."""
    rows, seeds = [], []
    letters = "ABCDEFGHIJ"
    for i, (r, texts, idx) in enumerate(gsm_mc(gsm, rng, 30, 10, True)):
        rows.append({"question_id": 7000 + i, "question": r["question"], "options": texts, "answer": letters[idx],
                     "answer_index": idx, "cot_content": "", "category": "math", "src": "ori_mmlu-high_school_mathematics"})
        seeds.append(Seed(r["question"], Truth("choice", letters[idx], options=dict(zip(letters, texts))), r["question"]))
    return Shape("mmlu_pro", "mmlu_pro.json", rows, seeds,
                 {"fields": {"problem": "Question: {{ question }}\nOptions:{% for o in options %}\n{{ 'ABCDEFGHIJ'[loop.index0] }}. {{ o }}{% endfor %}",
                             "answer": "answer"}},
                 "json array; ten options A-J (option texts carry units and $)")


GPQA_OPTS = ('{% set opts = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], '
             'row["Incorrect Answer 3"]] | sort %}')


def shape_gpqa(gen_rng: random.Random) -> Shape:
    """GPQA (csv): Question, Correct Answer, Incorrect Answer 1-3 (never shuffled in the file: the config must order them)."""
    rows, seeds = [], []
    for p, t, ref in write_gen_problems(["pi", "sqrt", "fraction", "poly", "pow10", "angle", "area", "percent"], 32, "gpqa"):
        wrongs: list[str] = []
        values: list[str] = []
        for _ in range(60):  # three distinct wrong values (near misses of near misses too), in their canonical form
            start = json.loads(gen_rng.choice(values)) if values and gen_rng.random() < 0.5 else t.value
            v, _ = perturbed(Truth(t.kind, start, unit=t.unit, percent=t.percent, numbers=t.numbers), gen_rng, t)
            if v == t.value:
                continue
            if v is None or json.dumps(v) in values:
                continue
            values.append(json.dumps(v))
            wrongs.append(f"${forms_of(t, v)[0][0]}$")
            if len(wrongs) == 3:
                break
        if len(wrongs) < 3:
            continue
        right = f"${ref}$"
        rows.append({"Record ID": f"rec{len(rows)}", "Question": p, "Correct Answer": right, "Incorrect Answer 1": wrongs[0],
                     "Incorrect Answer 2": wrongs[1], "Incorrect Answer 3": wrongs[2], "Subdomain": "Mathematics"})
        order = sorted([right] + wrongs, key=str.lower)
        letter = "ABCD"[order.index(right)]
        seeds.append(Seed(p, Truth("choice", letter, options=dict(zip("ABCD", order))), p))
    return Shape("gpqa", "gpqa_main.csv", rows, seeds,
                 {"fields": {"problem": GPQA_OPTS + "{{ Question }}\n{% for o in opts %}\n({{ 'ABCD'[loop.index0] }}) {{ o }}{% endfor %}",
                             "answer": GPQA_OPTS + "{{ 'ABCD'[opts.index(row['Correct Answer'])] }}"}},
                 "csv; right answer in its own column: options ordered by jinja `sort`, the letter by `opts.index`")


def shape_arc(gsm: list[dict], rng: random.Random) -> Shape:
    """ARC (allenai/ai2_arc): id, question, choices {text: [...], label: ['A'..'D'] or ['1'..'4']}, answerKey."""
    rows, seeds = [], []
    for i, (r, texts, idx) in enumerate(gsm_mc(gsm, rng, 36, 4, True)):
        labels = ["1", "2", "3", "4"] if i % 2 == 0 else ["A", "B", "C", "D"]
        rows.append({"id": f"Mercury_{7000 + i}", "question": r["question"], "choices": {"text": texts, "label": labels},
                     "answerKey": labels[idx]})
        seeds.append(Seed(r["question"], Truth("choice", labels[idx], options=dict(zip(labels, texts))), r["question"]))
    return Shape("arc", "arc_challenge.jsonl", rows, seeds,
                 {"fields": {"problem": "{{ question }}\n{% for i in range(choices.label | length) %}\n{{ choices.label[i] }}. {{ choices.text[i] }}{% endfor %}",
                             "answer": "answerKey"}},
                 "jsonl; choices as a struct of lists; half the rows use numeric keys '1'-'4'")


def shape_gsm_units(gsm: list[dict], rng: random.Random) -> Shape:
    """A GSM8K re-release: question, solution, final_answer '$1,200' / '15 minutes' / '1,200'."""
    rows, seeds = [], []
    for r in rng.sample(gsm, 40):
        t = gsm_truth(r)
        n = int(t.value)
        fa = f"${n:,}" if t.money else (f"{n:,} {t.unit}" if t.unit else f"{n:,}")
        rows.append({"question": r["question"], "solution": gsm8k_solution(r), "final_answer": fa})
        seeds.append(Seed(r["question"], t, r["question"]))
    return Shape("gsm_units", "gsm8k_units.jsonl", rows, seeds,
                 {"fields": {"problem": "question", "answer": "final_answer"}, "strip_units": True},
                 "jsonl; final_answer with currency, thousands commas and units; strip_units")


def shape_hf_saved(gsm: list[dict], rng: random.Random) -> Shape:
    """GSM8K as `Dataset.save_to_disk` leaves it (a folder with data-*.arrow, dataset_info.json, state.json)."""
    rows, seeds = [], []
    for r in rng.sample(gsm, 32):
        rows.append({"question": r["question"], "answer": r["answer"]})
        seeds.append(Seed(r["question"], gsm_truth(r), r["question"]))
    return Shape("hf_saved", "hf_saved/", rows, seeds,
                 {"format": "hf", "fields": {"problem": "question", "answer": "answer"}, "answer_after": "####"},
                 "a save_to_disk folder read with format: hf")


def all_shapes() -> list[Shape]:
    gsm, m500 = gsm8k_rows(), math500_rows()
    used: set[str] = set()

    def fresh(rng_name: str) -> random.Random:
        return random.Random(rng_name)

    pools = {}
    rng = random.Random("heldout2-split")
    order = list(range(len(gsm)))
    rng.shuffle(order)
    for i, name in enumerate(["metamathqa", "orca", "bigmath", "numina", "mmlu", "mmlu_pro", "arc", "units", "hf"]):
        pools[name] = [gsm[j] for j in order[i * 200:(i + 1) * 200]]  # disjoint GSM8K rows per shape
    del used
    return [shape_metamath(pools["metamathqa"], m500, fresh("mm")), shape_orca(pools["orca"], fresh("orca")),
            shape_openmath2(m500, fresh("om2")), shape_deepscaler(m500, fresh("dsr")), shape_bigmath(pools["bigmath"], fresh("bm")),
            shape_skywork(m500, fresh("sky")), shape_numina_choice(pools["numina"], fresh("nc")), shape_omni(m500, fresh("omni")),
            shape_mmlu(pools["mmlu"], fresh("mmlu")), shape_mmlu_pro(pools["mmlu_pro"], fresh("mmlupro")), shape_gpqa(fresh("gpqa")),
            shape_arc(pools["arc"], fresh("arc")), shape_gsm_units(pools["units"], fresh("units")), shape_hf_saved(pools["hf"], fresh("hf"))]


# ------------------------------------------------------------------------------------------------
# teacher styles (2025-2026 reasoning models): where the reasoning goes and how the final answer is written
# ------------------------------------------------------------------------------------------------


@dataclass
class Written:
    text: str
    reasoning: str | None = None
    think: str = ""  # the reasoning part, wherever it lives (truncation cuts here)


def restate(problem: str) -> str:
    first = re.split(r"(?<=[.?!])\s", problem.strip())[0]
    return first if len(first) < 140 else first[:140].rsplit(" ", 1)[0] + "..."


def thoughts(seed: Seed, rng: random.Random, claim: str, n: int) -> list[str]:
    nums = seed.truth.numbers or problem_numbers(seed.problem)
    bank = [f"The problem: {restate(seed.problem)}",
            f"Given numbers: {', '.join(nums[:3])}." if nums else "No explicit numbers; work symbolically.",
            "Let me set up the relation first.", "Compute each piece separately.", "Wait, re-read: it asks for the final quantity.",
            "Check the arithmetic once more: consistent.", "Plug the result back in to verify.", "Another route gives the same thing."]
    return [bank[0]] + rng.sample(bank[1:], n - 1) + [f"So the result is {claim}."]


def st_openthoughts(w, box, plain, rng):
    think = "\n\n".join(w)
    sol = f"To solve this, {w[1][0].lower()}{w[1][1:]}\n\nThus, the answer is \\(\\boxed{{{box}}}\\)."
    if rng.random() < 0.4:
        sol = f"{w[1]}\n\nThe final answer is \\boxed{{{box}}}."
    return Written(f"<|begin_of_thought|>\n\n{think}\n\n**Final Answer**\n\\boxed{{{box}}}\n\n<|end_of_thought|>\n\n"
                   f"<|begin_of_solution|>\n\n{sol}\n\n<|end_of_solution|>", think=think)


def qwen3_final(box, plain, rng):
    return rng.choice([f"### Final Answer\n\n$$\n\\boxed{{{box}}}\n$$", f"**Final Answer:** $\\boxed{{{box}}}$",
                       f"---\n\n### ✅ Final Answer:\n$$\n\\boxed{{{box}}}\n$$"])


def st_qwen3(w, box, plain, rng):
    think = " ".join(w)
    return Written(f"<think>\n{think}\n</think>\n\n### Step-by-step\n\n1. {w[1]}\n2. {w[-1]}\n\n{qwen3_final(box, plain, rng)}", think=think)


def st_qwen3_2507(w, box, plain, rng):  # the chat template opens <think>: the output has only the closing tag
    think = " ".join(w)
    return Written(f"{think}\n</think>\n\n{w[1]}\n\n{qwen3_final(box, plain, rng)}", think=think)


def st_qwen3_api(w, box, plain, rng):
    think = " ".join(w)
    return Written(f"{w[1]}\n\n{qwen3_final(box, plain, rng)}", reasoning=think, think=think)


def st_qwq(w, box, plain, rng):
    think = "Okay, so I have this problem. " + " ".join(w)
    return Written(f"{think}\n</think>\n\n{w[-1]}\n\n\\[\n\\boxed{{{box}}}\n\\]", think=think)


def st_r1_0528(w, box, plain, rng):
    think = "Okay, let's tackle this. " + " ".join(w)
    end = rng.choice([f"### Final Answer\n\\[\n\\boxed{{{box}}}\n\\]", f"**Answer:** \\(\\boxed{{{box}}}\\)", f"\\[\n\\boxed{{{box}}}\n\\]"])
    return Written(f"<think>\n{think}\n</think>\n\n### Solution\n{w[1]}\n\n{end}", think=think)


def st_r1_0528_api(w, box, plain, rng):
    think = "Okay, let's tackle this. " + " ".join(w)
    return Written(f"### Solution\n{w[1]}\n\nThe answer is \\(\\boxed{{{box}}}\\).", reasoning=think, think=think)


def gpt_oss_final(box, plain, rng):
    return rng.choice([f"**Answer: {plain}**", f"**{plain}**", f"The answer is **{plain}**.", f"\\[\n\\boxed{{{box}}}\n\\]",
                       f"**Answer:** \\({box}\\)", f"Answer: {plain}"])


def st_gpt_oss(w, box, plain, rng):
    think = "We need to solve. " + " ".join(s.replace("Let me", "Let's") for s in w)
    return Written(f"{w[1]}\n\n{gpt_oss_final(box, plain, rng)}", reasoning=think, think=think)


def st_gpt_oss_harmony(w, box, plain, rng):  # served without the harmony parser: the channels arrive as text
    think = "We need to solve. " + " ".join(w)
    ret = "<|return|>" if rng.random() < 0.5 else ""
    return Written(f"<|channel|>analysis<|message|>{think}<|end|><|start|>assistant<|channel|>final<|message|>"
                   f"{gpt_oss_final(box, plain, rng)}{ret}", think=think)


def st_magistral(w, box, plain, rng):
    think = " ".join(w)
    return Written(f"[THINK]{think}[/THINK]**Summary**\n\n{w[1]}\n\n\\boxed{{{box}}}", think=think)


def st_phi4(w, box, plain, rng):
    think = " ".join(w)
    end = rng.choice([f"**Final Answer:** \\(\\boxed{{{box}}}\\)", f"Thus the answer is: \\boxed{{{box}}}."])
    return Written(f"<think>{think}</think>\n{w[1]}\n\n{end}", think=think)


def st_nemotron(w, box, plain, rng):
    think = "Okay, let me work through this. " + " ".join(w)
    return Written(f"<think>\n{think}\n</think>\n\n{w[1]}\n\nThe final answer is $\\boxed{{{box}}}$.", think=think)


def st_claude_thinking(w, box, plain, rng):
    think = "\n".join(w)
    end = rng.choice([f"<answer>{plain}</answer>", f"**Answer: {plain}**", f"The answer is $\\boxed{{{box}}}$."])
    return Written(f"<thinking>\n{think}\n</thinking>\n\n{w[1]}\n\n{end}", think=think)


def st_trl_grpo(w, box, plain, rng):
    think = "\n".join(w)
    return Written(f"<reasoning>\n{think}\n</reasoning>\n<answer>\n{plain}\n</answer>", think=think)


def st_gemini25(w, box, plain, rng):
    steps = "\n".join(f"*   {s}" for s in w)
    end = rng.choice([f"**Final Answer:**\n\nThe final answer is $\\boxed{{{box}}}$", f"**Final Answer:**\n$$ {box} $$",
                      f"### Final Answer\nThe answer is **{plain}**.", f"**Final Answer:** {plain}"])
    return Written(f"Here's a step-by-step solution:\n\n{steps}\n\n{end}", think="")


def st_kimi(w, box, plain, rng):
    think = " ".join(w)
    end = rng.choice([f"**Answer:** $\\boxed{{{box}}}$", f"Final answer: {plain}", f"$$\\boxed{{{box}}}$$"])
    return Written(f"◁think▷{think}◁/think▷{w[1]}\n\n{end}", think=think)


def st_mistral_small(w, box, plain, rng):
    steps = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(w))
    end = rng.choice([f"The final answer is $\\boxed{{{box}}}$.", f"The final answer is: $\\boxed{{{box}}}$"])
    return Written(f"To solve this problem, let's go step by step.\n\n{steps}\n\n{end}", think="")


STYLES: dict[str, Callable] = {
    "openthoughts": st_openthoughts, "qwen3_think": st_qwen3, "qwen3_2507": st_qwen3_2507, "qwen3_api": st_qwen3_api,
    "qwq": st_qwq, "r1_0528": st_r1_0528, "r1_0528_api": st_r1_0528_api, "gpt_oss": st_gpt_oss,
    "gpt_oss_harmony": st_gpt_oss_harmony, "magistral": st_magistral, "phi4_reasoning": st_phi4, "nemotron": st_nemotron,
    "claude_thinking": st_claude_thinking, "trl_grpo": st_trl_grpo, "gemini25": st_gemini25, "kimi": st_kimi,
    "mistral_small": st_mistral_small}
THINKING = {"openthoughts", "qwen3_think", "qwen3_2507", "qwen3_api", "qwq", "r1_0528", "r1_0528_api", "gpt_oss",
            "gpt_oss_harmony", "magistral", "phi4_reasoning", "nemotron", "claude_thinking", "kimi"}

# hedges: two readings of the problem, each with its own final answer (one of them right)
HEDGES = [
    "$$\n\\boxed{{{ab}}} \\text{{ or }} \\boxed{{{bb}}}\n$$",
    "The final answer is $\\boxed{{{ab} \\text{{ or }} {bb}}}$.",
    "If the problem counts the first case, the answer is {a}; otherwise it is {b}.",
    "**Answer:** {a}\n\n(If instead the other reading is meant, then {b}.)",
    "<answer>{a} or {b}</answer>",
    "The final answer is $\\boxed{{{ab}}}$ (or $\\boxed{{{bb}}}$ under the other reading).",
    "Answer: {a}, though {b} is also defensible if the last step is read differently.",
]


def write_completion(seed: Seed, other: Seed, label: str, style: str, rng: random.Random) -> dict:
    """One completion with its truth, fixed here from the values this file computed."""
    t = seed.truth
    rbox, rplain, rform = plainify(rng.choice(forms_of(t, t.value)))
    wforms, cause = wrong_forms(t, rng, other.truth)
    wbox, wplain, wtag = plainify(rng.choice(wforms))
    thinking = style in THINKING
    n = rng.randint(5, 7) if thinking else rng.randint(3, 4)
    rec = {"label": label, "style": style, "form": rform, "cause": None, "finish_reason": "stop"}
    if label == "hedged":
        w = thoughts(seed, rng, rplain, n)
        first_right = rng.random() < 0.5
        a, b = (rplain, wplain) if first_right else (wplain, rplain)
        ab, bb = (rbox, wbox) if first_right else (wbox, rbox)
        hedge = rng.choice(HEDGES)
        out = STYLES[style](w, rbox, rplain, rng)
        # the style's own final answer is replaced by the hedge: the last paragraph goes
        text = out.text
        for end_tag in ("\n\n<|end_of_solution|>", "<|return|>", "\n</answer>"):
            text = text.replace(end_tag, "")
        head = text.rsplit("\n\n", 1)[0] + "\n\n"
        if style == "trl_grpo":
            head = text.split("<answer>")[0]
        elif "<|channel|>final<|message|>" in text:
            head = text.split("<|channel|>final<|message|>")[0] + "<|channel|>final<|message|>"
        text = head + hedge.format(a=a, b=b, ab=ab, bb=bb)
        rec.update(text=text, reasoning=out.reasoning, cause=f"hedge:{HEDGES.index(hedge)}", form=f"{'right' if first_right else 'wrong'}_first")
        return rec
    if label == "wrong":
        w = thoughts(seed, rng, wplain, n)
        if thinking and rng.random() < 0.35:  # the right value appears in the reasoning, then the model talks itself out of it
            w.insert(-1, rng.choice([f"Tentatively \\boxed{{{rbox}}}. Hmm, but let me re-examine the last step.",
                                     f"At first I get {rplain}, but that seems off; redo it."]))
            cause += "+right_in_reasoning"
        out = STYLES[style](w, wbox, wplain, rng)
        rec.update(text=out.text, reasoning=out.reasoning, cause=f"{cause}:{wtag}", form=None)
        return rec
    w = thoughts(seed, rng, rplain, n)
    if thinking and rng.random() < 0.25:  # a wrong boxed draft inside the reasoning, corrected
        w.insert(-1, f"First attempt: \\boxed{{{wbox}}}. Wait, that breaks a condition; redo it.")
        rform += "+wrong_draft_in_reasoning"
    if label == "truncated" and thinking and rng.random() < 0.5:  # the right value is reached in the reasoning before the cut
        w.insert(-1, f"So it should be \\boxed{{{rbox}}}, let me double check everything once more")
    out = STYLES[style](w, rbox, rplain, rng)
    text, reasoning = out.text, out.reasoning
    if label == "right" and style in ("r1_0528", "qwen3_think", "gemini25", "mistral_small") and rng.random() < 0.2:
        text += f"\n\nCheck: with {', '.join((t.numbers or ['2', '3'])[:2])} the conditions hold. ✓"
        rform += "+check_after_answer"
    rec["form"] = rform
    if label == "truncated":
        rec["finish_reason"] = "length"
        mode = rng.choices(["mid_reasoning", "mid_answer"], [7, 3])[0] if thinking else "mid_answer"
        if not thinking and rng.random() < 0.6:
            mode = "mid_text"
        rec["cause"] = f"truncated:{mode}"
        if mode == "mid_reasoning":
            think = out.think
            cut = max(int(len(think) * rng.uniform(0.55, 0.97)), 1)
            if reasoning is not None:
                text, reasoning = "", reasoning[:cut]
            else:
                text = text[:text.index(think) + cut]
        elif mode == "mid_answer":
            pos = text.rfind("{" + rbox) if ("{" + rbox) in text else text.rfind(rplain)
            text = text[:pos + 1 + max(1, len(rbox) // 2)] if pos > 0 else text[:int(len(text) * 0.9)]
        else:
            text = text[:int(len(text) * rng.uniform(0.4, 0.85))]
    rec.update(text=text, reasoning=reasoning)
    return rec


def label_for(rng: random.Random) -> str:
    return rng.choices([k for k, _ in LABEL_MIX], [w for _, w in LABEL_MIX])[0]


# ------------------------------------------------------------------------------------------------
# writing the set
# ------------------------------------------------------------------------------------------------


def write_rows(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=0, ensure_ascii=False), encoding="utf-8")
    elif path.suffix == ".csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_gz(path: Path, lines: list[str]) -> None:
    """gzip with no timestamp, so the same content gives the same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write("".join(lines).encode("utf-8"))
    path.write_bytes(buf.getvalue())


def write_heldout2(out: Path = DATA_DIR, samples: int = SAMPLES) -> None:
    """Every shape's source file, truth.jsonl (per seed), completions.jsonl.gz (per seed and sample), shapes.json."""
    out.mkdir(parents=True, exist_ok=True)
    shapes = all_shapes()
    comp, tr = [], []
    style_names = list(STYLES)
    for shape in shapes:
        path = out / shape.file
        if shape.file.endswith("/"):
            import shutil

            import datasets

            shutil.rmtree(path, ignore_errors=True)
            datasets.Dataset.from_list(shape.rows).save_to_disk(str(path))
        else:
            write_rows(path, shape.rows)
        keys = [s.key for s in shape.seeds]
        assert len(set(keys)) == len(keys), f"{shape.name}: duplicate seed keys"
        for i, seed in enumerate(shape.seeds):
            tr.append(json.dumps({"shape": shape.name, "key": seed.key, "truth": seed.truth.to_json()}, ensure_ascii=False) + "\n")
            other = shape.seeds[(i + 5) % len(shape.seeds)]
            for k in range(samples):
                rng = random.Random(f"h2|{shape.name}|{i}|{k}")
                style = style_names[(i * samples + k + len(shape.name)) % len(style_names)] if rng.random() < 0.5 else rng.choice(style_names)
                rec = write_completion(seed, other, label_for(rng), style, rng)
                comp.append(json.dumps({"shape": shape.name, "key": seed.key, "sample": k, **rec}, ensure_ascii=False) + "\n")
    write_gz(out / "completions.jsonl.gz", comp)
    write_gz(out / "truth.jsonl.gz", tr)
    (out / "shapes.json").write_text(json.dumps(
        [{"name": s.name, "file": s.file, "source": s.source, "note": s.note, "seeds": len(s.seeds)} for s in shapes], indent=1),
        encoding="utf-8")


def load_heldout2(data: Path = DATA_DIR) -> tuple[list[dict], dict[str, dict[str, list[dict]]], dict]:
    shapes = json.loads((data / "shapes.json").read_text(encoding="utf-8"))
    completions: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with gzip.open(data / "completions.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            completions[rec["shape"]][rec["key"]].append(rec)
    truth = {}
    with gzip.open(data / "truth.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            truth[(rec["shape"], rec["key"])] = rec["truth"]
    return shapes, completions, truth


# ------------------------------------------------------------------------------------------------
# running factory on it (the scripted teacher and the store join are the first set's)
# ------------------------------------------------------------------------------------------------


def _heldout1():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import heldout

    return heldout


def precision_recall(rows: list[dict]) -> tuple[int, int, int, int]:
    """(traces, right ones, right and verified, verified but not right): the first set's count."""
    return _heldout1().precision_recall(rows)


def shape_config(shape: dict, workdir: Path, data: Path, limit: int | None = None, **overrides):
    from factory.config import load_config

    source = {"name": shape["name"], "path": str(data / shape["file"]), **shape["source"], **overrides}
    if limit:
        source["limit"] = limit
    source = {k: v for k, v in source.items() if v is not None}
    return load_config(data={
        "workdir": str(workdir / shape["name"]), "prompts_dir": str(ROOT / "prompts"), "sources": [source],
        "teachers": [{"name": "heldout", "backend": "openai", "model": "heldout-model"}],
        "generation": {"samples_per_seed": SAMPLES, "max_tokens": 8192},
        "filter": {"benchmarks": {}}})


def run_shape(shape: dict, completions: dict[str, list[dict]], workdir: Path, data: Path,
              limit: int | None = None) -> tuple[list[dict], str | None, dict]:
    import duckdb
    from rich.console import Console

    from factory.build import build_dataset
    from factory.filter import run_filter

    h1 = _heldout1()
    cfg = shape_config(shape, workdir, data, limit)
    teacher = h1.HeldoutTeacher(completions)
    quiet = Console(quiet=True)
    try:
        built = build_dataset(cfg, console=quiet, teachers={"heldout": teacher})
    except Exception as e:  # a build that stops is itself a finding
        return [], f"build stopped: {type(e).__name__}: {str(e)[:400]}", {}
    seeds = {"loaded": built.seeds_loaded, "rejected": dict(built.seeds_rejected)}
    run_filter(cfg, console=quiet)
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    cur = con.execute(h1.JOIN)
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    con.close()
    out = []
    for r in rows:
        rec = teacher.sent.get(r["request_id"])
        if rec is not None:
            out.append({**r, "shape": shape["name"], "label": rec["label"], "style": rec["style"], "form": rec["form"],
                        "cause": rec["cause"], "key": rec["key"], "verified": r["passed"] is True})
    return out, None, seeds


# probes: a plainer config a user would try first; what factory does with it is a finding
PROBES = [
    ("skywork_or1", {"fields": {"problem": "{{ prompt[0].content }}", "answer": "{{ reward_model.ground_truth }}"}},
     "ground_truth mapped as it is (a JSON list in a string)"),
    ("hf_saved", {"format": None}, "a save_to_disk folder without format: hf"),
    ("mmlu", {"fields": {"problem": "question", "answer": "answer"}}, "MMLU's int answer mapped straight"),
    ("orca_math", {"answer_regex": None, "strip_units": None}, "Orca's prose answer mapped straight"),
    ("numina_choice", {"strip_units": True}, "choice boxes with strip_units"),
    ("bigmath", {"strip_units": None}, "answers with \\text{ cm}^2, no strip_units"),
]


def run_probes(shapes: list[dict], completions: dict, workdir: Path, data: Path) -> list[str]:
    from rich.console import Console

    from factory.build import build_dataset

    h1 = _heldout1()
    found = []
    by_name = {s["name"]: s for s in shapes}
    for i, (name, change, what) in enumerate(PROBES):
        if name not in by_name:
            continue
        shape = dict(by_name[name])
        if "fields" in change:
            shape["source"] = {k: v for k, v in shape["source"].items() if k != "fields"}
        try:
            cfg = shape_config(shape, workdir / f"probe{i}", data, 12, **change)
            built = build_dataset(cfg, console=Console(quiet=True), teachers={"heldout": h1.HeldoutTeacher(completions[name])})
            import duckdb

            con = duckdb.connect(str(cfg.store_path), read_only=True)
            refs = [r[0] for r in con.execute("SELECT answer FROM seeds LIMIT 3").fetchall()]
            con.close()
            outcome = f"built: {built.seeds_loaded} seeds, rejected {dict(built.seeds_rejected) or 0}; references {refs}"
        except Exception as e:
            outcome = f"{type(e).__name__}: {str(e)[:300]}"
        found.append(f"{name} ({what}): {outcome}")
    return found


def debatable(r: dict) -> bool:
    return r["label"] == "right" and any(f in (r["form"] or "") for f in DEBATABLE_FORMS)


def pr(rows: list[dict]) -> tuple[float, float]:
    _, right, tp, fp = precision_recall(rows)
    return (tp / (tp + fp) if tp + fp else float("nan"), tp / right if right else float("nan"))


def miss_cause(r: dict) -> str:
    if r["label"] == "right":
        why = r["parse_error"] or (r["reason"] if r["passed"] is False else "no_verify_check")
        return f"missed right [{why}] form={r['form'].split('+')[0]}"
    cause = r["cause"] or ""
    return f"verified {r['label']} [{cause if cause.startswith('hedge') else cause.split(':')[0]}]"


def report(rows: list[dict], failures: dict[str, str], truth: dict, examples: int, seeds: dict, probes: list[str],
           print_=print) -> dict:
    """The first set's report (benchmarks/heldout.py) with this set's debatable forms and miss causes."""
    return _heldout1().report(rows, failures, truth, examples, seeds, probes, print_=print_,
                              is_debatable=debatable, cause_of=miss_cause)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="regenerate tests/support/heldout2/ first")
    ap.add_argument("--data", default=str(DATA_DIR))
    ap.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="seeds per shape (default: all)")
    ap.add_argument("--misses", type=int, default=3, help="examples printed per miss group")
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--no-probes", action="store_true")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if args.write or not (data / "completions.jsonl.gz").exists():
        write_heldout2(data)
    shapes, completions, truth = load_heldout2(data)
    wanted = set(filter(None, args.shapes.split(",")))
    rows, failures, timings, seeds = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="heldout2-") as tmp:
        for shape in shapes:
            if wanted and shape["name"] not in wanted:
                continue
            started = time.monotonic()
            got, failure, seeds[shape["name"]] = run_shape(shape, completions[shape["name"]], Path(tmp), data, args.limit)
            timings[shape["name"]] = round(time.monotonic() - started, 1)
            rows += got
            if failure:
                failures[shape["name"]] = failure
        probes = [] if args.no_probes else run_probes(shapes, completions, Path(tmp), data)
    summary = report(rows, failures, truth, args.misses, seeds, probes)
    print(f"\nwall per shape (s): {timings}")
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "failures": failures, "timings": timings, "seeds": seeds,
                                               "probes": probes}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
