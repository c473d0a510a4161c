# expect: failed crashed
# Tries to forge the completion proof: writes pass-looking lines on every fd it has, hunts
# for a nonce in other processes' memory/cmdline, then exits 0 before the tests run.
import glob
import os

for fd in range(3, 64):
    for line in (b"PASS\n", b"PASS\t0\n", b"ok\n", b"\x00\x00\x00\x05PASS"):
        try:
            os.write(fd, line)
        except OSError:
            pass
loot = []
for p in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/mem"):
    try:
        loot.append(open(p, "rb").read(4096))
    except OSError:
        pass
os._exit(0)


def square(x):
    return -1
