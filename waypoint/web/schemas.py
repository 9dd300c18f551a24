"""The JSON the API reads and writes: request bodies as pydantic models, records as plain data.

    body = read_body(ResumeBody, await request.body())   # HTTPException 400/422 when it does not fit
    run_json(info), step_json(step), gate_json(request, info)

The request models forbid unknown fields, so a typo (`"anwser"`) is an error, not
an answer silently left out. The OpenAPI document (`waypoint.web.openapi`) is built
from these same models.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, TypeVar

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from waypoint._messages import problems
from waypoint.checkpoints.records import RunInfo, Step

M = TypeVar("M", bound=BaseModel)
MAX_BODY = 1 << 20  # a request body larger than 1 MiB is refused (413)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartBody(_Body):
    """POST /api/runs: start a run of a served graph."""

    graph: str = Field(description="The name of a graph this server serves (GET /api/graphs).")
    input: dict[str, Any] | None = Field(None, description="The initial state, as a JSON object.")
    run_id: str | None = Field(None, description="Your id for the run; with if_exists='resume', "
                                                 "starting it again returns the existing run.")
    if_exists: Literal["error", "resume"] = "error"


class ResumeBody(_Body):
    """POST /api/runs/{run_id}/resume: answer a gate; the answerer is who is authenticated."""

    gate: str | None = Field(None, description="The gate to answer (needed when several wait).")
    answer: Any = Field(None, description="The answer, fitting the gate's schema (GET /api/gates).")
    seen_seq: int | None = Field(None, ge=0, description="Apply the answer only if the run is still at "
                                                         "this step (the gate's `seq`): 409 otherwise.")


class ForkBody(_Body):
    """POST /api/runs/{run_id}/fork: a new run from the state right after step `at`."""

    at: int | None = Field(None, ge=0, description="The step to fork after (default: the last).")
    update: dict[str, Any] | None = Field(None, description="Fields of the state to change first.")
    run_id: str | None = Field(None, description="The new run's id (default: a new one).")


class CancelBody(_Body):
    """POST /api/runs/{run_id}/cancel: stop a run on purpose."""

    reason: str | None = Field(None, max_length=1000)


def read_body(model: type[M], raw: bytes) -> M:
    """`raw` (a JSON request body; empty means {}) as `model`, or HTTPException 400/422."""
    if len(raw) > MAX_BODY:
        raise HTTPException(413, f"the request body is {len(raw)} bytes; at most {MAX_BODY} are read.")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"the request body is not valid JSON ({exc}); send a JSON object "
                                 f"with Content-Type: application/json.") from None
    if not isinstance(data, dict):
        raise HTTPException(422, f"the request body must be a JSON object, not {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, f"the request body does not fit {model.__name__}: "
                                 f"{problems(exc, whole='body')}.") from None


def plain(value: Any) -> Any:
    """Stored data (msgpack-decoded) as JSON-able values: bytes as base64, odd numbers as text."""
    data = msgspec.to_builtins(value, str_keys=True)
    return json.loads(json.dumps(data, default=str, allow_nan=False)) if _odd(data) else data


def _odd(data: Any) -> bool:
    try:
        json.dumps(data, allow_nan=False)
    except (ValueError, TypeError):
        return True
    return False


def run_json(info: RunInfo, now: float | None = None) -> dict[str, Any]:
    """A run's row as the API shows it; `executing` says whether a live lease is held on it."""
    now = time.time() if now is None else now
    return {
        "run_id": info.run_id, "graph": info.graph, "status": info.status,
        "created_at": info.created_at, "updated_at": info.updated_at, "last_seq": info.last_seq,
        "waiting": list(info.waiting), "error": info.error, "graph_ref": info.graph_ref,
        "parent_run_id": info.parent_run_id, "forked_from": info.forked_from,
        "queue": info.queue, "priority": info.priority,
        "executing": info.lease_owner is not None and info.lease_expiry >= now,
    }


def step_json(step: Step) -> dict[str, Any]:
    """One step of a run's log (what `waypoint show` prints), as plain JSON."""
    return {"seq": step.seq, "kind": step.kind, "node": step.node, "activation": step.activation,
            "at": step.at, "delta": plain(step.delta), "children": list(step.children),
            "extra": plain(step.extra)}
