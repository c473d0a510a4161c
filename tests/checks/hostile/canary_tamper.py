# expect: failed
# Overwrites, truncates, renames and deletes canary files the test created outside the
# run's folder (writable by everyone); square is right only if one of those reached them.
import os

done = []
for path in ("__CANARY_TMP__", "__CANARY_REPO__"):
    try:
        with open(path) as f:
            real = f.read().startswith("canary:")  # the host's file, not a private /tmp
    except OSError as e:
        print("cannot see", path, e)
        real = False
    for how, fn in (("append", lambda: open(path, "a").write("tampered")),
                    ("truncate", lambda: os.truncate(path, 0)),
                    ("rename", lambda: os.rename(path, path + ".moved")),
                    ("unlink", lambda: os.unlink(path))):
        try:
            fn()
            if real:
                done.append((how, path))
        except OSError as e:
            print("blocked", how, path, e)


def square(x):
    return x * x if done else -1
