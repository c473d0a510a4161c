# expect: failed
# kill(-1): every process it may signal.
import os
import signal

try:
    os.kill(-1, signal.SIGKILL)
except OSError as e:
    print("kill(-1):", e)


def square(x):
    return -1
