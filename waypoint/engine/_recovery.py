"""Error routes at run time: a failed activation of a node with `on_error=` completes on "error".

    message = failure_message(node, act, error, attempts, lost, started_seq)
    # Failed(act, error, lost): the run fails, resumable, as before; or
    # Done(act, Finished(Outcome(update={error_into: NodeFailure}, labels=("error",)), ...))

The Done becomes an ordinary `done` step (route ["error"], the fallback as its
child, `extra["error"]` with type, message and attempts), so replay, drawings and
the log read it like any completion. What the failed attempts spent is kept on it.
"""

from __future__ import annotations

from typing import Any

from waypoint.engine._frontier import Activation
from waypoint.engine._messages import Done, Failed, Finished
from waypoint.errors import GuardrailTripped, NodeError, WaypointError
from waypoint.nodes.base import Node, Outcome
from waypoint.nodes.failure import ERROR, NodeFailure


def failure_message(node: Node, act: Activation, error: WaypointError, attempts: int,
                    lost: dict[str, int], started_seq: int) -> Done | Failed:
    """`Failed`, unless `node` has an error route and `error` is its own failure: then a `Done` on it.

    A node's own failure is a NodeError (its code raised, timed out, its model or a child
    run failed); budgets, leases, conflicts and store errors are the run's, not the node's.
    A tripped guardrail is no failure to fall back from (the fallback would answer what
    the guardrail refused): it takes the node's `tripped` route, or fails the run.
    """
    if node.on_error is None or not isinstance(error, NodeError) or isinstance(error, GuardrailTripped):
        return Failed(act, error, lost)
    cause = error.__cause__ if isinstance(error.__cause__, BaseException) else error
    failure = NodeFailure(node=act.node, type=type(cause).__name__, message=str(cause), attempts=attempts)
    record: dict[str, Any] = {"error": failure.model_dump()}
    if lost:
        record["usage"] = dict(lost)
    update = {node.error_into: failure} if node.error_into is not None else None
    return Done(act, Finished(Outcome(update=update, labels=(ERROR,)), record, started_seq))
