"""Node kinds: function, router, gate, loop guard, map, subgraph, LLM; and their context.

The LLM side (llm, llm_router, handoff, agent_tool, models, tools) is imported on
first use, so a graph of plain functions never pays for it.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from waypoint.nodes._call import arity, is_async
from waypoint.nodes._tools import Tool, tool
from waypoint.nodes.base import Node, Outcome, RetryPolicy
from waypoint.nodes.context import NodeContext

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these load on first use
    from waypoint.nodes.agents import agent_tool
    from waypoint.nodes.llm_node import LLMNode, llm
    from waypoint.nodes.model import Model, ModelRequest, ModelResponse, OpenAIModel, ToolCall
    from waypoint.nodes.routing import ToolApproval, handoff, llm_router, run_approved

LAZY = {  # name -> the module defining it
    "LLMNode": "llm_node", "llm": "llm_node",
    "agent_tool": "agents",
    "Model": "model", "ModelRequest": "model", "ModelResponse": "model", "OpenAIModel": "model",
    "ToolCall": "model",
    "ToolApproval": "routing", "handoff": "routing", "llm_router": "routing", "run_approved": "routing",
}


def __getattr__(name: str) -> Any:
    if name not in LAZY:
        raise AttributeError(f"module 'waypoint.nodes' has no attribute {name!r}")
    modules = {module: import_module(f"waypoint.nodes.{module}") for module in set(LAZY.values())}
    globals().update({n: getattr(modules[m], n) for n, m in LAZY.items()})  # all at once
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY))


__all__ = ["Node", "NodeContext", "Outcome", "RetryPolicy", "Tool", "arity", "is_async", "tool", *LAZY]
