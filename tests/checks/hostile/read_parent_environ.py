# expect: failed
# Reads the factory's environment through /proc (its parent, the test process, any
# process) for a secret the test set there; square is right only if it found it.
import glob
import os

found = []
paths = ["/proc/%d/environ" % os.getppid(), "/proc/__PARENT_PID__/environ"]
for p in paths + glob.glob("/proc/[0-9]*/environ"):
    try:
        with open(p, "rb") as f:
            if b"FACTORY_SANDBOX_SECRET=" in f.read():
                found.append(p)
    except OSError:
        pass


def square(x):
    return x * x if found else -1
