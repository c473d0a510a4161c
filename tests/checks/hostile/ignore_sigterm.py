# expect: timeout
import signal

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(sig, signal.SIG_IGN)
n = 0
while True:
    n += 1


def square(x):
    return x * x
