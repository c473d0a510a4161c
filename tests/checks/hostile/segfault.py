# expect: crashed
import ctypes


def square(x):
    return ctypes.string_at(0xFFFF800000000000, 16)  # kernel address: SIGSEGV
