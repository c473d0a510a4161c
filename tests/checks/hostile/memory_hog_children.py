# expect: failed crashed timeout
# Several processes each take as much memory as they can, then the candidate answers wrong.
import os

for _ in range(4):
    if os.fork() == 0:
        blocks = []
        try:
            while True:
                blocks.append(bytearray(32 << 20))
        except MemoryError:
            os._exit(0)


def square(x):
    return -1
