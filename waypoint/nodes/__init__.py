"""Node kinds: function, router, gate, loop guard, map, subgraph, LLM; and their context.

The LLM side (llm, llm_router, handoff, agent_tool, models, tools) is imported on
first use (`waypoint._lazy`), so a graph of plain functions never pays for it.
"""

from typing import TYPE_CHECKING

from waypoint._lazy import lazy
from waypoint.nodes._call import arity, is_async
from waypoint.nodes._tools import Tool, tool
from waypoint.nodes.base import Node, Outcome, RetryPolicy
from waypoint.nodes.context import NodeContext

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these load on first use
    from waypoint.nodes.agents import agent_tool
    from waypoint.nodes.llm_node import LLMNode, llm
    from waypoint.nodes.model import Model, ModelRequest, ModelResponse, OpenAIModel, ToolCall
    from waypoint.nodes.routing import ToolApproval, handoff, llm_router, run_approved

_HOME = {  # the module each lazy name is defined in
    ".llm_node": "LLMNode llm",
    ".agents": "agent_tool",
    ".model": "Model ModelRequest ModelResponse OpenAIModel ToolCall",
    ".routing": "ToolApproval handoff llm_router run_approved",
}

__getattr__, __dir__ = lazy(__name__, {name: home for home, names in _HOME.items() for name in names.split()})

__all__ = [
    "LLMNode",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "Node",
    "NodeContext",
    "OpenAIModel",
    "Outcome",
    "RetryPolicy",
    "Tool",
    "ToolApproval",
    "ToolCall",
    "agent_tool",
    "arity",
    "handoff",
    "is_async",
    "llm",
    "llm_router",
    "run_approved",
    "tool",
]
