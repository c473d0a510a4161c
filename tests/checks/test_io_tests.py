"""Input/output test cases (checks/io_tests.py) through the real sandbox: each dataset's shape is
recognised, right programs pass, wrong ones fail, hostile ones fail or time out without harm, and a
source -> build -> filter run with a scripted teacher keeps exactly the right traces."""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import time
import zlib
from pathlib import Path

import pytest

from factory.checks.io_tests import (IOTestsError, compare_return, compare_stdout, prepare, recognise)
from factory.checks.verify import check_code

ROOT = Path(__file__).resolve().parents[2]
WALL = 3.0  # per case in these tests


# ----------------------------------------------------------------------------- dataset shapes
# A Codeforces A problem: n, then n integers; print the sum and the maximum on two lines.
CF_TESTS = {"input": ["3\n1 2 3\n", "1\n-5\n"], "output": ["6\n3\n", "-5\n-5\n"]}
CF_PRIVATE = {"input": ["4\n10 -1 7 0\n"], "output": ["16\n10\n"]}
CF_GENERATED = {"input": ["5\n" + " ".join(str(i * 7 % 11 - 5) for i in range(5)) + "\n"],
                "output": [f"{sum(i * 7 % 11 - 5 for i in range(5))}\n{max(i * 7 % 11 - 5 for i in range(5))}\n"]}
CODECONTESTS = json.dumps([CF_TESTS, CF_PRIVATE, CF_GENERATED])  # tests: '{{ [public_tests, private_tests, generated_tests] | tojson }}'
CF_OFFICIAL = json.dumps([{"input": i, "output": o} for i, o in zip(CF_TESTS["input"], CF_TESTS["output"])])

# A float-output problem (APPS input_output): the mean of n numbers, 1e-6 tolerance.
FLOAT_TESTS = json.dumps({"inputs": ["3\n1 2 4\n", "2\n1 2\n", "3\n0 0 1\n"],
                          "outputs": ["2.333333333333\n", "1.5\n", "0.3333333333\n"]})
# Multi-line output (TACO writes some inputs/outputs as lists of lines): q queries, one answer per line.
MULTI_TESTS = json.dumps({"inputs": [["3", "1", "2", "3"], "2\n10\n0\n"], "outputs": [["1", "4", "9"], "100\n0\n"]})
# APPS fn_name (Codewars): arguments per case, the return value wrapped in a one-element list.
APPS_FN = json.dumps({"fn_name": "digital_root", "inputs": [[16], [942], [0]], "outputs": [[7], [6], [0]]})
APPS_FN_LIST = json.dumps({"fn_name": "split_pairs", "inputs": [["abcd"], ["abc"]],
                           "outputs": [[["ab", "cd"]], [["ab", "c_"]]]})
# LiveCodeBench: public_test_cases as a JSON string; functional cases with metadata's func_name.
LCB_FUNCTIONAL = json.dumps([{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"},
                             {"input": "[3,2,4]\n6", "output": "[1, 2]", "testtype": "functional"}])
LCB_META = json.dumps({"func_name": "twoSum"})
LCB_STDIN = json.dumps([{"input": "2\nab\nba\n", "output": "Yes\nNo\n", "testtype": "stdin"},
                        {"input": "1\nzz\n", "output": "Yes\n", "testtype": "stdin"}])
# MBPP test_list (a list of assert lines), with the statement as the problem
MBPP = json.dumps(["assert similar_elements((3, 4, 5, 6), (5, 7, 4, 10)) == {4, 5}",
                   "assert similar_elements((1, 2, 3, 4), (5, 4, 3, 7)) == {3, 4}"])
MBPP_PROBLEM = "Write a function to find the shared elements from the given two lists."


def lcb_compressed(cases: list[dict]) -> str:
    """LiveCodeBench's private_test_cases: base64(zlib(pickle(json text)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


CF_RIGHT = {
    "input": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\n",
    "readline": "import sys\ninput = sys.stdin.readline\nn = int(input())\na = [int(x) for x in input().split()]\n"
                "sys.stdout.write(f'{sum(a)}\\n{max(a)}\\n')\n",
    "buffer": "import sys\ndata = sys.stdin.buffer.read().split()\nn = int(data[0])\na = list(map(int, data[1:1 + n]))\n"
              "sys.stdout.buffer.write(('%d\\n%d\\n' % (sum(a), max(a))).encode())\n",
    "main_guard": "def main():\n    n = int(input())\n    a = list(map(int, input().split()))\n    print(sum(a), max(a), sep='\\n')\n\n"
                  "if __name__ == '__main__':\n    main()\n",
    "open0": "n, *a = map(int, open(0).read().split())\nprint(sum(a)); print(max(a))\n",
    "trailing_spaces": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a), ' ')\nprint(max(a), end='  \\n\\n\\n')\n",
    "exit_after": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\nexit()\nprint('never')\n",
    "sys_exit_0": "import sys\nn = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\nsys.exit(0)\n",
    "threading": "import sys, threading\nsys.setrecursionlimit(10 ** 6)\nthreading.stack_size(1 << 26)\n"
                 "def main():\n    n = int(input())\n    a = list(map(int, input().split()))\n    print(sum(a))\n    print(max(a))\n"
                 "threading.Thread(target=main).start()\n",
    "pyrival_fastio": (
        "import os, sys\nfrom io import BytesIO, IOBase\nBUFSIZE = 8192\n"
        "class FastIO(IOBase):\n    newlines = 0\n    def __init__(self, file):\n        self._fd = file.fileno()\n"
        "        self.buffer = BytesIO()\n        self.writable = 'x' in file.mode or 'r' not in file.mode\n"
        "        self.write = self.buffer.write if self.writable else None\n"
        "    def read(self):\n        while True:\n            b = os.read(self._fd, max(os.fstat(self._fd).st_size, BUFSIZE))\n"
        "            if not b:\n                break\n            ptr = self.buffer.tell()\n"
        "            self.buffer.seek(0, 2), self.buffer.write(b), self.buffer.seek(ptr)\n"
        "        self.newlines = 0\n        return self.buffer.read()\n"
        "    def readline(self):\n        while self.newlines == 0:\n"
        "            b = os.read(self._fd, max(os.fstat(self._fd).st_size, BUFSIZE))\n"
        "            self.newlines = b.count(b'\\n') + (not b)\n            ptr = self.buffer.tell()\n"
        "            self.buffer.seek(0, 2), self.buffer.write(b), self.buffer.seek(ptr)\n"
        "        self.newlines -= 1\n        return self.buffer.readline()\n"
        "    def flush(self):\n        if self.writable:\n            os.write(self._fd, self.buffer.getvalue())\n"
        "            self.buffer.truncate(0), self.buffer.seek(0)\n"
        "class IOWrapper(IOBase):\n    def __init__(self, file):\n        self.buffer = FastIO(file)\n"
        "        self.flush = self.buffer.flush\n        self.writable = self.buffer.writable\n"
        "        self.write = lambda s: self.buffer.write(s.encode('ascii'))\n"
        "        self.read = lambda: self.buffer.read().decode('ascii')\n"
        "        self.readline = lambda: self.buffer.readline().decode('ascii')\n"
        "sys.stdin, sys.stdout = IOWrapper(sys.stdin), IOWrapper(sys.stdout)\n"
        "input = lambda: sys.stdin.readline().rstrip('\\r\\n')\n"
        "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\n"),
    "atexit_stringio": "import sys, io, atexit\nbuf = io.StringIO()\nsys.stdout = buf\n"
                       "atexit.register(lambda: sys.__stdout__.write(buf.getvalue()))\n"
                       "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\n",
    "one_line": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a), max(a))\n",  # tokens: judges accept
}
CF_WRONG = {
    "off_by_one": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a[:n - 1]))\nprint(max(a))\n",
    "wrong_format": "n = int(input())\na = list(map(int, input().split()))\nprint([sum(a), max(a)])\n",
    "missing_line": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\n",
    "extra_output": "n = int(input())\na = list(map(int, input().split()))\nprint('n =', n)\nprint(sum(a))\nprint(max(a))\n",
    "debug_line_after": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\nprint('done')\n",
    "crash_after_output": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\nraise ValueError('late')\n",
    "nonzero_exit": "import sys\nn = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\nprint(max(a))\nsys.exit(3)\n",
    "reads_too_much": "n = int(input())\na = list(map(int, input().split()))\nextra = input()\nprint(sum(a))\nprint(max(a))\n",
    "syntax_error": "n = int(input()\nprint(n)\n",
    "exit_before_print": "exit(0)\nn = int(input())\nprint(n)\n",
    "no_output": "n = int(input())\n",
    "prints_pass": "print('PASS')\nprint('all tests passed')\nimport sys\nsys.stderr.write('PASS\\n')\n",
    "only_first_case": "print(6)\nprint(3)\n",  # hard-codes the sample
}
FLOAT_RIGHT = {
    "repr": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a) / n)\n",
    "six_places": "n = int(input())\na = list(map(int, input().split()))\nprint('%.6f' % (sum(a) / n))\n",
    "ten_places": "n = int(input())\na = list(map(int, input().split()))\nprint(f'{sum(a) / n:.10f}')\n",
}
FLOAT_WRONG = {
    "two_places": "n = int(input())\na = list(map(int, input().split()))\nprint('%.2f' % (sum(a) / n))\n",
    "floor_div": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a) // n)\n",
    "text": "n = int(input())\na = list(map(int, input().split()))\nprint('mean', sum(a) / n)\n",
}
MULTI_RIGHT = {"loop": "q = int(input())\nfor _ in range(q):\n    x = int(input())\n    print(x * x)\n",
               "join": "import sys\nq, *xs = map(int, sys.stdin.read().split())\nprint('\\n'.join(str(x * x) for x in xs))\n"}
MULTI_WRONG = {"drops_last": "q = int(input())\nxs = [int(input()) for _ in range(q)]\nfor x in xs[:-1]:\n    print(x * x)\n",
               "cube": "q = int(input())\nfor _ in range(q):\n    x = int(input())\n    print(x ** 3)\n"}
APPS_FN_RIGHT = "def digital_root(n):\n    while n >= 10:\n        n = sum(map(int, str(n)))\n    return n\n"
SPLIT_RIGHT = "def split_pairs(s):\n    s += '_' * (len(s) % 2)\n    return tuple(s[i:i + 2] for i in range(0, len(s), 2))\n"
SPLIT_WRONG = "def split_pairs(s):\n    return [s[i:i + 2] for i in range(0, len(s), 2)]\n"
LCB_RIGHT = ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
             "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
             "                return [seen[target - x], i]\n            seen[x] = i\n        return []\n")
LCB_WRONG = LCB_RIGHT.replace("return [seen[target - x], i]", "return [i, seen[target - x]]")
LCB_STDIN_RIGHT = "t = int(input())\nfor _ in range(t):\n    s = input().strip()\n    print('Yes' if s == ''.join(sorted(s)) else 'No')\n"
LCB_STDIN_WRONG = "t = int(input())\nfor _ in range(t):\n    s = input().strip()\n    print('yes' if s == ''.join(sorted(s)) else 'no')\n"
MBPP_RIGHT = "def similar_elements(a, b):\n    return set(a) & set(b)\n"
MBPP_WRONG = "def similar_elements(a, b):\n    return set(a) | set(b)\n"

# (name, problem, answer, tests, entry_point, should pass)
CORPUS: list[tuple[str, str, str, str, str | None, bool]] = []
CORPUS += [(f"codecontests/{k}", "Sum and max.", v, CODECONTESTS, None, True) for k, v in CF_RIGHT.items()]
CORPUS += [(f"codecontests/{k}", "Sum and max.", v, CODECONTESTS, None, False) for k, v in CF_WRONG.items()]
CORPUS += [("codeforces/official", "Sum and max.", CF_RIGHT["input"], CF_OFFICIAL, None, True),
           ("codeforces/official-wrong", "Sum and max.", CF_WRONG["missing_line"], CF_OFFICIAL, None, False)]
CORPUS += [(f"float/{k}", "Mean.", v, FLOAT_TESTS, None, True) for k, v in FLOAT_RIGHT.items()]
CORPUS += [(f"float/{k}", "Mean.", v, FLOAT_TESTS, None, False) for k, v in FLOAT_WRONG.items()]
CORPUS += [(f"multi/{k}", "Squares.", v, MULTI_TESTS, None, True) for k, v in MULTI_RIGHT.items()]
CORPUS += [(f"multi/{k}", "Squares.", v, MULTI_TESTS, None, False) for k, v in MULTI_WRONG.items()]
CORPUS += [("apps_fn/right", "Digital root.", APPS_FN_RIGHT, APPS_FN, None, True),
           ("apps_fn/wrong", "Digital root.", "def digital_root(n):\n    return n % 10\n", APPS_FN, None, False),
           ("apps_fn/missing", "Digital root.", "def droot(n):\n    return n\n", APPS_FN, None, False),
           ("apps_fn/tuple_is_list", "Pairs.", SPLIT_RIGHT, APPS_FN_LIST, None, True),
           ("apps_fn/no_pad", "Pairs.", SPLIT_WRONG, APPS_FN_LIST, None, False)]
CORPUS += [("lcb_functional/right", "Two sum.", LCB_RIGHT, LCB_FUNCTIONAL, LCB_META, True),
           ("lcb_functional/name", "Two sum.", LCB_RIGHT, LCB_FUNCTIONAL, "twoSum", True),
           ("lcb_functional/inferred", "Two sum.", LCB_RIGHT, LCB_FUNCTIONAL, None, True),
           ("lcb_functional/wrong", "Two sum.", LCB_WRONG, LCB_FUNCTIONAL, LCB_META, False),
           ("lcb_stdin/right", "Sorted?", LCB_STDIN_RIGHT, LCB_STDIN, None, True),
           ("lcb_stdin/case", "Sorted?", LCB_STDIN_WRONG, LCB_STDIN, None, False),
           ("lcb_private/right", "Sorted?", LCB_STDIN_RIGHT, lcb_compressed(json.loads(LCB_STDIN)), None, True),
           ("lcb_private/wrong", "Sorted?", LCB_STDIN_WRONG, lcb_compressed(json.loads(LCB_STDIN)), None, False)]
CORPUS += [("mbpp/right", MBPP_PROBLEM, MBPP_RIGHT, MBPP, None, True),
           ("mbpp/wrong", MBPP_PROBLEM, MBPP_WRONG, MBPP, None, False)]

# Hostile candidates: none may pass; none may take the test run down.
HOSTILE = {
    "infinite_loop": "while True:\n    pass\n",
    "infinite_print": "while True:\n    print('6 3 ' * 100)\n",
    "infinite_print_caught": "while True:\n    try:\n        print('x' * 10000)\n    except BaseException:\n        pass\n",
    "sleep_in_thread": "import threading, time\nprint(6)\nprint(3)\nthreading.Thread(target=time.sleep, args=(1000,)).start()\n",
    "scan_memory": "import gc\nhits = [o for o in gc.get_objects() if isinstance(o, (list, tuple)) and len(o) == 2 and "
                   "all(isinstance(x, str) for x in o)]\nprint(hits[0][1] if hits else '')\n",
    "scan_strings": "import gc, sys\nfor o in gc.get_objects():\n    if isinstance(o, dict):\n"
                    "        for v in o.values():\n            if isinstance(v, str) and v.endswith('\\n') and v.count('\\n') == 2:\n"
                    "                sys.stdout.write(v)\n                raise SystemExit\n",
    "read_files": "import os\nout = []\nfor d in ('/tmp', '/var/tmp', '/dev/shm', os.getcwd(), '/proc/self/fd'):\n"
                  "    try:\n        out += os.listdir(d)\n    except OSError:\n        pass\nprint(out)\n",
    "read_parent": "import os\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        for f in ('cmdline', 'environ', 'mem'):\n"
                   "            try:\n                print(open('/proc/%s/%s' % (p, f), 'rb').read(200))\n            except OSError:\n                pass\n",
    "kill_harness": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint(6)\nprint(3)\n",
    "os_exit_no_flush": "import os\nprint(6)\nprint(3)\nos._exit(0)\n",  # buffered output lost, as in a real run
    "print_pass_to_fds": "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'PASS\\tdeadbeef\\n')\n    except OSError:\n        pass\n",
    "patch_harness": "import gc\nfor o in gc.get_objects():\n    if callable(o) and getattr(o, '__name__', '') in ('_factory_io_run', 'compare_stdout'):\n"
                     "        o.__code__ = (lambda *a, **k: None).__code__\nprint('ok')\n",
    "patch_builtins": "import builtins\nbuiltins.compare_stdout = lambda a, b: None\nbuiltins.AssertionError = Exception\n"
                      "builtins.print = lambda *a, **k: None\nprint(6)\n",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "memory_hog": "x = []\nwhile True:\n    x.append(' ' * (1 << 20))\n",
}
HOSTILE_FUNCTIONAL = {
    "lying_eq": "class Anything(list):\n    def __eq__(self, other):\n        return True\n"
                "class Solution:\n    def twoSum(self, nums, target):\n        return Anything()\n",
    "exit_in_call": "class Solution:\n    def twoSum(self, nums, target):\n        raise SystemExit(0)\n",
    "os_exit_in_call": "import os\nclass Solution:\n    def twoSum(self, nums, target):\n        os._exit(0)\n",
    "loop_in_call": "class Solution:\n    def twoSum(self, nums, target):\n        while True:\n            pass\n",
    "inject_globals": "import sys\nf = sys._getframe(1).f_globals\nf['compare_return'] = lambda *a: None\nf['_WRAPPED'] = True\n"
                      "class Solution:\n    def twoSum(self, nums, target):\n        return None\n",
}


def run_corpus(corpus, wall_s=WALL, workers=2):
    items = ((name, problem, answer, tests, entry) for name, problem, answer, tests, entry, _ in corpus)
    return {key: (passed, reason, detail) for key, passed, reason, detail in
            check_code(items, wall_s=wall_s, workers=workers, allow_weak=True)}


# ----------------------------------------------------------------------------- pure parts
def test_each_dataset_shape_is_recognised():
    cc = recognise(CODECONTESTS)
    assert cc.kind == "stdin" and len(cc.cases) == 4 and cc.cases[2] == ("4\n10 -1 7 0\n", "16\n10\n")
    by_name = recognise(json.dumps({"public_tests": CF_TESTS, "private_tests": CF_PRIVATE, "generated_tests":
                                    {"input": [], "output": []}}))
    assert by_name.kind == "stdin" and len(by_name.cases) == 3
    assert recognise(json.dumps(CF_TESTS)).cases == recognise(CF_OFFICIAL).cases
    assert recognise(str(CF_TESTS)).cases == recognise(CF_OFFICIAL).cases  # a jinja `{{ public_tests }}` prints a repr
    multi = recognise(MULTI_TESTS)
    assert multi.cases[0] == ("3\n1\n2\n3\n", "1\n4\n9")
    fn = recognise(APPS_FN)
    assert fn.kind == "call" and fn.fn_name == "digital_root" and fn.wrapped and fn.cases[0] == ([16], [7])
    lcb = recognise(LCB_FUNCTIONAL, LCB_META)
    assert lcb.kind == "call" and lcb.fn_name == "twoSum" and lcb.cases[0] == ([[2, 7, 11, 15], 9], [0, 1])
    assert not lcb.wrapped and recognise(LCB_FUNCTIONAL, None).fn_name is None
    assert recognise(lcb_compressed(json.loads(LCB_STDIN))).cases == recognise(LCB_STDIN).cases
    assert recognise(json.dumps(LCB_STDIN)).cases == recognise(LCB_STDIN).cases  # JSON text encoded twice
    mbpp = recognise(MBPP)
    assert mbpp.kind == "asserts" and mbpp.asserts.count("assert ") == 2


def test_sources_store_list_and_struct_cells_as_json_text(tmp_path):
    from factory.config import SourceConfig
    from factory.sources import plan_source, read_seeds

    rows = [{"text": MBPP_PROBLEM, "test_list": json.loads(MBPP)}, {"text": "Sum and max.", "test_list": CF_TESTS}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seeds = list(read_seeds(plan_source(SourceConfig(name="m", path=str(tmp_path / "rows.jsonl"), domain="code",
                                                     fields={"problem": "text", "tests": "test_list"}))))
    assert [recognise(s.tests).kind for s in seeds] == ["asserts", "stdin"]


def test_compressed_cases_are_unpacked_with_a_cap(monkeypatch, tmp_path):
    import factory.checks.io_tests as io_tests

    packed = lcb_compressed(json.loads(LCB_STDIN) * 50)
    assert len(recognise(packed).cases) == 100
    monkeypatch.setattr(io_tests, "MAX_UNPACKED_BYTES", 1000)
    assert recognise(packed) is None  # a zip bomb is not unpacked whole
    monkeypatch.undo()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (__import__("os").mkdir, (str(marker),))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    assert recognise(evil) is None and not marker.exists()  # the unpickler loads no global


def test_humaneval_style_tests_are_left_alone():
    humaneval = "def check(candidate):\n    assert candidate([1, 2]) == 3\n"
    for text in (humaneval, "assert f(1) == 2\n", "\n\nMETADATA = {'author': 'x'}\n\ndef check(c):\n    pass\n",
                 "[1, 2, 3]", '{"a": 1}', "", None, "x" * 100):
        assert recognise(text) is None
    prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n"
    run = prepare(prompt, "def add(a, b):\n    return a + b\n", humaneval, "add", wall_s=7)
    assert run.code.startswith(prompt) and run.tests == humaneval and run.entry_point == "add"
    assert run.wall_s == 7 and run.cases == 0
    # an MBPP statement is prose: not glued before the code (it would be a SyntaxError)
    assert prepare(MBPP_PROBLEM, MBPP_RIGHT, MBPP, None, wall_s=7).code == MBPP_RIGHT


def test_runs_get_a_wall_clock_per_case_and_are_capped():
    many = json.dumps({"inputs": [f"{i}\n" for i in range(100)], "outputs": [f"{i}\n" for i in range(100)]})
    run = prepare("p", "print(input())", many, None, wall_s=2, max_cases=10)
    assert run.cases == 10 and run.total_cases == 100 and run.wall_s == 2 * 11
    assert "_factory_io_run" in run.code and "_factory_io_run" in run.tests
    with pytest.raises(IOTestsError, match="no cases"):
        prepare("p", "x", json.dumps({"inputs": [], "outputs": []}), None, wall_s=2)
    with pytest.raises(IOTestsError, match="JSON"):
        prepare("p", "x", json.dumps([{"input": "[1,", "output": "1", "testtype": "functional"}]), None, wall_s=2)


@pytest.mark.parametrize("got, want, ok", [
    ("6\n3\n", "6\n3\n", True), ("6 \n3\n\n\n", "6\n3", True), ("6 3", "6\n3\n", True), ("\r\n6\r\n3\r\n", "6\n3", True),
    ("6\n", "6\n3\n", False), ("6\n3\n0\n", "6\n3\n", False), ("[6, 3]", "6\n3", False), ("7\n3", "6\n3", False),
    ("2.333333", "2.333333333333", True), ("2.3333334", "2.333333333333", True), ("2.33", "2.333333333333", False),
    ("1e9", "1000000000.0", True), ("1000000001", "1000000000.000", True), ("1000002000", "1000000000.0", False),
    ("2", "2.0", True), ("2.0", "2", False), ("nan", "0.5", False), ("inf", "1e308", False), ("YES", "Yes", False),
    ("-0.0000001", "0.000000", True), ("0x10", "16.0", False), ("", "", True), ("", "\n", True),
])
def test_stdout_is_compared_as_judges_do(got, want, ok):
    assert (compare_stdout(got, want) is None) is ok


def test_return_values_compare_as_json_with_float_tolerance():
    assert compare_return((1, [2, (3,)]), [1, [2, [3]]]) is None
    assert compare_return(0.1 + 0.2, 0.3) is None and compare_return(1, 1.0) is None
    assert compare_return({"a": (1,)}, {"a": [1]}) is None and compare_return({"a": 1}, {"b": 1}) is not None
    assert compare_return(7, [7], wrapped=True) is None and compare_return(7, [7]) is not None
    assert compare_return([1, 2], [1, 2, 3]) is not None and compare_return("1", 1) is not None
    assert "expected 8" in compare_return(7, [8], wrapped=True)


# ----------------------------------------------------------------------------- through the sandbox
@pytest.fixture(scope="module")
def corpus_verdicts():
    return run_corpus(CORPUS)


@pytest.mark.slow
@pytest.mark.parametrize("name, problem, answer, tests, entry, should_pass", CORPUS, ids=[c[0] for c in CORPUS])
def test_right_programs_pass_and_wrong_ones_fail(corpus_verdicts, name, problem, answer, tests, entry, should_pass):
    passed, reason, detail = corpus_verdicts[name]
    assert passed is should_pass, f"{name}: {reason} {detail[:400]}"
    if not should_pass:
        assert reason in ("tests_failed", "tests_timeout", "tests_crashed") and detail


@pytest.mark.slow
def test_precision_and_recall_over_the_corpus(corpus_verdicts, capsys):
    tp = sum(1 for c in CORPUS if c[5] and corpus_verdicts[c[0]][0])
    fp = sum(1 for c in CORPUS if not c[5] and corpus_verdicts[c[0]][0])
    fn = sum(1 for c in CORPUS if c[5] and not corpus_verdicts[c[0]][0])
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    with capsys.disabled():
        print(f"\nio_tests corpus: {len(CORPUS)} programs, precision {precision:.3f}, recall {recall:.3f}")
    assert precision == 1.0 and recall == 1.0


def test_failure_reasons_name_the_case_and_the_difference():
    got = run_corpus([c for c in CORPUS if c[0] in ("codecontests/missing_line", "apps_fn/wrong", "codecontests/crash_after_output")])
    assert "case 1/4" in got["codecontests/missing_line"][2] and "output ends after 1 tokens" in got["codecontests/missing_line"][2]
    assert "returned 6, expected 7" in got["apps_fn/wrong"][2]
    assert "exit code 1: ValueError: late" in got["codecontests/crash_after_output"][2]


@pytest.mark.slow
def test_hostile_programs_fail_or_time_out_without_harm(tmp_path):
    corpus = [(f"hostile/{k}", "Sum and max.", v, CODECONTESTS, None, False) for k, v in HOSTILE.items()]
    corpus += [(f"hostile_call/{k}", "Two sum.", v, LCB_FUNCTIONAL, LCB_META, False) for k, v in HOSTILE_FUNCTIONAL.items()]
    t0 = time.monotonic()
    got = run_corpus(corpus, wall_s=2.0)
    assert set(got) == {c[0] for c in corpus}
    passed = [k for k, v in got.items() if v[0]]
    assert not passed, {k: got[k] for k in passed}
    for key in ("hostile/infinite_loop", "hostile/sleep_in_thread", "hostile_call/loop_in_call"):
        assert got[key][1] == "tests_timeout", got[key]
    assert "output_limit" in got["hostile/infinite_print"][2]
    assert time.monotonic() - t0 < 60  # each timeout costs one case's wall clock, not the whole run's


@pytest.mark.slow
def test_throughput_against_the_humaneval_path(capsys):
    """cases/s of the stdin path (fork per case) vs HumanEval-style runs (one assert set per run)."""
    n = 12
    io_items = [(i, "Sum and max.", CF_RIGHT["readline"], CODECONTESTS, None) for i in range(n)]
    t0 = time.monotonic()
    assert all(v[1] for v in check_code(io_items, wall_s=5, workers=2, allow_weak=True))
    io_s = time.monotonic() - t0
    he = "def check(candidate):\n    assert candidate([1, 2, 3]) == (6, 3)\n    assert candidate([-5]) == (-5, -5)\n"
    he_items = [(i, "def f(a):\n    pass\n", "def f(a):\n    return sum(a), max(a)\n", he, "f") for i in range(n)]
    t0 = time.monotonic()
    assert all(v[1] for v in check_code(he_items, wall_s=5, workers=2, allow_weak=True))
    he_s = time.monotonic() - t0
    cases = n * len(recognise(CODECONTESTS).cases)
    with capsys.disabled():
        print(f"\nio path: {cases / io_s:.1f} cases/s ({n / io_s:.1f} runs/s, 4 cases each); "
              f"HumanEval path: {n / he_s:.1f} runs/s")


# ----------------------------------------------------------------------------- end to end
CODE_SEEDS = {  # marker in the problem -> (right answer, wrong answer)
    "SUMMAX": (CF_RIGHT["readline"], CF_WRONG["off_by_one"]),
    "MEAN": (FLOAT_RIGHT["six_places"], FLOAT_WRONG["two_places"]),
    "DROOT": (APPS_FN_RIGHT, "def digital_root(n):\n    return n % 10\n"),
    "TWOSUM": (LCB_RIGHT, LCB_WRONG),
    "SIMILAR": (MBPP_RIGHT, MBPP_WRONG),
}


class IOTeacher:
    """Even samples answer right, odd ones wrong, for the seeds in CODE_SEEDS."""

    def __init__(self):
        self.name, self.model = "scripted", "scripted-model"

    def generate(self, requests):
        from factory.records import Response

        for r in requests:
            user = r.messages[-1]["content"]
            marker = next(m for m in CODE_SEEDS if m in user)
            body = CODE_SEEDS[marker][r.sample_index % 2]
            text = (f"<think>I read the input format for {marker} and handle every case, sample {r.sample_index}; "
                    f"then I print the result.</think>\n\n```python\n{body}```")
            yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason="stop", completion_tokens=30)


@pytest.mark.slow
def test_sources_build_and_filter_keep_exactly_the_right_traces(tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rich.console import Console

    from factory.build import build_dataset
    from factory.config import load_config
    from factory.filter import run_filter

    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    shutil.copytree(ROOT / "filters", tmp_path / "filters")
    shutil.copytree(ROOT / "data" / "benchmarks", tmp_path / "data" / "benchmarks")
    data = tmp_path / "data"
    # CodeContests: struct columns in Parquet
    pq.write_table(pa.Table.from_pylist([{"name": "1A. SUMMAX", "description": "SUMMAX: print the sum and the max.",
                                          "public_tests": CF_TESTS, "private_tests": CF_PRIVATE,
                                          "generated_tests": CF_GENERATED}]), data / "cc.parquet")
    # APPS: input_output as a JSON string, one stdin problem and one fn_name problem
    with open(data / "apps.jsonl", "w") as f:
        f.write(json.dumps({"question": "MEAN of n numbers.", "input_output": FLOAT_TESTS}) + "\n")
        f.write(json.dumps({"question": "DROOT: the digital root.", "input_output": APPS_FN}) + "\n")
    # LiveCodeBench: public_test_cases JSON string + metadata JSON string
    with open(data / "lcb.jsonl", "w") as f:
        f.write(json.dumps({"question_content": "TWOSUM: indices of two numbers adding to target.",
                            "public_test_cases": LCB_FUNCTIONAL, "metadata": LCB_META}) + "\n")
    # MBPP: test_list is a JSON list
    with open(data / "mbpp.jsonl", "w") as f:
        f.write(json.dumps({"text": "SIMILAR: " + MBPP_PROBLEM, "test_list": json.loads(MBPP)}) + "\n")
    (tmp_path / "factory.yaml").write_text("""
sources:
  - name: cc
    path: data/cc.parquet
    domain: code
    fields: {problem: description, tests: '{{ [public_tests, private_tests, generated_tests] | tojson }}'}
  - {name: apps, path: data/apps.jsonl, domain: code, fields: {problem: question, tests: input_output}}
  - name: lcb
    path: data/lcb.jsonl
    domain: code
    fields: {problem: question_content, tests: public_test_cases, entry_point: metadata}
  - {name: mbpp, path: data/mbpp.jsonl, domain: code, fields: {problem: text, tests: test_list}}
teachers: [{name: scripted, backend: openai, model: scripted-model}]
generation: {samples_per_seed: 2}
filter: {sandbox_wall_s: 5, code: {allow_weak_sandbox: true}}
""")
    cfg = load_config(tmp_path / "factory.yaml", [])
    build_dataset(cfg, console=Console(quiet=True), teachers={"scripted": IOTeacher()})
    summary = run_filter(cfg, console=Console(quiet=True))
    con = duckdb.connect(str(cfg.store_path), read_only=True)
    verdicts = con.execute("""SELECT d.source, q.sample_index, c.passed, c.reason FROM checks c
                              JOIN requests q USING (request_id) JOIN seeds d USING (seed_id)
                              WHERE c."check" = 'verify' ORDER BY 1, 2""").fetchall()
    kept = con.execute("""SELECT d.source, q.sample_index FROM kept k JOIN requests q ON q.request_id = k.request_id
                          JOIN seeds d ON d.seed_id = q.seed_id ORDER BY 1""").fetchall()
    con.close()
    assert len(verdicts) == 10, verdicts
    assert all(passed == (sample == 0) for _, sample, passed, _ in verdicts), verdicts
    assert sorted(kept) == [("apps", 0), ("apps", 0), ("cc", 0), ("lcb", 0), ("mbpp", 0)]
    assert summary.funnel["verify"] == {"tests_failed": 5}


def test_for_prompt_says_what_the_solution_must_be():
    from factory.checks.io_tests import PEEK_LIMIT, for_prompt

    assert for_prompt(CODECONTESTS)["tests_kind"] == "stdin"
    assert for_prompt(CF_OFFICIAL)["tests_kind"] == "stdin" and for_prompt(LCB_STDIN)["tests_kind"] == "stdin"
    assert for_prompt(APPS_FN) == {"tests_kind": "call", "fn_name": "digital_root", "example_tests": ""}
    assert for_prompt(LCB_FUNCTIONAL, LCB_META)["fn_name"] == "twoSum"
    mbpp = for_prompt(MBPP)
    assert mbpp["tests_kind"] == "asserts" and mbpp["example_tests"].startswith("assert similar_elements(")
    assert for_prompt("def check(candidate):\n    assert candidate(1) == 1\n", "f")["tests_kind"] is None
    assert for_prompt(None)["tests_kind"] is None
    # case data too big to parse for a prompt is judged by its text: same kind as parsing it says
    big_stdin = json.dumps({"input": ["1\n" * (PEEK_LIMIT // 2)] * 2, "output": ["1\n", "1\n"]})
    big_call = json.dumps({"fn_name": "f", "inputs": [["x" * PEEK_LIMIT]], "outputs": [[1]]})
    assert for_prompt(big_stdin)["tests_kind"] == recognise(big_stdin).kind == "stdin"
    assert for_prompt(big_call)["tests_kind"] == recognise(big_call).kind == "call"


def test_tests_that_can_verify_nothing_are_a_bad_row_naming_file_row_and_field(tmp_path):
    from factory.checks.io_tests import unusable_tests
    from factory.config import SourceConfig
    from factory.records import BadRow, Seed
    from factory.sources import plan_source, read_seeds

    assert unusable_tests(APPS_FN) is None and unusable_tests(CODECONTESTS) is None and unusable_tests(MBPP) is None
    assert unusable_tests("def check(candidate):\n    assert candidate(1) == 1\n") is None  # HumanEval-style
    rows = [{"q": "ok", "t": CF_OFFICIAL}, {"q": "typo", "t": json.dumps({"inptus": ["1"], "outputs": ["1"]})},
            {"q": "empty", "t": json.dumps({"inputs": [], "outputs": []})},
            {"q": "nameless", "t": LCB_FUNCTIONAL}, {"q": "broken", "t": '{"inputs": ['}]
    (tmp_path / "code.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = list(read_seeds(plan_source(SourceConfig(name="c", path=str(tmp_path / "code.jsonl"), domain="code",
                                                   fields={"problem": "q", "tests": "t"}))))
    assert isinstance(got[0], Seed) and all(isinstance(g, BadRow) for g in got[1:])
    assert [(g.row, g.field) for g in got[1:]] == [(2, "t"), (3, "t"), (4, "t"), (5, "t")]
    assert "none of the known forms" in got[1].reason and "no cases" in got[2].reason
    assert "name no function" in got[3].reason and "none of the known forms" in got[4].reason
