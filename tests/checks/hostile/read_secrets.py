# expect: failed
# Looks for the factory's API keys: in its environment, in other processes' environ and
# in the repository's files.  square is right only if it found one.
import glob
import os

found = [os.environ.get(k) for k in ("OPENAI_API_KEY", "HF_TOKEN") if os.environ.get(k)]
for p in glob.glob("/proc/*/environ"):
    try:
        data = open(p, "rb").read()
    except OSError:
        continue
    for k in (b"OPENAI_API_KEY=", b"HF_TOKEN="):
        if k in data:
            found.append(data.split(k, 1)[1].split(b"\0", 1)[0].decode())
for p in ("__ESCAPE_REPO__".rsplit("/", 1)[0] + "/factory.yaml", "/root/.bashrc", "/proc/__PARENT_PID__/environ"):
    try:
        open(p).read()
        found.append("read " + p)
    except OSError:
        pass
print("FOUND", found, sorted(os.environ))


def square(x):
    return x * x if found else -1
