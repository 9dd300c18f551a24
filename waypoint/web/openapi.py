"""GET /api/openapi.json: the API described as OpenAPI 3.1, built from the request models.

    schemathesis run http://127.0.0.1:8000/api/openapi.json     # what tests/test_web_fuzz.py does

Written out here (not generated from the routes' docstrings) so that every parameter
has a type and bounds a client generator or fuzzer can use; request bodies come from
the pydantic models in `waypoint.web.schemas`, so they cannot drift from what is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from waypoint.web.context import web
from waypoint.web.schemas import CancelBody, ForkBody, ResumeBody, StartBody
from waypoint.web.views import diagram_formats

STATUSES = ["queued", "running", "waiting", "done", "failed", "interrupted", "cancelled"]
_REF = "#/components/schemas/{model}"


async def openapi(request: Request) -> Response:
    ctx = web(request)
    return JSONResponse(document(ctx.graphs, auth=ctx.auth is not None and ctx.auth.required))


def document(graphs: Mapping[str, Any], *, auth: bool = False) -> dict[str, Any]:
    """The OpenAPI document of a server serving `graphs` (by name): their names are StartBody's
    `graph`, their state models its `input`. With `auth`, every operation needs the bearer
    token or a user's Basic credentials."""
    schemas: dict[str, Any] = {"Error": _ERROR, "Run": _OBJECT, "Page": _OBJECT}
    bodies = {}
    for model in (StartBody, ResumeBody, ForkBody, CancelBody):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        bodies[model.__name__] = _body(model)
    if graphs:
        start = schemas["StartBody"]["properties"]
        start["graph"]["enum"] = sorted(graphs)
        start["input"] = {"anyOf": [*_states(graphs, schemas), {"type": "null"}], "default": None}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "waypoint", "version": "1",
                 "description": "Runs, gates and answers of a waypoint server (waypoint serve)."},
        "paths": _paths(bodies),
        "components": {"schemas": schemas, "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"}, "user": {"type": "http", "scheme": "basic"}}},
    }
    if auth:
        doc["security"] = [{"token": []}, {"user": []}]
    return doc


_ERROR = {"type": "object", "required": ["error", "status"],
          "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}
_OBJECT = {"type": "object"}
RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _states(graphs: Mapping[str, Any], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """A reference to each served graph's state model, whose schemas join the components."""
    refs = []
    for graph in graphs.values():
        model = graph.state_type
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        refs.append({"$ref": _REF.format(model=model.__name__)})
    return refs


def _body(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _answers(ok: int, *errors: int, media: str = "application/json") -> dict[str, Any]:
    content = {kind: {"schema": _OBJECT if kind == "application/json" else {"type": "string"}}
               for kind in media.split(",")}
    out: dict[str, Any] = {str(ok): {"description": "OK", "content": content}}
    for code in (400, 401, *errors):
        out[str(code)] = {"description": "refused",
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


def _get(summary: str, params: list[dict[str, Any]], *errors: int, media: str = "application/json") -> Any:
    answers = _answers(200, *errors, media=media)
    return {"get": {"summary": summary, "parameters": params, "responses": answers}}


def _post(summary: str, body: dict[str, Any], ok: int, *errors: int, path: bool = True) -> Any:
    return {"post": {"summary": summary, "parameters": [RUN_ID] if path else [], "requestBody": body,
                     "responses": _answers(ok, 403, 413, 415, 422, *errors)}}


def _paths(bodies: dict[str, Any]) -> dict[str, Any]:
    seq = {"type": "integer", "minimum": 0}
    runs = _get("Runs, newest first, a page at a time", [
        _query("status", {"type": "string", "enum": STATUSES}), _query("graph", {"type": "string"}),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        _query("cursor", {"type": "string"}), _query("children", {"type": "boolean"})])
    runs.update(_post("Start a run", bodies["StartBody"], 201, 404, 409, path=False))
    runs["post"]["responses"]["201"]["links"] = _LINKS
    runs["post"]["responses"]["200"] = {**runs["post"]["responses"]["201"],
                                        "description": "the run existed (run_id with if_exists='resume')"}
    paths = {
        "/api/runs": runs,
        "/api/runs/{run_id}": _get("A run, with the gates it waits at", [RUN_ID], 404),
        "/api/runs/{run_id}/steps": _get("The run's log after step `after`", [
            RUN_ID, _query("after", seq),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000})], 404),
        "/api/runs/{run_id}/state": _get("The state right after step `at`", [RUN_ID, _query("at", seq)], 404),
        "/api/runs/{run_id}/diagram": _get("The run drawn on its graph", [
            RUN_ID, _query("format", {"type": "string", "enum": list(diagram_formats())})], 404, 503,
            media="image/svg+xml,text/plain"),
        "/api/runs/{run_id}/events": _get("The run's steps as Server-Sent Events (id: = seq)", [
            RUN_ID, _query("after", seq)], 404, 503, media="text/event-stream"),
        "/api/runs/{run_id}/resume": _post("Answer a gate, as the authenticated user", bodies["ResumeBody"],
                                           202, 404, 409),
        "/api/runs/{run_id}/fork": _post("Fork from a step, with an optional state edit", bodies["ForkBody"],
                                         201, 404, 409),
        "/api/runs/{run_id}/cancel": _post("Cancel a run on purpose", bodies["CancelBody"], 200, 404, 409),
        "/api/gates": _get("Pending gates (the inbox), the oldest question first, a page at a time", [
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
            _query("cursor", {"type": "string"})]),
        "/api/gates/events": _get("Server-Sent Events: `inbox` (total, version), then `waiting` and "
                                  "`gone` as gates start and stop waiting", [], 503,
                                  media="text/event-stream"),
        "/api/approvals": _get("Answers given at gates", [
            _query("run_id", {"type": "string"}), _query("limit", {"type": "integer", "minimum": 1})], 404),
        "/api/graphs": _get("The served graphs and their diagrams", [_query("svg", {"type": "boolean"})]),
    }
    for path, item in paths.items():
        for method, operation in item.items():
            operation["operationId"] = _operation_id(method, path)
    return paths


def _operation_id(method: str, path: str) -> str:
    """`get /api/runs/{run_id}/steps` -> "get_run_steps"; `post /api/runs` -> "post_runs"."""
    words = [w for w in path.removeprefix("/api/").split("/") if w != "{run_id}"]
    if "{run_id}" in path:
        words[0] = "run"
    return "_".join([method, *words])


# a started run's id leads to what can be done with it: how a client (or a fuzzer) finds real runs
_LINKS = {op: {"operationId": op, "parameters": {"run_id": "$response.body#/run_id"}}
          for op in ("get_run", "get_run_steps", "get_run_state", "post_run_resume", "post_run_fork",
                     "post_run_cancel")}
