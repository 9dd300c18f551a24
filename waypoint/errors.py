"""One exception tree for the whole library.

Catch `WaypointError` for everything; the three branches tell apart a graph that
is wrong (fix the definition), a run that went wrong (fix the cause, then
`resume`), and a store that cannot be trusted (the data is not what we wrote).

    WaypointError
    ├── GraphError                  build time: compile() and graph definition
    │   └── GraphChangedError       resuming a run with a different graph
    ├── RunError                    run time
    │   ├── RunNotFoundError
    │   ├── RunStateError           e.g. resuming a finished run
    │   ├── NodeError               a node raised, timed out or returned bad data
    │   │   ├── UpdateError         an update that does not fit the state
    │   │   └── GuardrailTripped    an LLM node's guardrail tripped (no `tripped` route)
    │   ├── ConflictError           two nodes wrote one last-value field
    │   ├── GateError               no such gate pending / invalid answer
    │   ├── LeaseError              the run is executed elsewhere, or we lost it
    │   │   └── RunMovedError       a compare-and-set claim: the run moved on since read
    │   │       └── StaleAnswerError  an answer to a wait that is no longer current
    │   └── BudgetExceededError     a per-run budget ran out
    └── StoreError                  the store
        ├── CorruptRecordError      a record that cannot be decoded
        └── SchemaVersionError      data written by a newer waypoint

Every error carries `run_id`, `node` and `seq` where they apply; its message says
what went wrong, where, and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetExceededError",
    "ConflictError",
    "CorruptRecordError",
    "GateError",
    "GraphChangedError",
    "GraphError",
    "GuardrailTripped",
    "LeaseError",
    "NodeError",
    "RunError",
    "RunMovedError",
    "RunNotFoundError",
    "RunStateError",
    "SchemaVersionError",
    "StaleAnswerError",
    "StoreError",
    "UpdateError",
    "WaypointError",
]


class WaypointError(Exception):
    """Base of every error waypoint raises."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        node: str | None = None,
        seq: int | None = None,
    ) -> None:
        self.run_id = run_id
        self.node = node
        self.seq = seq
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep the keyword context when pickled across processes
        return (_rebuild, (type(self), str(self), self.run_id, self.node, self.seq))


def _rebuild(cls: type[WaypointError], message: str, run_id: str | None, node: str | None,
             seq: int | None) -> WaypointError:
    err = cls.__new__(cls)
    WaypointError.__init__(err, message, run_id=run_id, node=node, seq=seq)
    return err


class GraphError(WaypointError):
    """The graph definition is wrong; raised by the builder and by compile()."""


class GraphChangedError(GraphError):
    """A run is resumed with a graph whose structure differs from the one it started with."""


class RunError(WaypointError):
    """Something went wrong while executing a run."""


class RunNotFoundError(RunError):
    """No run with this id in the store."""


class RunStateError(RunError):
    """The run is not in a state that allows the operation (e.g. it already finished)."""


class NodeError(RunError):
    """A node failed: it raised, timed out, or returned data that does not fit."""


class UpdateError(NodeError):
    """A node's update names an unknown field or a value of the wrong type."""


class GuardrailTripped(NodeError):
    """An LLM node's guardrail tripped and the node has no `tripped` route: the run fails.

    `guardrail`, `stage` ("input", "output" or "tool"), `reason` and `info` say
    which check refused what and why; `run_id` and `node` say where. The verdict
    is committed, so resuming the run reports the same trip without asking again.
    """

    def __init__(self, message: str, *, run_id: str | None = None, node: str | None = None,
                 seq: int | None = None, guardrail: str = "", stage: str = "", reason: str = "",
                 info: Any = None) -> None:
        super().__init__(message, run_id=run_id, node=node, seq=seq)
        self.guardrail, self.stage, self.reason, self.info = guardrail, stage, reason, info

    def __reduce__(self) -> tuple[Any, ...]:  # its verdict survives a trip between processes
        return (_rebuild_trip, (str(self), self.run_id, self.node, self.seq, self.guardrail, self.stage,
                                self.reason, self.info))


def _rebuild_trip(message: str, run_id: str | None, node: str | None, seq: int | None, guardrail: str,
                  stage: str, reason: str, info: Any) -> GuardrailTripped:
    return GuardrailTripped(message, run_id=run_id, node=node, seq=seq, guardrail=guardrail, stage=stage,
                            reason=reason, info=info)


class ConflictError(RunError):
    """Two nodes that ran at the same time both wrote one last-value field."""


class GateError(RunError):
    """A gate answer that cannot be accepted: no such gate pending, or invalid."""


class LeaseError(RunError):
    """The run is being executed by another process, or this process lost its lease."""


class RunMovedError(LeaseError):
    """A claim that named what its caller saw (the log's last seq, the run's status) found
    the run moved on since: nothing was written; read the run again."""


class StaleAnswerError(RunMovedError, GateError):
    """An answer validated against a wait that is no longer current: another answer (or
    execution) got there first. The message says who answered, when, and what the run
    waits for now; nothing was written."""


class BudgetExceededError(RunError):
    """A per-run budget (tokens, LLM calls, tool calls) was exceeded."""


class StoreError(WaypointError):
    """The store failed or holds data that cannot be trusted."""


class CorruptRecordError(StoreError):
    """A stored record cannot be decoded into what waypoint wrote."""


class SchemaVersionError(StoreError):
    """The store or a record was written by a newer schema than this waypoint reads."""
