# expect: failed
class AlwaysEqual(int):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


def square(x):
    return AlwaysEqual(-1)
