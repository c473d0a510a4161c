"""Held-out fidelity check: real dataset shapes and real teacher styles that nobody tuned the parser for.

    .venv/bin/python benchmarks/heldout.py              # write tests/support/heldout/ if missing, build, filter, report
    .venv/bin/python benchmarks/heldout.py --write      # regenerate the data and completions first (deterministic)
    .venv/bin/python benchmarks/heldout.py --shapes aqua_rat,mathqa --misses 5 --json out.json

Each shape is a source file in the layout of a public maths set (Hendrycks MATH, NuminaMath-CoT, AQuA-RAT,
MathQA, GSM-hard, MAWPS, AIME, OlympiadBench, TheoremQA, DeepMind mathematics), described to factory with
config keys alone. A scripted teacher answers every request with a completion written here in the manner of
a real model family (DeepSeek-R1, QwQ, Qwen2.5-Math, GPT-4o, o1, Claude, Llama-3, Gemini, MetaMath, Phi,
GSM8K SFT, Minerva). The truth of each completion (right / wrong / truncated / hedged) is fixed when it is
written, from the values this file computed, never from anything factory says. The report joins the store's
`checks` ('verify'), `parsed`, `responses`, `requests` and `seeds` with that truth.

This file is deliberately independent of factory/parse.py and factory/checks/: it was written without
reading them, so its forms are not the ones the parser was tuned on.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "tests" / "support" / "heldout"
SAMPLES = 4
LABEL_MIX = (("right", 0.58), ("wrong", 0.24), ("truncated", 0.09), ("hedged", 0.09))

# ------------------------------------------------------------------------------------------------
# truth: what each seed's answer is, in a form this file can rewrite and perturb
# ------------------------------------------------------------------------------------------------


@dataclass
class Truth:
    """The answer of one seed. kind: int | dec | latex | letter | bool | list | expr."""

    kind: str
    value: object  # int, str (decimal / latex / letter / expr), bool, list
    money: bool = False
    options: dict[str, str] = field(default_factory=dict)  # letter -> option value (multiple choice)
    lower_letters: bool = False  # MathQA writes the correct option as "b"
    numbers: list[str] = field(default_factory=list)  # numbers in the problem (realistic wrong answers)
    latex: str | None = None  # expr: the LaTeX way of writing it
    unit: str | None = None  # what is counted ("marbles"): a teacher may write "48 marbles"
    percent: bool = False  # the question asks for a percentage
    var: str | None = None  # the question solves for this variable: a teacher may write "f = -4"

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], {}, False) or k == "value"}


def counted_unit(question: str) -> str | None:
    m = re.search(r"[Hh]ow many ([a-z]+)", question)
    return m.group(1) if m and m.group(1) not in ("more", "times", "of", "in", "are", "does", "did", "do", "is", "will") else None


def problem_numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in re.findall(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", text)][:12]


def gsm8k_rows() -> list[dict]:
    return [json.loads(line) for line in open(ROOT / "data" / "gsm8k_train.jsonl", encoding="utf-8")]


def math500_rows() -> list[dict]:
    return [json.loads(line) for line in open(ROOT / "data" / "benchmarks" / "math500_test.jsonl", encoding="utf-8")]


def gsm8k_answer(row: dict) -> int:
    return int(row["answer"].split("####")[-1].strip().replace(",", ""))


def gsm8k_clean_solution(row: dict) -> str:
    """The worked solution without the calculator annotations and the '####' line."""
    body = row["answer"].split("####")[0]
    return re.sub(r"<<[^>]*>>", "", body).strip()


def truth_of_math500(answer: str, problem: str) -> Truth:
    if re.fullmatch(r"-?\d+", answer):
        return Truth("int", int(answer), numbers=problem_numbers(problem))
    return Truth("latex", answer, numbers=problem_numbers(problem))


def is_money(question: str) -> bool:
    return "$" in question


# ------------------------------------------------------------------------------------------------
# shapes: source rows in the layout of real public sets, and the config that reads them
# ------------------------------------------------------------------------------------------------


@dataclass
class Seed:
    key: str  # text that appears verbatim in the rendered prompt (how the teacher finds the seed)
    truth: Truth
    problem: str  # the problem as the teacher should read it (for realistic reasoning)


@dataclass
class Shape:
    name: str
    file: str
    rows: list[dict]
    seeds: list[Seed]
    source: dict  # the source's config, less name and path
    note: str


def pick(rows: list, step: int, offset: int, n: int) -> list:
    return [rows[i] for i in range(offset, len(rows), step)][:n]


def shape_hendrycks_math(math500: list[dict]) -> Shape:
    """Hendrycks MATH train: problem, level 'Level 3', type 'Algebra', a worked solution with \\boxed{}."""
    chosen = pick(math500, 11, 0, 40)
    rows = [{"problem": r["problem"], "level": f"Level {r['level']}", "type": r["subject"], "solution": r["solution"]}
            for r in chosen]
    seeds = [Seed(r["problem"], truth_of_math500(r["answer"], r["problem"]), r["problem"]) for r in chosen]
    return Shape("hendrycks_math", "hendrycks_math_train.parquet", rows, seeds,
                 {"fields": {"problem": "problem", "answer": "solution"}, "answer_boxed": True},
                 "parquet; reference = last \\boxed{} of `solution`")


def shape_numina_cot(gsm8k: list[dict], math500: list[dict]) -> Shape:
    """NuminaMath-CoT: source, problem, solution (ends in \\boxed{}), messages [{role, content}, ...]."""
    rows, seeds = [], []
    for r in pick(gsm8k, 97, 5, 20):
        answer = gsm8k_answer(r)
        solution = gsm8k_clean_solution(r) + f"\n\nTherefore, the answer is $\\boxed{{{answer}}}$."
        rows.append({"source": "gsm8k", "problem": r["question"], "solution": solution,
                     "messages": [{"role": "user", "content": r["question"]},
                                  {"role": "assistant", "content": solution}]})
        seeds.append(Seed(r["question"], Truth("int", answer, money=is_money(r["question"]), unit=counted_unit(r["question"]),
                                               numbers=problem_numbers(r["question"])), r["question"]))
    for r in pick(math500, 13, 4, 18):
        rows.append({"source": "math", "problem": r["problem"], "solution": r["solution"],
                     "messages": [{"role": "user", "content": r["problem"]},
                                  {"role": "assistant", "content": r["solution"]}]})
        seeds.append(Seed(r["problem"], truth_of_math500(r["answer"], r["problem"]), r["problem"]))
    return Shape("numina_cot", "numina_cot.parquet", rows, seeds,
                 {"fields": {"problem": "{{ messages[0].content }}", "answer": "solution"}, "answer_boxed": True},
                 "parquet; problem from the messages list (jinja), reference = last \\boxed{} of `solution`")


def _distractors(answer: int, rng: random.Random, k: int = 4) -> list[int]:
    pool = {answer + d for d in (-10, -5, -3, -2, -1, 1, 2, 3, 4, 6, 8, 12, 20)} | {answer * 2, max(1, answer // 2)}
    pool.discard(answer)
    return rng.sample(sorted(pool), k)


def shape_aqua_rat(gsm8k: list[dict]) -> Shape:
    """AQuA-RAT: question, options ["A)21", "B)22", ...], rationale, correct "C"."""
    rng = random.Random("aqua")
    rows, seeds = [], []
    for r in pick(gsm8k, 89, 11, 36):
        answer = gsm8k_answer(r)
        values = _distractors(answer, rng) + [answer]
        rng.shuffle(values)
        letters = "ABCDE"
        options = [f"{letters[i]}){v}" for i, v in enumerate(values)]
        correct = letters[values.index(answer)]
        rows.append({"question": r["question"], "options": options,
                     "rationale": gsm8k_clean_solution(r) + f"\nAnswer: {correct}", "correct": correct})
        seeds.append(Seed(r["question"], Truth("letter", correct, options={letters[i]: str(v) for i, v in enumerate(values)},
                                               numbers=problem_numbers(r["question"])), r["question"]))
    return Shape("aqua_rat", "aqua_rat.jsonl", rows, seeds,
                 {"fields": {"problem": "{{ question }}\nAnswer Choices: {{ options | join(' ') }}", "answer": "correct"}},
                 "jsonl; options list joined into the problem with jinja; reference is a letter")


def shape_mathqa(gsm8k: list[dict]) -> Shape:
    """MathQA: Problem (lower-cased, tokenised), Rationale, options "a ) 10 , b ) 12 , ...", correct "b"."""
    rng = random.Random("mathqa")
    rows, seeds = [], []
    for r in pick(gsm8k, 83, 23, 34):
        answer = gsm8k_answer(r)
        values = _distractors(answer, rng) + [answer]
        rng.shuffle(values)
        letters = "abcde"
        options = " , ".join(f"{letters[i]} ) {v}" for i, v in enumerate(values))
        correct = letters[values.index(answer)]
        problem = re.sub(r"([?.,!])", r" \1", r["question"].lower()).strip()
        rows.append({"Problem": problem, "Rationale": '"' + gsm8k_clean_solution(r).lower() + '"', "options": options,
                     "correct": correct, "annotated_formula": "multiply(n0, n1)", "category": "general"})
        seeds.append(Seed(problem, Truth("letter", correct, options={letters[i]: str(v) for i, v in enumerate(values)},
                                         lower_letters=True, numbers=problem_numbers(problem)), problem))
    return Shape("mathqa", "mathqa.json", rows, seeds,
                 {"fields": {"problem": "{{ Problem }}\nOptions: {{ options }}", "answer": "correct"}},
                 "json array; options string in the problem; reference is a lower-case letter")


NAMES = ["Amara", "Bogdan", "Chen", "Dolores", "Eitan", "Farah", "Gustavo", "Hana", "Ivo", "Jia", "Kofi", "Lucia"]


def shape_gsm_hard() -> Shape:
    """GSM-hard: input, code, target as a float computed by Python (so 1.2999999999999998 happens)."""
    rng = random.Random("gsmhard")
    rows, seeds = [], []
    for i in range(36):
        name = NAMES[i % len(NAMES)]
        t = i % 5
        if t == 4:
            total, pct_x100 = rng.choice([2_000, 4_000, 8_000, 12_500]), rng.randint(101, 9_899)
            owners = total * pct_x100 // 10_000 if total * pct_x100 % 10_000 == 0 else total * rng.randint(3, 97) // 100
            q = (f"A town has {total} residents and {owners} of them own a bicycle, according to a survey run by {name}. "
                 f"What percent of the residents own a bicycle?")
            exact = Fraction(owners * 100, total)
            rows.append({"input": q, "code": "def solution():\n    ...\n    return result", "target": owners / total * 100})
            truth = exact_truth(exact, False, q)
            truth.percent = True
            seeds.append(Seed(q, truth, q))
            continue
        if t == 0:
            a, b, c = rng.randint(120_000, 9_800_000), rng.randint(3, 48), rng.randint(2, 30)
            q = (f"A warehouse run by {name} ships {a} boxes every day. Each box holds {b} items. "
                 f"How many items does the warehouse ship in {c} days?")
            exact, target, money = Fraction(a * b * c), float(a * b * c), False
        elif t == 1:
            cents_a, cents_b, c = rng.randint(500_00, 9_000_00), rng.randint(105, 4_999), rng.randint(3, 40)
            a, b = cents_a / 100, cents_b / 100
            q = (f"{name} has ${a:.2f} in a savings account. {name} buys {c} gadgets that cost ${b:.2f} each. "
                 f"How much money is left in the account?")
            exact, target, money = Fraction(cents_a - c * cents_b, 100), a - c * b, True
        elif t == 2:
            a, b = rng.randint(1_234, 98_765), rng.randint(7, 95)
            q = f"A cyclist named {name} rides {a} meters every minute for {b} minutes. How many kilometers does {name} ride?"
            exact, target, money = Fraction(a * b, 1000), a * b / 1000, False
        else:
            price, pct = rng.randint(1_001, 99_999), rng.choice([5, 12, 15, 35, 45, 62])
            q = f"A car that {name} wants costs ${price}. The dealer offers a discount of {pct}%. What is the price after the discount?"
            exact, target, money = Fraction(price * (100 - pct), 100), price - price * pct / 100, True
        rows.append({"input": q, "code": "def solution():\n    ...\n    return result", "target": target})
        seeds.append(Seed(q, exact_truth(exact, money, q), q))
    return Shape("gsm_hard", "gsm_hard.jsonl", rows, seeds, {"fields": {"problem": "input", "answer": "target"}},
                 "jsonl; float target from Python arithmetic (binary-float noise, large numbers, negatives)")


def exact_truth(x: Fraction, money: bool, problem: str) -> Truth:
    if x.denominator == 1:
        return Truth("int", int(x), money=money, numbers=problem_numbers(problem))
    return Truth("dec", decimal_text(x), money=money, numbers=problem_numbers(problem))


def decimal_text(x: Fraction) -> str:
    """Exact decimal of a fraction whose denominator divides a power of ten."""
    for digits in range(1, 12):
        scaled = x * 10 ** digits
        if scaled.denominator == 1:
            sign = "-" if scaled < 0 else ""
            s = str(abs(int(scaled))).rjust(digits + 1, "0")
            return f"{sign}{s[:-digits]}.{s[-digits:]}"
    raise ValueError(x)


def shape_mawps() -> Shape:
    """MAWPS: iIndex, sQuestion, lEquations ["X=(8.0-3.0)"], lSolutions [5.0] (a list of floats)."""
    rng = random.Random("mawps")
    rows, seeds = [], []
    things = ["marbles", "pencils", "stickers", "apples", "cards", "shells"]
    for i in range(36):
        name, other, thing = NAMES[i % 12], NAMES[(i + 5) % 12], things[i % len(things)]
        a, b = rng.randint(12, 90), rng.randint(2, 11)
        t = i % 3
        if t == 0:
            q, eq, x = f"{name} had {a} {thing}. {name} gave {b} {thing} to {other}. How many {thing} does {name} have now?", f"X=({a}.0-{b}.0)", Fraction(a - b)
        elif t == 1:
            q, eq, x = f"{name} has {a} {thing} and shares them equally among {b} friends. How many {thing} does each friend get?", f"X=({a}.0/{b}.0)", Fraction(a, b)
        else:
            q, eq, x = f"There are {b} boxes with {a} {thing} in each box. How many {thing} are there in all?", f"X=({b}.0*{a}.0)", Fraction(a * b)
        if x.denominator not in (1, 2, 4, 5, 8, 10, 20, 25):
            a = b * rng.randint(3, 9)  # make the share exact so the float is exact
            q, eq, x = f"{name} has {a} {thing} and shares them equally among {b} friends. How many {thing} does each friend get?", f"X=({a}.0/{b}.0)", Fraction(a, b)
        rows.append({"iIndex": 1000 + i, "sQuestion": q, "lEquations": [eq], "lSolutions": [float(x)]})
        truth = exact_truth(x, False, q)
        truth.unit = thing
        seeds.append(Seed(q, truth, q))
    return Shape("mawps", "mawps.json", rows, seeds,
                 {"fields": {"problem": "sQuestion", "answer": "{{ lSolutions[0] }}"}},
                 "json; answer is the first float of a list (jinja), e.g. 5.0")


def shape_aime(math500: list[dict], gsm8k: list[dict]) -> Shape:
    """AIME 1983-2024: ID "2019-I-7", Year, "Problem Number", Question, Answer as an int column, Part."""
    ints = [r for r in math500 if re.fullmatch(r"\d{1,3}", r["answer"])]
    rows, seeds = [], []
    for k, r in enumerate(pick(ints, 9, 2, 24)):
        rows.append({"ID": f"{1990 + k}-I-{k % 15 + 1}", "Year": 1990 + k, "Problem Number": k % 15 + 1,
                     "Question": r["problem"], "Answer": int(r["answer"]), "Part": "I"})
        seeds.append(Seed(r["problem"], Truth("int", int(r["answer"]), numbers=problem_numbers(r["problem"])), r["problem"]))
    for k, r in enumerate([g for g in pick(gsm8k, 71, 3, 40) if gsm8k_answer(g) < 1000][:12]):
        rows.append({"ID": f"{2015 + k}-II-{k + 1}", "Year": 2015 + k, "Problem Number": k + 1,
                     "Question": r["question"], "Answer": gsm8k_answer(r), "Part": "II"})
        seeds.append(Seed(r["question"], Truth("int", gsm8k_answer(r), money=is_money(r["question"]),
                                               numbers=problem_numbers(r["question"])), r["question"]))
    return Shape("aime", "aime_1983_2024.parquet", rows, seeds, {"fields": {"problem": "Question", "answer": "Answer"}},
                 "parquet; Answer is an int64 column (0-999)")


def shape_olympiadbench(math500: list[dict]) -> Shape:
    """OlympiadBench: id, question, final_answer ["$\\frac{1}{2}$"], unit, answer_type, is_multiple_answer."""
    latex = [r for r in math500 if not re.fullmatch(r"-?\d+", r["answer"])]
    rows, seeds = [], []
    for k, r in enumerate(pick(latex, 5, 2, 38)):
        rows.append({"id": 2000 + k, "question": r["problem"], "final_answer": [f"${r['answer']}$"],
                     "unit": None, "answer_type": "Expression", "is_multiple_answer": False,
                     "subfield": r["subject"], "solution": [r["solution"]]})
        seeds.append(Seed(r["problem"], truth_of_math500(r["answer"], r["problem"]), r["problem"]))
    return Shape("olympiadbench", "olympiadbench.parquet", rows, seeds,
                 {"fields": {"problem": "question", "answer": "{{ final_answer[0] }}"}, "strip_units": True},
                 "parquet; answer = first item of a list column, wrapped in $...$; strip_units (see probes)")


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % p for p in range(2, int(n ** 0.5) + 1))


def shape_theoremqa() -> Shape:
    """TheoremQA: Question, Answer (bool / int / float / list in one column), Answer_type, Picture, id."""
    rng = random.Random("theoremqa")
    rows, seeds = [], []
    for i in range(36):
        t = i % 4
        if t == 0:
            n = rng.choice([rng.randint(100, 999) | 1, rng.choice([101, 211, 331, 443, 557, 613, 727, 853, 967])])
            q, ans, atype = f"Is {n} a prime number?", _is_prime(n), "bool"
            truth = Truth("bool", ans)
        elif t == 1:
            r1, r2 = sorted(rng.sample(range(-9, 12), 2))
            q = f"Find the roots of the polynomial x^2 - ({r1 + r2})x + ({r1 * r2}) = 0. Return them as a list in increasing order."
            ans, atype, truth = [r1, r2], "list of integer", Truth("list", [r1, r2])
        elif t == 2:
            principal, rate, years = rng.randint(10, 90) * 100, rng.choice([4, 5, 6, 8]), rng.randint(2, 5)
            value = Fraction(principal) * Fraction(100 + rate, 100) ** years
            cents = round(value * 100)
            q = (f"An account holds ${principal} at {rate}% annual interest, compounded annually. What is the balance "
                 f"after {years} years, in dollars? Round to two decimal places.")
            ans, atype = cents / 100, "float"
            truth = exact_truth(Fraction(cents, 100), True, q)
        else:
            n = rng.choice([360, 720, 1001, 840, 496, 1024, 2310, 900])
            q = f"How many positive divisors does {n} have?"
            ans, atype = sum(1 for d in range(1, n + 1) if n % d == 0), "integer"
            truth = Truth("int", ans, numbers=[str(n)])
        q = f"{q} (Question {i + 1})" if q in {s.key for s in seeds} else q
        rows.append({"Question": q, "Answer": ans, "Answer_type": atype, "Picture": None, "id": f"heldout_{i}.json"})
        seeds.append(Seed(q, truth, q))
    return Shape("theoremqa", "theoremqa_test.json", rows, seeds, {"fields": {"problem": "Question", "answer": "{{ Answer }}"}},
                 "json array; one Answer column holding bools, ints, floats and lists (jinja: see probes)")


def shape_deepmind() -> Shape:
    """DeepMind mathematics (HF layout): question, answer strings such as "-3", "-1/3", "2*z**2 - 5*z - 3", "True"."""
    rng = random.Random("deepmind")
    rows, seeds = [], []
    letters = "bcdfghjkmnpqrstuvwyz"
    for i in range(36):
        v = letters[i % len(letters)]
        t = i % 6
        if t == 0:
            x, y, c = rng.randint(-9, 9), rng.randint(-9, 9), rng.randint(2, 7)
            q, truth = f"Let {v} = {x} + {y}. Solve {c}*f + {v} = {c * -4 + x + y} for f.", Truth("int", -4, var="f")
        elif t == 1:
            a, b = rng.randint(2, 9), rng.randint(2, 9)
            q = f"Calculate ({-a})/({b})*1/{a}*{a}/{a}."  # = -1/b
            truth = Truth("expr", f"-1/{b}", latex=f"-\\frac{{1}}{{{b}}}")
        elif t == 2:
            a, b, c = rng.randint(2, 5), rng.randint(1, 9), rng.randint(1, 9)
            q = f"Expand ({a}*{v} + {b})*({v} - {c})."
            lin = b - a * c
            sign = "+" if lin >= 0 else "-"
            py = f"{a}*{v}**2 {sign} {abs(lin)}*{v} - {b * c}" if lin else f"{a}*{v}**2 - {b * c}"
            tex = f"{a}{v}^2 {sign} {abs(lin)}{v} - {b * c}" if lin else f"{a}{v}^2 - {b * c}"
            truth = Truth("expr", py, latex=tex)
        elif t == 3:
            n, d = rng.randint(20, 300), rng.choice([3, 7, 11, 13, 17])
            q, truth = f"Is {d} a factor of {n}?", Truth("bool", n % d == 0)
        elif t == 4:
            k, x = rng.randint(2, 9), rng.randint(-9, -1)
            q, truth = f"Let {v}(k) = {k}*k - 2. What is {v}({x})?", Truth("int", k * x - 2)
        else:
            a, b = Fraction(rng.randint(1, 9), 10), Fraction(-rng.randint(1, 99), 100)
            q = f"What is {decimal_text(a)} minus {decimal_text(b)}?"
            truth = Truth("dec", decimal_text(a - b))
        rows.append({"question": q, "answer": _deepmind_answer(truth)})
        seeds.append(Seed(q, truth, q))
    return Shape("deepmind_math", "deepmind_mathematics.jsonl", rows, seeds,
                 {"fields": {"problem": "question", "answer": "answer"}},
                 "jsonl; Python-syntax answers ('2*z**2 - 5*z - 3', '-1/3', 'True')")


def _deepmind_answer(t: Truth) -> str:
    if t.kind == "bool":
        return "True" if t.value else "False"
    return str(t.value)


def shape_mawps_csv() -> Shape:
    """MAWPS / ASDiv as many mirrors ship it: a CSV (Question, Numbers, Equation, Answer), read through format: hf."""
    base = shape_mawps()
    rows = [{"Question": r["sQuestion"], "Numbers": " ".join(problem_numbers(r["sQuestion"])),
             "Equation": r["lEquations"][0], "Answer": r["lSolutions"][0]} for r in base.rows]
    return Shape("mawps_csv", "mawps_csv/", rows, base.seeds, {"format": "hf", "fields": {"problem": "Question", "answer": "Answer"}},
                 "a folder holding train.csv, read as an HF data-files folder (a .csv path is refused: see probes)")


def all_shapes() -> list[Shape]:
    gsm8k, math500 = gsm8k_rows(), math500_rows()
    return [shape_hendrycks_math(math500), shape_numina_cot(gsm8k, math500), shape_aqua_rat(gsm8k),
            shape_mathqa(gsm8k), shape_gsm_hard(), shape_mawps(), shape_aime(math500, gsm8k),
            shape_olympiadbench(math500), shape_theoremqa(), shape_deepmind(), shape_mawps_csv()]


# ------------------------------------------------------------------------------------------------
# answer forms: ways to write the right value, and near misses that are wrong by construction
# ------------------------------------------------------------------------------------------------


def grouped(n: int) -> str:
    return f"{n:,}"


def right_form(t: Truth, rng: random.Random) -> tuple[str, str, str]:
    """(LaTeX for a box, plain text, form tag) of the right answer."""
    if t.kind == "int":
        n = t.value
        forms = [(str(n), str(n), "plain")] * 3
        if abs(n) >= 1000:
            forms += [(grouped(n), grouped(n), "commas"), (grouped(n).replace(",", "{,}"), grouped(n), "latex_commas"),
                      (grouped(n).replace(",", "\\,"), grouped(n).replace(",", " "), "thin_space_groups"),
                      (grouped(n).replace(",", ",\\!"), grouped(n), "latex_comma_bang")]
        if t.unit:
            forms += [(f"{n} \\text{{ {t.unit}}}", f"{n} {t.unit}", "unit_noun")] * 2
        if t.percent:
            forms += [(f"{n}\\%", f"{n}%", "percent_sign")] * 3 + [(f"{n} \\text{{ percent}}", f"{n} percent", "percent_word")]
        if t.var:
            forms += [(f"{t.var} = {n}", f"{t.var} = {n}", "var_equals")] * 2
        if t.money:
            forms += [(f"\\${grouped(n)}", f"${grouped(n)}", "dollar"), (f"\\${n}.00", f"${n}.00", "dollar_cents"),
                      (f"{n} \\text{{ dollars}}", f"{n} dollars", "unit_word")]
        forms += [(f"{n}.0", f"{n}.0", "trailing_zero"), (f"\\mathbf{{{n}}}", f"{n}", "mathbf")]
        return rng.choice(forms)
    if t.kind == "dec":
        d = str(t.value)
        x = Fraction(d)
        forms = [(d, d, "plain")] * 3
        if t.money:
            forms += [(f"\\${d}", f"${d}", "dollar")]
            if abs(x) >= 1000:
                whole, frac = d.split(".")
                forms += [(f"\\${grouped(int(whole))}.{frac}", f"${grouped(int(whole))}.{frac}", "dollar_commas")]
        if len(d.split(".")[1]) == 1:
            forms += [(d + "0", d + "0", "trailing_zero")]
        if t.percent:
            forms += [(f"{d}\\%", f"{d}%", "percent_sign")] * 3
        if x.denominator <= 20:
            sign = "-" if x < 0 else ""
            forms += [(f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}", f"{x.numerator}/{x.denominator}", "fraction"),
                      (f"{sign}\\dfrac{{{abs(x.numerator)}}}{{{x.denominator}}}", f"{x.numerator}/{x.denominator}", "dfrac")]
        if d.startswith("0."):
            forms += [(d[1:], d[1:], "leading_dot")]
        return rng.choice(forms)
    if t.kind == "latex":
        return latex_right_form(str(t.value), rng)
    if t.kind == "letter":
        L = t.value.upper() if rng.random() < 0.7 or not t.lower_letters else t.value
        v = t.options[t.value]
        forms = [(L, L, "letter"), (f"({L})", f"({L})", "paren_letter"), (f"\\text{{{L}}}", f"{L}", "text_letter"),
                 (f"\\text{{({L})}}", f"({L}) {v}", "letter_and_value"), (f"{L}", f"{L}) {v}", "letter_paren_value"),
                 (f"\\text{{{L}) }} {v}", f"{L}: {v}", "letter_colon_value"), (v, v, "value_only")]
        weights = [4, 3, 1, 2, 2, 1, 1]
        return rng.choices(forms, weights)[0]
    if t.kind == "bool":
        word = "True" if t.value else "False"
        forms = [(word, word, "word"), (f"\\text{{{word}}}", word, "text_word"), (word.lower(), word.lower(), "lower"),
                 ("\\text{Yes}" if t.value else "\\text{No}", "Yes" if t.value else "No", "yes_no")]
        return rng.choices(forms, [4, 2, 2, 1])[0]
    if t.kind == "list":
        a, b = t.value
        forms = [(f"[{a}, {b}]", f"[{a}, {b}]", "brackets"), (f"[{a},{b}]", f"[{a},{b}]", "brackets_tight"),
                 (f"{a}, {b}", f"{a}, {b}", "bare_pair")]
        return rng.choice(forms)
    if t.kind == "expr":
        py, tex = str(t.value), t.latex or str(t.value)
        forms = [(tex, f"${tex}$", "latex"), (tex.replace("^2", "^{2}"), f"${tex}$", "latex_braced"),
                 (py, py, "python_syntax"), (tex.replace(" ", ""), f"${tex}$", "latex_tight")]
        if py.startswith("-1/"):
            forms += [(f"\\frac{{-1}}{{{py[3:]}}}", py, "neg_numerator"), (f"-{py[1:]}", py, "slash")]
        return rng.choice(forms)
    raise ValueError(t.kind)


def latex_right_form(ans: str, rng: random.Random) -> tuple[str, str, str]:
    """Rewrites of a MATH answer that change its writing, never its value."""
    forms = [(ans, f"${ans}$", "verbatim")] * 4
    if "\\frac" in ans and "\\dfrac" not in ans:
        forms += [(ans.replace("\\frac", "\\dfrac"), f"${ans.replace(chr(92) + 'frac', chr(92) + 'dfrac')}$", "dfrac"),
                  (ans.replace("\\frac", "\\tfrac"), f"${ans}$", "tfrac")]
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", ans)
    if m:
        p, q = int(m.group(1)), int(m.group(2))
        forms += [(f"{p}/{q}", f"{p}/{q}", "slash_fraction")]
        if all(f in (2, 5) for f in _factors(q)):
            forms += [(decimal_text(Fraction(p, q)), decimal_text(Fraction(p, q)), "decimal")]
    m = re.fullmatch(r"(\d+)\\frac\{(\d+)\}\{(\d+)\}", ans)
    if m:
        w, p, q = map(int, m.groups())
        forms += [(f"\\frac{{{w * q + p}}}{{{q}}}", f"{w * q + p}/{q}", "improper_fraction")]
    if ans.startswith("\\left(") and ans.endswith("\\right)"):
        inner = ans[len("\\left("):-len("\\right)")].strip()
        forms += [(f"({inner})", f"$({inner})$", "no_left_right")]
    elif ans.startswith("(") and ans.endswith(")") and "\\left" not in ans:
        forms += [(f"\\left({ans[1:-1]}\\right)", f"${ans}$", "left_right")]
    if "," in ans and "\\begin" not in ans and not re.search(r"\d,(\\!)?\d{3}", ans):  # not a thousands comma
        forms += [(re.sub(r",\s*", ",\\\\, ", ans), f"${ans}$", "thin_space_after_comma"),
                  (re.sub(r",\s*", ", ", ans), f"${ans}$", "space_after_comma")]
    if " " in ans and "\\begin" not in ans and "\\text" not in ans:
        forms += [(ans.replace(" ", ""), f"${ans}$", "no_spaces")]
    if "^\\circ" in ans:
        num = ans.replace("^\\circ", "")
        forms += [(f"{num}^{{\\circ}}", f"{num}°", "degree_braced"), (f"{num}°", f"{num}°", "degree_unicode"),
                  (num, num, "degree_dropped")]
    if ans.startswith("\\text{") and ans.endswith("}"):
        word = ans[6:-1]
        forms += [(word, word, "text_unwrapped"), (f"\\mathrm{{{word}}}", word, "mathrm")]
    if "\\begin{pmatrix}" in ans and "/" in ans:
        fr = re.sub(r"(-?)(\d+)/(\d+)", r"\1\\frac{\2}{\3}", ans)
        forms += [(fr, f"${fr}$", "matrix_fracs"), (fr.replace("pmatrix", "bmatrix"), f"${fr}$", "bmatrix")]
    if "\\pm" in ans:
        a, b = [s.strip() for s in ans.split("\\pm", 1)]
        forms += [(f"{a} + {b}, {a} - {b}", f"${a} + {b}$ and ${a} - {b}$", "pm_expanded")]
    if re.fullmatch(r"\(\d+,\\infty\)", ans):
        forms += [(ans.replace(",", ", "), f"${ans}$", "interval_spaced")]
    if "\\sqrt{" in ans:
        forms += [(ans.replace("\\sqrt{", "\\sqrt {"), f"${ans}$", "sqrt_space")]
    if "\\pi" in ans and " \\pi" in ans:
        forms += [(ans.replace(" \\pi", "\\pi"), f"${ans}$", "pi_tight")]
    return rng.choice(forms)


def _factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def bump_first_number(s: str) -> str | None:
    m = re.search(r"\d+", s)
    if not m:
        return None
    return s[:m.start()] + str(int(m.group()) + 1) + s[m.end():]


def wrong_form(t: Truth, rng: random.Random, other: Truth) -> tuple[str, str, str]:
    """(LaTeX, plain, cause) of a near miss: wrong by construction."""
    if t.kind == "int":
        n = t.value
        cands = [(n + 1, "off_by_one"), (n - 1, "off_by_one"), (n * 10, "magnitude")]
        if n:
            cands.append((-n, "sign"))
        nums = [int(float(x)) for x in t.numbers if re.fullmatch(r"\d+", x) and int(x) != n]
        if nums:
            cands.append((rng.choice(nums), "number_from_problem"))
        digits = str(abs(n))
        if len(digits) >= 2 and digits[-1] != digits[-2]:
            cands.append((int(("-" if n < 0 else "") + digits[:-2] + digits[-1] + digits[-2]), "transposed_digits"))
        if n % 60 == 0 and n:
            cands.append((n // 60, "units_minutes_hours"))
        else:
            cands.append((n * 60, "units_minutes_hours"))
        v, cause = rng.choice(cands)
        text = (f"\\${grouped(v)}" if t.money and rng.random() < 0.4 else str(v))
        return text, text.replace("\\$", "$"), cause
    if t.kind == "dec":
        x = Fraction(str(t.value))
        cands = []
        one = Fraction(round(x * 10), 10)
        if one != x:
            cands.append((decimal_text(one) if one.denominator != 1 else str(int(one)), "rounding"))
        if round(x) != x:
            cands.append((str(round(x)), "rounding"))
        cands += [(decimal_text(x * 100) if (x * 100).denominator != 1 else str(int(x * 100)), "percent_confusion"),
                  (decimal_text(x + 1), "off_by_one"), (decimal_text(-x), "sign")]
        v, cause = rng.choice(cands)
        return v, v, cause
    if t.kind == "latex":
        ans = str(t.value)
        cands = []
        bumped = bump_first_number(ans)
        if bumped:
            cands.append((bumped, "digit_slip"))
        if not ans.startswith("-") and not ans.startswith("(") and "\\begin" not in ans and "," not in ans \
                and not ans.startswith("\\text") and "=" not in ans and "\\infty" not in ans and bumped:
            cands.append((f"-{ans}", "sign"))
        if "\\sqrt{" in ans:
            cands.append((ans.replace("\\sqrt", ""), "dropped_sqrt"))
        if not cands:
            cands.append((str(other.value) if other.kind == "latex" else "\\text{none}", "other_answer"))
        v, cause = rng.choice(cands)
        return v, f"${v}$", cause
    if t.kind == "letter":
        letters = [k for k in t.options if k != t.value]
        L = rng.choice(letters)
        shown = L.upper() if rng.random() < 0.7 else L
        forms = [(shown, shown), (f"({shown})", f"({shown})"), (f"\\text{{({shown})}}", f"{shown}) {t.options[L]}")]
        a, b = rng.choice(forms)
        return a, b, "wrong_letter"
    if t.kind == "bool":
        word = "False" if t.value else "True"
        return word, word, "negated"
    if t.kind == "list":
        a, b = t.value
        cands = [(f"[{a}, {b + 1}]", "element_slip"), (f"[{-a}, {-b}]", "sign"), (f"[{a}]", "partial")]
        v, cause = rng.choice(cands)
        return v, v, cause
    if t.kind == "expr":
        tex = t.latex or str(t.value)
        bumped = bump_first_number(tex[1:]) if tex.startswith("-") else bump_first_number(tex)
        if tex.startswith("-"):
            bumped = "-" + bumped
        return bumped, f"${bumped}$", "digit_slip"
    raise ValueError(t.kind)


# ------------------------------------------------------------------------------------------------
# teacher styles: how model families lay out their reasoning and their final answer
# ------------------------------------------------------------------------------------------------


def restate(problem: str) -> str:
    first = re.split(r"(?<=[.?!])\s", problem.strip())[0]
    return first if len(first) < 200 else first[:200].rsplit(" ", 1)[0] + "..."


def work_sentences(seed: Seed, rng: random.Random, claim: str, long: bool) -> list[str]:
    """Chain-of-thought sentences that end by reaching `claim` (plain text)."""
    nums = seed.truth.numbers or problem_numbers(seed.problem)
    bank = [
        f"The problem says: {restate(seed.problem)}",
        f"The quantities given are {', '.join(nums[:4])}." if nums else "There are no explicit numbers, so I work symbolically.",
        "I should set up the relationship carefully before computing anything.",
        "Let me define the unknown and write the equation it satisfies.",
        "Now I compute each part separately so that I do not mix up the units.",
        "Checking the arithmetic again: the intermediate results are consistent.",
        "Hmm, wait, let me make sure I read the question correctly: it asks for the final quantity, not an intermediate one.",
        "That matches the constraint in the statement, so the approach is sound.",
        "Let me double-check by plugging the result back into the original conditions.",
        "Alternatively I could count directly, but the algebraic route is cleaner here.",
    ]
    k = rng.randint(7, 10) if long else rng.randint(3, 5)
    picked = [bank[0]] + rng.sample(bank[1:], k - 1)
    return picked + [f"So the result is {claim}."]


@dataclass
class Written:
    text: str
    reasoning: str | None = None


OUTROS = ["Let me know if you'd like me to explain any step in more detail!",
          "I hope this helps. Feel free to ask if anything is unclear.",
          "This matches all the conditions given in the problem."]


def chatty(text: str, rng: random.Random) -> str:
    """Chat models often add a line after the answer."""
    return f"{text}\n\n{rng.choice(OUTROS)}" if rng.random() < 0.3 else text


def style_r1(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    think = "Okay, let's see. " + " ".join(w)
    tail = rng.choice(["**Final Answer**\n\\[\n\\boxed{%s}\n\\]", "**Final Answer**\n\\boxed{%s}", "**Final Answer**\n\\[ \\boxed{%s} \\]"])
    return Written(f"<think>\n{think}\n</think>\n\nTo solve this, {w[1][0].lower()}{w[1][1:]} Working through the steps gives the result.\n\n"
                   + tail % box)


def style_r1_api(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    think = "Okay, so I need to solve this. " + " ".join(w)
    text = rng.choice([f"The computation above gives the result.\n\n**Final Answer**\n\\[\n\\boxed{{{box}}}\n\\]",
                       f"**Solution.** We compute step by step.\n\nThe answer is $\\boxed{{{box}}}$."])
    return Written(text, reasoning=think)


def style_qwq(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    body = "Alright, I've got this problem here. " + " ".join(w)
    return Written(f"{body}\n\nI think that's the answer.\n\n**Final Answer**\n\n\\[ \\boxed{{{box}}} \\]")


def style_qwen_math(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    steps = "\n\n".join(f"{i + 1}. {s}" for i, s in enumerate(w))
    end = rng.choice([f"Therefore, the final answer is $\\boxed{{{box}}}$.", f"Thus, the answer is \\(\\boxed{{{box}}}\\).",
                      f"The final answer is \\(\\boxed{{{box}}}\\)."])
    return Written(f"To solve the problem, we proceed step by step.\n\n{steps}\n\n{end}")


def style_gpt4o(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    steps = "\n\n".join(f"### Step {i + 1}: \n{s}" for i, s in enumerate(w))
    end = rng.choice([f"### Final Answer\n\\[\n\\boxed{{{box}}}\n\\]", f"### Final Answer:\nThe answer is **{plain}**.",
                      f"**Answer:** {plain}", f"### Final Answer\n**{plain}**"])
    return Written(chatty(f"Let's break this problem down.\n\n{steps}\n\n{end}", rng))


def style_o1(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    end = rng.choice([f"**Answer:** {plain}", f"**Answer:** $\\boxed{{{box}}}$", f"**Final answer:** {plain}"])
    return Written(f"**Solution.** {' '.join(w[1:3])} {w[-1]}\n\n{end}")


def style_claude(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    body = "\n\n".join(f"**{s.split()[0]}** {' '.join(s.split()[1:])}" if i % 2 else s for i, s in enumerate(w))
    end = rng.choice([f"So the answer is **{plain}**.", f"The answer is **{plain}**.", f"So the answer is {plain}."])
    return Written(chatty(f"I'll work through this step by step.\n\n{body}\n\n{end}", rng))


def style_llama3(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    steps = "\n\n".join(f"## Step {i + 1}: {s.split('.')[0]}\n{s}" for i, s in enumerate(w))
    end = rng.choice([f"The final answer is: $\\boxed{{{box}}}$",
                      f"Therefore, the final answer is: $\\boxed{{{box}}}$. I hope it is correct."])
    return Written(f"{steps}\n\n{end}")


def style_gemini(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    bullets = "\n".join(f"*   **Step {i + 1}:** {s}" for i, s in enumerate(w))
    end = rng.choice([f"**Final Answer:** The final answer is $\\boxed{{{box}}}$", f"**Answer:** {plain}",
                      f"Therefore, the answer is **{plain}**."])
    return Written(chatty(f"Here's how to solve this problem:\n\n{bullets}\n\n{end}", rng))


def style_metamath(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    return Written(" ".join(w) + f"\nThe answer is: {plain}")


def style_phi(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    end = rng.choice([f"Answer: {plain}", f"Final answer: {plain}", f"The answer is ${box}$."])
    return Written("\n".join(w) + f"\n\n{end}")


def style_gsm8k_sft(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    return Written("\n".join(w) + f"\n#### {plain}")


def style_minerva(w: list[str], box: str, plain: str, rng: random.Random) -> Written:
    return Written(" ".join(w) + f"\nFinal Answer: The final answer is ${box}$. I hope it is correct.")


STYLES = {"deepseek_r1": style_r1, "deepseek_api": style_r1_api, "qwq": style_qwq, "qwen_math": style_qwen_math,
          "gpt4o": style_gpt4o, "o1": style_o1, "claude": style_claude, "llama3": style_llama3, "gemini": style_gemini,
          "metamath": style_metamath, "phi": style_phi, "gsm8k_sft": style_gsm8k_sft, "minerva": style_minerva}


# hedges: two different readings of the problem, each with its own final answer
HEDGES = [
    "The answer is {a}. Alternatively, if the question means the other quantity, the answer is {b}.",
    "So the answer is $\\boxed{{{ab}}}$ or $\\boxed{{{bb}}}$, depending on the interpretation.",
    "The answer is either {a} or {b}, depending on whether the last step counts the initial amount.",
    "**Answer:** {a} (or {b} if the problem intends the total rather than the remainder)",
    "**Final Answer**\n\\[\n\\boxed{{{ab}}}\n\\]\n\nHowever, if the problem intends the other reading, the answer would be \\(\\boxed{{{bb}}}\\).",
    "I believe the answer is {a}, but it might also be {b}.",
    "Final answer: {a} (if we include the first case) / {b} (if we don't).",
]


def write_completion(seed: Seed, other: Seed, label: str, style: str, rng: random.Random) -> dict:
    """One completion with its truth, fixed here."""
    t = seed.truth
    rbox, rplain, rform = right_form(t, rng)
    wbox, wplain, cause = wrong_form(t, rng, other.truth)
    rec = {"label": label, "style": style, "form": rform, "cause": None, "finish_reason": "stop"}
    if label == "hedged":
        w = work_sentences(seed, rng, rplain, style in ("deepseek_r1", "qwq", "deepseek_api"))
        first_right = rng.random() < 0.5
        a, b = (rplain, wplain) if first_right else (wplain, rplain)
        ab, bb = (rbox, wbox) if first_right else (wbox, rbox)
        hedge = rng.choice(HEDGES)
        body = " ".join(w)
        rec.update(text=f"{body}\n\n{hedge.format(a=a, b=b, ab=ab, bb=bb)}", reasoning=None,
                   cause=f"hedge:{HEDGES.index(hedge)}", form=f"{'right' if first_right else 'wrong'}_first")
        return rec
    if label == "wrong":
        in_reasoning = rng.random() < 0.25
        w = work_sentences(seed, rng, wplain, style in ("deepseek_r1", "qwq", "deepseek_api"))
        if in_reasoning:  # the right value shows up mid-way (even boxed), then the teacher talks itself out of it
            w.insert(-1, rng.choice([f"At first I got {rplain}, but I think I need to redo the last step.",
                                     f"Tentatively \\boxed{{{rbox}}}, but let me re-examine the last step."]))
            cause += "+right_in_reasoning"
        out = STYLES[style](w, wbox, wplain, rng)
        rec.update(text=out.text, reasoning=out.reasoning, cause=cause, form=None)
        return rec
    w = work_sentences(seed, rng, rplain, style in ("deepseek_r1", "qwq", "deepseek_api"))
    if style in ("deepseek_r1", "deepseek_api", "qwq") and rng.random() < 0.25:  # a wrong boxed draft inside the reasoning
        w.insert(-1, f"My first attempt gives \\boxed{{{wbox}}}. Hmm, wait, that doesn't match the constraint, let me redo it.")
        rform += "+wrong_box_in_reasoning"
    correction = label == "right" and style in ("claude", "gpt4o", "gemini") and rng.random() < 0.12
    out = STYLES[style](w, rbox, rplain, rng)
    if correction:  # a self-correction is not a hedge: one final answer, the earlier one retracted
        out = Written(out.text.replace("I'll work through", "Let me work through", 1), out.reasoning)
        head, _, tail = out.text.rpartition("\n\n")
        out = Written(f"{head}\n\nThat gives {wplain}. Wait, that's not right: I double counted the first group. "
                      f"Correcting it:\n\n{tail}", out.reasoning)
        rec["form"] = rform + "+self_correction"
    if label == "truncated":
        rec["finish_reason"] = "length"
        mode = rng.choices(["mid_reasoning", "mid_answer", "after_answer"], [6, 2, 2])[0]
        rec["cause"] = f"truncated:{mode}"
        if out.reasoning is not None:
            if mode == "mid_reasoning":
                cut = int(len(out.reasoning) * rng.uniform(0.3, 0.9))
                out = Written("", out.reasoning[:cut])
            elif mode == "mid_answer":
                out = Written(out.text[:max(out.text.rfind("{") + 1, 1)], out.reasoning)
        else:
            text = out.text
            if mode == "mid_reasoning":
                text = text[:int(len(text) * rng.uniform(0.3, 0.85))]
            elif mode == "mid_answer":
                pos = max(text.rfind(rbox), len(text) - len(rplain) - 2)
                text = text[:pos + max(1, len(rbox) // 2)] if pos > 0 else text[:-3]
            out = Written(text, out.reasoning)
    rec.update(text=out.text, reasoning=out.reasoning)
    return rec


def style_for(seed: Seed, rng: random.Random) -> str:
    return rng.choice(list(STYLES))


def label_for(rng: random.Random) -> str:
    return rng.choices([k for k, _ in LABEL_MIX], [w for _, w in LABEL_MIX])[0]


# ------------------------------------------------------------------------------------------------
# writing the held-out set
# ------------------------------------------------------------------------------------------------


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def write_heldout(out: Path = DATA_DIR, samples: int = SAMPLES) -> None:
    """Write every shape's source file, truth.jsonl (per seed) and completions.jsonl (per seed and sample)."""
    out.mkdir(parents=True, exist_ok=True)
    shapes = all_shapes()
    with open(out / "completions.jsonl", "w", encoding="utf-8") as comp, open(out / "truth.jsonl", "w", encoding="utf-8") as tr:
        for shape in shapes:
            path = out / shape.file
            if shape.file.endswith("/"):
                import csv

                path.mkdir(exist_ok=True)
                with open(path / "train.csv", "w", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=list(shape.rows[0]))
                    writer.writeheader()
                    writer.writerows(shape.rows)
            elif path.suffix == ".parquet":
                write_parquet(path, shape.rows)
            elif path.suffix == ".json":
                path.write_text(json.dumps(shape.rows, indent=1, ensure_ascii=False), encoding="utf-8")
            else:
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shape.rows), encoding="utf-8")
            for i, seed in enumerate(shape.seeds):
                tr.write(json.dumps({"shape": shape.name, "key": seed.key, "truth": seed.truth.to_json()}, ensure_ascii=False) + "\n")
                other = shape.seeds[(i + 7) % len(shape.seeds)]
                for k in range(samples):
                    rng = random.Random(f"{shape.name}|{i}|{k}")
                    rec = write_completion(seed, other, label_for(rng), style_for(seed, rng), rng)
                    comp.write(json.dumps({"shape": shape.name, "key": seed.key, "sample": k, **rec}, ensure_ascii=False) + "\n")
    (out / "shapes.json").write_text(json.dumps(
        [{"name": s.name, "file": s.file, "source": s.source, "note": s.note, "seeds": len(s.seeds)} for s in shapes], indent=1),
        encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# running factory on it: a scripted teacher, one project per shape, the store joined with the truth
# ------------------------------------------------------------------------------------------------


class HeldoutTeacher:
    """Answers each request with the completion written for its seed and sample; logs what it sent."""

    def __init__(self, completions: dict[str, list[dict]]):
        self.name, self.model = "heldout", "heldout-model"
        self.completions = completions
        self.keys = sorted(completions, key=len, reverse=True)  # the longest key that fits wins
        self.sent: dict[str, dict] = {}

    def generate(self, requests):
        from factory.records import Response

        for r in requests:
            user = r.messages[-1]["content"]
            key = next((k for k in self.keys if k in user), None)
            if key is None or r.sample_index >= len(self.completions[key]):
                yield Response(r.request_id, r.teacher, r.model, error="heldout: no completion for this prompt")
                continue
            rec = self.completions[key][r.sample_index]
            self.sent[r.request_id] = rec
            text = rec["text"]
            yield Response(r.request_id, r.teacher, r.model, text=text, reasoning=rec.get("reasoning"),
                           finish_reason=rec["finish_reason"], prompt_tokens=200,
                           completion_tokens=len((text + (rec.get("reasoning") or "")).split()))


def load_heldout(data: Path = DATA_DIR) -> tuple[list[dict], dict[str, dict[str, list[dict]]], dict]:
    shapes = json.loads((data / "shapes.json").read_text(encoding="utf-8"))
    completions: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in open(data / "completions.jsonl", encoding="utf-8"):
        rec = json.loads(line)
        completions[rec["shape"]][rec["key"]].append(rec)
    truth = {}
    for line in open(data / "truth.jsonl", encoding="utf-8"):
        rec = json.loads(line)
        truth[(rec["shape"], rec["key"])] = rec["truth"]
    return shapes, completions, truth


JOIN = """
SELECT q.request_id, d.answer AS reference, s.text, s.reasoning, s.finish_reason, s.error AS response_error,
       p.answer AS parsed, p.answer_source, p.error AS parse_error, p.truncated,
       c.passed, c.reason, c.detail
FROM requests q JOIN seeds d USING (seed_id) JOIN plan USING (request_id)
LEFT JOIN responses s USING (request_id)
LEFT JOIN parsed p USING (request_id)
LEFT JOIN checks c ON c.request_id = q.request_id AND c."check" = 'verify'
"""


def shape_config(shape: dict, workdir: Path, data: Path, **source_overrides):
    from factory.config import load_config

    source = {"name": shape["name"], "path": str(data / shape["file"]), **shape["source"], **source_overrides}
    source = {k: v for k, v in source.items() if v is not None}
    return load_config(data={
        "workdir": str(workdir / shape["name"]), "prompts_dir": str(ROOT / "prompts"), "sources": [source],
        "teachers": [{"name": "heldout", "backend": "openai", "model": "heldout-model"}],
        "generation": {"samples_per_seed": SAMPLES, "max_tokens": 8192},
        "filter": {"benchmarks": {}}})  # MATH-500 items are sources here: no decontamination


def run_shape(shape: dict, completions: dict[str, list[dict]], workdir: Path, data: Path) -> tuple[list[dict], str | None, dict]:
    """Build and filter one shape in its own project; returns one row per trace (store joined with truth)."""
    import duckdb
    from rich.console import Console

    from factory.build import build_dataset
    from factory.filter import run_filter

    cfg = shape_config(shape, workdir, data)
    teacher = HeldoutTeacher(completions)
    quiet = Console(quiet=True)
    try:
        built = build_dataset(cfg, console=quiet, teachers={"heldout": teacher})
    except Exception as e:  # a build that stops is itself a finding
        return [], f"build stopped: {type(e).__name__}: {e}", {}
    seeds = {"loaded": built.seeds_loaded, "rejected": dict(built.seeds_rejected)}
    run_filter(cfg, console=quiet)
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    cols = [d[0] for d in con.execute(JOIN).description]
    rows = [dict(zip(cols, r)) for r in con.execute(JOIN).fetchall()]
    con.close()
    out = []
    for r in rows:
        rec = teacher.sent.get(r["request_id"])
        if rec is None:
            continue
        out.append({**r, "shape": shape["name"], "label": rec["label"], "style": rec["style"], "form": rec["form"],
                    "cause": rec["cause"], "key": rec["key"], "verified": r["passed"] is True})
    return out, None, seeds


# probes: the plainest config a user would write first for a shape; what factory does with it is a finding
PROBES = [
    ("theoremqa", {"fields": {"problem": "Question", "answer": "Answer"}}, "mixed-type Answer mapped as a column"),
    ("olympiadbench", {"strip_units": None}, "units inside final_answer, no strip_units"),
    ("mawps_csv", {"path": "mawps_csv/train.csv", "format": None}, "a .csv file by path"),
    ("mawps_csv", {"path": "mawps_csv/train.csv", "format": "hf"}, "a .csv file with format: hf"),
]


def run_probes(shapes: list[dict], completions: dict, workdir: Path, data: Path) -> list[str]:
    from rich.console import Console

    from factory.build import build_dataset

    found = []
    by_name = {s["name"]: s for s in shapes}
    for i, (name, change, what) in enumerate(PROBES):
        if name not in by_name:
            continue
        shape = dict(by_name[name])
        change = dict(change)
        if "path" in change:
            change["path"] = str(data / change["path"])
        if "fields" in change:
            shape["source"] = {k: v for k, v in shape["source"].items() if k != "fields"}
        try:
            cfg = shape_config(shape, workdir / f"probe{i}", data, **change)
            built = build_dataset(cfg, console=Console(quiet=True), teachers={"heldout": HeldoutTeacher(completions[name])})
            outcome = f"built: {built.seeds_loaded} seeds, rejected {dict(built.seeds_rejected) or 0}"
        except Exception as e:
            outcome = f"{type(e).__name__}: {str(e)[:300]}"
        found.append(f"{name} ({what}): {outcome}")
    return found


# right by value, but a grader could argue: the choice's value without its letter, "Yes" for True, a bare
# pair for a list, a retracted earlier answer, a degree sign dropped, "a ± b" written out as two values
DEBATABLE_FORMS = ("value_only", "yes_no", "bare_pair", "self_correction", "degree_dropped", "pm_expanded")


def debatable(r: dict) -> bool:
    return r["label"] == "right" and any(f in (r["form"] or "") for f in DEBATABLE_FORMS)


def precision_recall(rows: list[dict]) -> tuple[int, int, int, int]:
    right = [r for r in rows if r["label"] == "right"]
    tp = sum(r["verified"] for r in right)
    fp = sum(r["verified"] for r in rows if r["label"] != "right")
    return len(rows), len(right), tp, fp


def fmt_pr(rows: list[dict]) -> str:
    n, right, tp, fp = precision_recall(rows)
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / right if right else float("nan")
    return f"{n:5d} {right:5d} {tp:5d} {fp:4d} {right - tp:4d}  {p:7.4f} {r:7.4f}"


def miss_cause(r: dict) -> str:
    if r["label"] == "right":
        why = r["parse_error"] or (r["reason"] if r["passed"] is False else "no_verify_check")
        return f"missed right [{why}] {r['shape']}:{r['form']}"
    return f"verified {r['label']} [{r['cause']}] {r['shape']}"


def tail(text: str | None, n: int = 220) -> str:
    text = (text or "").replace("\n", "\\n")
    return text if len(text) <= n else "…" + text[-n:]


def report(rows: list[dict], failures: dict[str, str], truth: dict, examples: int, seeds: dict, probes: list[str],
           print_=print, is_debatable=None, cause_of=None) -> dict:
    """Print P/R by shape, style and label, then the misses grouped by cause (heldout2.py passes its own
    `is_debatable` and `cause_of`); returns the summary."""
    is_debatable, cause_of = is_debatable or debatable, cause_of or miss_cause
    head = f"{'':26s} {'n':>5s} {'right':>5s} {'TP':>5s} {'FP':>4s} {'FN':>4s}  {'P':>7s} {'R':>7s}"
    summary: dict = {"shapes": {}, "styles": {}, "labels": {}}
    for title in ("shape", "style", "label"):
        print_(f"\n== verified precision / recall by {title}")
        print_(head)
        groups = defaultdict(list)
        for r in rows:
            groups[r[title]].append(r)
        for name in sorted(groups):
            print_(f"{name:26s} {fmt_pr(groups[name])}")
            summary[title + "s"][name] = precision_recall(groups[name])
    print_(f"{'ALL':26s} {fmt_pr(rows)}")
    strict = [r for r in rows if not is_debatable(r)]
    print_(f"{'ALL, no debatable forms':26s} {fmt_pr(strict)}")
    summary["all"] = precision_recall(rows)
    summary["all_without_debatable"] = precision_recall(strict)
    for name, why in failures.items():
        print_(f"\n!! shape {name}: {why}")
    print_("\n== seeds loaded / rejected per shape (the config as in shapes.json)")
    for name, got in seeds.items():
        print_(f"   {name:18s} {got}")
    if probes:
        print_("\n== probes (the plainest config first)")
        for line in probes:
            print_(f"   {line}")
    misses = [r for r in rows if r["verified"] != (r["label"] == "right")]
    by_cause = defaultdict(list)
    for r in misses:
        by_cause[cause_of(r)].append(r)
    print_(f"\n== {len(misses)} misses in {len(by_cause)} groups")
    for cause, group in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
        print_(f"\n-- {cause}: {len(group)}   (shapes {sorted({g['shape'] for g in group})} "
               f"styles {sorted({g['style'] for g in group})})")
        for r in group[:examples]:
            t = truth.get((r["shape"], r["key"]), {})
            print_(f"   {r['shape']}/{r['style']} finish={r['finish_reason']} "
                   f"truth={json.dumps(t.get('value'), ensure_ascii=False)} reference={r['reference']!r} "
                   f"parsed={r['parsed']!r} ({r['answer_source']}) verdict={r['reason']} detail={str(r['detail'])[:160]}")
            print_(f"   tail: {tail(r['text'] or r.get('reasoning'))}")
    summary["misses"] = {k: len(v) for k, v in by_cause.items()}
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="regenerate tests/support/heldout/ first")
    ap.add_argument("--data", default=str(DATA_DIR))
    ap.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    ap.add_argument("--misses", type=int, default=3, help="examples printed per miss group")
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--no-probes", action="store_true", help="skip the plainest-config probes")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if args.write or not (data / "completions.jsonl").exists():
        write_heldout(data)
    shapes, completions, truth = load_heldout(data)
    wanted = set(filter(None, args.shapes.split(",")))
    rows, failures, timings, seeds = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="heldout-") as tmp:
        for shape in shapes:
            if wanted and shape["name"] not in wanted:
                continue
            started = time.monotonic()
            got, failure, seeds[shape["name"]] = run_shape(shape, completions[shape["name"]], Path(tmp), data)
            timings[shape["name"]] = round(time.monotonic() - started, 1)
            rows += got
            if failure:
                failures[shape["name"]] = failure
        probes = [] if args.no_probes else run_probes(shapes, completions, Path(tmp), data)
    summary = report(rows, failures, truth, args.misses, seeds, probes)
    print(f"\nwall per shape (s): {timings}")
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "failures": failures, "timings": timings, "seeds": seeds,
                                               "probes": probes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
