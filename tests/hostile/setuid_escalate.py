# expect: failed
# Tries to get root back (setuid binaries, setuid calls) and raise its limits.
import os
import resource
import subprocess

got = []
for fn in (lambda: os.setuid(0), lambda: os.setgid(0),
           lambda: resource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6))):
    try:
        fn()
        got.append(fn)
    except (OSError, ValueError) as e:
        print("blocked", e)
for cmd in (["su", "-c", "id"], ["sudo", "-n", "id"], ["mount", "-t", "tmpfs", "x", "/mnt"]):
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=2)
        if r.returncode == 0 and b"uid=0" in r.stdout:
            got.append(cmd)
    except Exception as e:
        print("blocked", cmd, e)


def square(x):
    return x * x if got else -1
