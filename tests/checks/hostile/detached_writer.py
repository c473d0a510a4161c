# expect: failed crashed
# A double-forked, setsid'd grandchild that ignores SIGTERM/SIGHUP, waits until the
# verdict is in and then keeps writing to a host path: the run must not outlive its verdict.
import os
import signal
import time

if os.fork() == 0:
    try:
        os.setsid()
    except OSError:
        pass
    if os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        for fd in (0, 1, 2):
            os.close(fd)
        end = time.time() + 6
        time.sleep(0.5)
        while time.time() < end:
            for path in ("__LATE_FILE__",):
                try:
                    with open(path, "a") as f:
                        f.write("still alive\n")
                except OSError:
                    pass
            time.sleep(0.2)
        os._exit(0)
    os._exit(0)
os.wait()


def square(x):
    return -1
