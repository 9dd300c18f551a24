"""The middleware every request passes first: Host, Origin, authentication, session cookie.

    app = Guard(starlette_app, Auth(token="s3cret"), allowed_hosts=frozenset({"127.0.0.1:8000"}))

A pure ASGI middleware (not BaseHTTPMiddleware) so that Server-Sent Event streams
flow through it untouched. It puts on the request's scope what
`waypoint.web.security` reads: "waypoint.user" (the identity, or None when
unauthenticated), "waypoint.session" (a `Session`; a handler that replaces it, as
the login form does, gets the new cookie sent) and "waypoint.secret". The rules
are written in `waypoint.web.security`'s docstring.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from urllib.parse import quote

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waypoint.web.security import (
    COOKIE,
    PUBLIC_PATHS,
    UNSAFE_METHODS,
    Auth,
    Session,
    Throttled,
    cookie_header,
    local_user,
)


class Guard:
    """Refuses what must not reach a handler; identifies the rest (see module docstring)."""

    def __init__(self, app: ASGIApp, auth: Auth, allowed_hosts: frozenset[str] = frozenset()) -> None:
        self.app, self.auth, self.allowed_hosts = app, auth, allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        session = self._session(headers)
        try:
            user = self._identify(headers, session, _client(scope))
        except Throttled as exc:
            response = _error(scope, 429, str(exc))
            response.headers["retry-after"] = str(math.ceil(exc.seconds))
            await response(scope, receive, send)
            return
        if user is None and self.auth.required and not _public(scope["path"]):
            await _unauthenticated(scope)(scope, receive, send)
            return
        scope["waypoint.user"], scope["waypoint.session"] = user, session
        scope["waypoint.secret"] = self.auth.secret
        await self.app(scope, receive, self._cookie_sender(scope, send, session, headers))

    # -- refusals ---------------------------------------------------------------------
    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        host = headers.get("host", "")
        if self.allowed_hosts and not self._allowed(host.lower()):
            return _error(scope, 400, f"Host {host!r} is not one this server answers to "
                                      f"({', '.join(sorted(self.allowed_hosts))}); open the server by "
                                      "one of those names, or start it with --allow-host NAME.")
        if scope["method"] in UNSAFE_METHODS:
            return _cross_origin(scope, headers, host)
        return None

    def _allowed(self, host: str) -> bool:
        """`host` (a Host header, lowercased) is allowed as it is, or by its name on any port."""
        if host in self.allowed_hosts:
            return True
        name = host[:host.find("]") + 1] if host.startswith("[") else host.rpartition(":")[0]
        return bool(name) and name in self.allowed_hosts

    # -- who ----------------------------------------------------------------------------
    def _session(self, headers: Headers) -> Session:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                found = Session.decode(value, self.auth.secret, time.time())
                if found is not None:
                    return found
        return Session.new(None)

    def _identify(self, headers: Headers, session: Session, client: str) -> str | None:
        """Who the request is, or None; `Throttled` while its user must wait after failures."""
        if not self.auth.required:
            return local_user()
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return self.auth.token_user if self.auth.login_token(credentials.strip(), client=client) else None
        if scheme.lower() == "basic":
            return self._basic(credentials.strip(), client)
        known = session.user in self.auth.users or session.user == self.auth.token_user
        return session.user if session.user is not None and known else None

    def _basic(self, credentials: str, client: str) -> str | None:
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if self.auth.login(user, password, client=client) else None

    # -- the cookie ---------------------------------------------------------------------
    def _cookie_sender(self, scope: Scope, send: Send, session: Session, headers: Headers) -> Send:
        """`send`, adding Set-Cookie when the session is new or a handler replaced it."""
        had_cookie = COOKIE + "=" in headers.get("cookie", "")
        https = scope.get("scheme") == "https"

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                now = scope.get("waypoint.session")
                if isinstance(now, Session) and (now is not session or not had_cookie):
                    out = MutableHeaders(scope=message)
                    cookie = cookie_header(now, self.auth.secret, https=https)
                    out.append("set-cookie", cookie.decode("latin-1"))
            await send(message)

        return sender


def _client(scope: Scope) -> str:
    """The client's address (uvicorn's, or the proxy's X-Forwarded-For with --proxy-headers)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def _public(path: str) -> bool:
    return path.startswith(PUBLIC_PATHS) or path == "/api/openapi.json"


def _cross_origin(scope: Scope, headers: Headers, host: str) -> Response | None:
    """403 for a state-changing request sent by another site's page."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return _error(scope, 403, f"refused a {site} {scope['method']}: this server accepts changes "
                                  "only from its own pages (or from clients that are not browsers).")
    origin = headers.get("origin")
    if origin is None:
        return None
    scheme = scope.get("scheme", "http")
    if origin.lower() != f"{scheme}://{host}".lower():
        return _error(scope, 403, f"refused a {scope['method']} from origin {origin!r}: this server "
                                  f"accepts changes only from its own pages ({scheme}://{host}).")
    return None


def _unauthenticated(scope: Scope) -> Response:
    if _is_api(scope):
        response = _error(scope, 401, "authentication required: send `Authorization: Bearer TOKEN` "
                                      "(the server's --token) or HTTP Basic credentials of a user.")
        response.headers["www-authenticate"] = 'Bearer realm="waypoint"'
        return response
    target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
    return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)


def _is_api(scope: Scope) -> bool:
    return str(scope["path"]).startswith("/api/") or scope["path"] == "/api"


def _error(scope: Scope, status: int, message: str) -> Response:
    if _is_api(scope):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return PlainTextResponse(message, status_code=status)
