"""`/login` and `/logout`: the session cookie for people using the pages.

    GET  /login?next=/inbox     the form (a token, or a user name and password)
    POST /login                 checks them, rotates the session, redirects to `next`
    POST /logout                forgets the user

Only on servers with authentication configured; without it there is nothing to log
into and `/login` redirects to `next`. The form is rendered here (not by the pages'
templates) so that a server serving the API alone can still log people in.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from waypoint.web.context import web
from waypoint.web.security import Session, Throttled, check_csrf, csrf_token


def routes() -> list[BaseRoute]:
    return [Route("/login", login_form, methods=["GET"]), Route("/login", log_in, methods=["POST"]),
            Route("/logout", log_out, methods=["POST"])]


def safe_next(target: Any) -> str:
    """A local path to go to after login: never another site (`//evil`, `https://...`)."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


async def login_form(request: Request) -> Response:
    auth = web(request).auth
    target = safe_next(request.query_params.get("next"))
    if auth is None or not auth.required:
        return RedirectResponse(target, status_code=303)
    return _form(request, target)


def _form(request: Request, target: str, problem: str = "", status: int = 200) -> Response:
    auth = web(request).auth
    assert auth is not None
    user_field = ('<label>User <input name="user" autocomplete="username"></label>'
                  if auth.users else "")
    secret_label = "Password" if auth.users else "Token"
    hint = "A token works here too (leave User empty)." if auth.users and auth.token else ""
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>waypoint: log in</title>
<link rel="stylesheet" href="/static/waypoint.css"></head><body><main class="login"><h1>waypoint</h1>
{f'<p class="error" role="alert">{escape(problem)}</p>' if problem else ''}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{escape(csrf_token(request))}">
<input type="hidden" name="next" value="{escape(target)}">
{user_field}
<label>{secret_label} <input name="secret" type="password" autocomplete="current-password"></label>
<button type="submit">Log in</button></form>
<p>{hint}</p></main></body></html>"""
    return HTMLResponse(body, status_code=status)


async def log_in(request: Request) -> Response:
    auth = web(request).auth
    form = await request.form()
    await check_csrf(request, form)
    target = safe_next(form.get("next"))
    if auth is None or not auth.required:
        return RedirectResponse(target, status_code=303)
    user, secret = str(form.get("user") or ""), str(form.get("secret") or "")
    client = request.client.host if request.client else ""
    try:
        if user and auth.login(user, secret, client=client):
            who: str | None = user
        elif not user and auth.login_token(secret, client=client):
            who = auth.token_user
        else:
            who = None
    except Throttled as exc:
        refused = _form(request, target, str(exc), 429)
        refused.headers["retry-after"] = str(math.ceil(exc.seconds))
        return refused
    if who is None:
        return _form(request, target, "Wrong user name, password or token.", 401)
    request.scope["waypoint.session"] = Session.new(who)  # a new id: no session fixation
    return RedirectResponse(target, status_code=303)


async def log_out(request: Request) -> Response:
    form = await request.form()
    await check_csrf(request, form)
    request.scope["waypoint.session"] = Session.new(None)
    return RedirectResponse("/login", status_code=303)
