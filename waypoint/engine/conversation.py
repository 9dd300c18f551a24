"""Conversations: a durable chat thread over a graph that waits at a gate for each user message.

    chat = Conversation(graph, "support-42", store=SQLiteStore("chat.db"))
    reply = await chat.send("Where should I go in May?")   # starts the thread, or goes on with it
    for turn in await chat.history():                       # Turn: number, message, reply, seq, by, at
        print(turn.number, turn.message, turn.reply)
    await chat.rewind(2)          # the thread goes on from before turn 2 (turns 2... are dropped)
    reply = await chat.retry()    # finish a turn that failed or was cut short

The thread is a run (its id is the thread id) that waits at the graph's gate
between turns; a message is that gate's answer, given with the compare-and-set
`resume(..., seen_seq=)`, so of two messages sent at once to one thread exactly
one is taken and the other is refused with a `StaleAnswerError`, nothing written.
After a rewind the thread goes on as a fork of its run, named `<thread>~1`,
`<thread>~2`... (`engine/_revisions.py`). docs/conversations.md has the rest.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, Step
from waypoint.engine._chat_shape import ChatShape
from waypoint.engine._resumable import check_not_held
from waypoint.engine._revisions import check_thread_id, latest, revision_id
from waypoint.engine.handles import RunHandle, RunResult, cancel
from waypoint.engine.runs import resume, start
from waypoint.engine.views import _fork_point, fork, state_at
from waypoint.errors import LeaseError, RunError, RunNotFoundError, RunStateError, StaleAnswerError
from waypoint.graphs.graph import Graph

S = TypeVar("S")  # the graph's state model

__all__ = ["Conversation", "Turn"]


@dataclass(frozen=True)
class Turn:
    """One user message and the reply to it, as the thread's log recorded them."""

    number: int  # 1, 2, 3...: what rewind(number) takes
    message: Any  # the answer's message field (a str)
    reply: Any  # the reply as the state held it when the thread was ready again; None until then
    seq: int  # the step that took the message; rewind(number) forks right before it
    replied_seq: int | None  # the step where the thread was ready for the next one (or ended)
    by: str | None  # who sent it: send(..., by=)
    at: float  # when it was taken (Unix time)
    run_id: str  # the run whose log holds the message (an earlier revision's, after rewinds)
    answer: dict[str, Any]  # the whole answer as recorded


class Conversation(Generic[S]):
    """A chat thread over `graph`, kept in `store` under `thread_id`.

    The graph waits at a gate (`gate=`, or its only gate) for each message: a str
    field of the gate's answer (`message_field=`, or its only str field). Its reply is
    the state field `reply` (or `reply(state)`) when it waits at the gate again. The
    gate must be on a loop: the graph leads back to it through a loop guard.
    `input` is the thread's first state; `deps` reach the nodes at every turn.
    """

    def __init__(self, graph: Graph[S], thread_id: str, *, store: Store, gate: str | None = None,
                 message_field: str | None = None, reply: str | Callable[[S], Any] = "reply",
                 input: Any = None, deps: Any = None, graph_ref: str | None = None) -> None:
        self.graph = graph
        self.thread_id = check_thread_id(thread_id)
        self.store = store
        self.shape = ChatShape.of(graph, gate=gate, message_field=message_field, reply=reply)
        self.input, self.deps, self.graph_ref = input, deps, graph_ref
        self._known = 0  # a revision known to exist: the search for the current one starts there

    async def send(self, message: str | Mapping[str, Any] | BaseModel, *, by: str | None = None) -> Any:
        """Send the next user message and return the reply (`by` is logged with the message).

        Refused, with nothing written: a message that does not fit the gate's answer
        (`GateError`); one sent while another is being answered, or after the thread
        moved on since it was read (`StaleAnswerError`); one to a thread that ended,
        was cancelled, or whose last turn did not finish (`RunStateError`: `retry()`).
        A send that is cancelled interrupts its turn; `retry()` finishes it.
        """
        answer = self.shape.gate.validate(self._answer(message), run_id=self.thread_id)
        found = await self._current()
        info = found[0] if found is not None else await self._begin()
        self._check_ready(info)
        try:
            handle = await resume(self.graph, info.run_id, answer, gate=self.shape.gate.name, by=by,
                                  store=self.store, deps=self.deps, seen_seq=info.last_seq)
        except LeaseError as exc:  # a StaleAnswerError too: another message got there first
            raise await self._busy(info, "your message was not sent", exc) from None
        except RunStateError:  # cancelled since it was read: by a rewind, if the thread went on
            rewound = await self._rewound(info)
            if rewound is None:
                raise
            raise rewound from None
        return self.shape.reply_of((await self._outcome(handle)).state)

    async def retry(self) -> Any:
        """Finish the last turn when it failed or was cut short (a crash, Ctrl-C); its reply."""
        info = await self._require()
        if info.status == "waiting" and self.shape.gate.name in info.waiting:
            raise RunStateError(f"thread {self.thread_id!r}: nothing to retry, its last turn finished "
                                "and it waits for the next message; send() it.", run_id=info.run_id)
        self._check_open(info)
        try:
            handle = await resume(self.graph, info.run_id, store=self.store, deps=self.deps)
        except LeaseError as exc:
            raise await self._busy(info, "not retried", exc) from None
        return self.shape.reply_of((await self._outcome(handle)).state)

    async def history(self, *, last: int | None = None) -> list[Turn]:
        """The thread's turns, oldest first, through its rewinds: only those it still holds
        (with `last`, only the last ones: each reply costs a replay of the log up to it)."""
        found = await self._current()
        if found is None:
            return []
        info = found[0]
        taken, waits = await self._messages(info)
        turns = []
        first = 0 if last is None else max(len(taken) - last, 0)
        for number, (run, step) in enumerate(taken[first:], start=first + 1):
            after = bisect.bisect_right(waits, step.seq)
            end = waits[after] if after < len(waits) else info.last_seq if info.status == "done" else None
            turns.append(await self._turn(number, run, step, end, info.run_id))
        return turns

    async def rewind(self, turn: int, *, by: str | None = None) -> str:
        """Go back to before turn `turn` (1 for the start): the thread goes on from there, without
        that turn and those after it. Returns the run the thread goes on as (`<thread>~<k>`);
        the run it leaves is cancelled (unless it had ended), so no message can go to it."""
        found = await self._current()
        taken = (await self._messages(found[0]))[0] if found is not None else []
        if found is None or not 1 <= turn <= len(taken):
            held = f"turns 1 to {len(taken)}" if taken else "no turns yet"
            raise RunError(f"thread {self.thread_id!r}: there is no turn {turn} to rewind to; it has "
                           f"{held} (history() lists them; /history in waypoint chat).",
                           run_id=self.thread_id)
        info, k = found
        new = revision_id(self.thread_id, k + 1)
        if info.status not in ("done", "cancelled"):
            try:  # a compare-and-set: a message taken meanwhile makes this fail, not get lost
                await cancel(info.run_id, store=self.store, by=by,
                             reason=f"thread rewound to before turn {turn}; it goes on as run {new!r}")
            except LeaseError as exc:
                raise await self._busy(info, "not rewound", exc) from None
        try:
            handle = await fork(self.graph, info.run_id, at=taken[turn - 1][1].seq - 1, store=self.store,
                                run_id=new, deps=self.deps)
        except RunStateError:
            raise RunStateError(f"thread {self.thread_id!r}: not rewound, another rewind made {new!r} "
                                "meanwhile; read history() and rewind again if you still mean to.",
                                run_id=new) from None
        await self._outcome(handle)
        self._known = k + 1
        return new

    async def current_run(self) -> RunInfo | None:
        """The row of the run the thread goes on as now (None before its first message)."""
        found = await self._current()
        return None if found is None else found[0]

    # -- parts --------------------------------------------------------------------------
    def _answer(self, message: str | Mapping[str, Any] | BaseModel) -> Any:
        return {self.shape.message_field: message} if isinstance(message, str) else message

    async def _current(self) -> tuple[RunInfo, int] | None:
        await self.store.open()
        found = await latest(self.store, self.thread_id, self._known)
        if found is not None:
            self._known = found[1]
            if found[0].graph != self.graph.name:
                raise RunStateError(
                    f"thread {self.thread_id!r} is a run of graph {found[0].graph!r}, not of "
                    f"{self.graph.name!r}; open it with that graph, or use another thread id.",
                    run_id=found[0].run_id)
        return found

    async def _require(self) -> RunInfo:
        found = await self._current()
        if found is None:
            raise RunNotFoundError(f"thread {self.thread_id!r} has no run yet: send() its first "
                                   "message.", run_id=self.thread_id)
        return found[0]

    async def _begin(self) -> RunInfo:
        """Start the thread's run and take it to the gate; a start that lost the race to
        another sender's goes on with the run that sender made."""
        try:
            handle = await start(self.graph, self.input, store=self.store, deps=self.deps,
                                 run_id=self.thread_id, graph_ref=self.graph_ref)
        except RunStateError:
            pass  # made meanwhile: _check_ready says whether it is ready for this message
        else:
            await self._outcome(handle)
        return await self._require()

    def _check_ready(self, info: RunInfo) -> None:
        """Raise unless the run can take a message now; a run executing here or elsewhere is
        left to `resume`, whose refusal says who holds it."""
        if info.status == "waiting":
            if self.shape.gate.name not in info.waiting:
                raise RunStateError(
                    f"thread {self.thread_id!r}: run {info.run_id!r} waits at {info.waiting}, not at "
                    f"gate {self.shape.gate.name!r}; answer those with waypoint.resume(...) first.",
                    run_id=info.run_id, node=info.waiting[0] if info.waiting else None)
            return
        self._check_open(info)
        if info.status == "running":
            try:
                check_not_held(info)
            except LeaseError:
                return  # someone is answering: resume refuses it, with who
        raise RunStateError(
            f"thread {self.thread_id!r}: its last turn did not finish (run {info.run_id!r} is "
            f"{info.status}{': ' + info.error if info.error else ''}); finish it with retry() "
            "(`/retry` in waypoint chat), or drop it with rewind(n), then send again.",
            run_id=info.run_id)

    def _check_open(self, info: RunInfo) -> None:
        if info.status == "done":
            raise RunStateError(
                f"thread {self.thread_id!r} has ended: its run {info.run_id!r} finished at step "
                f"{info.last_seq}; rewind it to go on from an earlier turn (rewind(n), `/rewind N` in "
                "waypoint chat), or start a new thread.", run_id=info.run_id)
        if info.status == "cancelled":
            raise RunStateError(
                f"thread {self.thread_id!r}: its run {info.run_id!r} was {info.error or 'cancelled'}; "
                "rewind it (rewind(n)) to go on from a turn before.", run_id=info.run_id)

    async def _busy(self, seen: RunInfo, what: str, exc: LeaseError) -> StaleAnswerError:
        now = await self.store.get_run(seen.run_id)
        who = f", executed by {now.lease_owner}" if now.status == "running" and now.lease_owner else ""
        return StaleAnswerError(
            f"thread {self.thread_id!r}: {what}, because another message to this thread is being "
            f"answered, or was answered since it was read (run {seen.run_id!r} was {seen.status} at "
            f"step {seen.last_seq} and is now {now.status} at step {now.last_seq}{who}). Nothing was "
            "written; wait for that reply (history() shows it), then try again.",
            run_id=seen.run_id, node=self.shape.gate.name, seq=now.last_seq)

    async def _rewound(self, seen: RunInfo) -> StaleAnswerError | None:
        """The error for a message to `seen`, a run the thread has left since by a rewind."""
        found = await self._current()
        if found is None or found[0].run_id == seen.run_id:
            return None
        return StaleAnswerError(
            f"thread {self.thread_id!r}: your message was not sent, because the thread was rewound "
            f"since it was read: it went on from run {seen.run_id!r} to run {found[0].run_id!r}. Nothing "
            "was written; read history() and send again.",
            run_id=seen.run_id, node=self.shape.gate.name, seq=seen.last_seq)

    async def _outcome(self, handle: RunHandle[S]) -> RunResult[S]:
        try:
            result = await handle.result()
        except asyncio.CancelledError:
            await handle.interrupt()
            raise
        if result.status in ("interrupted", "cancelled"):
            raise RunStateError(f"thread {self.thread_id!r}: the turn was stopped from outside (run "
                                f"{result.run_id!r} is {result.status}); retry() finishes it.",
                                run_id=result.run_id)
        return result

    async def _messages(self, info: RunInfo) -> tuple[list[tuple[str, Step]], list[int]]:
        """The steps that took the thread's messages (each with the run holding it), and the seqs
        where the thread waited for one, through the revisions `info` was forked from."""
        chain = await _chain(self.store, info.run_id)
        gate = self.shape.gate.name
        waits = [step.seq for _, step in chain if step.kind == "wait" and step.node == gate]
        taken = [(run, step) for run, step in chain
                 if step.kind == "done" and step.node == gate and "answer" in step.extra]
        return taken, waits

    async def _turn(self, number: int, run: str, step: Step, end: int | None, current: str) -> Turn:
        reply = None
        if end is not None:
            reply = self.shape.reply_of(await state_at(self.graph, current, end, store=self.store))
        answer = dict(step.extra["answer"])
        return Turn(number, answer.get(self.shape.message_field), reply, step.seq, end,
                    step.extra.get("by"), step.extra.get("answered_at", step.at), run, answer)


async def _chain(store: Store, run_id: str) -> list[tuple[str, Step]]:
    """The run's log from step 1, each step with the run that holds it: a fork's own steps
    follow those of the run it was forked from, up to its fork point."""
    parts: list[list[tuple[str, Step]]] = []
    upto: int | None = None
    run = run_id
    while True:
        info = await store.get_run(run)
        parts.append([(run, step) for step in await store.history(run, upto=upto)])
        point = _fork_point(info)  # the source's steps count up to the fork point, or less
        if point is None:
            break
        run, upto = point[0], point[1] if upto is None else min(point[1], upto)
    return [entry for part in reversed(parts) for entry in part]
