import pytest

import duckdb

from factory.records import Request, Response, Seed
from factory.store import MIGRATIONS, ResponseWriter, Store


def test_migrations_apply_once_and_reopen(tmp_path):
    path = tmp_path / "f.duckdb"
    with Store(path) as s:
        assert s.scalar("SELECT max(n) FROM schema_migrations") == len(MIGRATIONS)
        s.add_seeds([Seed("src", "p")])
    with Store(path) as s:  # reopening applies nothing twice and keeps the data
        assert s.scalar("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
        assert s.scalar("SELECT count(*) FROM seeds") == 1


def test_same_input_lands_on_the_same_row(tmp_path):
    seed = Seed("src", "What is 1+1?", answer="2")
    req = Request(seed.seed_id, "t", "m", "x.jinja", ({"role": "user", "content": "hi"},), {"temperature": 0.7}, 0)
    with Store(tmp_path / "f.duckdb") as s:
        s.add_seeds([seed, seed])
        s.add_requests([req, req])
        s.add_requests([req])
        assert s.scalar("SELECT count(*) FROM seeds") == 1
        assert s.scalar("SELECT count(*) FROM requests") == 1
        (got,) = s.requests_by_id([req.request_id])
        assert got == req


def test_a_success_is_final_and_attempts_add_up(tmp_path):
    with Store(tmp_path / "f.duckdb") as s:
        s.add_responses([Response("r1", "t", "m", error="http_500", attempts=3)])
        s.add_responses([Response("r1", "t", "m", error="timeout", attempts=2)])
        assert s.sql("SELECT error, attempts FROM responses") == [("timeout", 5)]
        assert s.answered(["r1"]) == set()
        s.add_responses([Response("r1", "t", "m", text="ok", logprobs=[{"token": "a", "logprob": -0.1, "top": []}])])
        s.add_responses([Response("r1", "t", "m", text="a second success must not replace the first")])
        assert s.sql("SELECT text, error, attempts FROM responses") == [("ok", None, 6)]
        assert s.answered(["r1", "r2"]) == {"r1"}


def test_writer_commits_without_waiting_for_more(tmp_path):
    path = tmp_path / "f.duckdb"
    s = Store(path)
    writer = ResponseWriter(s, interval_s=0.05)
    writer.put(Response("r1", "t", "m", text="hello"))
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # visible from another connection while the writer is still open
        if s.con.cursor().execute("SELECT count(*) FROM responses").fetchall()[0][0] == 1:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("response not committed within 5 s")
    for i in range(1000):
        writer.put(Response(f"x{i}", "t", "m", text="x"))
    writer.close()
    s.close()
    assert duckdb.connect(str(path), read_only=True).execute("SELECT count(*) FROM responses").fetchall() == [(1001,)]


@pytest.mark.slow  # > 2 s: make test stays under 3 minutes; make test-all runs it
def test_a_store_in_use_names_its_holder_and_can_be_waited_for(tmp_path):
    import subprocess
    import sys
    import time

    from factory.store import Store, StoreBusy, StoreError

    path = tmp_path / "factory.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from factory.store import Store; "
                               f"s = Store({str(path)!r}); print('held', flush=True); sys.stdin.readline()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for read_only in (False, True):
            with pytest.raises(StoreBusy, match=rf"in use by pid {holder.pid} \(python\S* -c .*since .*--wait SECONDS"):
                Store(path, read_only=read_only)
        t0 = time.monotonic()
        with pytest.raises(StoreBusy, match="waited 0.5 s"):
            Store(path, wait_s=0.5)
        assert time.monotonic() - t0 >= 0.5
        holder.stdin.write("\n")  # the holder lets go: a waiting open succeeds
        holder.stdin.flush()
        with Store(path, wait_s=30) as store:
            assert store.scalar("SELECT count(*) FROM seeds") == 0
    finally:
        holder.kill()
    (tmp_path / "junk.duckdb").write_bytes(b"not a database" * 500)
    with pytest.raises(StoreError, match="junk.duckdb: cannot open the store: .*not a valid DuckDB"):
        Store(tmp_path / "junk.duckdb")
