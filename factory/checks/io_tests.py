"""Input/output test cases (APPS, TACO, CodeContests, LiveCodeBench, Codeforces, MBPP) for the code sandbox.

    recognise(tests, entry_point) -> IOTests | None    None: HumanEval-style tests, left as they are
    for_prompt(tests, entry_point) -> {tests_kind, fn_name, example_tests}   (for prompt templates)
    prepare(problem, answer, tests, entry_point, wall_s, max_cases) -> SandboxRun
    compare_stdout(actual, expected) -> str | None     None when a judge accepts `actual`
    compare_return(actual, expected, wrapped=False) -> str | None

Most code datasets ship cases, not `check(candidate)`: stdin text -> expected stdout, or argument
lists -> return values.  `prepare` turns (candidate code, cases) into what the EXISTING sandbox runs
(factory/checks/code.py, docs/sandbox.md), so the proof-of-completion design holds unchanged:

* the candidate process execs a harness holding the candidate's source; each stdin case is one
  `fork()` of it whose fds 0/1/2 are memfds (input(), sys.stdin.read(), sys.stdin.buffer,
  os.read(0), os.write(1), sys.exit(), `if __name__ == "__main__":`, threads, atexit all behave as
  in a real run; a crash or os._exit ends that case only); stdout comes back capped;
* the tests process holds the expected outputs (the candidate never sees them), calls the harness
  once per case under a per-case wall-clock alarm and compares the way judges do.

Pure: stdlib only, no store, no config object.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import inspect
import io
import json
import math
import pickle
import re
import zlib
from typing import Any, Literal

__all__ = ["IOTests", "IOTestsError", "SandboxRun", "recognise", "for_prompt", "unusable_tests", "prepare", "compare_stdout", "compare_return",
           "MAX_CASES", "MAX_CASE_BYTES", "MAX_OUTPUT_BYTES"]

MAX_CASES = 32  # cases run per trace (the first ones: public tests come first in every dataset)
MAX_CASE_BYTES = 32 << 20  # inputs + expected outputs shipped into one sandbox run (at least one case)
MAX_UNPACKED_BYTES = 512 << 20  # LiveCodeBench's compressed private cases, unpacked
MAX_OUTPUT_BYTES = 8 << 20  # a case's captured stdout; more is an output-limit failure
FLOAT_TOLERANCE = 1e-6  # absolute or relative, when the expected token is a float
CASE_TIMEOUT = "CaseTimeout"  # first word of the tests' reason when a case ran out of time

Kind = Literal["stdin", "call", "asserts"]


class IOTestsError(ValueError):
    """Recognised case data that cannot be run (no cases, functional cases without a function name)."""


@dataclasses.dataclass(frozen=True)
class IOTests:
    kind: Kind
    cases: tuple[tuple[Any, Any], ...]  # stdin: (input text, expected stdout); call: (args list, expected value)
    fn_name: str | None = None  # call: the function (or `Solution` method) to call
    wrapped: bool = False  # call, APPS style: an expected [value] also accepts value
    asserts: str = ""  # asserts: the joined assert lines (MBPP test_list)
    form: str = ""  # which dataset shape was recognised, for messages


@dataclasses.dataclass(frozen=True)
class SandboxRun:
    """What one sandbox run gets: code and tests for code.run_tests, and its limits."""

    code: str
    tests: str
    entry_point: str | None
    wall_s: float  # the whole run
    cpu_s: int
    cases: int  # cases run (0: HumanEval-style tests)
    total_cases: int  # cases the seed has


# ----------------------------------------------------------------------------- recognising
def _load(text: str) -> Any:
    """JSON, else a Python literal (a jinja `{{ column }}` prints dicts with single quotes), else
    LiveCodeBench's compressed private cases (base64 of zlib of a pickled JSON string)."""
    s = text.strip()
    if not s:
        return None
    if s[0] in "[{":
        try:
            return json.loads(s)
        except ValueError:
            pass
        try:
            return ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if s[0] == '"':
        try:
            inner = json.loads(s)
        except ValueError:
            return None
        return _load(inner) if isinstance(inner, str) else None
    if len(s) > 64 and re.fullmatch(r"[A-Za-z0-9+/=\s]+", s[:4096]):
        return _load_compressed(s)
    return None


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):  # a pickled str needs no class: refuse every one
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def _load_compressed(s: str) -> Any:
    try:
        unzip = zlib.decompressobj()
        raw = unzip.decompress(base64.b64decode(s, validate=False), MAX_UNPACKED_BYTES)
        if unzip.unconsumed_tail:  # a zip bomb, or more cases than any run takes
            return None
        inner = _NoGlobals(io.BytesIO(raw)).load()
    except Exception:  # noqa: BLE001 - not this form: the text is HumanEval-style code
        return None
    if isinstance(inner, bytes):
        inner = inner.decode("utf-8", "replace")
    return _load(inner) if isinstance(inner, str) else None


def _lines(v: Any) -> str:
    """APPS writes some inputs/outputs as lists of lines."""
    if isinstance(v, list):
        return "\n".join(str(x) for x in v)
    return v if isinstance(v, str) else str(v)


def _stdin_text(v: Any) -> str:
    text = _lines(v)
    return text if not text or text.endswith("\n") else text + "\n"  # as judges' input files end


def _fn_name(entry_point: str | None) -> str | None:
    """entry_point as a name, or LiveCodeBench's `metadata` JSON ({"func_name": ...}) mapped whole."""
    if not entry_point or not entry_point.strip():
        return None
    e = entry_point.strip()
    if e.startswith("{"):
        meta = _load(e)
        name = meta.get("func_name") or meta.get("fn_name") if isinstance(meta, dict) else None
        return name if isinstance(name, str) and name else None
    return e


def _is_pair_dict(d: Any, i: str, o: str) -> bool:
    return isinstance(d, dict) and isinstance(d.get(i), list) and isinstance(d.get(o), list)


def recognise(tests: str | None, entry_point: str | None = None) -> IOTests | None:
    """The case form of a seed's `tests` text, or None for HumanEval-style Python tests.

    APPS/TACO `input_output` ({"inputs", "outputs"[, "fn_name"]}); CodeContests `public_tests` /
    `private_tests` / `generated_tests` ({"input": [...], "output": [...]}, one or a list of them, or
    an object holding them by name); open-r1/codeforces `official_tests` and LiveCodeBench
    `public_test_cases` (a list of {"input", "output"[, "testtype"]}); LiveCodeBench's compressed
    `private_test_cases`; MBPP `test_list` (a list of assert lines)."""
    if not tests or not isinstance(tests, str):
        return None
    doc = _load(tests)
    if doc is None:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), list) and isinstance(doc.get("outputs"), list):
        return _apps(doc)
    groups: list | None = None
    if _is_pair_dict(doc, "input", "output"):
        groups = [doc]
    elif isinstance(doc, dict) and any(_is_pair_dict(v, "input", "output") for v in doc.values()):
        groups = [v for v in doc.values() if _is_pair_dict(v, "input", "output")]  # CodeContests, by split name
    elif isinstance(doc, list) and doc and all(_is_pair_dict(v, "input", "output") for v in doc):
        groups = doc
    if groups is not None:
        cases = tuple((_stdin_text(i), _lines(o)) for g in groups for i, o in zip(g["input"], g["output"]))
        return IOTests("stdin", cases, form="codecontests")
    if isinstance(doc, list) and doc and all(isinstance(v, dict) and "input" in v and "output" in v for v in doc):
        return _case_list(doc, entry_point)
    if isinstance(doc, list) and doc and all(isinstance(v, str) for v in doc):
        lines = [v.strip() for v in doc if v.strip()]
        if lines and all(v.startswith("assert") for v in lines):
            return IOTests("asserts", (), asserts="\n".join(lines) + "\n", form="mbpp")
    return None


PEEK_LIMIT = 1 << 20  # tests_kind reads bigger case data by a look at its text only


def for_prompt(tests: str | None, entry_point: str | None = None) -> dict[str, Any]:
    """What a prompt template needs to know of a code seed's tests (prompts.py passes these on):
    `tests_kind`: "stdin" (a whole program reading standard input), "call" (a function or `Solution`
    method), "asserts" (functions called by assert lines) or None (HumanEval-style tests); `fn_name`:
    the function the cases call, if named; `example_tests`: the first 3 assert lines (MBPP's own prompt
    shows them: they fix the function's name). Case data over PEEK_LIMIT characters (a CodeContests
    row with its generated tests) is judged by its text alone, without parsing it."""
    facts: dict[str, Any] = {"tests_kind": None, "fn_name": None, "example_tests": ""}
    if not tests or not isinstance(tests, str):
        return facts
    if len(tests) > PEEK_LIMIT:
        if tests.lstrip()[:1] in ("[", "{"):
            call = "fn_name" in tests or '"functional"' in tests or "'functional'" in tests
            facts["tests_kind"] = "call" if call else "stdin"
        return facts
    try:
        found = recognise(tests, entry_point)
    except IOTestsError:  # functional cases that cannot be read: still a function to write
        return {**facts, "tests_kind": "call", "fn_name": _fn_name(entry_point)}
    if found is not None:
        facts.update(tests_kind=found.kind, fn_name=found.fn_name,
                     example_tests="\n".join(found.asserts.splitlines()[:3]))
    return facts


def unusable_tests(tests: str | None, entry_point: str | None = None) -> str | None:
    """Why a code seed's `tests` can verify no answer at all (the source then reports a bad row naming
    file, row and field), or None. Text that looks like case data (JSON) but is no known form, recognised
    cases that are empty, or functional cases without a function name. Case data over PEEK_LIMIT is not
    parsed here (the filter finds out)."""
    if not tests or not isinstance(tests, str) or not tests.strip() or len(tests) > PEEK_LIMIT:
        return None
    try:
        found = recognise(tests, entry_point)
    except IOTestsError as e:
        return str(e)
    if found is None:
        if tests.lstrip()[:1] in ("[", "{"):
            return ("looks like test cases (JSON) but is none of the known forms: APPS {inputs, outputs}, "
                    "CodeContests {input, output}, a list of {input, output}, MBPP assert lines")
        return None  # HumanEval-style Python tests
    if found.kind != "asserts" and not found.cases:
        return f"{found.form} tests hold no cases"
    if found.kind == "call" and not found.fn_name:
        return "functional test cases name no function: map entry_point to its name (LiveCodeBench: metadata)"
    return None


def _apps(doc: dict) -> IOTests:
    fn = doc.get("fn_name")
    ins, outs = doc["inputs"], doc["outputs"]
    if fn:
        cases = tuple((list(i) if isinstance(i, (list, tuple)) else [i], o) for i, o in zip(ins, outs))
        return IOTests("call", cases, fn_name=str(fn), wrapped=True, form="apps fn_name")
    return IOTests("stdin", tuple((_stdin_text(i), _lines(o)) for i, o in zip(ins, outs)), form="apps")


def _case_list(doc: list, entry_point: str | None) -> IOTests:
    """A list of {"input", "output"[, "testtype"]}: Codeforces / LiveCodeBench stdin cases, or
    LiveCodeBench functional ones (one JSON value per line of `input`, the return value as JSON)."""
    functional = [d for d in doc if d.get("testtype") == "functional"]
    if not functional:
        return IOTests("stdin", tuple((_stdin_text(d["input"]), _lines(d["output"])) for d in doc),
                       form="livecodebench/codeforces")
    cases = []
    for d in functional:
        try:
            args = [json.loads(line) for line in str(d["input"]).split("\n") if line.strip()]
            cases.append((args, json.loads(str(d["output"]))))
        except ValueError as e:
            raise IOTestsError(f"functional case {len(cases) + 1}: not one JSON value per line ({e})") from None
    return IOTests("call", tuple(cases), fn_name=_fn_name(entry_point), form="livecodebench functional")


# ----------------------------------------------------------------------------- judging
# These run in the sandbox's tests process too (their source is copied into the tests): stdlib only.
_FLOAT_TOKEN = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][+-]?\d+|\d+\.\d*[eE][+-]?\d+)")
_NUMBER_TOKEN = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and abs(a - b) <= FLOAT_TOLERANCE * max(1.0, abs(b))


def compare_stdout(actual: str, expected: str) -> str | None:
    """None when a judge accepts `actual`: the same whitespace-separated tokens (so trailing spaces
    and blank lines do not matter), a float token within 1e-6 absolute or relative of the expected
    one when the expected token is a float; else why not, in a few words."""
    got, want = actual.split(), expected.split()
    if got == want:
        return None
    for n, (g, w) in enumerate(zip(got, want), start=1):
        if g == w:
            continue
        if _FLOAT_TOKEN.fullmatch(w) and _NUMBER_TOKEN.fullmatch(g) and _close(float(g), float(w)):
            continue
        return f"token {n}: got {g[:40]!r}, expected {w[:40]!r}"
    if len(got) < len(want):
        return f"output ends after {len(got)} tokens, expected {len(want)} (next: {want[len(got)][:40]!r})"
    if len(got) > len(want):
        return f"{len(got) - len(want)} extra tokens after the expected {len(want)} (first: {got[len(want)][:40]!r})"
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if (isinstance(a, float) or isinstance(b, float)) and isinstance(a, (int, float)) \
            and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b or _close(float(a), float(b))
    return a == b


def compare_return(actual: Any, expected: Any, wrapped: bool = False) -> str | None:
    """None when a return value equals the expected one (tuples equal lists, floats within 1e-6);
    `wrapped` (APPS): an expected one-element list [v] also accepts v."""
    if _same(actual, expected):
        return None
    one = wrapped and isinstance(expected, list) and len(expected) == 1
    if one and _same(actual, expected[0]):
        return None
    return f"returned {_short(actual)}, expected {_short(expected[0] if one else expected)}"


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


_JUDGE_PARTS = (_close, compare_stdout, _same, compare_return, _short)


def _judge_source() -> str:
    head = (f"from __future__ import annotations\nimport math, re\nAny = object\n"
            f"FLOAT_TOLERANCE = {FLOAT_TOLERANCE!r}\n_FLOAT_TOKEN = re.compile({_FLOAT_TOKEN.pattern!r})\n"
            f"_NUMBER_TOKEN = re.compile({_NUMBER_TOKEN.pattern!r})\n")
    return head + "\n".join(inspect.getsource(f) for f in _JUDGE_PARTS)


# ----------------------------------------------------------------------------- the candidate side
# Runs in the sandbox's candidate process with the candidate's source as _SOURCE (stdlib only).
_HARNESS_COMMON = '''
import builtins as _builtins, os as _os, sys as _sys

__CODE = compile(_SOURCE, "<solution>", "exec")  # a syntax error fails the run while loading
del _SOURCE


class _Quit:
    """exit()/quit() as site.py adds them (the sandbox runs python -S, which has none)."""
    def __init__(self, name):
        self.name = name
    def __repr__(self):
        return "Use %s() to exit" % self.name
    def __call__(self, code=None):
        raise SystemExit(code)


for _n in ("exit", "quit"):
    if not hasattr(_builtins, _n):
        setattr(_builtins, _n, _Quit(_n))
'''

_HARNESS_STDIN = '''

def _factory_io_run(data):
    """Run the program once on `data` as its stdin: (status, stdout, last stderr line)."""
    if type(data) is not str:
        raise TypeError("stdin must be text")
    fds = [_os.memfd_create(n) for n in ("stdin", "stdout", "stderr")]
    try:
        view = memoryview(data.encode("utf-8", "surrogateescape"))
        while view:
            view = view[_os.write(fds[0], view):]
        _os.lseek(fds[0], 0, 0)
        for f in (_sys.stdout, _sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        pid = _os.fork()
        if pid == 0:
            try:
                for i, fd in enumerate(fds):
                    _os.dup2(fd, i)
                _os.closerange(3, 1 << 16)  # the harness's pipes and memfds: the program sees fds 0-2 only
                _child()
            finally:
                _os._exit(125)
        while True:
            try:
                _, status = _os.waitpid(pid, 0)
                break
            except ChildProcessError:
                status = 0x7F00
                break
            except InterruptedError:
                continue
        rc = _os.waitstatus_to_exitcode(status)
        size = _os.fstat(fds[1]).st_size
        if size > _OUT_CAP:
            return ("output_limit", "", "more than %d bytes of output" % _OUT_CAP)
        out = _os.pread(fds[1], size, 0).decode("utf-8", "replace")
        esize = _os.fstat(fds[2]).st_size
        err = _os.pread(fds[2], 2048, max(0, esize - 2048)).decode("utf-8", "replace")
        last = ([ln for ln in err.splitlines() if ln.strip()] or [""])[-1][:300]
        if rc == 0:
            return ("ok", out, "")
        if rc < 0:
            import signal
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = "signal %d" % -rc
            return ("signal", out, name)
        return ("exit", out, "exit code %d%s" % (rc, ": " + last if last else ""))
    finally:
        for fd in fds:
            _os.close(fd)


def _child():
    """In the forked process: run the program as `python solution.py < input > output` would."""
    import io, resource
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        cap = _OUT_CAP + 1 if hard == resource.RLIM_INFINITY else min(hard, _OUT_CAP + 1)
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, hard))
    except (ValueError, OSError):
        pass
    # as python sets them up for a file: text, block-buffered, with .mode and .buffer
    _sys.stdin = _sys.__stdin__ = io.open(0, "r", encoding="utf-8", errors="surrogateescape", closefd=False)
    _sys.stdout = _sys.__stdout__ = out = io.open(1, "w", encoding="utf-8", errors="strict", closefd=False)
    _sys.stderr = _sys.__stderr__ = io.open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False,
                                            buffering=1)
    _sys.argv = ["solution.py"]
    g = {"__name__": "__main__", "__builtins__": _builtins, "__file__": "solution.py", "__doc__": None,
         "__package__": None, "__spec__": None}
    rc = 0
    try:
        exec(__CODE, g)
    except SystemExit as e:
        rc = _exit_code(e.code)
    except BaseException:
        import traceback
        traceback.print_exc()
        rc = 1
    threading = _sys.modules.get("threading")
    if threading is not None:  # the interpreter waits for non-daemon threads before it exits
        me = threading.current_thread()
        for t in threading.enumerate():
            if t is not me and not t.daemon:
                try:
                    t.join()
                except BaseException:
                    pass
    try:
        import atexit
        atexit._run_exitfuncs()
    except BaseException:
        pass
    # python flushes sys.stdout at exit, and the original stdout when it is collected
    for f, is_out in ((_sys.stdout, True), (_sys.__stdout__, True), (out, True), (_sys.stderr, False)):
        try:
            f.flush()
        except BaseException:
            if is_out:
                rc = rc or 120  # as python does when it cannot flush stdout at exit
    try:
        g.clear()  # files the program opened on fd 1 and never closed flush when collected
        import gc
        gc.collect()
    except BaseException:
        pass
    _os._exit(rc)


def _exit_code(code):
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    try:
        _sys.stderr.write(str(code) + "\\n")
    except BaseException:
        pass
    return 1
'''

_HARNESS_CALL = '''
import io as _io

# LeetCode-style solutions use typing names and common modules without importing them
_G = {"__name__": "solution", "__builtins__": _builtins}
exec("from typing import *\\nfrom collections import *\\nfrom heapq import *\\nfrom bisect import *\\n"
     "from itertools import *\\nfrom functools import *\\nfrom math import *\\n"
     "import collections, heapq, bisect, itertools, functools, math, string, re, random, sys\\n", _G)
_sys.stdout = _io.StringIO()  # what the solution prints is not graded: keep it off the sandbox's pipe
exec(__CODE, _G)
_sys.stdout = open(_os.devnull, "w")


def _factory_io_call(args):
    """Call the function (or a fresh Solution()'s method, as LeetCode does) with `args`."""
    return _resolve()(*args)


def _resolve():
    sol = _G.get("Solution")
    name = _FN
    if name is None and isinstance(sol, type):
        own = [k for k, v in vars(sol).items() if callable(v) and not k.startswith("_")]
        name = own[0] if len(own) == 1 else None
    if name is None:
        raise NameError("no function name for these cases, and no Solution class with one method")
    if isinstance(sol, type) and callable(getattr(sol, name, None)):
        return getattr(sol(), name)
    fn = _G.get(name)
    if callable(fn):
        return fn
    raise NameError("the solution defines neither %s() nor Solution.%s" % (name, name))
'''


# ----------------------------------------------------------------------------- the tests side
# both tests programs: a per-case wall-clock alarm (after _CASES and _LIMIT_S are defined)
_TESTS_TIMER = '''
import signal as _signal

_NOW = [0]


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout("case %d/%d: over the %g s wall-clock limit" % (_NOW[0], len(_CASES), _LIMIT_S))


_signal.signal(_signal.SIGALRM, _alarm)
'''

_TESTS_STDIN = '''
import json as _json

_CASES = _json.loads({cases!r})
_LIMIT_S = {limit!r}


def _show(text):
    return repr(text if len(text) <= 60 else text[:57] + "...")
''' + _TESTS_TIMER + '''
for _NOW[0], (_input, _expected) in enumerate(_CASES, 1):
    _signal.setitimer(_signal.ITIMER_REAL, _LIMIT_S)
    try:
        _got = _factory_io_run(_input)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
    _where = "case %d/%d (input %s)" % (_NOW[0], len(_CASES), _show(_input))
    if type(_got) is not tuple or len(_got) != 3 or not all(type(x) is str for x in _got):
        raise AssertionError(_where + ": malformed reply from the harness")
    _status, _out, _detail = _got
    if _status == "signal" and _detail == "SIGXCPU":
        raise CaseTimeout("case %d/%d: CPU time limit" % (_NOW[0], len(_CASES)))
    if _status != "ok":
        raise AssertionError("%s: %s (%s); stdout so far %s" % (_where, _status, _detail, _show(_out)))
    _why = compare_stdout(_out, _expected)
    if _why is not None:
        raise AssertionError("%s: wrong answer: %s" % (_where, _why))
'''

_TESTS_CALL = '''
_CASES = {cases}
_LIMIT_S = {limit!r}
_WRAPPED = {wrapped!r}
''' + _TESTS_TIMER + '''
for _NOW[0], (_args, _expected) in enumerate(_CASES, 1):
    _signal.setitimer(_signal.ITIMER_REAL, _LIMIT_S)
    try:
        _got = _factory_io_call(_args)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
    _why = compare_return(_got, _expected, _WRAPPED)
    if _why is not None:
        raise AssertionError("case %d/%d %s: %s" % (_NOW[0], len(_CASES), _short(_args), _why))
'''


def _is_code(problem: str | None) -> bool:
    """A HumanEval-style prompt (a signature and docstring) is Python defining something; an
    MBPP / APPS statement is prose, which must not be glued before the candidate's code."""
    if not problem or not problem.strip():
        return False
    try:
        tree = ast.parse(problem)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom))
               for n in tree.body)


def _take(cases: tuple, max_cases: int) -> list:
    """The first `max_cases` cases, stopping early once they weigh MAX_CASE_BYTES (at least one)."""
    out, size = [], 0
    for c in cases[:max(1, max_cases)]:
        size += len(json.dumps(c, default=str))
        if out and size > MAX_CASE_BYTES:
            break
        out.append(c)
    return out


def prepare(problem: str | None, answer: str, tests: str, entry_point: str | None, wall_s: float,
            max_cases: int = MAX_CASES) -> SandboxRun:
    """What the sandbox runs for one trace. HumanEval-style tests: the prompt, then the answer (as
    HumanEval scores prompt + completion), under `wall_s`. Case forms: the harness and the generated
    tests, each case with `wall_s` of its own (the run gets `wall_s` per case, plus one for loading).
    Raises IOTestsError for recognised cases that cannot run."""
    io_tests = recognise(tests, entry_point)
    if io_tests is None:
        return SandboxRun(problem + "\n" + answer if _is_code(problem) else answer, tests, entry_point,
                          wall_s, max(1, math.ceil(wall_s)), 0, 0)
    if io_tests.kind == "asserts":
        code = problem + "\n" + answer if _is_code(problem) else answer
        return SandboxRun(code, io_tests.asserts, None, wall_s, max(1, math.ceil(wall_s)), 0, 0)
    if not io_tests.cases:
        raise IOTestsError(f"{io_tests.form} tests hold no cases")
    cases = _take(io_tests.cases, max_cases)
    total = wall_s * (len(cases) + 1)
    head = f"_SOURCE = {answer!r}\n"
    if io_tests.kind == "stdin":
        code = head + f"_OUT_CAP = {MAX_OUTPUT_BYTES}\n" + _HARNESS_COMMON + _HARNESS_STDIN
        tests_src = _judge_source() + _TESTS_STDIN.format(cases=json.dumps(cases), limit=float(wall_s))
    else:
        literal = repr([(list(a), e) for a, e in cases])  # JSON (or Python literal) values: a literal again
        code = head + f"_FN = {io_tests.fn_name!r}\n" + _HARNESS_COMMON + _HARNESS_CALL
        tests_src = _judge_source() + _TESTS_CALL.format(cases=literal, limit=float(wall_s),
                                                        wrapped=io_tests.wrapped)
    return SandboxRun(code, tests_src, None, total, max(1, math.ceil(total)), len(cases), len(io_tests.cases))
