# expect: failed
import sys


def square(x):
    return -1


sys.exit(0)
