"""Node kinds: function, router, gate, loop guard, map, subgraph; and their context."""

from waypoint.nodes.base import Node, Outcome, RetryPolicy
from waypoint.nodes.context import NodeContext

__all__ = ["Node", "NodeContext", "Outcome", "RetryPolicy"]
