"""A support desk: an LLM router triages, a handoff passes billing cases on, an agent uses another as a tool.

    python examples/triage.py                   # offline, with a scripted model
    OPENAI_API_KEY=... python examples/triage.py --live "My invoice is wrong"

triage (an LLM router) picks "billing" or "tech" for the ticket, or falls back
to "human" when its answer is not one of them. billing_desk (a handoff) may
answer by itself or transfer the conversation to "refunds", an LLM node that
carries the same conversation on. tech answers with the help of "ask_docs", an
LLM node offered to it as a tool (an agent as a tool).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, MemoryStore, OpenAIModel, llm, start
from waypoint.nodes.agents import agent_tool
from waypoint.nodes.routing import handoff, llm_router
from waypoint.testing import ScriptedModel
from waypoint.testing.scripted import tool_call


class Ticket(BaseModel):
    ticket: str
    route: str = ""
    messages: list[dict[str, Any]] = []  # the conversation the billing agents share
    transfer_reason: str = ""
    answer: str = ""


docs_expert = llm("docs_expert", prompt="From the product docs, answer: {question}", into="answer")

g = GraphBuilder(Ticket, name="triage")
g.add(
    llm_router("triage", prompt="Ticket: {ticket}", into="route", fallback="human",
               labels={"billing": "invoices, charges, refunds", "tech": "bugs, errors, outages"}),
    routes={"billing": "billing_desk", "tech": "tech", "human": "human"},
)
g.add(
    handoff("billing_desk", prompt="{ticket}", history="messages", into="answer",
            reason_into="transfer_reason", default="answered",
            instructions="You answer billing questions; transfer refund requests.",
            targets={"refunds": "The customer wants money back for a charge."}),
    routes={"refunds": "refunds", "answered": END},
)
g.add(llm("refunds", history="messages", into="answer", instructions="You issue refunds."))
g.add(llm("tech", prompt="{ticket}", into="answer",
          tools=[agent_tool(docs_expert, name="ask_docs", description="Ask the product docs expert")]))
g.node(lambda s: {"answer": "A person will get back to you."}, name="human", writes=["answer"])
g.edge(START, "triage")
for name in ("refunds", "tech", "human"):
    g.edge(name, END)

graph = g.compile()

SCRIPT = [  # what a model might answer, in call order, for the offline run
    {"route": "billing"},
    tool_call("transfer_to_refunds", {"reason": "charged twice for March"}),
    "I have refunded the second March charge; it will show within 5 days.",
]


async def main(argv: list[str]) -> None:
    live = "--live" in argv
    ticket = next((a for a in argv if not a.startswith("--")), "I was charged twice in March")
    model = OpenAIModel() if live else ScriptedModel(SCRIPT)
    result = await (await start(graph, {"ticket": ticket}, store=MemoryStore(), deps={"model": model})).result()
    print(f"route: {result.state.route}")
    if result.state.transfer_reason:
        print(f"transferred to refunds: {result.state.transfer_reason}")
    print(f"answer: {result.state.answer}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
