# expect: crashed
blocks = []
while True:
    blocks.append(bytearray(64 << 20))


def square(x):
    return x * x
