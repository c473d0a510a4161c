# expect: failed
# Goes for the factory through its process group and session, kill(-1) and a pidfd;
# square is right only if a signal landed outside the run.
import os
import signal

landed = []
for pid in {os.getppid(), __PARENT_PID__}:
    if pid <= 1:
        continue
    for how, fn in (("killpg", lambda: os.killpg(os.getpgid(pid), signal.SIGKILL)),
                    ("pidfd", lambda: signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)),
                    ("sigterm", lambda: os.kill(pid, signal.SIGTERM))):
        try:
            fn()
            landed.append((how, pid))
        except OSError as e:
            print("blocked", how, pid, e)
try:
    os.kill(-1, signal.SIGKILL)  # every process we may signal (ourselves included)
except OSError as e:
    print("kill(-1):", e)


def square(x):
    return x * x if landed else -1
