"""Source files in the shapes of real public math sets, built from the repo's data, each with the
factory source config that reads it WITH CONFIG ALONE, and the truth the oracle teacher needs.

Every builder is deterministic (a fixed seed) and takes its rows from its own slice of
data/gsm8k_train.jsonl or data/benchmarks/math500_test.jsonl, so shapes built into one folder never
share a problem (a shared problem would be dropped as a duplicate when they are filtered together).

    shapes = build_shapes(tmp_dir, n=100)           # every shape
    shape.source        # the source entry of factory.yaml, with the reference
    shape.unlabelled    # the same file read without a reference (majority vote)
    shape.seeds         # TruthSeeds: problem as the factory renders it, the TRUE reference, its kind
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from support.oracle import TruthSeed, num_text

ROOT = Path(__file__).resolve().parents[2]
GSM8K = ROOT / "data" / "gsm8k_train.jsonl"
MATH500 = ROOT / "data" / "benchmarks" / "math500_test.jsonl"


@dataclass
class Shape:
    name: str
    source: dict  # factory.yaml source entry (with the reference)
    unlabelled: dict  # the same file, no reference: seeds are labelled by majority vote
    seeds: list[TruthSeed]
    files: list[Path] = field(default_factory=list)
    notes: str = ""


def _gsm8k_rows(start: int, n: int) -> list[tuple[str, str, str]]:
    """(question, worked answer, true reference) of rows [start, start + n)."""
    out = []
    with open(GSM8K, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            if len(out) >= n:
                break
            row = json.loads(line)
            out.append((row["question"], row["answer"], row["answer"].split("####")[-1].strip().replace(",", "")))
    return out


def _math500_rows(start: int, n: int) -> list[dict]:
    rows = [json.loads(line) for line in open(MATH500, encoding="utf-8")]
    return rows[start:start + n]


_UNIT_REF_RE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*\\(?:mbox|text|mathrm)\{\s*~?([a-z ]+?)\s*\}(?:\^[23])?$")


def _math_truth(problem: str, answer: str) -> TruthSeed:
    """A MATH answer with a unit (`864 \\mbox{ inches}^2`) is the number; the unit may be written or not."""
    m = _UNIT_REF_RE.match(answer.strip())
    if m:
        return TruthSeed(problem, m.group(1), "number", m.group(2))
    return TruthSeed(problem, answer, "latex")


def _kind(question: str) -> str:
    return "money" if "$" in question else "number"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return path


def _split_question(text: str) -> tuple[str, str]:
    """SVAMP / ASDiv keep the story (Body) and the question apart."""
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return (" ".join(parts[:-1]), parts[-1]) if len(parts) > 1 else ("", parts[0])


def _unit_of(question: str) -> str | None:
    m = re.search(r"(?i)how many ([a-z]+)", question)
    stop = {"more", "times", "of", "in", "total", "fewer", "less", "different", "are", "is", "were", "was", "do",
            "does", "did", "will", "can", "has", "have", "had", "would", "should", "must", "could", "many"}
    if m and m.group(1).lower() not in stop:
        return m.group(1).lower()
    return "dollars" if "$" in question else None


# -- the shapes -----------------------------------------------------------------------------------

def gsm8k(d: Path, n: int) -> Shape:
    rows = _gsm8k_rows(0, n)
    path = _write_jsonl(d / "gsm8k.jsonl", [{"question": q, "answer": a} for q, a, _ in rows])
    return Shape("gsm8k", {"name": "gsm8k", "path": str(path), "preset": "gsm8k"},
                 {"name": "gsm8k", "path": str(path), "fields": {"problem": "question"}},
                 [TruthSeed(q, ref, _kind(q)) for q, _, ref in rows], [path])


def svamp(d: Path, n: int) -> Shape:
    """SVAMP: Body and Question columns, the Answer a float (9.0), an Equation."""
    rows, seeds = [], []
    for i, (q, _, ref) in enumerate(_gsm8k_rows(1000, n)):
        body, question = _split_question(q)
        rows.append({"ID": f"chal-{i + 1}", "Body": body, "Question": question,
                     "Equation": f"( {ref} )", "Answer": float(ref), "Type": "Addition"})
        seeds.append(TruthSeed(f"{body} {question}".strip(), ref, _kind(q), _unit_of(question)))
    path = _write_jsonl(d / "svamp.jsonl", rows)
    problem = "{{ Body }} {{ Question }}"
    return Shape("svamp", {"name": "svamp", "path": str(path), "fields": {"problem": problem, "answer": "Answer"}},
                 {"name": "svamp", "path": str(path), "fields": {"problem": problem}}, seeds, [path])


def asdiv(d: Path, n: int) -> Shape:
    """ASDiv: the answer column carries its unit, `9 (apples)`."""
    rows, seeds = [], []
    for i, (q, _, ref) in enumerate(_gsm8k_rows(2000, n)):
        body, question = _split_question(q)
        unit = _unit_of(question)
        rows.append({"body": body, "question": question, "solution_type": "Sum",
                     "answer": f"{ref} ({unit or 'units'})", "formula": f"{ref}={ref}"})
        seeds.append(TruthSeed(f"{body} {question}".strip(), ref, _kind(q), unit))
    path = _write_jsonl(d / "asdiv.jsonl", rows)
    problem = "{{ body }} {{ question }}"
    return Shape("asdiv", {"name": "asdiv", "path": str(path), "fields": {"problem": problem, "answer": "answer"},
                           "strip_units": True},
                 {"name": "asdiv", "path": str(path), "fields": {"problem": problem}}, seeds, [path])


def math500(d: Path, n: int) -> Shape:
    rows = _math500_rows(0, min(n, 250))
    path = _write_jsonl(d / "math500.jsonl", rows)
    return Shape("math500", {"name": "math500", "path": str(path), "preset": "math500"},
                 {"name": "math500", "path": str(path), "fields": {"problem": "problem"}},
                 [_math_truth(r["problem"], r["answer"]) for r in rows], [path])


_UNITS_IN_BOX = (("\\mathrm{~cm}", "cm"), ("\\text{ inches}", "inches"), ("\\text{ cm}^2", "square cm"),
                 ("\\mbox{ dollars}", "dollars"), ("\\text{ meters}", "meters"))


def math_solution(d: Path, n: int) -> Shape:
    """MATH train style: only a worked `solution`; the reference is its last \\boxed{}, which often
    carries units (`\\boxed{1.6 \\mathrm{~cm}}`)."""
    rng = random.Random(7)
    rows, seeds = [], []
    for r in _math500_rows(250, min(n, 250)):
        solution, ans = r["solution"], r["answer"]
        unit = None
        k = solution.rfind("\\boxed{" + ans + "}")
        if re.fullmatch(r"-?\d+(\.\d+)?", ans) and k >= 0 and rng.random() < 0.4:
            latex, unit = rng.choice(_UNITS_IN_BOX)
            solution = solution[:k] + "\\boxed{" + ans + " " + latex + "}" + solution[k + len(ans) + 8:]
        rows.append({"problem": r["problem"], "solution": solution, "level": f"Level {r['level']}", "type": r["subject"]})
        truth = _math_truth(r["problem"], ans)
        seeds.append(TruthSeed(truth.problem, truth.reference, truth.kind, unit or truth.unit))
    path = _write_jsonl(d / "math_solution.jsonl", rows)
    return Shape("math_solution", {"name": "math_solution", "path": str(path),
                                   "fields": {"problem": "problem", "answer": "solution"},
                                   "answer_boxed": True, "strip_units": True},
                 {"name": "math_solution", "path": str(path), "fields": {"problem": "problem"}}, seeds, [path])


def competition(d: Path, n: int) -> Shape:
    """AIME-like: an integer Answer column (a float column where the answer is not whole)."""
    rows, seeds = [], []
    for i, (q, _, ref) in enumerate(_gsm8k_rows(3000, n)):
        value = Decimal(ref)
        answer = int(value) if value == value.to_integral_value() else float(value)
        rows.append({"ID": f"2024-{'I' if i % 2 else 'II'}-{i % 15 + 1}-{i}", "Problem": q, "Answer": answer})
        seeds.append(TruthSeed(q, ref, _kind(q)))
    path = _write_jsonl(d / "competition.jsonl", rows)
    return Shape("competition", {"name": "competition", "path": str(path),
                                 "fields": {"problem": "Problem", "answer": "Answer", "id": "ID"}},
                 {"name": "competition", "path": str(path), "fields": {"problem": "Problem", "id": "ID"}},
                 seeds, [path])


_NAMES = ("Ava", "Ben", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena")


def _mixed_item(i: int, rng: random.Random) -> tuple[str, str, TruthSeed]:
    """(question, answer column, truth) of one synthetic item of a mixed-format set."""
    who = f"{_NAMES[i % len(_NAMES)]} (case {i})"
    kind = ("fraction", "money", "time", "sci", "base", "percent", "small_decimal")[i % 7]
    if kind == "fraction":
        b = rng.choice((3, 4, 6, 7, 8, 9, 12))
        a = rng.choice([x for x in range(1, 3 * b) if x % b])
        f = Fraction(a, b)
        q = f"{who} uses {a} cups of flour for {b} identical cakes. How many cups does one cake need? Express your answer as a common fraction."
        ref = f"\\frac{{{f.numerator}}}{{{f.denominator}}}"
        return q, ref, TruthSeed(q, ref, "fraction")
    if kind == "money":
        cents = rng.randint(105, 999)
        k = rng.randint(2, 9)
        total = Decimal(cents * k) / 100
        q = f"{who} buys {k} notebooks at ${cents / 100:.2f} each. How much does {who.split()[0]} spend, in dollars?"
        col = rng.choice((f"\\${total:.2f}", f"${total:.2f}", f"{total:.2f}"))
        return q, col, TruthSeed(q, num_text(total), "money")
    if kind == "time":
        h, m, dur = rng.randint(1, 11), rng.randint(0, 59), rng.randint(20, 150)
        end = h * 60 + m + dur
        ref = f"{(end // 60 - 1) % 12 + 1}:{end % 60:02d}"
        q = f"A bus for {who} leaves at {h}:{m:02d} and the trip takes {dur} minutes. At what time does it arrive? Give the time as H:MM."
        return q, ref, TruthSeed(q, ref, "time")
    if kind == "sci":
        mant, k, e = rng.randint(2, 9), rng.randint(2, 4), rng.randint(20, 35)
        prod = mant * k
        m2, e2 = (prod, e) if prod < 10 else (Decimal(prod) / 10, e + 1)
        ref = f"{num_text(Decimal(m2))} \\times 10^{{{e2}}}"
        q = f"A star studied by {who} has mass ${mant} \\times 10^{{{e}}}$ kg. What is the total mass of {k} such stars, in kg? Use scientific notation."
        return q, ref, TruthSeed(q, ref, "sci")
    if kind == "base":
        base, value = rng.choice((3, 5, 6, 7, 8, 9)), rng.randint(60, 3000)
        digits, v = "", value
        while v:
            digits, v = str(v % base) + digits, v // base
        ref = f"{digits}_{base}"
        q = f"{who} writes the number {value} in base {base}. What does {who.split()[0]} write? Give the answer with its base as a subscript."
        return q, ref, TruthSeed(q, ref, "base")
    if kind == "percent":
        b = rng.choice((20, 25, 40, 50, 80, 200))
        a = rng.randint(1, b - 1)
        while (a * 100) % b:
            a = rng.randint(1, b - 1)
        pct = a * 100 // b
        q = f"{a} of the {b} students in {who.split()[0]}'s school (case {i}) passed. What percent of the students passed?"
        return q, f"{pct}\\%", TruthSeed(q, str(pct), "percent")
    digits = rng.randint(100, 999)
    zeros = rng.randint(2, 5)
    value = Decimal(digits).scaleb(-(zeros + 3))
    q = f"In the experiment of {who}, a particle decays with probability {digits} in {10 ** (zeros + 3):,}. Write that probability as a decimal."
    return q, num_text(value), TruthSeed(q, num_text(value), "number")


def mixed(d: Path, n: int) -> Shape:
    """Fractions, money, times, scientific notation, numbers in a base, percents, tiny decimals."""
    rng = random.Random(11)
    rows, seeds = [], []
    for i in range(n):
        q, col, truth = _mixed_item(i, rng)
        rows.append({"question": q, "final_answer": col})
        seeds.append(truth)
    path = _write_jsonl(d / "mixed.jsonl", rows)
    return Shape("mixed", {"name": "mixed", "path": str(path), "fields": {"problem": "question", "answer": "final_answer"}},
                 {"name": "mixed", "path": str(path), "fields": {"problem": "question"}}, seeds, [path])


def metamath_parquet(d: Path, n: int) -> Shape:
    """MetaMathQA in Parquet: `query`, and a `response` that ends `The answer is: 72`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, seeds = [], []
    for q, a, ref in _gsm8k_rows(4000, n):
        work = re.sub(r"<<[^>]*>>", "", a.split("####")[0]).strip()
        rows.append({"type": "GSM_Rephrased", "query": q, "original_question": q,
                     "response": f"{work}\nThe answer is: {ref}"})
        seeds.append(TruthSeed(q, ref, _kind(q)))
    path = d / "metamath.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return Shape("metamath_parquet", {"name": "metamath_parquet", "path": str(path),
                                      "fields": {"problem": "query", "answer": "response"},
                                      "answer_regex": "The answer is: (.+)"},
                 {"name": "metamath_parquet", "path": str(path), "fields": {"problem": "query"}}, seeds, [path])


def json_array(d: Path, n: int) -> Shape:
    """A `.json` file holding one JSON array; answers as strings, thousands separated (`1,234`)."""
    rows, seeds = [], []
    for i, (q, _, ref) in enumerate(_gsm8k_rows(5000, n)):
        v = Decimal(ref)
        col = f"{int(v):,}" if abs(v) >= 1000 and v == v.to_integral_value() else ref
        rows.append({"id": i, "question": q, "answer": col})
        seeds.append(TruthSeed(q, ref, _kind(q)))
    path = d / "word_problems.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return Shape("json_array", {"name": "json_array", "path": str(path), "fields": {"problem": "question", "answer": "answer"}},
                 {"name": "json_array", "path": str(path), "fields": {"problem": "question"}}, seeds, [path])


BUILDERS: dict[str, Callable[[Path, int], Shape]] = {
    "gsm8k": gsm8k, "svamp": svamp, "asdiv": asdiv, "math500": math500, "math_solution": math_solution,
    "competition": competition, "mixed": mixed, "metamath_parquet": metamath_parquet, "json_array": json_array,
}


def build_shapes(directory: Path, n: int = 100, names: list[str] | None = None) -> list[Shape]:
    """Write every shape's file (or those named) with n rows each into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [BUILDERS[name](directory, n) for name in (names or list(BUILDERS))]
