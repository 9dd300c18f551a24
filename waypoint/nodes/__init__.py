"""Node kinds: function, router, gate, loop guard, map, subgraph, LLM; and their context."""

from waypoint.nodes._tools import Tool, tool
from waypoint.nodes.base import Node, Outcome, RetryPolicy
from waypoint.nodes.context import NodeContext
from waypoint.nodes.llm import LLMNode, llm
from waypoint.nodes.agent_tool import agent_tool
from waypoint.nodes.model import Model, ModelRequest, ModelResponse, OpenAIModel, ToolCall
from waypoint.nodes.routing import ToolApproval, handoff, llm_router, run_approved

__all__ = [
    "LLMNode", "Model", "ModelRequest", "ModelResponse", "Node", "NodeContext", "OpenAIModel",
    "Outcome", "RetryPolicy", "Tool", "ToolApproval", "ToolCall", "agent_tool", "handoff", "llm",
    "llm_router", "run_approved", "tool",
]
