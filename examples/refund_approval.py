"""Approving a tool call before it runs (the needs_approval pattern).

    python examples/refund_approval.py            # offline, with a scripted model; approves
    python examples/refund_approval.py --reject   # the reviewer says no

The agent may look balances up freely, but `refund` is marked
`needs_approval=True`: when the model calls it, the agent does not run it. It
stops on its "approval" route with the call in `pending_call` and the
conversation in `messages`; the run waits at the gate "review". The answer
(a `ToolApproval`) goes to `run_call`, which runs the refund once (or tells the
model it was rejected), and the loop guard brings the agent back to finish the
conversation. Every step is in the run's log, so this survives a restart
between the question and the answer (use SQLiteStore and `waypoint resume`).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, MemoryStore, llm, resume, start, tool
from waypoint.nodes.routing import ToolApproval, run_approved
from waypoint.testing import ScriptedModel
from waypoint.testing.scripted import tool_call

REFUNDS: list[tuple[str, float]] = []  # stands in for the payment system


class Case(BaseModel):
    request: str
    messages: list[dict[str, Any]] = []
    pending_call: dict[str, Any] | None = None  # the call waiting for a human
    approval: ToolApproval | None = None
    answer: str = ""


def balance(customer: str) -> float:
    """The customer's last charge, in euros."""
    return 42.0


def refund(customer: str, amount: float) -> str:
    """Refund `amount` euros to the customer."""
    REFUNDS.append((customer, amount))
    return f"refunded {amount:.2f} EUR to {customer}"


agent = llm("agent", prompt="{request}", history="messages", into="answer",
            instructions="Check the balance, then refund what the customer asks for.",
            tools=[balance, tool(refund, needs_approval=True)])

g = GraphBuilder(Case, name="refund_approval")
g.add(agent, routes={"approval": "review", "done": END})
g.gate("review", ToolApproval, prompt="Run this tool call?", payload=lambda s: s.pending_call,
       into="approval")
g.add(run_approved("run_call", agent))
g.loop_guard("again", max_iterations=3, routes={"continue": "agent", "done": END})
g.edge(START, "agent")
g.edge("review", "run_call")
g.edge("run_call", "again")

graph = g.compile()


async def main(argv: list[str]) -> None:
    approve = "--reject" not in argv
    model = ScriptedModel([
        tool_call("balance", {"customer": "ada"}),
        tool_call("refund", {"customer": "ada", "amount": 42.0}),
        "Done: 42.00 EUR are on their way back to you." if approve else "Sorry, I cannot refund this.",
    ])
    store = MemoryStore()
    waiting = await (await start(graph, {"request": "Refund my last charge (ada)"}, store=store,
                                 deps={"model": model})).result()
    print(f"{waiting.status} at {waiting.waiting}: {waiting.state.pending_call}")
    done = await (await resume(graph, waiting.run_id, {"approved": approve, "comment": "checked"},
                               store=store, deps={"model": model})).result()
    print(f"{done.status}: {done.state.answer}  refunds made: {REFUNDS}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
