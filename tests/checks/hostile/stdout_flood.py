# expect: crashed
import sys

chunk = "A" * 65536
while True:
    sys.stdout.write(chunk)


def square(x):
    return x * x
