# expect: failed
# Tries to get privileges back (setuid calls, setuid binaries, raising its hard limits,
# chroot); square is right only if it holds a capability or did something privileged.
# (uid 0 inside a user namespace without capabilities is not a privilege: setuid(0)
# succeeding there counts for nothing.)
import os
import resource
import subprocess

got = []
for fn in (lambda: os.setuid(0), lambda: os.setgid(0)):
    try:
        fn()
    except OSError as e:
        print("blocked", e)
try:
    with open("/proc/self/status") as f:
        caps = [ln for ln in f if ln.startswith("CapEff")]
    if caps and int(caps[0].split()[1], 16):
        got.append(caps[0].strip())
except OSError as e:
    print("no /proc", e)
for name, fn in (("rlimit", lambda: resource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6))),
                 ("chroot", lambda: os.chroot("/"))):
    try:
        fn()
        got.append(name)
    except (OSError, ValueError) as e:
        print("blocked", name, e)
for cmd in (["su", "-c", "id"], ["sudo", "-n", "id"], ["mount", "-t", "tmpfs", "x", "/mnt"]):
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=2)
        if r.returncode == 0 and b"uid=0" in r.stdout:
            got.append(cmd)
    except Exception as e:
        print("blocked", cmd, e)


def square(x):
    return x * x if got else -1
