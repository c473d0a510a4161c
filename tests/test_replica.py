"""A Ray replica's shard feed, without Ray: the actor class is plain Python (threads stand in for
the actor's concurrent calls). A teacher that `takes_gaps` is fed shard after shard through one
generate() call; each shard's call returns exactly its own answers."""

from __future__ import annotations

import threading
import time

import pytest

from factory.distributed import _Replica
from factory.records import Request, Response


def requests(shard: int, n: int) -> list[Request]:
    return [Request(f"s{shard}-{i}", "t", "m", "tpl", ({"role": "user", "content": f"{shard}/{i}"},), {}, 0)
            for i in range(n)]


class SlotTeacher:
    """Continuous batching in miniature: up to `slots` rows at once, each answered `steps` steps after
    it was admitted; None in the stream means nothing to admit now."""

    name, model, takes_gaps = "t", "m", True

    def __init__(self, slots: int = 3, steps: int = 4, fail_on: str | None = None):
        self.slots, self.steps, self.fail_on = slots, steps, fail_on
        self.calls = 0
        self.overlap = False  # a row of a later shard ran beside a row of an earlier one

    def generate(self, stream):
        self.calls += 1
        running: list[list] = []  # [request, steps left]
        feed = iter(stream)
        while True:
            while len(running) < self.slots:
                r = next(feed)
                if r is None:
                    break
                if self.fail_on and r.seed_id.startswith(self.fail_on + "-"):
                    raise RuntimeError("engine broke")
                running.append([r, self.steps])
            shards = {x[0].seed_id.split("-")[0] for x in running}
            self.overlap |= len(shards) > 1
            time.sleep(0.001)
            for row in running:
                row[1] -= 1
            for row in [x for x in running if x[1] <= 0]:
                running.remove(row)
                yield Response(row[0].request_id, "t", "m", text=row[0].messages[0]["content"])


def replica(teacher) -> _Replica:
    r = _Replica.__new__(_Replica)
    r.teacher = teacher
    r.streams = True
    import queue

    r.inbox, r.waiting, r.lock, r.thread = queue.SimpleQueue(), {}, threading.Lock(), None
    return r


def call_all(rep: _Replica, shards: list[list[Request]]) -> list:
    out: list = [None] * len(shards)

    def call(i):
        try:
            out[i] = rep.generate(shards[i])
        except Exception as e:  # noqa: BLE001
            out[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


def test_each_shard_gets_its_own_answers_from_one_continuous_generate():
    teacher = SlotTeacher()
    rep = replica(teacher)
    shards = [requests(k, n) for k, n in enumerate((5, 1, 7))]
    out = call_all(rep, shards)
    for shard, answers in zip(shards, out):
        assert sorted(a.request_id for a in answers) == sorted(r.request_id for r in shard)
        assert all(a.text == r.messages[0]["content"] for a, r in zip(sorted(answers, key=lambda a: a.request_id),
                                                                      sorted(shard, key=lambda r: r.request_id)))
    assert teacher.calls == 1 and teacher.overlap  # one batch ran across shards: no drain between them
    # later shards reuse the same running generate
    more = call_all(rep, [requests(9, 4)])
    assert len(more[0]) == 4 and teacher.calls == 1


def test_a_broken_engine_fails_every_waiting_shard_and_the_next_shard_starts_again():
    teacher = SlotTeacher(fail_on="s1")
    rep = replica(teacher)
    out = call_all(rep, [requests(0, 2), requests(1, 2)])
    assert any(isinstance(o, RuntimeError) for o in out)
    teacher.fail_on = None
    (answers,) = call_all(rep, [requests(2, 3)])
    assert len(answers) == 3
