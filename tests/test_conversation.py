"""Conversation: send, history, rewind and retry over a thread kept in a real store.

The graphs are in tests/conversation_graphs.py: a gate takes each message, the
assistant replies '#<n>: <message>' (held on an event, or failing, when the test
asks through deps), a loop guard leads back to the gate.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
import waypoint as wp
from pydantic import BaseModel
from waypoint import Conversation, RunError, RunStateError, StaleAnswerError
from waypoint.testing import ScriptedModel

from conversation_graphs import Held, UserTurn, build, graph, short

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def db(tmp_path):
    store = wp.SQLiteStore(tmp_path / "chat.db")
    yield store
    await store.close()


async def test_send_starts_the_thread_then_carries_it_on(store):
    chat = Conversation(graph, "t1", store=store)
    assert await chat.current_run() is None and await chat.history() == []
    assert await chat.send("hello", by="ana") == "#1: hello"
    assert await chat.send({"text": "again"}) == "#2: again"
    assert await chat.send(UserTurn(text="third"), by="bo") == "#3: third"
    turns = await chat.history()
    assert [(t.number, t.message, t.reply, t.by) for t in turns] == [
        (1, "hello", "#1: hello", "ana"), (2, "again", "#2: again", None), (3, "third", "#3: third", "bo")]
    steps = {s.seq: s for s in await wp.history("t1", store=store)}
    for turn in turns:  # seq: the step that took the message; replied_seq: where the gate waited again
        assert steps[turn.seq].node == "user" and steps[turn.seq].extra["answer"] == {"text": turn.message}
        assert steps[turn.replied_seq].kind == "wait" and turn.run_id == "t1"
        assert turn.at == steps[turn.seq].extra["answered_at"]
    info = await chat.current_run()
    assert (info.run_id, info.status, info.waiting) == ("t1", "waiting", ["user"])


async def test_history_can_give_only_the_last_turns(db):
    chat = Conversation(graph, "t", store=db)
    for message in ["a", "b", "c"]:
        await chat.send(message)
    assert [(t.number, t.reply) for t in await chat.history(last=2)] == [(2, "#2: b"), (3, "#3: c")]
    assert await chat.history(last=0) == []
    assert [t.number for t in await chat.history(last=9)] == [1, 2, 3]


async def test_a_message_that_does_not_fit_is_refused_before_anything_is_written(db):
    chat = Conversation(graph, "t", store=db)
    with pytest.raises(wp.GateError, match="gate 'user'"):
        await chat.send({"words": "hi"})
    assert await chat.current_run() is None  # not even started
    await chat.send("hi")
    before = (await chat.current_run()).last_seq
    with pytest.raises(wp.GateError):
        await chat.send({"text": ["not", "a", "str"]})
    assert (await chat.current_run()).last_seq == before


async def test_rewind_forks_before_a_turn_and_the_thread_goes_on_from_there(db):
    chat = Conversation(graph, "trip", store=db)
    for message in ["a", "b", "c"]:
        await chat.send(message)
    assert await chat.rewind(2, by="ana") == "trip~1"
    assert [t.message for t in await chat.history()] == ["a"]
    assert await chat.send("B") == "#2: B"  # the assistant never heard b or c
    turns = await chat.history()
    assert [(t.message, t.reply, t.run_id) for t in turns] == [
        ("a", "#1: a", "trip"), ("B", "#2: B", "trip~1")]
    left = await wp.get_run("trip", store=db)  # the run it left is cancelled, saying where it went
    assert left.status == "cancelled" and "trip~1" in left.error and "ana" in left.error
    # forked right before the fork's own first steps: B's answered step, then the gate's done step
    assert (await chat.current_run()).forked_from == f"trip@{turns[1].seq - 2}"
    # rewinding to the very start, through a revision that is itself a fork
    assert await chat.rewind(1) == "trip~2"
    assert await chat.history() == []
    assert await chat.send("fresh") == "#1: fresh"
    assert [t.message for t in await chat.history()] == ["fresh"]


async def test_a_new_conversation_object_finds_the_current_revision(db):
    chat = Conversation(graph, "t", store=db)
    await chat.send("a")
    for k in range(1, 7):  # revisions t~1 .. t~6, found by the galloping search from scratch
        assert await chat.rewind(1) == f"t~{k}"
        await chat.send(f"m{k}")
    other = Conversation(graph, "t", store=db)
    assert (await other.current_run()).run_id == "t~6"
    assert await other.send("next") == "#2: next"


async def test_a_stale_conversation_object_sends_to_the_thread_as_rewound_elsewhere(db):
    mine, theirs = Conversation(graph, "t", store=db), Conversation(graph, "t", store=db)
    await mine.send("a")
    await mine.send("b")
    await theirs.rewind(2)
    assert await mine.send("c") == "#2: c"
    assert [t.message for t in await theirs.history()] == ["a", "c"]
    with pytest.raises(RunStateError, match="cancelled"):  # the run left behind takes no answer
        await wp.resume(graph, "t", {"text": "lost"}, store=db)


async def test_rewind_to_a_turn_that_is_not_there_says_which_are(db):
    chat = Conversation(graph, "t", store=db)
    with pytest.raises(RunError, match="no turn 1 to rewind to; it has no turns yet"):
        await chat.rewind(1)
    await chat.send("a")
    for bad in (0, 2):
        with pytest.raises(RunError, match=f"no turn {bad} to rewind to; it has turns 1 to 1"):
            await chat.rewind(bad)


async def test_two_sends_at_once_in_one_process_one_is_taken_the_other_refused(db):
    held = Held()
    chat = Conversation(graph, "t", store=db, deps=held.deps)
    first = asyncio.create_task(chat.send("one"))
    await held.entered.wait()  # the first message is being answered
    before = await wp.history("t", store=db)
    with pytest.raises(StaleAnswerError, match="your message was not sent") as refused:
        await Conversation(graph, "t", store=db).send("two")
    assert "is being answered" in str(refused.value) and refused.value.node == "user"
    assert await wp.history("t", store=db) == before  # nothing written
    held.release.set()
    assert await first == "#1: one"
    assert [t.message for t in await chat.history()] == ["one"]


class Paused:
    """A view of a store whose `nth` call of `method` waits for `go`: a sender caught between
    two steps of its send, while the test lets another sender move the thread on."""

    def __init__(self, store: Any, method: str, nth: int = 1) -> None:
        self.store, self.method, self.left = store, method, nth
        self.there, self.go = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.store, name)
        if name != self.method:
            return call

        async def paused(*args: Any, **kwargs: Any) -> Any:
            self.left -= 1
            if self.left == 0:
                self.there.set()
                await self.go.wait()
            return await call(*args, **kwargs)

        return paused


@pytest.mark.parametrize(("method", "nth"), [
    ("open", 2),  # read by the Conversation, not yet by resume: only seen_seq tells
    ("claim", 1),  # read by resume too, not yet claimed: the claim's compare-and-set tells
])
async def test_a_message_read_against_a_turn_that_has_since_gone_by_is_refused(db, method, nth):
    chat = Conversation(graph, "t", store=db)
    await chat.send("a")
    paused = Paused(db, method, nth)
    late = asyncio.create_task(Conversation(graph, "t", store=paused).send("b"))
    await paused.there.wait()  # it read the thread waiting for message 2...
    assert await chat.send("c") == "#2: c"  # ...which another sender gave meanwhile
    paused.go.set()
    with pytest.raises(StaleAnswerError, match=r"was waiting at step 6 and is now waiting at step 11"):
        await late  # the thread waits again, as it did: only the step it was read at tells them apart
    assert [t.message for t in await chat.history()] == ["a", "c"]


async def test_a_message_on_its_way_when_the_thread_is_rewound_is_refused(db):
    chat = Conversation(graph, "t", store=db)
    await chat.send("a")
    paused = Paused(db, "open", 2)
    late = asyncio.create_task(Conversation(graph, "t", store=paused).send("b"))
    await paused.there.wait()  # it read run 't' waiting for message 2...
    assert await chat.rewind(1) == "t~1"  # ...which the thread has left meanwhile
    paused.go.set()
    with pytest.raises(StaleAnswerError, match="rewound since it was read: it went on from run 't' to "):
        await late
    assert await chat.history() == []  # nothing went to either run
    left = [s.extra["answer"] for s in await wp.history("t", store=db) if s.kind == "done" and "answer" in s.extra]
    assert left == [{"text": "a"}]


async def test_two_first_sends_race_to_start_a_thread_and_exactly_one_is_taken(db):
    held = Held()
    chats = [Conversation(graph, "new", store=db, deps=held.deps) for _ in range(2)]
    tasks = [asyncio.create_task(chat.send(f"m{i}")) for i, chat in enumerate(chats)]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)  # the loser, refused
    assert isinstance(next(iter(done)).exception(), StaleAnswerError)
    held.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    replies = [r for r in results if isinstance(r, str)]
    assert len(replies) == 1 and replies[0].startswith("#1: m")
    assert [t.reply for t in await chats[0].history()] == replies


async def test_a_rewind_while_a_message_is_answered_is_refused(db):
    held = Held()
    chat = Conversation(graph, "t", store=db, deps=held.deps)
    held.release.set()
    await chat.send("a")
    held.release.clear()
    in_flight = asyncio.create_task(chat.send("b"))
    await held.entered.wait()
    with pytest.raises(StaleAnswerError, match="not rewound"):
        await Conversation(graph, "t", store=db).rewind(1)
    held.release.set()
    assert await in_flight == "#2: b"
    assert (await chat.current_run()).run_id == "t"


async def test_a_failed_turn_is_finished_by_retry_not_by_the_next_message(db):
    chat = Conversation(graph, "t", store=db, deps={"fail": "boom"})
    await chat.send("fine")
    with pytest.raises(wp.NodeError, match="cannot answer 'boom'"):
        await chat.send("boom")
    assert [(t.message, t.reply) for t in await chat.history()] == [("fine", "#1: fine"), ("boom", None)]
    with pytest.raises(RunStateError, match=r"last turn did not finish .* retry\(\)"):
        await chat.send("next")
    fixed = Conversation(graph, "t", store=db)  # the cause fixed
    assert await fixed.retry() == "#2: boom"
    with pytest.raises(RunStateError, match="nothing to retry"):
        await fixed.retry()
    assert await fixed.send("next") == "#3: next"


async def test_a_failed_turn_can_be_dropped_by_a_rewind_instead(db):
    chat = Conversation(graph, "t", store=db, deps={"fail": "boom"})
    await chat.send("fine")
    with pytest.raises(wp.NodeError):
        await chat.send("boom")
    assert await chat.rewind(2) == "t~1"
    assert (await wp.get_run("t", store=db)).status == "cancelled"
    assert await chat.send("calm") == "#2: calm"
    assert [t.message for t in await chat.history()] == ["fine", "calm"]


async def test_a_cancelled_send_interrupts_its_turn_and_retry_finishes_it(db):
    held = Held()
    chat = Conversation(graph, "t", store=db, deps=held.deps)
    task = asyncio.create_task(chat.send("a"))
    await held.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await chat.current_run()).status == "interrupted"
    with pytest.raises(RunStateError, match="did not finish"):
        await chat.send("b")
    assert await Conversation(graph, "t", store=db).retry() == "#1: a"


async def test_a_thread_whose_graph_ended_refuses_messages_until_rewound(db):
    chat = Conversation(short, "t", store=db)
    assert await chat.send("a") == "#1: a"
    assert await chat.send("b") == "#2: b"  # the guard's last round: the run finishes
    assert (await chat.current_run()).status == "done"
    assert [t.reply for t in await chat.history()] == ["#1: a", "#2: b"]
    with pytest.raises(RunStateError, match=r"has ended.*rewind"):
        await chat.send("c")
    assert await chat.rewind(2) == "t~1"
    assert (await wp.get_run("t", store=db)).status == "done"  # a finished run is left as it was
    assert await chat.send("c") == "#2: c"


async def test_the_thread_lives_in_the_store_not_in_the_object(tmp_path):
    first = wp.SQLiteStore(tmp_path / "chat.db")
    await Conversation(graph, "t", store=first).send("monday")
    await first.close()
    later = wp.SQLiteStore(tmp_path / "chat.db")  # days later: a new store, a new object
    try:
        chat = Conversation(graph, "t", store=later)
        assert [t.message for t in await chat.history()] == ["monday"]
        assert await chat.send("thursday") == "#2: thursday"
    finally:
        await later.close()


class Question(BaseModel):
    text: str
    urgent: bool = False


class Chat(BaseModel):
    messages: list[dict[str, Any]] = []
    reply: str = ""


def llm_chat(model: Any) -> wp.Graph[Chat]:
    g = wp.GraphBuilder(Chat, name="llm_chat")
    g.gate("user", Question, on_answer=lambda s, q: {
        "messages": [*s.messages, {"role": "user", "content": q.text}]})
    g.add(wp.llm("assistant", history="messages", into="reply", model=model))
    g.loop_guard("turns", max_iterations=50, routes={"continue": "user", "done": wp.END})
    g.edge(wp.START, "user")
    g.edge("user", "assistant")
    g.edge("assistant", "turns")
    return g.compile()


async def test_with_an_llm_node_the_model_sees_the_kept_conversation(db):
    model = ScriptedModel(["Lisbon.", "2 hours.", "Porto, then."])
    chat = Conversation(llm_chat(model), "trip", store=db)
    assert await chat.send("Where in May?") == "Lisbon."
    assert await chat.send("How far?") == "2 hours."
    await chat.rewind(2)
    assert await chat.send({"text": "Somewhere else?", "urgent": True}) == "Porto, then."
    seen = [m["content"] for m in model.requests[-1].messages]
    assert seen == ["Where in May?", "Lisbon.", "Somewhere else?"]  # "How far?" was rewound away
    assert (await chat.history())[1].answer == {"text": "Somewhere else?", "urgent": True}


async def test_a_run_that_only_has_a_revisions_name_is_not_taken_for_one(db):
    await Conversation(graph, "t", store=db).send("a")
    await (await wp.start(graph, {}, run_id="t~1", store=db)).result()  # not a fork of 't'
    with pytest.raises(RunStateError, match="not a rewind of this thread"):
        await Conversation(graph, "t", store=db).send("b")


async def test_a_thread_of_another_graph_is_refused(db):
    await Conversation(graph, "t", store=db).send("a")
    with pytest.raises(RunStateError, match="is a run of graph 'talk', not of 'other'"):
        await Conversation(build(name="other"), "t", store=db).send("b")
