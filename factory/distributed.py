"""`build.executor: ray`: teachers as Ray actors and the filter's CPU-heavy checks as Ray tasks.

The driver (the `factory` process) stays the one writer of the store: it reads the pending
requests, sends them in shards to replicas on the cluster, and stores what streams back through
the same ResponseWriter a local build uses. So the rows, ids and resume rules are the local ones:

- a replica is a Ray actor holding one teacher (`local`: one transformers model; `vllm` with
  `build.ray.vllm_data: false`: one engine on `gpus_per_replica` GPUs; by default a `vllm` teacher
  goes through Ray Data's LLM processor instead, see factory/ray_llm.py), loaded once (`start()`,
  reported as start-up) and fed shards of `shard_size` requests (the samples of one prompt stay in
  one shard); each replica has two shards queued so it never waits, and the local engine takes the
  next shard into its running batch while the last rows of the previous one finish;
- answers come back per shard (ray.wait: whichever shard finishes first) and are stored at once;
  a killed driver loses only the shards in flight (nothing stored is touched), and the rerun's
  plan asks only for what has no success yet;
- a replica that dies (its node removed, OOM) is dropped and its shards go to the survivors; a
  shard is stored once even if Ray ran it twice (the driver ignores a finished shard's second
  answer, and the store keeps the first success of a request: ON CONFLICT ... WHERE error);
- `openai` needs no cluster (the API is the cluster): it runs in the driver, as locally.

The checks (math-verify, the code sandbox, MinHash signatures) are pure functions of their
items, so they run as plain Ray tasks in batches of `check_batch` (retried by Ray when a worker
dies); their verdicts come back to the driver, which writes and decides in DuckDB as locally.

Ray is an optional dependency (`pip install 'factory[ray]'`), imported on first use.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

from factory.config import RayConfig, TeacherConfig
from factory.errors import FactoryError, TeacherError
from factory.records import Request, Response
from factory.teachers.base import by_prompt

QUEUED_PER_REPLICA = 2  # shards sent to a replica ahead: the next is there when one ends
SHARD_RETRIES = 2  # a shard whose replica died is sent again this many times, then answered with errors
TASK_RETRIES = 3  # Ray retries a check task whose worker died this many times
INSTALL_HINT = "pip install 'factory[ray]'  (or: pip install 'ray[default]>=2.40')"


class RayUnavailable(FactoryError):
    """Ray is not installed or the cluster cannot be reached."""


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"build.executor is 'ray' but Ray is not installed: {INSTALL_HINT}") from None
    return ray


def connect(rcfg: RayConfig | None = None) -> Any:
    """The `ray` module, connected: to build.ray.address, else $RAY_ADDRESS, else a new local cluster.
    A process already connected (a test's cluster) is left as it is."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    # "local": a new cluster on this machine, never one that happens to run here already (ray.init's
    # own default would attach to it); a running one is used when named, by address or $RAY_ADDRESS
    address = (rcfg.address if rcfg else None) or os.environ.get("RAY_ADDRESS") or "local"
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)
    except ConnectionError as e:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0][:200]} "
                             f"(build.ray.address / $RAY_ADDRESS)") from None
    return ray


def needs_cluster(tcfg: TeacherConfig) -> bool:
    """Whether a teacher gains from replicas: an API teacher is already as parallel as its endpoint."""
    return tcfg.backend != "openai"


# -- generation ------------------------------------------------------------------------------


def shards(requests: Iterable[Request], size: int) -> Iterator[list[Request]]:
    """Lazily cut the stream into lists of about `size` requests, never splitting a prompt's samples."""
    shard: list[Request] = []
    for group in by_prompt(requests):
        shard.extend(group)
        if len(shard) >= size:
            yield shard
            shard = []
    if shard:
        yield shard


class _Replica:
    """One teacher on the cluster (becomes a Ray actor): the model is loaded once.

    A teacher that `takes_gaps` (the local engine) is fed shard after shard through one long
    generate() call on a thread of the actor, so its continuous batch refills from the next shard
    while the last rows of the previous one finish (no drain per shard); each `generate(shard)` call
    (the actor runs QUEUED_PER_REPLICA of them at once) returns when its own requests are answered.
    Other teachers (vllm: one LLM.generate per call) answer one shard per call."""

    def __init__(self, tcfg: TeacherConfig):
        from factory.teachers import make_teacher

        self.teacher = make_teacher(tcfg)
        self.streams = getattr(self.teacher, "takes_gaps", False)
        self.inbox: queue.SimpleQueue[list[Request]] = queue.SimpleQueue()
        self.waiting: dict[str, _Shard] = {}  # request id -> its shard
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def generate(self, shard: list[Request]) -> list[Response]:
        if not self.streams:
            return list(self.teacher.generate(shard))
        mine = _Shard(len(shard))
        with self.lock:  # the generating thread decides to stop under this lock: a shard is never stranded
            self.waiting.update((r.request_id, mine) for r in shard)
            self.inbox.put(shard)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True)
                self.thread.start()
        mine.done.wait()
        if mine.error is not None:
            raise mine.error
        return mine.answers

    def _feed(self) -> Iterator[Request | None]:
        while True:
            try:
                yield from self.inbox.get_nowait()
            except queue.Empty:
                yield None  # nothing for now: the engine keeps decoding and asks again

    def _run(self) -> None:
        while True:
            try:
                for response in self.teacher.generate(self._feed()):
                    with self.lock:
                        shard = self.waiting.pop(response.request_id, None)
                    if shard is not None:
                        shard.add(response)
            except BaseException as e:  # noqa: BLE001 - every waiting shard gets it (a load error, a bug)
                with self.lock:
                    shards, self.waiting = set(self.waiting.values()), {}
                    while not self.inbox.empty():
                        self.inbox.get_nowait()
                for shard in shards:
                    shard.fail(e)
            with self.lock:  # generate() ended (a teacher may end at a gap): go on while work is waiting
                if not self.waiting:
                    self.thread = None
                    return

    def ready(self) -> bool:
        """Load the model (a failure to load shows on the first shard, as locally)."""
        from factory.teachers.base import start

        start(self.teacher)
        return True


class _Shard:
    """The answers of one shard, collected on the replica's generating thread."""

    __slots__ = ("size", "answers", "done", "error")

    def __init__(self, size: int):
        self.size, self.answers, self.done, self.error = size, [], threading.Event(), None

    def add(self, response: Response) -> None:
        self.answers.append(response)
        if len(self.answers) >= self.size:
            self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class RayTeacher:
    """A teacher whose `generate` runs on `build.ray.replicas` actors of the cluster.

    Same interface as any teacher (teachers.base.Teacher): one Response per request, as shards
    finish. `watch_progress(p)` makes it keep "replicas alive" in a WorkProgress label."""

    def __init__(self, tcfg: TeacherConfig, rcfg: RayConfig):
        self.cfg, self.rcfg = tcfg, rcfg
        self.name, self.model = tcfg.name, tcfg.model
        self.replicas: list[Any] = []
        self.alive = 0
        self._progress = None
        self._label = ""

    def watch_progress(self, progress) -> None:
        self._progress, self._label = progress, progress.label
        self._show()

    def _show(self) -> None:
        if self._progress is not None:
            self._progress.label = f"{self._label} on ray, {self.alive}/{self.rcfg.replicas} replicas alive"

    def _start(self, ray) -> None:
        gpus = self.rcfg.gpus_per_replica
        if self.cfg.backend == "vllm" and gpus == 0:
            gpus = _vllm_gpus(self.cfg)
        # a thread per queued shard (they wait; one thread generates) and one for ready()
        actor = ray.remote(_Replica).options(num_cpus=self.rcfg.cpus_per_replica, num_gpus=gpus,
                                             max_restarts=0, max_task_retries=0,
                                             max_concurrency=QUEUED_PER_REPLICA + 1)
        self.replicas = [actor.remote(self.cfg) for _ in range(self.rcfg.replicas)]
        self.alive = len(self.replicas)
        self._show()

    def start(self) -> None:
        """Start the replicas and wait until each has loaded its model: the build reports this as
        start-up, apart from generation (a replica that dies here is dropped by generate)."""
        ray = connect(self.rcfg)
        if not self.replicas:
            self._start(ray)
        waiting = [replica.ready.remote() for replica in self.replicas]
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            try:
                ray.get(ready)
            except Exception:  # noqa: BLE001 - a replica that cannot start is found and dropped by generate
                pass

    def generate(self, requests: Iterable[Request]) -> Iterator[Response]:
        ray = connect(self.rcfg)
        from ray.exceptions import RayActorError, RayError, RayTaskError

        if not self.replicas:
            self._start(ray)
        source = enumerate(shards(requests, self.rcfg.shard_size))
        retry: deque[tuple[int, list[Request], int]] = deque()  # (shard no, shard, tries)
        flying: dict[Any, tuple[int, list[Request], int, int]] = {}  # ref -> (shard no, shard, tries, replica)
        load = [0] * len(self.replicas)
        dead: set[int] = set()
        done: set[int] = set()
        exhausted = False
        while True:
            for i, replica in enumerate(self.replicas):  # keep every live replica busy
                while i not in dead and load[i] < QUEUED_PER_REPLICA:
                    if retry:
                        no, shard, tries = retry.popleft()
                    else:
                        item = None if exhausted else next(source, None)
                        if item is None:
                            exhausted = True
                            break
                        (no, shard), tries = item, 0
                    flying[replica.generate.remote(shard)] = (no, shard, tries, i)
                    load[i] += 1
            if not flying:
                if retry:  # shards left and no replica to run them
                    for no, shard, _ in retry:
                        yield from _errors(self, shard, "replica_lost: no replica left on the cluster")
                    retry.clear()
                    continue
                break
            ready, _ = ray.wait(list(flying), num_returns=1)
            for ref in ready:
                no, shard, tries, i = flying.pop(ref)
                load[i] -= 1
                try:
                    answers = ray.get(ref)
                except RayTaskError as e:  # the teacher raised: a config problem, the same on every replica
                    cause = e.as_instanceof_cause()
                    raise (cause if isinstance(cause, FactoryError) else
                           TeacherError(f"teacher '{self.name}' on ray: {str(e).splitlines()[0][:300]}")) from None
                except (RayActorError, RayError) as e:  # the replica (or its node) died: try elsewhere
                    if i not in dead:
                        dead.add(i)
                        self.alive -= 1
                        self._show()
                    if tries < SHARD_RETRIES:
                        retry.append((no, shard, tries + 1))
                    else:
                        yield from _errors(self, shard, f"replica_lost: {type(e).__name__}")
                    continue
                if no in done:  # a second answer to a shard (cannot happen with max_task_retries=0; be safe)
                    continue
                done.add(no)
                yield from answers

    def close(self) -> None:
        if self.replicas:
            ray = _ray()
            for replica in self.replicas:
                try:
                    ray.kill(replica)
                except Exception:  # already dead, or the cluster is gone
                    pass
        self.replicas = []
        self.alive = 0


def _errors(teacher: RayTeacher, shard: list[Request], reason: str) -> Iterator[Response]:
    for r in shard:
        yield Response(request_id=r.request_id, teacher=teacher.name, model=teacher.model, error=reason)


def _vllm_gpus(tcfg) -> float:
    """GPUs of one vllm engine: tensor_parallel_size x pipeline_parallel_size of its engine_args."""
    args = getattr(tcfg, "engine_args", {}) or {}
    if str(args.get("device", "")).lower() == "cpu":
        return 0.0
    return float(int(args.get("tensor_parallel_size", 1)) * int(args.get("pipeline_parallel_size", 1)))


# -- checks as tasks -----------------------------------------------------------------------------


def map_batches(fn: Callable[..., list], items: Iterable, batch_size: int, *args,
                in_flight: int | None = None, **kwargs) -> Iterator:
    """Yield the elements of fn(batch, *args, **kwargs) for batches of `items`, each batch a Ray task
    (one CPU, retried when its worker dies); results come back as tasks finish, in any order, with at
    most `in_flight` batches out (default: twice the cluster's CPUs), so a huge stream stays flat."""
    ray = connect()
    task = ray.remote(fn).options(num_cpus=1, max_retries=TASK_RETRIES)
    limit = in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    flying = []
    batch: list = []

    def drain(until: int) -> Iterator:
        nonlocal flying
        while len(flying) > until:
            ready, flying = ray.wait(flying, num_returns=1)
            yield from ray.get(ready[0])

    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            flying.append(task.remote(batch, *args, **kwargs))
            batch = []
            yield from drain(limit - 1)
    if batch:
        flying.append(task.remote(batch, *args, **kwargs))
    yield from drain(0)


def _math_batch(batch: list, timeout_s: float) -> list:
    from factory.checks.verify import check_math

    return list(check_math(batch, timeout_s=timeout_s, workers=1))


def _code_batch(batch: list, wall_s: float, allow_weak: bool, max_cases: int | None = None) -> list:
    from factory.checks.verify import check_code

    return list(check_code(batch, wall_s=wall_s, workers=1, allow_weak=allow_weak, max_cases=max_cases))


def _minhash_batch(batch: list, num_perm: int, ngram: int) -> list:
    from factory.checks.minhash import minhash_signatures

    return [(i, sig) for i, sig in zip((i for i, _ in batch), minhash_signatures(
        [t for _, t in batch], num_perm=num_perm, ngram=ngram, workers=1))]


def check_math(items: Iterable[tuple[Hashable, str, str]], timeout_s: float, batch_size: int = 256
               ) -> Iterator[tuple[Hashable, bool, str, str]]:
    """checks.verify.check_math with each batch a Ray task (one math-verify worker per task)."""
    return map_batches(_math_batch, items, batch_size, timeout_s)


def check_code(items: Iterable[tuple], wall_s: float, allow_weak: bool = False, batch_size: int = 32,
               max_cases: int | None = None) -> Iterator[tuple[Hashable, bool, str, str]]:
    """checks.verify.check_code with each batch a Ray task (the sandbox runs on the task's node)."""
    return map_batches(_code_batch, items, batch_size, wall_s, allow_weak, max_cases)


def minhash_signatures(texts: list[str], num_perm: int, ngram: int, batch_size: int = 2048):
    """checks.minhash.minhash_signatures (rows in the order of `texts`) with batches as Ray tasks."""
    import numpy as np

    out = np.zeros((len(texts), num_perm), dtype=np.uint32)
    for i, sig in map_batches(_minhash_batch, enumerate(texts), batch_size, num_perm, ngram):
        out[i] = sig
    return out
