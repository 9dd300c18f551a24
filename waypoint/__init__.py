"""waypoint: durable agent workflows.

    from waypoint import GraphBuilder, START, END, SQLiteStore, run_sync

Layering (imports point one way; nothing imports the engine but the CLI and
this front door):

    cli -> engine -> graphs -> nodes
    engine -> checkpoints          checkpoints knows nothing of the engine
    nodes receive a NodeContext, never the scheduler
    testing may import anything above

Heavy imports (openai, networkx, graphviz) happen only where they are used.
"""

from typing import TYPE_CHECKING

from waypoint.checkpoints import MemoryStore, RunInfo, Step, Store
from waypoint.engine import (
    ApprovalEntry, Budget, Event, GateRequest, approval_log, cancel, tick, RunHandle, RunResult, fork, get_run, history, pending_gates, resume,
    resume_sync, run_sync, start, state_at, RunMarks, run_marks,
)
from waypoint.errors import (
    BudgetExceededError, ConflictError, CorruptRecordError, GateError, GraphChangedError, GraphError,
    LeaseError, NodeError, RunError, RunMovedError, RunNotFoundError, RunStateError, SchemaVersionError,
    StaleAnswerError, StoreError, UpdateError, WaypointError,
)
from waypoint.graphs import END, START, Graph, GraphBuilder, append, merge, reducer
from waypoint import nodes as _nodes
from waypoint.nodes import NodeContext, RetryPolicy

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these load on first use
    from waypoint.checkpoints.sqlite import SQLiteStore
    from waypoint.nodes import (
        LLMNode, Model, ModelRequest, ModelResponse, OpenAIModel, ToolApproval, ToolCall,
        agent_tool, handoff, llm, llm_router, run_approved, tool,
    )

__version__ = "0.1.0"


def __getattr__(name: str):
    """SQLiteStore and the LLM side are imported on first use: `import waypoint` stays light."""
    if name == "SQLiteStore":
        from waypoint.checkpoints.sqlite import SQLiteStore

        return SQLiteStore
    if name in __all__ and name in _nodes.LAZY:  # the LLM side: llm, llm_router, OpenAIModel...
        value = getattr(_nodes, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'waypoint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "END", "START", "ApprovalEntry", "approval_log", "tick", "Budget", "BudgetExceededError", "ConflictError", "Event", "LLMNode",
    "Model", "ModelRequest", "ModelResponse", "OpenAIModel", "ToolCall", "llm", "tool",
    "llm_router", "handoff", "agent_tool", "run_approved", "ToolApproval", "GateError", "GateRequest", "Graph",
    "GraphBuilder", "GraphChangedError", "GraphError", "LeaseError", "MemoryStore",
    "NodeContext", "NodeError", "RetryPolicy", "RunError", "RunHandle", "RunInfo",
    "RunResult", "SQLiteStore", "Step", "Store", "StoreError", "WaypointError",
    "RunNotFoundError", "RunStateError", "UpdateError", "CorruptRecordError", "SchemaVersionError", "append",
    "fork", "get_run", "history", "merge", "pending_gates", "reducer", "resume",
    "resume_sync", "run_sync", "start", "state_at", "RunMarks", "run_marks", "cancel",
    "RunMovedError", "StaleAnswerError",
]
