# expect: failed
import os


def square(x):
    os._exit(0)
