# expect: failed
import os


def square(x):
    return -1


os._exit(0)
