# expect: failed
# Connects to a listener the test opened on the host's loopback.
import socket

ok = False
for host in ("127.0.0.1", "localhost", "::1"):
    try:
        s = socket.create_connection((host, __PORT__), timeout=1)
        s.sendall(b"escaped")
        ok = True
    except OSError as e:
        print("blocked", host, e)


def square(x):
    return x * x if ok else -1
