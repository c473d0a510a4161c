# expect: timeout
def square(x):
    while True:
        pass
