"""Waits: where a run pauses for a human, how gates are addressed, where answers go.

    address = GateAddress.parse("book[3]/confirm")   # item 3 of map 'book', gate 'confirm'
    address.node, address.index, str(address.inner)  # 'book', 3, 'confirm'
    str(GateAddress("sub", inner=GateAddress("review")))   # 'sub/review'

    gate = find_gate(graph, "book[3]/confirm")   # the GateNode inside the map's worker graph
    waiting_gates(frontier)                      # ['book[3]/confirm', 'review']: what a run waits at
    due_waits(frontier, now)                     # activations whose deadline passed

A gate pauses in `at_launch`: the scheduler asks it, for every activation it is
about to start, whether the activation runs now (`Go`, with the answer it took),
pauses now (`Pause`, a gate reached for the first time: its request is
committed as a `wait` step) or keeps waiting (None). A subgraph, a map or an
agent whose child run stopped at gates waits too: its request (`child_wait`,
`items_wait`) names the child run and the gates inside it, addressed from this
run (`sub/review`, `book[3]/confirm`), and answers so addressed reach that child
(`Go.answers`, then `take_answers`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from waypoint.checkpoints.records import Step
from waypoint.errors import GateError
from waypoint.nodes.address import GateAddress, child_prefix
from waypoint.nodes.composite import ChildPaused, ItemsWaiting
from waypoint.nodes.gate import GateNode

if TYPE_CHECKING:
    from waypoint.engine._frontier import Activation, Frontier
    from waypoint.graphs.graph import Graph


# -- finding -------------------------------------------------------------------------
def find_gate(graph: Graph[Any], name: str) -> GateNode:
    """The gate `name`, or `node/gate` inside a graph that node runs as a child run
    (`map[index]/gate` inside a map's worker graph); a GateError when there is none."""
    return _find(graph, GateAddress.parse(name), name)


def _find(graph: Graph[Any], address: GateAddress, name: str) -> GateNode:
    node = graph.nodes.get(address.head)  # 'x[1]' may be a node's own name
    if node is None and address.index is not None:
        node = graph.nodes.get(address.node)
        node = node if _has_items(node) else None  # `x[1]/gate`: an item of map x only
    if address.inner is not None and node is not None:
        for sub in child_graphs(node):
            try:
                return _find(sub, address.inner, name)
            except GateError:
                continue
    if not isinstance(node, GateNode) or address.inner is not None:
        raise GateError(f"graph {graph.name!r} has no gate {name!r}.", node=name)
    return node


def child_graphs(node: Any) -> list[Graph[Any]]:
    """The graphs `node` may run as child runs: a subgraph's own, a map's worker graph,
    and an agent's tools' graphs."""
    return list(node.child_graphs())


def _has_items(node: Any) -> bool:
    """Does `node` address child runs by item (`map[index]/...`)?"""
    return node is not None and node.item_field is not None


# -- listing -------------------------------------------------------------------------
def waiting_gates(frontier: Frontier) -> list[str]:
    """The addresses of the gates a run with `frontier` waits at, sorted, each once."""
    names: list[str] = []
    for act_id, request in frontier.waits.items():
        inside = request.get("gates")
        names.extend(inside if inside else [frontier.pending[act_id].node])
    return sorted(dict.fromkeys(names))


def waiting_children(node: str, request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The child runs a wait request waits on, each with the prefix of its gates' names.

    A subgraph (or agent tool) waits on one child (`node/`); a map on one per waiting
    item (`map[index]/`), listed under "items". A gate's own request has none.
    """
    if "child" in request:
        return [(child_prefix(node), request)]
    return [(child_prefix(node, item["index"]), item) for item in request.get("items", ())]


def due_waits(frontier: Frontier, now: float | None = None) -> list[str]:
    """The activations of `frontier` whose wait's deadline has passed without an answer."""
    return [act for act, request in frontier.waits.items() if GateNode.expired(request, now)]


# -- pausing and answering ------------------------------------------------------------
@dataclass
class Answer:
    """A validated answer to a gate: who gave it and when (recorded with the gate's step)."""

    value: BaseModel
    by: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(slots=True)
class Go:
    """An activation that runs now, and what waits give it (all empty for most)."""

    answer: Answer | None = None  # a gate's answer
    expired: dict[str, Any] | None = None  # its wait, whose deadline passed: a gate escalates
    request: dict[str, Any] | None = None  # its recorded wait (which child runs a map waits on)
    answers: dict[str, Answer] | None = None  # answers to gates inside its child runs, by address


@dataclass(frozen=True, slots=True)
class Pause:
    """A gate reached now: the run records `request` (a `wait` step) and waits there."""

    request: dict[str, Any]


RUN = Go()  # what an activation with nothing to do with waits gets (never changed)

ANSWERED = "answered"  # the `event` of a step that holds an answer `resume` accepted


def answered_step(seq: int, gate: str, answer: Answer) -> Step:
    """The `event` step `resume` appends under its claim before it returns: the answer waits in
    the log, validated, until the execution that takes the run (this one, or a worker's after
    `enqueue=True` or a crash) hands it to its gate."""
    return Step(seq=seq, kind="event", node=gate, activation="", at=answer.at,
                extra={"event": ANSWERED, "answer": answer.value.model_dump(mode="json"),
                       **({"by": answer.by} if answer.by else {})})


def enqueued_answers(graph: Graph[Any], tail: list[Step], run_id: str) -> dict[str, Answer]:
    """The answers of `answered` steps no execution has taken yet: those after the log's last
    step that is not an `event` (a gate's `done` step takes its answer; a crash before it
    leaves the answer where it was, so the next execution takes it)."""
    found: dict[str, Answer] = {}
    for step in reversed(tail):
        if step.kind != "event":
            break
        if step.extra.get("event") == ANSWERED and step.node not in found:
            value = find_gate(graph, step.node).validate(step.extra["answer"], run_id=run_id)
            found[step.node] = Answer(value, step.extra.get("by"), step.at)
    return found


def at_launch(node: Any, act: Activation, frontier: Frontier, answers: dict[str, Answer],
              state: Any, now: float | None) -> Go | Pause | None:
    """Whether `act` of `node` runs now (Go), pauses now (Pause) or still waits (None).

    Answers it takes are removed from `answers`: a gate's own (the oldest waiting
    activation of a gate takes it), and those addressed inside the child runs it
    waits on (`sub/...`, `map[i]/...`), handed on to them by `take_answers`.
    """
    request = frontier.waits.get(act.id)
    if request is None:
        if node.pauses:
            return Pause(node.request(state, now))
        if answers and not _has_items(node):  # a child run that has not waited yet
            inside = _take(answers, (child_prefix(act.node),))
            return Go(answers=inside) if inside else RUN
        return RUN
    go = _answered(node, act.node, request, answers)
    if go is None and GateNode.expired(request, now):
        go = Go(expired=request, request=request)
    return go


def _answered(node: Any, name: str, request: dict[str, Any], answers: dict[str, Answer]) -> Go | None:
    if node.pauses:
        return Go(answer=answers.pop(name), request=request) if name in answers else None
    prefixes = tuple(prefix for prefix, _ in waiting_children(name, request))
    inside = _take(answers, prefixes)
    return Go(request=request, answers=inside) if inside else None


def _take(answers: dict[str, Answer], prefixes: tuple[str, ...]) -> dict[str, Answer]:
    taken = {k: v for k, v in answers.items() if prefixes and k.startswith(prefixes)}
    for key in taken:
        del answers[key]
    return taken


def child_address(node: Any, name: str, request: dict[str, Any] | None,
                  child_id: str) -> tuple[str | None, dict[str, Any] | None]:
    """How node `name` names the gates inside its child run `child_id` (a prefix), and,
    for a map item that waited before, that item's recorded wait.

    A subgraph's child is `<node>/`; a map item's is `<map>[<index>]/`, the index read
    from the map's wait request, which lists each waiting item's child run. A map item
    that has not waited yet has no address, so no answer can be meant for it.
    """
    if not _has_items(node):
        return child_prefix(name), None
    for item in (request or {}).get("items", ()):
        if item["child"] == child_id:
            return child_prefix(name, item["index"]), item
    return None, None


def take_answers(answers: dict[str, Answer] | None, prefix: str | None) -> dict[str, Answer]:
    """The answers under `prefix` (removed from `answers`), named as the child run names them."""
    if not answers or prefix is None:
        return {}
    return {key[len(prefix):]: value for key, value in _take(answers, (prefix,)).items()}


class ChildWaiting(ChildPaused):
    """A child run stopped at gates (names relative to the child) after step `seq`.

    `deadline_at` is the earliest deadline among them, so the parent's own wait
    comes due (at resume and in the `tick()` sweep) when a gate inside does.
    """

    def __init__(self, child_run_id: str, gates: list[str], seq: int,
                 deadline_at: float | None = None) -> None:
        self.child_run_id, self.gates, self.seq = child_run_id, gates, seq
        self.deadline_at = deadline_at
        super().__init__(f"child run {child_run_id} waits at {gates}")


def still_waiting(child_id: str, recorded: dict[str, Any] | None, answers: dict[str, Answer],
                  now: float | None) -> ChildWaiting | None:
    """A map item that waited and gets nothing new (no answer, no deadline passed):
    its child run is left untouched, and it waits as recorded."""
    if recorded is None or answers or GateNode.expired(recorded, now):
        return None
    gates = [str(GateAddress.parse(g).inner) for g in recorded["gates"]]
    return ChildWaiting(child_id, gates, recorded["child_seq"], recorded.get("deadline_at"))


def child_wait(waiting: ChildPaused, prefix: str) -> dict[str, Any]:
    """The wait request of a child run stopped at gates, which the parent names `prefix + gate`."""
    assert isinstance(waiting, ChildWaiting)
    request = {"child": waiting.child_run_id, "gates": [prefix + g for g in waiting.gates],
               "child_seq": waiting.seq}
    if waiting.deadline_at is not None:
        request["deadline_at"] = waiting.deadline_at
    return request


def items_wait(name: str, waiting: ItemsWaiting) -> dict[str, Any]:
    """A map's wait request: one child entry per waiting item, and all their gates.

    `deadline_at` is the earliest among the items', so the map comes due when one of them does.
    """
    items = [{"index": index, **child_wait(paused, child_prefix(name, index))}
             for index, paused in sorted(waiting.items.items())]
    request: dict[str, Any] = {"items": items, "gates": [g for item in items for g in item["gates"]]}
    deadlines = [item["deadline_at"] for item in items if "deadline_at" in item]
    if deadlines:
        request["deadline_at"] = min(deadlines)
    return request
