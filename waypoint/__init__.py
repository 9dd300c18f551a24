"""waypoint: durable agent workflows.

    from waypoint import GraphBuilder, START, END, SQLiteStore, run_sync

Layering (imports point one way; nothing imports the engine but the CLI and
this front door):

    cli -> engine -> graphs -> nodes
    engine -> checkpoints          checkpoints knows nothing of the engine
    nodes receive a NodeContext, never the scheduler
    testing may import anything above

Every name below is imported on first use (`waypoint._lazy`): importing a
subpackage runs this file first, so an eager front door would make
`import waypoint.checkpoints` load the engine. tests/test_layers.py pins what
each layer loads; tests/test_exports.py pins the names.
"""

from typing import TYPE_CHECKING

from waypoint._lazy import lazy

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each loads on first use
    from waypoint.checkpoints import MemoryStore, RunInfo, SQLiteStore, Step, Store
    from waypoint.engine import (
        ApprovalEntry,
        Budget,
        Event,
        GateRequest,
        RunHandle,
        RunHooks,
        RunMarks,
        RunResult,
        approval_log,
        cancel,
        fork,
        get_run,
        history,
        pending_gates,
        resume,
        resume_sync,
        run_marks,
        run_sync,
        start,
        state_at,
        tick,
    )
    from waypoint.engine.batch import BatchResult, run_batch
    from waypoint.engine.conversation import Conversation
    from waypoint.engine.queue import submit
    from waypoint.engine.worker import Worker
    from waypoint.errors import (
        BudgetExceededError,
        ConflictError,
        CorruptRecordError,
        GateError,
        GraphChangedError,
        GraphError,
        GuardrailTripped,
        LeaseError,
        NodeError,
        RunError,
        RunMovedError,
        RunNotFoundError,
        RunStateError,
        SchemaVersionError,
        StaleAnswerError,
        StoreError,
        UpdateError,
        WaypointError,
    )
    from waypoint.graphs import END, START, Graph, GraphBuilder, append, merge, reducer
    from waypoint.nodes import NodeContext, RetryPolicy, tool
    from waypoint.nodes.agents import agent_tool  # the LLM side: waypoint.nodes loads it lazily
    from waypoint.nodes.cache import Cache
    from waypoint.nodes.failure import NodeFailure
    from waypoint.nodes.limit import Limit
    from waypoint.nodes.llm_node import LLMNode, llm
    from waypoint.nodes.mcp_tools import mcp_tools  # MCP servers as tools: loads the SDK on first use
    from waypoint.nodes.model import Model, ModelRequest, ModelResponse, OpenAIModel, ToolCall
    from waypoint.nodes.routing import ToolApproval, handoff, llm_router, run_approved

__version__ = "0.1.0"

_HOME = {  # the package each name is read from: its own front door
    "waypoint.checkpoints": "MemoryStore RunInfo SQLiteStore Step Store",
    "waypoint.engine": "ApprovalEntry Budget Event GateRequest RunHandle RunHooks RunMarks RunResult "
                       "approval_log "
                       "cancel fork get_run history pending_gates resume resume_sync run_marks run_sync "
                       "start state_at tick",
    "waypoint.engine.conversation": "Conversation",  # chat threads: a module of its own
    "waypoint.nodes.mcp_tools": "mcp_tools",  # MCP servers as tools
    "waypoint.engine.queue": "submit",  # queued runs: not in waypoint.engine, which is another's
    "waypoint.engine.worker": "Worker",  # executes queued runs (waypoint worker)
    "waypoint.engine.batch": "BatchResult run_batch",  # many inputs through one graph
    "waypoint.nodes.cache": "Cache",  # node options: cache=, on_error= (error_into=), limit=
    "waypoint.nodes.failure": "NodeFailure",
    "waypoint.nodes.limit": "Limit",
    "waypoint.errors": "BudgetExceededError ConflictError CorruptRecordError GateError GraphChangedError "
                       "GraphError GuardrailTripped LeaseError NodeError RunError RunMovedError "
                       "RunNotFoundError RunStateError SchemaVersionError StaleAnswerError StoreError "
                       "UpdateError WaypointError",
    "waypoint.graphs": "END START Graph GraphBuilder append merge reducer",
    "waypoint.nodes": "LLMNode Model ModelRequest ModelResponse NodeContext OpenAIModel RetryPolicy "
                      "ToolApproval ToolCall agent_tool handoff llm llm_router run_approved tool",
}

__getattr__, __dir__ = lazy(__name__, {name: home for home, names in _HOME.items() for name in names.split()})

__all__ = [
    "ApprovalEntry",
    "BatchResult",
    "Budget",
    "BudgetExceededError",
    "Cache",
    "ConflictError",
    "Conversation",
    "CorruptRecordError",
    "END",
    "Event",
    "GateError",
    "GateRequest",
    "Graph",
    "GraphBuilder",
    "GraphChangedError",
    "GraphError",
    "GuardrailTripped",
    "LLMNode",
    "LeaseError",
    "Limit",
    "MemoryStore",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "NodeContext",
    "NodeError",
    "NodeFailure",
    "OpenAIModel",
    "RetryPolicy",
    "RunError",
    "RunHandle",
    "RunHooks",
    "RunInfo",
    "RunMarks",
    "RunMovedError",
    "RunNotFoundError",
    "RunResult",
    "RunStateError",
    "SQLiteStore",
    "START",
    "SchemaVersionError",
    "StaleAnswerError",
    "Step",
    "Store",
    "StoreError",
    "ToolApproval",
    "ToolCall",
    "UpdateError",
    "WaypointError",
    "Worker",
    "agent_tool",
    "append",
    "approval_log",
    "cancel",
    "fork",
    "get_run",
    "handoff",
    "history",
    "llm",
    "llm_router",
    "mcp_tools",
    "merge",
    "pending_gates",
    "reducer",
    "resume",
    "resume_sync",
    "run_approved",
    "run_batch",
    "run_marks",
    "run_sync",
    "start",
    "state_at",
    "submit",
    "tick",
    "tool",
]
