"""The front door: the exported names are pinned, and each one is really there."""

import subprocess
import sys

import waypoint

EXPORTED = {
    # defining graphs
    "GraphBuilder", "Graph", "START", "END", "append", "merge", "reducer", "RetryPolicy",
    "NodeContext", "llm", "LLMNode", "tool", "Model", "ModelRequest", "ModelResponse",
    "OpenAIModel", "ToolCall", "llm_router", "handoff", "agent_tool", "run_approved",
    "ToolApproval",
    # running and inspecting
    "start", "resume", "run_sync", "resume_sync", "fork", "get_run", "history", "state_at",
    "pending_gates", "approval_log", "tick", "RunHandle", "RunResult", "Event", "GateRequest",
    "ApprovalEntry", "Budget",
    # stores
    "SQLiteStore", "MemoryStore", "Store", "RunInfo", "Step",
    # errors
    "WaypointError", "GraphError", "GraphChangedError", "RunError", "NodeError", "ConflictError",
    "GateError", "LeaseError", "BudgetExceededError", "StoreError",
}


def test_exported_names_are_pinned():
    assert set(waypoint.__all__) == EXPORTED
    assert len(waypoint.__all__) == len(EXPORTED)  # no duplicates


def test_every_exported_name_resolves():
    for name in waypoint.__all__:
        assert getattr(waypoint, name) is not None, name


def test_import_stays_light():
    code = "import sys, waypoint; print(sorted({'openai', 'networkx', 'aiosqlite'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
