"""api/threads.py: `WorkerThreads`, the API's hop from the event loop to blocking code — results and
exceptions come back to the awaiting coroutine, threads are daemons started on demand up to the limit
and reused, calls beyond the limit wait (the backlog) and still run, close() lets idle threads exit, a
cancelled caller leaves its call to finish quietly, and several event loops can share one instance.

Plain asyncio (`asyncio.run` inside sync tests). Blocking fns wait on threading Events/Barriers with
timeouts and every test releases them, so a failure never leaves a thread stuck."""
from __future__ import annotations

from functools import partial
import asyncio
import itertools
import threading
import time
import traceback

import pytest

from lambdalet.api.threads import WorkerThreads

from polling import wait_for

TIMEOUT_S = 2.0
_ids = itertools.count(1)


@pytest.fixture
def make_workers():
    """WorkerThreads with a name unique to the test (threads are counted by name); closed afterwards."""
    made: list[WorkerThreads] = []

    def make(limit: int) -> WorkerThreads:
        workers = WorkerThreads(limit, f"test-wt{next(_ids)}")
        made.append(workers)
        return workers

    yield make
    for workers in made:
        workers.close()


def threads_of(workers: WorkerThreads) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(workers.name + "-")]


wait_until = partial(wait_for, timeout=TIMEOUT_S, interval=0.002)


async def until(cond, timeout: float = TIMEOUT_S) -> None:
    """wait_until without blocking the loop (worker results are handed back through it)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


def quiescent(workers: WorkerThreads) -> bool:
    """Every started thread is back to waiting for work and nothing is owed to a queued call."""
    return workers._idle == workers._threads and workers._backlog == 0


class Gate:
    """A blocking fn's body: counts who is inside (and the most at once), waits for release()."""

    def __init__(self):
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.inside = self.peak = self.entered = 0
        self.names: set[str] = set()

    def __call__(self, value=None):
        with self.lock:
            self.inside += 1
            self.entered += 1
            self.peak = max(self.peak, self.inside)
            self.names.add(threading.current_thread().name)
        try:
            assert self.released.wait(TIMEOUT_S), "gate never released"
            return value
        finally:
            with self.lock:
                self.inside -= 1

    def release(self):
        self.released.set()


# ---- results and exceptions ----------------------------------------------------------------------

def test_result_comes_back_to_the_caller(make_workers):
    workers = make_workers(2)

    async def go():
        loop_thread = threading.current_thread()
        return await workers.run(lambda: (threading.current_thread() is loop_thread, {"k": [1, 2]}))

    on_loop_thread, value = asyncio.run(go())
    assert on_loop_thread is False
    assert value == {"k": [1, 2]}


class PayloadError(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def test_exception_keeps_type_message_and_traceback(make_workers):
    workers = make_workers(2)

    def failing_operation():
        raise PayloadError("bad parameter 'x'", code=400)

    async def go():
        with pytest.raises(PayloadError) as info:
            await workers.run(failing_operation)
        return info.value

    exc = asyncio.run(go())
    assert str(exc) == "bad parameter 'x'" and exc.code == 400
    frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert frames[-1] == "failing_operation"     # the worker's frames are still there, raise site last
    assert "go" in frames                        # ...after the awaiting coroutine's own


def test_worker_survives_an_exception(make_workers):
    workers = make_workers(1)

    async def go():
        with pytest.raises(ZeroDivisionError):
            await workers.run(lambda: 1 / 0)
        return await workers.run(lambda: "still here")

    assert asyncio.run(go()) == "still here"
    assert len(threads_of(workers)) == 1


def test_stop_iteration_from_fn_reaches_the_caller(make_workers):
    workers = make_workers(1)
    loop_errors = []

    async def go():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        try:
            await asyncio.wait_for(workers.run(lambda: next(iter(()))), 0.5)
        except asyncio.TimeoutError:
            return "hung"
        except RuntimeError as exc:     # asyncio futures cannot hold a StopIteration: wrapped
            return type(exc.__cause__).__name__

    assert asyncio.run(go()) == "StopIteration", loop_errors


# ---- limit, backlog, reuse -----------------------------------------------------------------------

def test_calls_beyond_the_limit_wait_then_run(make_workers):
    """50 calls, limit 8, every thread blocked: 8 threads, 42 calls owed (the backlog), and after the
    release all 50 complete, never more than 8 at once."""
    workers = make_workers(8)
    gate = Gate()

    async def go():
        tasks = [asyncio.ensure_future(workers.run(lambda i=i: gate(i))) for i in range(50)]
        try:
            await until(lambda: gate.entered == 8)
            await asyncio.sleep(0.01)                    # room for a 9th to start, were it allowed
            assert gate.entered == 8
            assert len(threads_of(workers)) == 8 and workers._threads == 8
            assert workers._backlog == 42 and workers._idle == 0
        finally:
            gate.release()
        return await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT_S)

    assert asyncio.run(go()) == list(range(50))
    assert gate.peak == 8 and len(gate.names) == 8
    assert len(threads_of(workers)) == 8
    wait_until(lambda: quiescent(workers))
    assert workers._idle == 8


def test_all_threads_run_at_once_and_the_backlog_drains(make_workers):
    """A Barrier(8) only trips when 8 fns are inside together: 48 calls at limit 8 pass it 6 times, so
    the threads really run in parallel and each freed thread takes the next queued call."""
    workers = make_workers(8)
    barrier = threading.Barrier(8, timeout=TIMEOUT_S)

    async def go():
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(workers.run(lambda: barrier.wait() >= 0) for _ in range(48))), TIMEOUT_S)
        finally:
            barrier.abort()           # on failure: free whoever still waits (no-op once all passed)

    assert asyncio.run(go()) == [True] * 48
    assert len(threads_of(workers)) == 8


def test_threads_are_reused_across_batches(make_workers):
    """Batches bigger than the limit, one after another: the same 4 threads serve them all."""
    workers = make_workers(4)
    names: set[str] = set()
    barrier = threading.Barrier(4, timeout=TIMEOUT_S)

    def fn():
        barrier.wait()
        return threading.current_thread().name

    async def go():
        try:
            for _ in range(5):
                names.update(await asyncio.wait_for(asyncio.gather(*(workers.run(fn) for _ in range(20))),
                                                    TIMEOUT_S))
                await until(lambda: quiescent(workers))
                assert workers._threads == 4 and workers._idle == 4
        finally:
            barrier.abort()

    asyncio.run(go())
    assert len(names) == 4
    assert len(threads_of(workers)) == 4


def test_an_idle_thread_is_reused(make_workers):
    workers = make_workers(8)

    async def go():
        names = set()
        for _ in range(20):
            names.add(await workers.run(lambda: threading.current_thread().name))
            await until(lambda: workers._idle == 1)    # the worker is back waiting
        return names

    assert asyncio.run(go()) == {workers.name + "-1"}
    assert len(threads_of(workers)) == 1


class _SlowWorkerLock:
    """The pool's lock, entered a little late by worker threads: widens the window between a worker
    posting its result and counting itself idle (a GIL switch does the same, less reliably)."""

    def __init__(self, loop_thread: threading.Thread):
        self._lock = threading.Lock()
        self._loop_thread = loop_thread

    def __enter__(self):
        if threading.current_thread() is not self._loop_thread:
            time.sleep(0.02)
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)


def test_back_to_back_calls_reuse_the_thread(make_workers):
    workers = make_workers(8)

    async def go():
        workers._lock = _SlowWorkerLock(threading.current_thread())
        return {await workers.run(lambda: threading.current_thread().name) for _ in range(5)}

    assert asyncio.run(go()) == {workers.name + "-1"}


def test_threads_are_daemons(make_workers):
    workers = make_workers(2)
    gate = Gate()

    async def go():
        task = asyncio.ensure_future(asyncio.gather(workers.run(gate), workers.run(gate)))
        try:
            await until(lambda: gate.entered == 2)
            return [(t.name, t.daemon) for t in threads_of(workers)]
        finally:
            gate.release()
            await task

    assert sorted(asyncio.run(go())) == [(workers.name + "-1", True), (workers.name + "-2", True)]


# ---- close ---------------------------------------------------------------------------------------

def test_close_lets_idle_threads_exit(make_workers):
    workers = make_workers(3)
    barrier = threading.Barrier(3, timeout=TIMEOUT_S)

    async def go():
        try:
            await asyncio.gather(*(workers.run(barrier.wait) for _ in range(3)))
        finally:
            barrier.abort()

    asyncio.run(go())
    assert len(threads_of(workers)) == 3
    workers.close()
    wait_until(lambda: not threads_of(workers))
    assert workers._threads == 0


def test_close_lets_a_busy_thread_finish_its_call_first(make_workers):
    workers = make_workers(2)
    gate = Gate()

    async def go():
        task = asyncio.ensure_future(workers.run(lambda: gate("finished")))
        try:
            await until(lambda: gate.entered == 1)
            workers.close()
            await asyncio.sleep(0.01)
            assert len(threads_of(workers)) == 1 and not task.done()
        finally:
            gate.release()
        return await asyncio.wait_for(task, TIMEOUT_S)

    assert asyncio.run(go()) == "finished"
    wait_until(lambda: not threads_of(workers))


def test_run_after_close_does_not_hang(make_workers):
    workers = make_workers(2)

    async def go():
        await workers.run(lambda: None)
        workers.close()
        await until(lambda: not threads_of(workers))
        try:
            return await asyncio.wait_for(workers.run(lambda: "ran"), 0.5)
        except asyncio.TimeoutError:
            return "hung"
        except RuntimeError as exc:       # refused clearly
            return str(exc)

    assert asyncio.run(go()) == "the worker threads are closed"


# ---- cancellation --------------------------------------------------------------------------------

@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_cancelled_caller_leaves_the_call_to_finish(make_workers, outcome):
    workers = make_workers(1)
    gate = Gate()
    finished = threading.Event()
    loop_errors = []

    def fn():
        try:
            gate()
            if outcome == "raises":
                raise RuntimeError("after the caller left")
            return "unclaimed"
        finally:
            finished.set()

    async def go():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        task = asyncio.ensure_future(workers.run(fn))
        try:
            await until(lambda: gate.entered == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not finished.is_set()          # cancelling the caller does not stop the call
        finally:
            gate.release()
        assert finished.wait(TIMEOUT_S)
        await until(lambda: quiescent(workers))
        # the later call goes through the loop after the dropped result: _settle has run by then
        return await asyncio.wait_for(workers.run(lambda: threading.current_thread().name), TIMEOUT_S)

    assert asyncio.run(go()) == workers.name + "-1"
    assert loop_errors == []
    assert len(threads_of(workers)) == 1


# ---- several event loops -------------------------------------------------------------------------

def test_two_event_loops_in_two_threads_share_the_workers(make_workers):
    """One worker thread serving two loops in turn: each result lands in the loop that asked."""
    workers = make_workers(1)
    start = threading.Barrier(2, timeout=TIMEOUT_S)
    results: dict[str, object] = {}

    def client(tag: str):
        async def go():
            loop = asyncio.get_running_loop()

            async def one(i):
                value = await workers.run(lambda: (tag, i))
                return value, asyncio.get_running_loop() is loop

            start.wait()
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(30))), TIMEOUT_S)

        try:
            results[tag] = asyncio.run(go())
        except BaseException as exc:      # reported by the assertion below
            results[tag] = exc

    threads = [threading.Thread(target=client, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S + 1)
    for tag in ("a", "b"):
        assert results[tag] == [((tag, i), True) for i in range(30)]
    assert len(threads_of(workers)) == 1
