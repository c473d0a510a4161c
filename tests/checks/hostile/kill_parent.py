# expect: failed
# Tries to kill its parent and the test process; square is right only if a kill landed.
import os
import signal

landed = []
for pid in {os.getppid(), __PARENT_PID__}:
    if pid <= 1:
        continue
    try:
        os.kill(pid, signal.SIGKILL)
        landed.append(pid)
    except OSError as e:
        print("blocked", pid, e)


def square(x):
    return x * x if landed else -1
