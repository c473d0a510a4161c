# expect: timeout
# Burns CPU with SIGXCPU ignored: RLIMIT_CPU's hard limit (SIGKILL) or the wall clock ends it.
import signal

signal.signal(signal.SIGXCPU, signal.SIG_IGN)


def square(x):
    n = 0
    while True:
        n += 1
