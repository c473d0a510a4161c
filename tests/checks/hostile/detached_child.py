# expect: failed crashed
# Double fork + setsid: a grandchild that outlives the candidate unless the sandbox kills it
# (where seccomp denies setsid, the forked child raises at load time: crashed is fine too).
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        while True:
            time.sleep(1)
    os._exit(0)


def square(x):
    return -1
