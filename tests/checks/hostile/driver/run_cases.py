"""Runs hostile cases through the sandbox as whoever starts it (tests/test_sandbox.py starts
it as an unprivileged uid, with a world-readable interpreter and PYTHONPATH at the repo).

stdin: JSON {"no_namespaces": bool, "limits": {...}, "cases": [{"name", "code", "tests",
"entry", "wall_s"}]}.  "__PARENT_PID__" in a case becomes this process's pid: here the
driver is the factory process the candidate must not reach.  stdout: one JSON line with
isolation(), then one per case: status, reason, seconds, and the processes of our uid
still alive 2 s after the verdict (none may be).
"""

import dataclasses
import json
import os
import sys
import time

import factory.checks.code as sandbox


def my_uid_processes() -> list:
    """(pid, command) of every process of our uid but this one and its ancestors."""
    me, uid, out = os.getpid(), os.getuid(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            if os.stat("/proc/" + pid).st_uid != uid:
                continue
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")[:80]
        except OSError:
            continue
        out.append((int(pid), cmd))
    return out


def main() -> None:
    job = json.load(sys.stdin)
    sandbox._NO_NAMESPACES = bool(job.get("no_namespaces"))
    iso = sandbox.isolation()
    print(json.dumps({"isolation": iso}), flush=True)
    base = sandbox.Limits(**job.get("limits", {}))
    for case in job["cases"]:
        limits = dataclasses.replace(base, wall_s=case.get("wall_s", base.wall_s))
        code = case["code"].replace("__PARENT_PID__", str(os.getpid()))
        t0 = time.monotonic()
        try:
            res = sandbox.run_tests(code, case["tests"], case["entry"], limits,
                                    allow_weak=bool(job.get("allow_weak")))
            status, reason = res.status, res.reason
        except sandbox.SandboxUnavailable as e:
            status, reason = "refused", str(e)
        took = time.monotonic() - t0
        time.sleep(case.get("settle_s", 0))
        print(json.dumps({"name": case["name"], "status": status, "reason": reason,
                          "took": round(took, 3), "left": my_uid_processes()}), flush=True)


if __name__ == "__main__":
    main()
