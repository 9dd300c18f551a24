"""Running graphs: scheduler, state merge, events, run handles, leases, recovery."""

from waypoint.engine._budget import Budget
from waypoint.engine.events import Event
from waypoint.engine.gates import ApprovalEntry, approval_log, due_gates, tick
from waypoint.engine.handles import RunHandle, RunResult, cancel
from waypoint.engine.hooks import RunHooks
from waypoint.engine.marks import RunMarks, run_marks
from waypoint.engine.runs import resume, resume_sync, run_sync, start
from waypoint.engine.views import GateRequest, fork, get_run, history, pending_gates, state_at

__all__ = [
    "ApprovalEntry", "Budget", "Event", "approval_log", "cancel", "due_gates", "tick", "GateRequest",
    "RunHandle", "RunHooks", "RunResult", "fork", "get_run", "history",
    "pending_gates", "resume", "resume_sync", "run_sync", "start", "state_at", "RunMarks", "run_marks",
]
