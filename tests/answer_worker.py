"""A gate asked again and again, answered from separate processes at the same moment.

    python tests/answer_worker.py start DB RUN_ID
    python tests/answer_worker.py answer DB RUN_ID NAME APPROVED READY_FILE GO_FILE

`answer` reads the question, touches READY_FILE, waits until GO_FILE exists,
then answers it with {"approved": APPROVED} by NAME (the answer applies only to
the question as read), and prints one JSON line: the outcome
("done", "waiting" or the error's type) and what `act` saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Literal

from pydantic import BaseModel

import waypoint as wp


class Ask(BaseModel):
    rounds: int = 0
    approved: bool = False
    acted_by: str = ""


class Approval(BaseModel):
    approved: bool


def build() -> wp.Graph:
    """ask -> decide: "yes" -> act -> END; "no" -> again (a loop guard) -> ask."""
    g = wp.GraphBuilder(Ask, name="asked_again")
    g.gate("ask", Approval, prompt="Go ahead?",
           on_answer=lambda s, a: {"approved": a.approved, "rounds": s.rounds + 1})

    @g.router(routes={"yes": "act", "no": "again"})
    def decide(state: Ask) -> Literal["yes", "no"]:
        return "yes" if state.approved else "no"

    g.node(lambda s: {"acted_by": f"round {s.rounds}"}, name="act", writes=["acted_by"])
    g.loop_guard("again", max_iterations=50, routes={"continue": "ask", "exhausted": wp.END})
    g.edge(wp.START, "ask")
    g.edge("ask", "decide")
    g.edge("act", wp.END)
    return g.compile()


graph = build()


async def main(args: list[str]) -> None:
    store = wp.SQLiteStore(args[1])
    try:
        if args[0] == "start":
            result = await (await wp.start(graph, store=store, run_id=args[2])).result()
            print(json.dumps({"status": result.status}))
            return
        run_id, name, approved, ready, go = args[2], args[3], args[4] == "true", args[5], args[6]
        [question] = await wp.pending_gates(graph, run_id, store=store)  # what this answerer saw
        open(ready, "w").close()
        while not os.path.exists(go):  # a file, not a clock, starts every process together
            time.sleep(0.001)
        try:
            handle = await wp.resume(graph, run_id, {"approved": approved}, by=name, store=store,
                                     seen_seq=question.seq)
            result = await handle.result()
            print(json.dumps({"name": name, "outcome": result.status, "state": result.state.model_dump()}))
        except wp.WaypointError as exc:
            print(json.dumps({"name": name, "outcome": type(exc).__name__, "error": str(exc)}))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
