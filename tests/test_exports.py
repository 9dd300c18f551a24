"""The front door: the exported names are pinned, and each one is really there."""

import subprocess
import sys

import waypoint

EXPORTED = {
    # defining graphs
    "GraphBuilder", "Graph", "START", "END", "append", "merge", "reducer", "RetryPolicy",
    "NodeContext", "llm", "LLMNode", "tool", "Model", "ModelRequest", "ModelResponse",
    "OpenAIModel", "ToolCall", "llm_router", "handoff", "agent_tool", "run_approved",
    "ToolApproval", "mcp_tools",
    # running and inspecting
    "start", "resume", "run_sync", "resume_sync", "fork", "get_run", "history", "state_at",
    "pending_gates", "approval_log", "tick", "RunHandle", "RunResult", "Event", "GateRequest",
    "ApprovalEntry", "Budget", "run_marks", "RunMarks", "cancel", "RunHooks", "submit",
    "Conversation", "run_batch", "BatchResult", "Cache", "Limit", "NodeFailure", "Worker",
    # stores
    "SQLiteStore", "MemoryStore", "Store", "RunInfo", "Step",
    # errors
    "WaypointError", "GraphError", "GraphChangedError", "RunError", "NodeError", "ConflictError",
    "GateError", "LeaseError", "BudgetExceededError", "StoreError", "RunNotFoundError",
    "RunStateError", "UpdateError", "CorruptRecordError", "SchemaVersionError", "RunMovedError",
    "StaleAnswerError", "GuardrailTripped",
}


def test_exported_names_are_pinned_and_sorted():
    assert waypoint.__all__ == sorted(EXPORTED)  # sorted, no duplicates, nothing else


def test_dir_lists_every_exported_name_before_it_is_loaded():
    code = "import waypoint; print(sorted(set(waypoint.__all__) - set(dir(waypoint))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_exported_name_resolves():
    for name in waypoint.__all__:
        assert getattr(waypoint, name) is not None, name


def test_import_stays_light():
    code = "import sys, waypoint; print(sorted({'openai', 'networkx', 'aiosqlite'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


TESTING_EXPORTED = {
    "ScriptedModel", "ScriptExhausted", "tool_call",  # an offline model
    "assert_terminates", "check_terminates", "run_driven", "DrivenRun",  # termination
    "router_choices", "random_graphs", "Choices",  # Hypothesis strategies
    "check_store", "run_check", "CHECKS",  # store conformance
}


def test_testing_exports_are_pinned_and_resolve():
    import waypoint.testing

    assert set(waypoint.testing.__all__) == TESTING_EXPORTED
    assert len(waypoint.testing.__all__) == len(TESTING_EXPORTED)
    for name in waypoint.testing.__all__:
        assert getattr(waypoint.testing, name) is not None, name
    assert set(dir(waypoint.testing)) >= TESTING_EXPORTED


def test_testing_needs_hypothesis_only_for_what_uses_it():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"  # as if it were not installed
        "from waypoint.testing import ScriptedModel, check_store\n"
        "try:\n"
        "    from waypoint.testing import assert_terminates\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs Hypothesis: pip install hypothesis" in out.stdout
    lazy = "import sys, waypoint.testing; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_waypoint_leaves_the_heavy_parts_for_first_use():
    code = ("import sys, waypoint\n"
            "heavy = ['openai', 'networkx', 'graphviz', 'aiosqlite', 'rich', 'waypoint.nodes.routing',\n"
            "         'waypoint.nodes.llm_node', 'waypoint.checkpoints.sqlite']\n"
            "print([m for m in heavy if m in sys.modules])\n"
            "from waypoint import llm, llm_router, SQLiteStore\n"
            "print(llm.__module__, llm_router.__module__, SQLiteStore.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, names = out.stdout.splitlines()
    assert loaded == "[]"
    assert names == "waypoint.nodes.llm_node waypoint.nodes.routing waypoint.checkpoints.sqlite"
