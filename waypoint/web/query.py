"""Query parameters of the JSON API and pages, and paging through runs and gates with opaque cursors.

    limit = int_param(request.query_params.get("limit"), "limit", 50, low=1, high=500)
    runs, more = await page_runs(ctx, "waiting", None, limit, read_cursor(text), children=False)
    next_cursor = make_cursor(runs[-1]) if more else None
    page = await inbox(ctx, limit=limit, after=read_gate_cursor(text))  # the inbox: keyed by gate
    next_gates = make_gate_cursor(page.next) if page.next else None

Each parser raises HTTPException(400) naming the parameter and what it must be.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.exceptions import HTTPException

from waypoint.web.context import WebContext


async def page_runs(ctx: WebContext, status: Any, graph: str | None, limit: int,
                    cursor: tuple[str, float] | None, *, children: bool) -> tuple[list[Any], bool]:
    """A page of `limit` runs after `cursor` (run id, created_at), newest first, and whether
    more follow. The Store lists newest first with a limit, so a page reads its prefix; a
    cursor whose run left the filter (its status changed) continues from its creation time."""
    fetch = limit + 1
    while True:
        listed = await ctx.store.list_runs(status=status, graph=graph, limit=fetch)
        runs = [r for r in listed if children or r.parent_run_id is None]
        start = _after(runs, cursor)
        if start is None and len(listed) == fetch:
            fetch *= 4  # the cursor is further down
            continue
        start = start if start is not None else len(runs)
        if len(runs) - start > limit or len(listed) < fetch:
            return runs[start:start + limit], len(runs) - start > limit
        fetch *= 4


def _after(runs: list[Any], cursor: tuple[str, float] | None) -> int | None:
    if cursor is None:
        return 0
    run_id, created = cursor
    for index, info in enumerate(runs):
        if info.run_id == run_id:
            return index + 1
    for index, info in enumerate(runs):
        if info.created_at < created:
            return index
    return None


def int_param(text: str | None, name: str, default: int, *, low: int, high: int | None = None) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"query parameter {name!r} must be an integer, not {text[:40]!r}.") from None
    if value < low or (high is not None and value > high):
        bounds = f"from {low}" + (f" to {high}" if high is not None else "")
        raise HTTPException(400, f"query parameter {name!r} must be {bounds} (got {value}).")
    return value


def choice_param(text: str | None, choices: tuple[str, ...], name: str) -> str | None:
    if text is None or text == "":
        return None
    if text not in choices:
        raise HTTPException(400, f"query parameter {name!r} must be one of {', '.join(choices)} "
                                 f"(got {text[:40]!r}).")
    return text


def flag_param(text: str | None, name: str, default: bool = False) -> bool:
    if text is None or text == "":
        return default
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise HTTPException(400, f"query parameter {name!r} must be true or false (got {text[:40]!r}).")


def make_cursor(info: Any) -> str:
    """The cursor of the page after run `info` (its id and creation time, opaque to clients)."""
    return base64.urlsafe_b64encode(json.dumps([info.run_id, info.created_at]).encode()).decode()


def read_cursor(text: str | None) -> tuple[str, float] | None:
    if not text:
        return None
    try:
        run_id, created = json.loads(base64.urlsafe_b64decode(text.encode()))
        if isinstance(run_id, str) and isinstance(created, int | float):
            return run_id, float(created)
    except (ValueError, TypeError):
        pass
    raise HTTPException(400, "query parameter 'cursor' is not one this server gave: pass the `next` "
                             "of the previous page as it is, or leave it out for the first page.")


def make_gate_cursor(key: tuple[float, str, str]) -> str:
    """The cursor of the inbox page after gate `key` (when it was asked, its run, its address)."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def read_gate_cursor(text: str | None) -> tuple[float, str, str] | None:
    if not text:
        return None
    try:
        asked, run_id, gate = json.loads(base64.urlsafe_b64decode(text.encode()))
        if isinstance(asked, int | float) and isinstance(run_id, str) and isinstance(gate, str):
            return float(asked), run_id, gate
    except (ValueError, TypeError):
        pass
    raise HTTPException(400, "query parameter 'cursor' is not one this server gave: pass the `next` "
                             "of the previous page of gates as it is, or leave it out for the first page.")
