"""GET /api/runs/{run_id}/events: a run's steps as Server-Sent Events, resumable exactly.

    const source = new EventSource("/api/runs/" + encodeURIComponent(runId) + "/events");
    source.addEventListener("step", e => { const step = JSON.parse(e.data); ... });  // e.lastEventId = seq
    source.addEventListener("run", e => { const run = JSON.parse(e.data); ... });    // status changed
    source.addEventListener("end", e => { source.close(); show(JSON.parse(e.data).status); });  // "failed"...

Each step of the run's log is one `event: step` whose `id:` is its seq. A client that
reconnects sends `Last-Event-ID` (browsers do it by themselves; `?after=N` works too)
and gets every step after it read from the store, then the live ones: a run is a
numbered log, so nothing is missed or repeated. `event: run` (no id, so it never moves
the resumption point) carries the run's row whenever its status or waiting gates change.
`event: end` (`{"run_id", "status"}`) follows the last step of a run that will not move
unless someone acts on it (`ENDED`: done, failed, cancelled, interrupted), and the stream
closes: a client needs no list of statuses to know when to stop. A run *waiting* at gates
keeps its stream open, since a client watching it wants to see the answer and what
follows; a failed or interrupted run resumed later is followed by reconnecting with the
last step's id (`Last-Event-ID`), which gives everything after it. A comment line
(`: keep-alive`) goes out when nothing happened for `keepalive` seconds, so proxies keep
the connection open. At most `max_streams` streams are open at once (503 beyond).

Live steps are noticed at once for runs this server executes (`Changes.notify`, called
from their events) and by polling the store every `poll` seconds (1) for runs another
process executes (a worker, the CLI), on SQLite and PostgreSQL alike: such a run's steps
reach its streams up to a second late, and each open stream costs one `get_run` a second
(50 streams: 50 reads a second; a SQLite get_run measured 0.1 ms). PostgreSQL's
NOTIFY is not used for this on purpose: a NOTIFY per step would serialise every
commit of every run on the database's notification queue, and one per run end or wait
would need a trigger on run status (a schema migration) plus a LISTEN connection per
server to save at most a second on runs a worker executes, while the steps in between
would still be polled. `checkpoints/signals.py` wakes workers for queued runs; it tells
nothing about a run's progress. A client that goes away stops its generator
(Starlette cancels it on http.disconnect): no task, no store read left behind;
`Changes.streams` counts the open streams.

`GET /api/gates/events` streams the inbox's changes the same way (`inbox_stream`): a gate
that starts waiting (`event: waiting`), one that stops (`event: gone`: answered, expired,
cancelled), and after each batch `event: inbox` with the count and a version the inbox
page compares with the one it drew (`static/inbox.js` then redraws its list).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from waypoint.errors import WaypointError
from waypoint.web.context import WebContext, web
from waypoint.web.schemas import run_json, step_json

BATCH = 500  # steps read from the store at a time
ENDED = frozenset({"done", "failed", "cancelled", "interrupted"})  # the stream ends (not on "waiting")


def routes() -> list[BaseRoute]:
    return [Route("/api/runs/{run_id:path}/events", run_events, methods=["GET"]),
            Route("/api/gates/events", gate_events, methods=["GET"])]


class Changes:
    """Wakes the event streams of a run when it changes (within this process).

        changed = changes.listen(run_id)     # before reading the store, so nothing slips between
        ... read ...
        await changes.wait(changed, timeout)  # True when notified, False on timeout
        changes.notify(run_id)                # a step or status change of run_id was written
        changes.notify(run_id, inbox=True)    # ... one that may start or stop a wait (wakes the inbox)
        changed = changes.listen_inbox()      # the inbox's streams wait on this one
    """

    def __init__(self, *, keepalive: float = 15.0, poll: float = 1.0, max_streams: int = 1000) -> None:
        self.keepalive, self.poll, self.max_streams = keepalive, poll, max_streams
        self.streams = 0  # open event streams
        self._events: weakref.WeakValueDictionary[str, asyncio.Event] = weakref.WeakValueDictionary()
        self._inbox = asyncio.Event()
        self._read: tuple[asyncio.Event, float, Any] | None = None  # the inbox as last read, shared
        self._reading = asyncio.Lock()

    def listen(self, run_id: str) -> asyncio.Event:
        event = self._events.get(run_id)
        if event is None:
            event = self._events[run_id] = asyncio.Event()
        return event

    def listen_inbox(self) -> asyncio.Event:
        return self._inbox

    async def pending(self, ctx: WebContext) -> Any:
        """`views.pending(ctx)`, read at most once per `poll / 2` seconds for all the inbox's
        streams together, unless a change was notified since (then at once, once): with 50
        inboxes open, one `list_runs` a second instead of 50."""
        from waypoint.web.views import pending

        async with self._reading:
            clock, read = asyncio.get_running_loop().time(), self._read
            if read is not None and read[0] is self._inbox and clock - read[1] < self.poll / 2:
                return read[2]
            marker = self._inbox  # a change notified while reading makes the next call read again
            now = await pending(ctx)
            self._read = (marker, clock, now)
            return now

    def notify(self, run_id: str, *, inbox: bool = False) -> None:
        event = self._events.pop(run_id, None)
        if event is not None:
            event.set()
        if inbox:
            self._inbox.set()
            self._inbox = asyncio.Event()

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def run_events(request: Request) -> Response:
    ctx = web(request)
    run_id = request.path_params["run_id"]
    after = _resume_point(request)
    try:
        info = await ctx.store.get_run(run_id)
    except WaypointError as exc:
        from waypoint.web.api import refusal

        return refusal(exc)
    if isinstance(after, str):
        return _refuse(400, after)
    if ctx.changes.streams >= ctx.changes.max_streams:
        return _refuse(503, f"this server already streams {ctx.changes.streams} runs' events (its limit); "
                            "retry later, or read /api/runs/{run_id}/steps?after=N instead.")
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(ctx, info, after), media_type="text/event-stream", headers=headers)


def _refuse(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message, "status": status}), status, media_type="application/json")


def _resume_point(request: Request) -> int | str:
    """The seq to stream after: Last-Event-ID, else ?after=, else 0; a message when invalid."""
    text = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not text.isdigit() or len(text) > 18:
        return (f"Last-Event-ID or ?after= must be a step seq (a whole number >= 0), not {text[:40]!r}; "
                "reconnect with the id of the last event received.")
    return int(text)


async def stream(ctx: WebContext, info: Any, after: int) -> AsyncIterator[str]:
    """The SSE text of run `info` after step `after`: stored steps, then live ones."""
    changes: Changes = ctx.changes
    clock = asyncio.get_running_loop().time
    changes.streams += 1
    shown: tuple[str, list[str]] | None = None
    try:
        yield "retry: 2000\n\n"
        sent = clock()
        while True:
            changed = changes.listen(info.run_id)  # before reading: a change meanwhile wakes us
            info = await ctx.store.get_run(info.run_id)
            while after < info.last_seq:
                steps = await ctx.store.history(info.run_id, after=after, upto=after + BATCH)
                if not steps:
                    break
                for step in steps:
                    yield _event("step", step_json(step), step.seq)
                after, sent = steps[-1].seq, clock()
            if (info.status, list(info.waiting)) != shown:
                shown = (info.status, list(info.waiting))
                yield _event("run", run_json(info))
                sent = clock()
            if info.status in ENDED and after >= info.last_seq:
                yield _event("end", {"run_id": info.run_id, "status": info.status})
                return
            if clock() - sent >= changes.keepalive:
                yield ": keep-alive\n\n"
                sent = clock()
            await changes.wait(changed, min(changes.poll, changes.keepalive - (clock() - sent)))
    finally:
        changes.streams -= 1


def _event(kind: str, data: dict[str, Any], seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


# -- the inbox -------------------------------------------------------------------------
async def gate_events(request: Request) -> Response:
    """GET /api/gates/events: the inbox's changes as Server-Sent Events (`inbox_stream`)."""
    ctx = web(request)
    if ctx.changes.streams >= ctx.changes.max_streams:
        return _refuse(503, f"this server already has {ctx.changes.streams} event streams open (its limit); "
                            "retry later, or read /api/gates instead.")
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(inbox_stream(ctx), media_type="text/event-stream", headers=headers)


async def inbox_stream(ctx: WebContext) -> AsyncIterator[str]:
    """The SSE text of the inbox's changes.

    First `event: inbox` `{"total", "version"}` (the pending gates now); then, whenever a gate
    starts waiting, `event: waiting` `{"run_id", "gate", "asked_at", "url"}`, when one stops
    (answered, expired, cancelled), `event: gone` `{"run_id", "gate"}`, each batch followed
    by a new `inbox` event. The events carry no `id:`: the inbox is a set, not a log, so a
    client that reconnects compares the first `inbox` event's `version` with the one it
    drew (the inbox page's `data-version`) and reloads its list when they differ.
    Changes are noticed at once for runs this server executes (`notify(..., inbox=True)`
    on a run's start, resume and stop) and by reading the waiting runs every `poll`
    seconds for runs executed elsewhere (`Changes.pending`: one `list_runs` shared by all
    open inbox streams, a run's log read again only when it changed), so such a gate
    shows within 1.5 poll periods.
    """
    changes: Changes = ctx.changes
    clock = asyncio.get_running_loop().time
    changes.streams += 1
    shown: dict[tuple[str, str], float] | None = None
    try:
        yield "retry: 2000\n\n"
        sent = clock()
        while True:
            changed = changes.listen_inbox()  # before reading: a change meanwhile wakes us
            now = await changes.pending(ctx)
            current = {(run_id, gate): at for at, run_id, gate in now.keys}
            if current != shown:
                if shown is not None:  # the first `inbox` event stands for what is pending now
                    for text in _differences(shown, current, now.keys):
                        yield text
                yield _event("inbox", {"total": len(now.keys), "version": now.version})
                shown, sent = current, clock()
            if clock() - sent >= changes.keepalive:
                yield ": keep-alive\n\n"
                sent = clock()
            await changes.wait(changed, min(changes.poll, changes.keepalive - (clock() - sent)))
    finally:
        changes.streams -= 1


def _differences(shown: dict[tuple[str, str], float], current: dict[tuple[str, str], float],
                 keys: list[tuple[float, str, str]]) -> list[str]:
    """`gone` for each gate that stopped waiting (or was asked anew), then `waiting` for each new one."""
    from waypoint.web.views import gate_url

    out = [_event("gone", {"run_id": run_id, "gate": gate})
           for (run_id, gate), at in shown.items() if current.get((run_id, gate)) != at]
    out += [_event("waiting", {"run_id": run_id, "gate": gate, "asked_at": at, "url": gate_url(run_id, gate)})
            for at, run_id, gate in keys if shown.get((run_id, gate)) != at]
    return out
