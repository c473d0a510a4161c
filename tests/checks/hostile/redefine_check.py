# expect: failed
# Replaces the tests' check() and the assert machinery it can reach.
import builtins


def check(candidate):
    return True


builtins.check = check


def square(x):
    return -1
