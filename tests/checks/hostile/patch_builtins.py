# expect: failed
# Patches builtins and exit hooks so that a failing assert looks like success.
import builtins
import os
import sys
import threading


class Never(Exception):
    pass


builtins.AssertionError = Never
builtins.abs = lambda x: 0
builtins.isinstance = lambda *a: True
sys.excepthook = lambda *a: os._exit(0)
threading.excepthook = lambda *a: os._exit(0)


def abs(x):  # a module-level name that would shadow the builtin in a shared namespace
    return 0


def square(x):
    return -1
