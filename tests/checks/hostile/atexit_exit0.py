# expect: failed
import atexit
import os

atexit.register(os._exit, 0)


def square(x):
    return -1
