# expect: crashed
def square(x):
    blocks = []
    while True:
        blocks.append(bytearray(64 << 20))
