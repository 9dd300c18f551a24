"""A conversation thread's runs: which run is the thread's current one, durably.

    revision_id("support-42", 0)              # 'support-42': the thread's first run
    revision_id("support-42", 2)              # 'support-42~2': its run after two rewinds
    info, k = await latest(store, "support-42")    # the current run's row and its number

A thread is a chain of runs. Its first run is named by the thread id; each
rewind forks the current run into the next revision, `<thread>~<k>`, whose
`forked_from` names the revision before it. The current run is the
highest-numbered revision that exists. Nothing else is stored: the names are
the record, so a thread survives any process, and two rewinds racing for one
revision cannot both win, since `create_run` refuses an id that exists. A
thread id ending in `~<digits>` is refused, so no revision of one thread can
be taken for another thread.
"""

from __future__ import annotations

import re

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo
from waypoint.engine._ids import check_user_run_id
from waypoint.errors import RunError, RunNotFoundError, RunStateError

_REVISION = re.compile(r"~\d+$")


def check_thread_id(thread_id: object) -> str:
    """`thread_id` if it can name a thread; otherwise a RunError saying why and what to use."""
    checked = check_user_run_id(thread_id)
    if _REVISION.search(checked):
        raise RunError(
            f"thread_id={checked!r}: an id ending in '~<number>' names a rewound revision of a "
            f"thread (thread 'x' goes on as 'x~1', 'x~2'... after rewinds), so it cannot name a "
            f"thread itself. Choose another id, e.g. {_REVISION.sub('', checked) + '-2'!r}.",
            run_id=checked)
    return checked


def revision_id(thread_id: str, k: int) -> str:
    """The id of the thread's run after `k` rewinds."""
    return thread_id if k == 0 else f"{thread_id}~{k}"


async def latest(store: Store, thread_id: str, known: int = 0) -> tuple[RunInfo, int] | None:
    """The thread's current run and its revision number, or None when the thread has no run.

    Revisions are made one after the other, so they are numbered without gaps: from
    `known` (a revision that exists), probe 1, 2, 4... ahead, then halve the gap. A
    thread never rewound costs two reads.
    """
    found = await _get(store, revision_id(thread_id, known))
    if found is None:
        if known == 0:
            return None
        return await latest(store, thread_id, 0)
    low, step, high = known, 1, None
    while high is None:
        ahead = await _get(store, revision_id(thread_id, low + step))
        if ahead is None:
            high = low + step
        else:
            low, found, step = low + step, ahead, step * 2
    while high - low > 1:
        middle = (low + high) // 2
        probe = await _get(store, revision_id(thread_id, middle))
        if probe is None:
            high = middle
        else:
            low, found = middle, probe
    check_revision(thread_id, found, low)
    return found, low


def check_revision(thread_id: str, info: RunInfo, k: int) -> None:
    """A revision must be a fork of the one before it: a run that only has the name is refused."""
    if k == 0 or (info.forked_from or "").startswith(revision_id(thread_id, k - 1) + "@"):
        return
    raise RunStateError(
        f"thread {thread_id!r}: run {info.run_id!r} has the name of its revision {k} but was not "
        f"forked from {revision_id(thread_id, k - 1)!r} (forked_from={info.forked_from!r}), so it is "
        "not a rewind of this thread. A thread's runs are named 'x', 'x~1', 'x~2'...: use a thread "
        "id no other run's name starts with.", run_id=info.run_id)


async def _get(store: Store, run_id: str) -> RunInfo | None:
    try:
        return await store.get_run(run_id)
    except RunNotFoundError:
        return None
