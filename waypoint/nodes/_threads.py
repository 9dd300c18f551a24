"""Where sync user code runs: a pool of daemon threads that never holds the process.

    result = await in_thread(fn, *args)     # instead of asyncio.to_thread(fn, *args)

`asyncio.to_thread` uses the loop's default executor, whose threads are joined
when `asyncio.run` shuts down and again at interpreter exit. A sync node that
blocks forever then keeps `run_sync(...)` or `waypoint run` from ever returning,
even after its timeout failed the run. These threads are daemons and nobody
joins them: a timed-out call is abandoned (a thread cannot be stopped), and the
process exits when its main work does, with that thread still blocked.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

IDLE_SECONDS = 60.0  # an idle worker exits after this long, so a burst leaves no crowd behind

_work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_lock = threading.Lock()
_idle = 0  # workers waiting on _work; a call that finds none starts one


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await `fn(*args, **kwargs)` run in a daemon worker thread, with the caller's contextvars.

    Cancelling the await (a node's timeout) abandons the call: its thread runs on
    until `fn` returns, and its result is dropped.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)

    def job() -> None:
        try:
            outcome: tuple[bool, Any] = (True, call())
        except BaseException as exc:
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, outcome)
        except RuntimeError:
            pass  # the loop closed while fn ran (it timed out and the run ended): nobody waits

    _submit(job)
    return await future


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled by a timeout meanwhile
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _submit(job: Callable[[], None]) -> None:
    global _idle
    with _lock:
        start = _idle == 0
        if not start:
            _idle -= 1  # that worker is as good as taken: the next call must not count on it
    _work.put(job)
    if start:
        threading.Thread(target=_worker, name="waypoint-sync", daemon=True).start()


def _worker() -> None:
    global _idle
    while True:
        try:
            job = _work.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with _lock:
                if _idle > 0 and _work.empty():
                    _idle -= 1
                    return
            continue
        job()
        with _lock:
            _idle += 1
