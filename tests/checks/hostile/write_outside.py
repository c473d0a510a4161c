# expect: failed
# Writes outside its working directory; square is right only if a write reached the host.
import os

hits = 0
for path in ("__ESCAPE_TMP__", "__ESCAPE_REPO__", "/var/tmp/factory_sandbox_escape_x",
             "/dev/shm/factory_sandbox_escape_x", "/etc/factory_sandbox_escape",
             os.path.expanduser("~/factory_sandbox_escape"), "../factory_sandbox_escape"):
    try:
        with open(path, "w") as f:
            f.write("escaped")
        print("wrote", path)
        if path.startswith(("__ESCAPE_REPO__", "/etc")):
            hits += 1
    except OSError as e:
        print("blocked", path, e)
try:
    os.chmod("__ESCAPE_TMP__", 0o777)
except OSError:
    pass


def square(x):
    return x * x if hits else -1
