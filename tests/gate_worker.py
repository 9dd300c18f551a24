"""A gated graph driven from separate processes: `start DB` / `resume DB RUN_ID JSON`."""

from __future__ import annotations

import asyncio
import json
import sys

from pydantic import BaseModel

import waypoint as wp


class Ticket(BaseModel):
    text: str = "refund order 42"
    decision: str = ""
    done: bool = False


class Decision(BaseModel):
    approve: bool
    reason: str = ""


g = wp.GraphBuilder(Ticket, name="ticket")
g.node(lambda s: {"text": s.text.upper()}, name="triage")
g.gate("decide", Decision, prompt="Refund?",
       on_answer=lambda s, a: {"decision": f"{a.approve}:{a.reason}"})
g.node(lambda s: {"done": True}, name="close")
g.edge(wp.START, "triage")
g.edge("triage", "decide")
g.edge("decide", "close")
g.edge("close", wp.END)
graph = g.compile()


async def main(args: list[str]) -> None:
    store = wp.SQLiteStore(args[1])
    try:
        if args[0] == "start":
            result = await (await wp.start(graph, store=store)).result()
        else:
            handle = await wp.resume(graph, args[2], json.loads(args[3]), by="ops", store=store)
            result = await handle.result()
        print(json.dumps({"run_id": result.run_id, "status": result.status,
                          "state": result.state.model_dump()}))
    except wp.WaypointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
