# expect: failed
def square(x):
    raise SystemExit(0)
