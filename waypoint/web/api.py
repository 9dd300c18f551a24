"""The JSON API: what the CLI does, over HTTP (described by GET /api/openapi.json).

    GET  /api/runs?status=&graph=&limit=&cursor=&children=   runs, newest first, a page at a time
    GET  /api/runs/{run_id}                 a run, with the gates it waits at
    GET  /api/runs/{run_id}/steps?after=N   its log after step N
    GET  /api/runs/{run_id}/state?at=N      its state right after step N (default: now)
    GET  /api/runs/{run_id}/diagram?format=mermaid|dot|svg   drawn with its status and path
    GET  /api/runs/{run_id}/events          Server-Sent Events (waypoint.web.events)
    POST /api/runs                          start {graph, input, run_id, if_exists}: 201 (200: it existed)
    POST /api/runs/{run_id}/resume          answer {gate, answer, seen_seq}: as the caller
    POST /api/runs/{run_id}/fork            {at, update, run_id}
    POST /api/runs/{run_id}/cancel          {reason}
    GET  /api/gates?limit=&cursor=          the inbox: pending gates, oldest question first, paged
    GET  /api/gates/events                  Server-Sent Events: a gate starts or stops waiting
    GET  /api/approvals?run_id=&limit=      who answered what, when
    GET  /api/graphs                        the served graphs, with their diagrams

Errors are `{"error": message, "status": code}` with the message the CLI prints:
404 unknown run or graph, 409 a run executing elsewhere, moved on (a stale answer)
or finished, 422 a body or answer that does not fit (an answer's problems listed in
`"fields"`: `[{"loc": ["approved"], "msg": "..."}]`), 400 anything else refused.
POST bodies must be JSON (`Content-Type: application/json`, else 415).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from waypoint.errors import WaypointError
from waypoint.web import actions
from waypoint.web.context import WebContext, web
from waypoint.web.query import (
    choice_param,
    flag_param,
    int_param,
    make_cursor,
    make_gate_cursor,
    page_runs,
    read_cursor,
    read_gate_cursor,
)
from waypoint.web.schemas import (
    CancelBody,
    ForkBody,
    ResumeBody,
    StartBody,
    plain,
    read_body,
    run_json,
    step_json,
)
from waypoint.web.security import current_user
from waypoint.web.views import diagram_formats

Handler = Callable[[Request], Awaitable[Response]]
STATUSES = ("queued", "running", "waiting", "done", "failed", "interrupted", "cancelled")
MAX_LIMIT = 500


def routes() -> list[BaseRoute]:
    from waypoint.web import events
    from waypoint.web.openapi import openapi

    return [
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/runs", _refusals(list_runs), methods=["GET"]),
        Route("/api/runs", _refusals(start_run), methods=["POST"]),
        # run ids may hold '/' (child runs: parent/sub): the suffixed routes come first
        Route("/api/runs/{run_id:path}/steps", _refusals(get_steps), methods=["GET"]),
        Route("/api/runs/{run_id:path}/state", _refusals(get_state), methods=["GET"]),
        Route("/api/runs/{run_id:path}/diagram", _refusals(get_diagram), methods=["GET"]),
        Route("/api/runs/{run_id:path}/resume", _refusals(resume_run), methods=["POST"]),
        Route("/api/runs/{run_id:path}/fork", _refusals(fork_run), methods=["POST"]),
        Route("/api/runs/{run_id:path}/cancel", _refusals(cancel_run), methods=["POST"]),
        *events.routes(),
        Route("/api/runs/{run_id:path}", _refusals(get_run), methods=["GET"]),
        Route("/api/gates", _refusals(list_gates), methods=["GET"]),
        Route("/api/approvals", _refusals(list_approvals), methods=["GET"]),
        Route("/api/graphs", _refusals(list_graphs), methods=["GET"]),
    ]


def _refusals(handler: Handler) -> Handler:
    """`handler` with refusals as JSON: a WaypointError gets its status (actions.status_of)."""
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except actions.InvalidAnswer as exc:
            fields = [{"loc": list(loc), "msg": msg} for loc, msg in exc.fields]
            return refusal(exc, fields=fields)
        except WaypointError as exc:
            return refusal(exc)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def refusal(exc: WaypointError, **more: Any) -> JSONResponse:
    status = actions.status_of(exc)
    body = {"error": str(exc), "status": status, "type": type(exc).__name__, **more}
    return JSONResponse(body, status_code=status)


# -- reading ---------------------------------------------------------------------------
async def list_runs(request: Request) -> Response:
    """Runs, newest first: `{"runs": [...], "next": cursor or null}`; pass `cursor` for the next page."""
    query = request.query_params
    status = choice_param(query.get("status"), STATUSES, "status")
    limit = int_param(query.get("limit"), "limit", 50, low=1, high=MAX_LIMIT)
    children = flag_param(query.get("children"), "children")
    cursor = read_cursor(query.get("cursor"))
    ctx = web(request)
    runs, more = await page_runs(ctx, status, query.get("graph"), limit, cursor, children=children)
    next_cursor = make_cursor(runs[-1]) if more and runs else None
    return JSONResponse({"runs": [run_json(info) for info in runs], "next": next_cursor})


async def get_run(request: Request) -> Response:
    """A run's row, with the gates it waits at (`gates`: [] unless waiting)."""
    from waypoint.web.views import gates_of

    ctx = web(request)
    info = await ctx.store.get_run(request.path_params["run_id"])
    gates = [gate_json(item) for item in await gates_of(ctx, info)] if info.status == "waiting" else []
    return JSONResponse({**run_json(info), "gates": gates})


async def get_steps(request: Request) -> Response:
    """The run's steps with seq > `after`, oldest first, at most `limit`."""
    ctx = web(request)
    run_id = request.path_params["run_id"]
    after = int_param(request.query_params.get("after"), "after", 0, low=0)
    limit = int_param(request.query_params.get("limit"), "limit", 1000, low=1, high=10_000)
    await ctx.store.get_run(run_id)  # 404 for an unknown run
    steps = await ctx.store.history(run_id, after=after, upto=after + limit)
    return JSONResponse({"run_id": run_id, "steps": [step_json(s) for s in steps]})


async def get_state(request: Request) -> Response:
    """The run's state right after step `at` (default: its last)."""
    from waypoint.engine import state_at

    ctx = web(request)
    info, graph = await _run_and_graph(ctx, request.path_params["run_id"])
    at = int_param(request.query_params.get("at"), "at", info.last_seq, low=0)
    if at > info.last_seq:
        raise HTTPException(404, f"run {info.run_id!r} has steps 0 to {info.last_seq}; "
                                 f"there is no step {at} to read the state at.")
    state = await state_at(graph, info.run_id, at, store=ctx.store)
    return JSONResponse({"run_id": info.run_id, "seq": at, "state": plain(state.model_dump(mode="json"))})


async def get_diagram(request: Request) -> Response:
    """The run drawn on its graph (status, visits, path): SVG (the default where Graphviz is
    installed), Mermaid (the default without it) or DOT text."""
    from waypoint.engine import run_marks

    ctx = web(request)
    asked = request.query_params.get("format")
    formats = diagram_formats()
    if asked in ("svg",) and asked not in formats:
        raise HTTPException(400, "format 'svg' needs Graphviz's 'dot' binary, which this server lacks: ask "
                                 "format=mermaid or format=dot, or install it (apt-get install graphviz, "
                                 "brew install graphviz) and restart the server.")
    fmt = choice_param(asked, formats, "format") or formats[0]
    info, graph = await _run_and_graph(ctx, request.path_params["run_id"])
    marks = await run_marks(graph, info.run_id, store=ctx.store)
    text = await _draw(graph, fmt, run=marks)
    media = "image/svg+xml" if fmt == "svg" else "text/plain; charset=utf-8"
    return Response(text, media_type=media)


async def _draw(graph: Any, fmt: str, **options: Any) -> str:
    """`graph.render(fmt)`; SVG in a thread (it runs Graphviz), 503 when `dot` is missing."""
    if fmt != "svg":
        return str(graph.render(fmt, **options))
    try:
        return str(await asyncio.to_thread(graph.render, "svg", **options))
    except WaypointError as exc:
        raise HTTPException(503, str(exc)) from None


async def _run_and_graph(ctx: WebContext, run_id: str) -> tuple[Any, Any]:
    info = await ctx.store.get_run(run_id)
    return info, actions.graph_named(ctx, info.graph, run_id)


async def list_gates(request: Request) -> Response:
    """The pending gates of every top-level waiting run, the oldest question first across pages:
    `{"gates": [...], "next": cursor or null, "total": n}`; pass `cursor` for the next page."""
    from waypoint.web.views import inbox

    limit = int_param(request.query_params.get("limit"), "limit", 50, low=1, high=MAX_LIMIT)
    page = await inbox(web(request), limit=limit, after=read_gate_cursor(request.query_params.get("cursor")))
    return JSONResponse({"gates": [gate_json(item) for item in page.items], "total": page.total,
                         "next": make_gate_cursor(page.next) if page.next else None})


def gate_json(item: Any) -> dict[str, Any]:
    """An inbox item (`waypoint.web.views.InboxItem`) as the API shows it."""
    return {"run_id": item.run.run_id, "graph": item.run.graph, "gate": item.gate, "prompt": item.prompt,
            "payload": plain(item.payload), "schema": plain(item.schema), "seq": item.seq,
            "asked_at": item.asked_at, "deadline_at": item.deadline_at,
            "answerable": item.model is not None}


async def list_approvals(request: Request) -> Response:
    """Answers given at gates, oldest first: of one run (and its child runs) or of all runs."""
    from waypoint.engine import approval_log

    run_id = request.query_params.get("run_id")
    limit = int_param(request.query_params.get("limit"), "limit", 1000, low=1, high=100_000)
    entries = await approval_log(run_id, store=web(request).store, limit=limit)
    return JSONResponse({"approvals": [
        {"run_id": e.run_id, "gate": e.gate, "seq": e.seq, "by": e.by, "at": e.at, "answer": plain(e.answer)}
        for e in entries]})


async def list_graphs(request: Request) -> Response:
    """The served graphs: name, reference, nodes and diagrams (Mermaid, DOT; SVG with Graphviz)."""
    ctx = web(request)
    svg = "svg" in diagram_formats() and flag_param(request.query_params.get("svg"), "svg", True)
    out = []
    for name, graph in sorted(ctx.graphs.items()):
        out.append({"name": name, "ref": ctx.refs.get(name), "nodes": sorted(graph.nodes),
                    "mermaid": await _draw(graph, "mermaid"), "dot": await _draw(graph, "dot"),
                    "svg": await _draw(graph, "svg") if svg else None})
    return JSONResponse({"graphs": out})


# -- changing --------------------------------------------------------------------------
async def start_run(request: Request) -> Response:
    """Start a run: 201. With `run_id` and if_exists="resume", a run that exists is 200, as it stands."""
    body = read_body(StartBody, await _json_body(request))
    info, created = await actions.start(web(request), body.graph, body.input, run_id=body.run_id,
                                        if_exists=body.if_exists)
    return JSONResponse(run_json(info), status_code=201 if created else 200)


async def resume_run(request: Request) -> Response:
    """Answer a gate as the authenticated user; the run goes on in the server: 202."""
    body = read_body(ResumeBody, await _json_body(request))
    info = await actions.answer(web(request), request.path_params["run_id"], body.answer, gate=body.gate,
                                by=current_user(request), seen_seq=body.seen_seq)
    return JSONResponse(run_json(info), status_code=202)


async def fork_run(request: Request) -> Response:
    """A new run from the state right after step `at`, with an optional edit: 201."""
    body = read_body(ForkBody, await _json_body(request))
    info = await actions.fork(web(request), request.path_params["run_id"], at=body.at, update=body.update,
                              by=current_user(request), new_id=body.run_id)
    return JSONResponse(run_json(info), status_code=201)


async def cancel_run(request: Request) -> Response:
    """Cancel a run on purpose (resumable only with force, from the CLI or Python)."""
    body = read_body(CancelBody, await _json_body(request))
    info = await actions.cancel(web(request), request.path_params["run_id"], by=current_user(request),
                                reason=body.reason)
    return JSONResponse(run_json(info))


async def _json_body(request: Request) -> bytes:
    """The body of a JSON POST; 415 for another content type (a cross-site form cannot send JSON)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, f"send the body as JSON with Content-Type: application/json "
                                 f"(got {kind or 'no content type'!r}).")
    return await request.body()
