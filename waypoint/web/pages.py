"""The HTML pages of `waypoint serve`: runs, a run, the inbox, a gate's own page.

    app = Starlette(routes=[*pages.routes(), ...])   # create_app mounts them

    GET  /inbox?cursor=            pending gates, the oldest question first, each with its form
    GET  /inbox?part=list          its list alone (static/inbox.js swaps it in as the inbox changes)
    GET  /gates/{run}/{gate}       one pending gate: a link to share; POST answers it
    GET  /runs?status=&graph=&limit=&cursor=   runs, newest first, filtered, a page at a time
    GET  /runs/{run}?at=N          a run: diagram, timeline, state after step N, fork, cancel
    GET  /runs/{run}?part=live     the live part of that page (JS swaps it in as steps arrive)
    GET  /runs/{run}?part=svg      its diagram as an SVG image
    POST /runs/{run}/fork, /runs/{run}/cancel

Every action is a form POST carrying the CSRF token, answered with a redirect (303),
so everything works without JavaScript; `static/live.js` only redraws the run page
when its event stream (`/api/runs/{run}/events`) says a step arrived, and
`static/inbox.js` the inbox's list when `/api/gates/events` says the gates changed. What an action
does to a run is `waypoint.web.actions`, shared with the JSON API. A refused form is
drawn again with the reason (and, for an answer, each error beside its input), and
nothing is written. Run ids and gate addresses may hold '/': `/gates/a/b/c` is read
as the run and the gate that exist.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from waypoint.errors import RunNotFoundError, WaypointError
from waypoint.web import actions
from waypoint.web.context import web
from waypoint.web.forms import form_fields, placed, read_form
from waypoint.web.security import check_csrf, csrf_token, current_user
from waypoint.web.views import InboxItem, gate_url, gates_of, inbox, pretty, run_diagram, timeline

STATUSES = ("queued", "running", "waiting", "done", "failed", "interrupted", "cancelled")
PAGE = 50
INBOX_PAGE = 25  # gates a page of the inbox shows (their runs are replayed to list them)


def routes() -> list[BaseRoute]:
    return [
        Route("/", lambda request: RedirectResponse("/inbox", 303), methods=["GET"]),
        Route("/inbox", inbox_page, methods=["GET"]),
        Route("/gates/{address:path}", gate_page, methods=["GET", "POST"]),
        Route("/runs", runs_page, methods=["GET"]),
        Route("/runs/{run_id:path}/fork", fork_run, methods=["POST"]),
        Route("/runs/{run_id:path}/cancel", cancel_run, methods=["POST"]),
        Route("/runs/{run_id:path}", run_page, methods=["GET"]),
    ]


# -- templates -------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals.update(csrf_token=csrf_token, current_user=current_user, run_url=run_url,
                       gate_url=gate_url, events_url=events_url, signed_in=signed_in, form_fields=form_fields)
    env.filters.update(when=when, took=took, pretty=pretty)
    return env


@functools.cache
def templates() -> Jinja2Templates:
    """The page templates (`waypoint/web/templates`), autoescaped; made on first use."""
    return Jinja2Templates(env=_environment())


def run_url(run_id: str, **query: Any) -> str:
    """The run's page (`/runs/<id>`), its '/' kept, anything else quoted."""
    extra = {k: v for k, v in query.items() if v is not None}
    return f"/runs/{quote(run_id, safe='/')}" + (f"?{urlencode(extra)}" if extra else "")


def when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def took(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def signed_in(request: Request) -> bool:
    """Whether this server makes people log in (so the header offers to log out)."""
    auth = web(request).auth
    return auth is not None and auth.required


def events_url(run_id: str) -> str:
    """The run's Server-Sent Events stream (`waypoint.web.events`)."""
    return f"/api/runs/{quote(run_id, safe='/')}/events"


def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("now", time.time())
    return templates().TemplateResponse(request, name, context, status_code=status)


# -- the inbox and gates ---------------------------------------------------------------
async def inbox_page(request: Request) -> Response:
    """INBOX_PAGE pending gates at a time, the oldest question first across pages (`?cursor=`);
    `?part=list` is the list alone (`static/inbox.js` swaps it in when the inbox changes)."""
    from waypoint.web import query as paging

    cursor = request.query_params.get("cursor")
    found = await inbox(web(request), limit=INBOX_PAGE, after=paging.read_gate_cursor(cursor))
    after = paging.make_gate_cursor(found.next) if found.next else None
    here = "/inbox" + (f"?{urlencode({'cursor': cursor})}" if cursor else "")
    name = "_inbox_list.html" if request.query_params.get("part") == "list" else "inbox.html"
    return page(request, name, items=found.items, total=found.total, first=found.start + 1,
                last=found.start + len(found.items), version=found.pending.version, here=here,
                prev="/inbox" if cursor else None,
                next=f"/inbox?{urlencode({'cursor': after})}" if after else None)


async def gate_page(request: Request) -> Response:
    """A pending gate's page; POST answers it as the signed-in user, then shows the run."""
    run_id, gate = await _find_gate(request, request.path_params["address"])
    ctx = web(request)
    info = await ctx.store.get_run(run_id)
    item = next((i for i in await gates_of(ctx, info) if i.gate == gate), None) if info.status == "waiting" \
        else None
    if request.method == "GET":
        return page(request, "gate.html", info=info, gate=gate, item=item)
    form = await request.form()
    await check_csrf(request, form)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if item is None or item.model is None:
        return page(request, "gate.html", 409, info=info, gate=gate, item=None,
                    problem=f"run {run_id!r} is not waiting at gate {gate!r} (it is {info.status}).")
    return await _answer(request, item, values)


async def _answer(request: Request, item: InboxItem, values: dict[str, str]) -> Response:
    reading = read_form(item.model, values)
    problem, errors = "", reading.errors
    if reading.answer is not None:
        seen = int(values["seen_seq"]) if values.get("seen_seq", "").isdigit() else item.seq
        try:
            await actions.answer(web(request), item.run.run_id, reading.answer, gate=item.gate,
                                 by=current_user(request), seen_seq=seen)
            return RedirectResponse(run_url(item.run.run_id), 303)
        except actions.InvalidAnswer as exc:
            errors = placed(exc.fields, {})
        except WaypointError as exc:
            problem = str(exc)
    fields = form_fields(item.schema, values=values, errors=errors)
    status = 409 if problem else 422
    return page(request, "gate.html", status, info=item.run, gate=item.gate, item=item, fields=fields,
                problem=problem or errors.get("", ""), seen_seq=values.get("seen_seq"))


async def _find_gate(request: Request, address: str) -> tuple[str, str]:
    """Split `run/.../gate/...` into the run id and gate address that exist (ids hold '/')."""
    parts = address.split("/")
    store = web(request).store
    found: list[tuple[str, str]] = []
    for cut in range(len(parts) - 1, 0, -1):
        run_id, gate = "/".join(parts[:cut]), "/".join(parts[cut:])
        try:
            info = await store.get_run(run_id)
        except RunNotFoundError:
            continue
        if gate in info.waiting:
            return run_id, gate
        found.append((run_id, gate))
    if found:
        return found[0]
    raise HTTPException(404, f"no run in this store matches {address!r}: a gate's page is "
                             "/gates/<run id>/<gate>; see the inbox for the pending ones.")


# -- runs ------------------------------------------------------------------------------
async def runs_page(request: Request) -> Response:
    """Runs, newest first, a page at a time: paged as the JSON API pages (`query.page_runs`)."""
    from waypoint.web import api
    from waypoint.web import query as paging

    ctx, query = web(request), request.query_params
    status = query.get("status") if query.get("status") in STATUSES else None
    graph = query.get("graph") or None
    size = min(int(query["limit"]), api.MAX_LIMIT) or PAGE if query.get("limit", "").isdigit() else PAGE
    cursor = paging.read_cursor(query.get("cursor"))  # a 400 naming the parameter when it is not ours
    runs, more = await paging.page_runs(ctx, status, graph, size, cursor, children=False)
    filters = {"status": status, "graph": graph, "limit": size if size != PAGE else None}
    after = paging.make_cursor(runs[-1]) if more and runs else None
    return page(request, "runs.html", runs=runs, statuses=STATUSES, graphs=sorted(ctx.graphs),
                filters=filters, prev=_runs_url(filters) if cursor else None,
                next=_runs_url(filters, after) if after else None)


def _runs_url(filters: dict[str, Any], cursor: str | None = None) -> str:
    query = {k: v for k, v in {**filters, "cursor": cursor}.items() if v}
    return "/runs" + (f"?{urlencode(query)}" if query else "")


async def run_page(request: Request) -> Response:
    """A run: diagram, timeline and state; `?part=live` is the live part, `?part=svg` the image."""
    run_id, part = request.path_params["run_id"], request.query_params.get("part")
    try:
        view = await _run_view(request, run_id)
    except RunNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    if part == "svg":
        drawing = view["drawing"]
        if drawing is None or drawing.svg is None:
            raise HTTPException(404, "no SVG: the Graphviz 'dot' binary is needed (apt-get install graphviz)")
        return Response(drawing.svg, media_type="image/svg+xml")
    return page(request, "live.html" if part == "live" else "run.html", **view)


async def _run_view(request: Request, run_id: str, **extra: Any) -> dict[str, Any]:
    ctx = web(request)
    info = await ctx.store.get_run(run_id)
    steps = await ctx.store.history(run_id)
    graph = ctx.graph_of(info)
    at = request.query_params.get("at", "")
    seq = int(at) if at.isdigit() and int(at) <= info.last_seq else None
    view: dict[str, Any] = {
        "info": info, "rows": timeline(info, steps), "served": graph is not None, "at": seq,
        "drawing": await run_diagram(graph, run_id, ctx.store) if graph is not None else None,
        "gates": await gates_of(ctx, info) if info.status == "waiting" else [],
        "state": await _state_text(graph, run_id, seq, ctx.store) if graph is not None else None,
        "finished": info.status == "done",  # the only end: a failed or stopped run may be resumed
        "problem": "", "edit": "",
    }
    view.update(extra)
    return view


async def _state_text(graph: Any, run_id: str, seq: int | None, store: Any) -> str:
    from waypoint.engine import state_at

    try:
        state = await state_at(graph, run_id, seq, store=store)
    except WaypointError as exc:
        return f"(the state cannot be shown: {exc})"
    return pretty(state.model_dump(mode="json"))


async def fork_run(request: Request) -> Response:
    """Fork at step `at`, with the fields of the JSON object `edit` changed (optional)."""
    run_id = request.path_params["run_id"]
    form = await request.form()
    await check_csrf(request, form)
    at, edit = str(form.get("at", "")), str(form.get("edit", "")).strip()
    try:
        update = json.loads(edit) if edit else None
        if update is not None and not isinstance(update, dict):
            raise ValueError("give a JSON object of the fields to change")
    except ValueError as exc:
        return await _refused(request, run_id, f"the edit is not a JSON object of fields: {exc}", edit, 422)
    try:
        info = await actions.fork(web(request), run_id, at=int(at) if at.isdigit() else None, update=update,
                                  by=current_user(request))
    except WaypointError as exc:
        return await _refused(request, run_id, str(exc), edit, actions.status_of(exc))
    return RedirectResponse(run_url(info.run_id), 303)


async def cancel_run(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    form = await request.form()
    await check_csrf(request, form)
    reason = str(form.get("reason", "")).strip() or None
    try:
        await actions.cancel(web(request), run_id, by=current_user(request), reason=reason)
    except WaypointError as exc:
        return await _refused(request, run_id, str(exc), "", actions.status_of(exc))
    return RedirectResponse(run_url(run_id), 303)


async def _refused(request: Request, run_id: str, problem: str, edit: str, status: int) -> Response:
    try:
        view = await _run_view(request, run_id, problem=problem, edit=edit)
    except RunNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    return page(request, "run.html", status, **view)
