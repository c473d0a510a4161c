"""The code sandbox: HumanEval solutions pass, wrong ones fail with a reason, and a corpus of
hostile candidates (tests/hostile/) is contained: never "passed", nothing left running,
nothing written to the host, no secret seen, no connection made, the test run goes on."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import random
import re
import secrets
import socket
import time
from pathlib import Path

import pytest

import factory.checks.code as sandbox_mod
from factory.checks.code import Limits, SandboxResult, isolation, run_many, run_tests

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile"
SQUARE_TESTS = """
def check(candidate):
    assert candidate(2) == 4
    assert candidate(3) == 9
    assert candidate(7) == 49
"""
HOSTILE_LIMITS = Limits(wall_s=3, cpu_s=1, memory_bytes=256 << 20, max_procs=16,
                        max_output_bytes=256 << 10)
ROOT_MODE = os.geteuid() == 0


def humaneval() -> list[dict]:
    with gzip.open(ROOT / "data" / "benchmarks" / "humaneval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


# every throwaway uid this test process handed out (other sandboxes may run beside us)
USED_UIDS: set[int] = set()
_orig_alloc = sandbox_mod._alloc_uid


def _recording_alloc() -> int:
    uid = _orig_alloc()
    USED_UIDS.add(uid)
    return uid


@pytest.fixture(autouse=True)
def _record_uids(monkeypatch):
    monkeypatch.setattr(sandbox_mod, "_alloc_uid", _recording_alloc)


def sandbox_processes() -> list[tuple[int, int, str]]:
    """(pid, uid, state) of every process, zombies included, running as one of our uids."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
        state = re.search(r"^State:\s+(\S)", status, re.M).group(1)
        if uid in USED_UIDS:
            assert sandbox_mod.UID_BASE <= uid < sandbox_mod.UID_BASE + sandbox_mod.UID_SPAN
            out.append((int(pid), uid, state))
    return out


def assert_nothing_left() -> None:
    if not ROOT_MODE:
        return
    assert USED_UIDS
    left = sandbox_processes()
    for _ in range(20):  # the kernel may take a moment to finish a dying namespace
        if not left:
            break
        time.sleep(0.05)
        left = sandbox_processes()
    assert not left, f"sandbox processes survived: {left}"


# ------------------------------------------------------------------------ basic behaviour
def test_isolation_layers_hold_here():
    iso = isolation()
    assert "error" not in iso, iso
    if ROOT_MODE:
        assert iso["uid_drop"] and iso["netns"] and iso["mountns"] and iso["pidns"], iso


def test_pass_fail_and_reasons():
    good = run_tests("def f(x):\n    return x * x\n", SQUARE_TESTS, "f")
    assert good.status == "passed", good
    bad = run_tests("def f(x):\n    return x + 2\n", SQUARE_TESTS, "f")
    assert bad.status == "failed" and bad.reason.startswith("AssertionError"), bad
    assert "assert candidate(3) == 9" in bad.reason
    boom = run_tests("def f(x):\n    return 1 / 0\n", SQUARE_TESTS, "f")
    assert boom.status == "failed" and "ZeroDivisionError" in boom.reason, boom
    missing = run_tests("def g(x):\n    return x * x\n", SQUARE_TESTS, "f")
    assert missing.status == "failed" and "does not define 'f'" in missing.reason, missing
    syntax = run_tests("def f(x) return x\n", SQUARE_TESTS, "f")
    assert syntax.status == "failed" and "SyntaxError" in syntax.reason, syntax
    name = run_tests("def f(x):\n    return y\n", SQUARE_TESTS, "f")
    assert name.status == "failed" and name.reason.startswith("candidate raised NameError"), name
    assert_nothing_left()


def test_top_level_tests_helpers_mutation_and_types():
    code = ("import math\nK = 10\n"
            "def inc(xs):\n    xs.append(1)\n    return None\n"
            "def scale(x):\n    return x * K\n"
            "def pair(s):\n    return (s, len(s), {s: [1.5, None, True]})\n")
    tests = ("xs = []\nassert inc(xs) is None and xs == [1]\n"
             "assert scale(2) == 20 and K == 10 and math.pi > 3\n"
             "assert pair('ab') == ('ab', 2, {'ab': [1.5, None, True]})\n"
             "assert pair('') [2][''][2] is True\n")
    r = run_tests(code, tests, None)
    assert r.status == "passed", r
    # an expected exception from the candidate can be caught by the tests
    r = run_tests("def f(x):\n    raise ValueError('neg')\n",
                  "def check(c):\n    try:\n        c(-1)\n    except ValueError as e:\n"
                  "        assert 'neg' in str(e)\n    else:\n        assert False\n", "f")
    assert r.status == "passed", r
    # values that are not plain data cannot leave the candidate process
    r = run_tests("def f():\n    return iter([1])\n", "def check(c):\n    assert list(c()) == [1]\n", "f")
    assert r.status == "failed" and "cannot leave the candidate" in r.reason, r


def test_code_sample_tasks():
    solutions = {
        "add_all": "def add_all(xs):\n    return sum(xs)\n",
        "is_palindrome": ("def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalpha()]\n"
                          "    return t == t[::-1]\n"),
        "fizzbuzz": ("def fizzbuzz(n):\n    return ['FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0"
                     " else 'Buzz' if i % 5 == 0 else str(i) for i in range(1, n + 1)]\n"),
        "second_largest": ("def second_largest(xs):\n    s = sorted(set(xs))\n"
                           "    return s[-2] if len(s) > 1 else None\n"),
        "run_length": ("import itertools\ndef run_length(s):\n"
                       "    return [(k, len(list(g))) for k, g in itertools.groupby(s)]\n"),
        "gcd": "import math\ndef gcd(a, b):\n    return math.gcd(a, b)\n",
    }
    rows = [json.loads(line) for line in open(ROOT / "data" / "code_sample.jsonl")]
    items = [(r["task_id"], r["prompt"] + "\n" + solutions[r["entry_point"]], r["test"],
              r["entry_point"]) for r in rows]
    results = dict(run_many(items, Limits(wall_s=10), workers=2))
    assert {k: v.status for k, v in results.items()} == {r["task_id"]: "passed" for r in rows}
    wrong = [(k, c.replace("    return ", "    return None  # "), t, e) for k, c, t, e in items[:3]]
    for key, res in run_many(wrong, Limits(wall_s=10)):
        assert res.status == "failed" and res.reason, (key, res)


def test_humaneval_sample_canonical_pass_and_mutants_fail():
    rows = humaneval()
    sample = random.Random(0).sample(rows, 20)
    items = [(r["task_id"], r["prompt"] + r["canonical_solution"], r["test"], r["entry_point"])
             for r in sample]
    got = dict(run_many(items, Limits(wall_s=20), workers=2))
    failures = {k: (v.status, v.reason) for k, v in got.items() if v.status != "passed"}
    assert not failures, failures
    # wrong solutions: the body returns None
    mutants = [(r["task_id"], r["prompt"] + "    return None\n", r["test"], r["entry_point"])
               for r in sample[:8]]
    for key, res in run_many(mutants, Limits(wall_s=20), workers=2):
        assert res.status == "failed" and res.reason, (key, res)
    assert_nothing_left()


# ------------------------------------------------------------------------- hostile corpus
@pytest.fixture()
def trap(monkeypatch):
    """Secrets in our env, a loopback listener, and host paths that must stay absent."""
    tag = secrets.token_hex(6)
    secrets_ = {"OPENAI_API_KEY": f"sk-factory-test-{tag}", "HF_TOKEN": f"hf_factorytest{tag}"}
    for k, v in secrets_.items():
        monkeypatch.setenv(k, v)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    paths = [Path(f"/tmp/factory_sandbox_escape_{tag}"), ROOT / f"factory_sandbox_escape_{tag}"]
    yield {"secrets": secrets_, "listener": listener, "paths": paths,
           "tokens": {"__ESCAPE_TMP__": str(paths[0]), "__ESCAPE_REPO__": str(paths[1]),
                      "__PORT__": str(listener.getsockname()[1]),
                      "__PARENT_PID__": str(os.getpid())}}
    listener.close()
    for p in paths:
        p.unlink(missing_ok=True)


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("*.py")), ids=lambda p: p.stem)
def test_hostile_program_is_contained(path: Path, trap):
    text = path.read_text()
    expect = set(re.match(r"# expect: (.+)", text).group(1).split())
    assert "passed" not in expect
    for token, value in trap["tokens"].items():
        text = text.replace(token, value)
    # the ones that never end only need a short wall clock
    limits = dataclasses.replace(HOSTILE_LIMITS, wall_s=1.5) if "timeout" in expect else HOSTILE_LIMITS
    t0 = time.monotonic()
    res: SandboxResult = run_tests(text, SQUARE_TESTS, "square", limits)
    took = time.monotonic() - t0
    assert res.status != "passed", res
    assert res.status in expect, res
    assert res.reason, res
    assert took < limits.wall_s + 3, (took, res)
    # nothing reached the host
    for p in trap["paths"]:
        assert not p.exists(), f"{path.stem} wrote {p}"
    with pytest.raises(BlockingIOError):
        conn, _ = trap["listener"].accept()
        conn.close()
    for value in trap["secrets"].values():
        assert value not in res.stderr_tail and value not in res.reason
    assert_nothing_left()


def test_hostile_batch_in_parallel_then_clean(trap):
    """Several hostile programs at once through run_many: all contained, none passed."""
    names = ["fork_bomb", "detached_child", "forge_proof", "kill_everything", "stdout_flood",
             "atexit_exit0"]
    items = []
    for n in names:
        text = (HOSTILE / f"{n}.py").read_text()
        for token, value in trap["tokens"].items():
            text = text.replace(token, value)
        items.append((n, text, SQUARE_TESTS, "square"))
    # and an honest run goes on passing next to them
    items.append(("good", "def square(x):\n    return x * x\n", SQUARE_TESTS, "square"))
    got = dict(run_many(items, HOSTILE_LIMITS, workers=2))
    assert got.pop("good").passed
    assert all(r.status != "passed" for r in got.values()), got
    assert_nothing_left()
