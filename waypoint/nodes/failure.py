"""Error routes: a node's failure, after its retries, taken as a route instead of failing the run.

    g.node(charge, retry=3, on_error="fallback", error_into="failure")
    g.add(llm("agent", prompt="{question}", into="answer"), on_error="simple")

`on_error` names the node (or END) the failed activation goes to, on its "error"
route; the step records the error (type, message, attempts) in its `extra`, and
with `error_into` the state field (typed `NodeFailure | None`) receives it, so
the fallback can read what went wrong. Only a failure of the node itself takes
the route: an exception from its code, a timeout, a model error. Budgets, leases,
conflicts and store errors still fail the run, which stays resumable.
"""

from __future__ import annotations

from pydantic import BaseModel

ERROR = "error"  # the label of the error route, in `routes` and in the step's `route`


class NodeFailure(BaseModel):
    """What an `error_into=` field receives when its node fails onto its error route."""

    node: str  # the node that failed
    type: str  # the exception's class name, e.g. "TimeoutError"
    message: str  # str() of the exception
    attempts: int  # how many attempts were made (the retry policy's, at most)
