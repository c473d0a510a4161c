"""Answers to reasoning-gym problems, scored by the task's own `score_answer`, in worker processes.

A task's scorer is third-party Python: it may loop, recurse or allocate without bound on a hostile
answer (a 10^6-move Tower of Hanoi, a Sokoban replay). So, as for math-verify (checks/math.py), each
answer is scored in a small pool of worker processes, one item at a time per worker, with a hard
deadline: a worker that overruns is SIGKILLed and replaced and the item is `gym_timeout`; one that
dies (its address-space limit) is `gym_error`. Workers import reasoning-gym once, keep one dataset
object per (task, settings), and are recycled after `max_tasks` items.

An item is (key, task, settings, entry, readings): the entry as `encode_entry` stored it, and the
readings of one final answer to score ({"answer_tag": the raw `<answer>` content} or {"parsed": the
parser's}); with several, the best score counts and the detail names the reading. `passed` = that score >= `min_score`.

Some scorers run the answer as Python: `eval(answer)` (binary_matrix, n_queens, spiral_matrix,
string_insertion read "a Python list" answers that way) or sympy's `parse_expr` (countdown, the
integration and polynomial tasks; it `eval`s too). A teacher's answer is untrusted text, so a worker
hardens itself before it says ready (`_harden`): in reasoning-gym's modules `eval` is replaced by
`safe_eval` (literals, containers and arithmetic only: no names, calls or attributes), `parse_expr` refuses
text with dunders, attribute access or builtin names (`unsafe_expression`), and the worker may start no
process (RLIMIT_NPROC 0, where the kernel enforces it: not for root). This is not the code sandbox:
an answer that gets past them runs with the factory's rights. Other scorers compare strings.

Entries travel as JSON: `encode_entry` keeps what JSON would lose (tuples, sets: ARC's scorer
compares a parsed board with a tuple of tuples) as {"__tuple__": [...]} / {"__set__": [...]}, and a
dict with keys that are not text (graph colourings keyed by node number) as {"__dict__": [[key, value], ...]}.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import operator
import re
import sys
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from factory.checks.pool import WorkerPool

__all__ = ["encode_entry", "decode_entry", "answer_tag_text", "score_many", "GymPool"]

PASSED = "gym_score"  # reason of a verified trace: the task's scorer gave at least min_score
WRONG = "gym_wrong"  # the scorer gave less
TIMEOUT = "gym_timeout"  # no score within the deadline; the worker was killed
ERROR = "gym_error"  # the scorer raised, returned no number, or its worker died
MAX_ANSWER_CHARS = 20_000  # a reading longer than this is not scored (a scorer may be quadratic in it)


# -- entries as JSON ------------------------------------------------------------------------------

def encode_entry(value: Any) -> Any:
    """A reasoning-gym entry as JSON-safe values, tuples and sets marked so `decode_entry` restores them."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: encode_entry(v) for k, v in value.items()}
        return {"__dict__": [[encode_entry(k), encode_entry(v)] for k, v in value.items()]}  # int / tuple keys
    if isinstance(value, list):
        return [encode_entry(v) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [encode_entry(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted((encode_entry(v) for v in value), key=repr)}
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return encode_entry(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # a numpy array
        return encode_entry(value.tolist())
    return str(value)


def decode_entry(value: Any) -> Any:
    if isinstance(value, list):
        return [decode_entry(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "__tuple__" in value:
            return tuple(decode_entry(v) for v in value["__tuple__"])
        if len(value) == 1 and "__set__" in value:
            return {_hashable(decode_entry(v)) for v in value["__set__"]}
        if len(value) == 1 and "__dict__" in value:
            return {_hashable(decode_entry(k)): decode_entry(v) for k, v in value["__dict__"]}
        return {k: decode_entry(v) for k, v in value.items()}
    return value


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


# -- the raw answer tag ----------------------------------------------------------------------------

_TAG_RE = re.compile(r"(?is)<answer>(.*?)(?:</answer>|$)")


def answer_tag_text(text: str | None, reasoning_field: str | None = None) -> str | None:
    """The content of the last non-empty `<answer>…</answer>` after the reasoning (split as factory.parse
    splits it: `<think>`, `<reasoning>`, OpenThoughts' thought…), stripped and otherwise as written: what
    reasoning-gym's own `extract_answer` hands its scorers. As in factory.parse, a tag left open at the very
    end counts (the parser has already refused a truncated trace)."""
    from factory.parse import split_reasoning

    region = split_reasoning(text, reasoning_field)[1]
    if not region:
        return None
    found = None
    for m in _TAG_RE.finditer(region[-MAX_ANSWER_CHARS * 2:]):
        if m.group(1).strip():
            found = m.group(1).strip()
    return found


# -- worker side: hardening -----------------------------------------------------------------------

_BIN_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
            ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
            ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitAnd: operator.and_,
            ast.BitOr: operator.or_, ast.BitXor: operator.xor}
_UNARY_OPS = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Invert: operator.invert, ast.Not: operator.not_}
MAX_EXPONENT = 10_000  # 2**10000 is fine; 9**9**9 would hold the worker until its deadline


def safe_eval(text: Any, *_: Any) -> Any:
    """`eval` for answers: Python literals, lists/tuples/sets/dicts of them and arithmetic on numbers."""
    if not isinstance(text, str):
        raise TypeError("safe_eval takes text")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [ev(e) for e in node.elts]
            return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
        if isinstance(node, ast.Dict):
            return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            return _UNARY_OPS[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.Pow, ast.LShift)) and isinstance(right, (int, float)) \
                    and abs(right) > MAX_EXPONENT:
                raise ValueError("exponent too large")
            return _BIN_OPS[type(node.op)](left, right)
        raise ValueError(f"not a literal or arithmetic: {type(node).__name__}")

    return ev(ast.parse(text.strip(), mode="eval"))


_SAFE_BUILTINS = {"abs", "min", "max", "pow", "round", "sum", "int", "float", "complex", "bool", "True", "False",
                  "None", "list", "tuple", "set", "dict", "len", "range", "divmod"}
_UNSAFE_NAMES = (set(dir(builtins)) - _SAFE_BUILTINS) | {"lambda", "import", "os", "sys", "subprocess"}
_ATTRIBUTE_RE = re.compile(r"[A-Za-z_)\]}'\"]\s*\.\s*[A-Za-z_]")
_NAME_RE = re.compile(r"[A-Za-z_]\w*")


def unsafe_expression(text: str) -> str | None:
    """Why `text` must not reach an `eval` (a dunder, attribute access, a builtin such as open), or None."""
    if "__" in text:
        return "a dunder"
    if _ATTRIBUTE_RE.search(text):
        return "attribute access"
    bad = next((n for n in _NAME_RE.findall(text) if n in _UNSAFE_NAMES), None)
    return f"the name {bad!r}" if bad else None


def _harden() -> None:
    """See the module's docstring: no `eval`, a guarded `parse_expr`, no new processes."""
    import sympy
    import sympy.parsing.sympy_parser as sympy_parser

    real_parse_expr = sympy_parser.parse_expr

    def parse_expr(s: Any, *args: Any, **kwargs: Any) -> Any:
        why = unsafe_expression(s) if isinstance(s, str) else None
        if why:
            raise ValueError(f"refused to parse an answer with {why}")
        return real_parse_expr(s, *args, **kwargs)

    sympy_parser.parse_expr = parse_expr  # sympify imports it from here when it is called
    sympy.parse_expr = parse_expr
    for name, module in list(sys.modules.items()):
        if name.startswith("reasoning_gym") and module is not None:
            module.eval = safe_eval  # a module global shadows the builtin in that module's functions
            if getattr(module, "parse_expr", None) is real_parse_expr:
                module.parse_expr = parse_expr
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_NPROC, (0, resource.getrlimit(resource.RLIMIT_NPROC)[1]))
    except (ImportError, ValueError, OSError):
        pass


# -- worker side -----------------------------------------------------------------------------------

def _score(datasets: dict, task: str, settings: dict, entry: dict, answers: list[str]) -> tuple[float, int]:
    """(best score, index of the reading that got it)."""
    import reasoning_gym

    key = json.dumps([task, settings], sort_keys=True)
    if key not in datasets:
        datasets[key] = reasoning_gym.create_dataset(task, **settings)
    dataset = datasets[key]
    best, which = -math.inf, 0
    for i, answer in enumerate(answers):
        score = dataset.score_answer(answer, entry)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise TypeError(f"score_answer returned {score!r}, not a number")
        if score > best:
            best, which = float(score), i
    return best, which


def _worker_main() -> None:
    """Entry point of a worker process (checks/pool.py): [task, settings, entry, answers] -> [score, which]."""
    from factory.checks.pool import serve

    def warm() -> None:
        import reasoning_gym  # noqa: F401 - import before saying ready: the first item's deadline is its own

        _harden()

    datasets: dict = {}
    serve(lambda task, settings, entry, answers: list(_score(datasets, task, settings, decode_entry(entry), answers)),
          "FACTORY_GYM_MEM_MB", warm)


# -- parent side -----------------------------------------------------------------------------------

class GymPool(WorkerPool):
    """Worker processes that score answers with reasoning-gym; one `score_many` at a time."""

    def __init__(self, workers: int = 2, memory_mb: int = 4096, max_tasks: int = 5000):
        super().__init__("factory.checks.gym", workers, {"FACTORY_GYM_MEM_MB": str(int(memory_mb or 0))}, max_tasks,
                         what="reasoning-gym scoring workers (is reasoning-gym installed? pip install reasoning-gym)")

    def score_many(self, items: Iterable[tuple[Hashable, str, dict, Any, dict[str, str | None]]], timeout_s: float,
                   min_score: float) -> Iterator[tuple[Hashable, bool, str, str]]:
        """(key, task, settings, encoded entry, readings) -> (key, passed, reason, detail), as they complete."""

        def jobs():
            for key, task, settings, entry, readings in items:
                given = {k: a for k, a in readings.items() if isinstance(a, str) and a.strip()}
                kept = {k: a for k, a in given.items() if len(a) <= MAX_ANSWER_CHARS}
                if kept:  # the context: which reading each answer is ("answer_tag", ...)
                    yield key, [task, settings, entry, list(kept.values())], list(kept)
                else:
                    why = f"answer longer than {MAX_ANSWER_CHARS} characters" if given else "no final answer"
                    yield key, None, why

        for d in self.run(jobs(), timeout_s):
            if d.kind == "ok":
                score, which = d.value
                passed = score >= min_score  # exact: 0.9999999999999999 is a partial score
                detail = {"score": round(score, 6), "reading": d.context[which], "seconds": round(d.seconds, 4)}
                yield d.key, passed, PASSED if passed else WRONG, json.dumps(detail)
            elif d.kind == "timeout":
                yield d.key, False, TIMEOUT, json.dumps({"error": f"no score within {timeout_s:g}s; worker killed"})
            else:
                why = {"decided": d.context, "died": "worker died (memory limit or crash)",
                       "unsent": "worker died before the item was sent"}.get(d.kind, d.value)
                yield d.key, False, ERROR, json.dumps({"error": why})


def score_many(items: Iterable[tuple[Hashable, str, dict, Any, dict[str, str | None]]], timeout_s: float = 5.0,
               workers: int = 2, min_score: float = 1.0) -> Iterator[tuple[Hashable, bool, str, str]]:
    """Score `(key, task, settings, encoded entry, readings)` items with the task's own `score_answer`;
    yields `(key, passed, reason, detail)` as they complete (any order). `reason` is `gym_score`
    (passed), `gym_wrong`, `gym_timeout` or `gym_error`; `detail` is JSON ({"score", "reading"} or
    {"error"}). No item: no worker is started."""
    it = iter(items)
    first = next(it, None)
    if first is None:
        return
    import itertools

    with GymPool(workers=workers) as pool:
        yield from pool.score_many(itertools.chain([first], it), timeout_s=timeout_s, min_score=min_score)
