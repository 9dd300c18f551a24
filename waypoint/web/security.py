"""Who is asking, and may they: authentication, sessions, CSRF, Host and Origin checks.

    from waypoint.web.security import check_csrf, csrf_token, current_user

    async def answer_page(request):                    # a page's form POST handler
        form = await request.form()
        await check_csrf(request, form)                # 403 unless the form carries our token
        by = current_user(request)                     # who answers: logged with the answer
        ...

    # in every HTML form the pages render:
    # <input type="hidden" name="csrf_token" value="{{ csrf_token(request) }}">

Rules, enforced by `Guard` (an ASGI middleware wrapping the whole app) before any
handler runs:

- **Host allowlist.** A request whose Host header is not one of `allowed_hosts` is
  refused (400): a DNS-rebinding page cannot reach the server under its own name. A
  name without a port matches it on any port. `create_app`'s default is the loopback
  names (`DEFAULT_HOSTS`); `["*"]` (`ANY_HOST`) accepts any Host, for a server reached
  by other names with authentication (what `waypoint serve --host 0.0.0.0` does unless
  given `--allow-host`).
- **Same origin.** A state-changing request (POST, PUT, PATCH, DELETE) whose `Origin`
  is not this server's, or whose `Sec-Fetch-Site` says cross-site or same-site, is
  refused (403).
- **Authentication.** With `Auth()` (no token, no users: loopback binds only) every
  request is the OS user who started the server (`getpass.getuser()`, else "local").
  Otherwise a request must carry `Authorization: Bearer <token>` (identity "token", or
  `Auth.token_user`), HTTP Basic credentials of a configured user, or a session cookie
  from the login form (`/login`). API requests without one get 401; pages redirect
  to `/login?next=...`.
- **Sessions.** Every browser gets a signed session cookie (`waypoint_session`:
  HttpOnly, SameSite=Strict, Path=/, Secure when the request came over https) that
  carries a random session id and, after login, the user. It is stateless (HMAC
  with `Auth.secret`): restarting the server with a new secret logs everyone out.
- **CSRF.** `csrf_token(request)` is an HMAC of the session id; `check_csrf` refuses
  a form whose `csrf_token` field does not match (403). JSON API POSTs need no token:
  they must be `Content-Type: application/json` (415 otherwise), which a cross-site
  form cannot send, and the Origin check above applies to them too.

- **Guessing.** Failed logins (Basic credentials, the token, the login form) are
  counted per user and client address (`Throttle`): after 5 in a row, each further
  attempt waits 1 s, 2 s, 4 s... (at most 5 minutes) and is refused meanwhile with
  429 and `Retry-After`, the password unchecked; a success forgets the failures.

Passwords are stored hashed with scrypt (`hash_password`, or `waypoint serve
--hash-password`); `pbkdf2_sha256$...` hashes (Django's format) are accepted too. A
verified password is remembered for a minute (`Auth.remember`) as an HMAC under the
server's secret, never as itself, so an API client sending Basic credentials on every
request pays scrypt once a minute rather than on each (~0.05-0.25 s of CPU apiece).
"""

from __future__ import annotations

import base64
import functools
import getpass
import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

COOKIE = "waypoint_session"
SESSION_SECONDS = 12 * 3600
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# create_app's default Host allowlist: the loopback names on any port, and the name Starlette's
# in-process TestClient sends (no browser reaches a page under it, so no rebinding through it)
DEFAULT_HOSTS = (*LOOPBACK_HOSTS, "testserver")
ANY_HOST = "*"  # allowed_hosts=["*"]: every Host (behind a proxy that checks it, with authentication)
PUBLIC_PATHS = ("/login", "/static/", "/favicon.ico")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Throttle:
    """Login throttling per (user, client address): after `free` failures in a row, each
    further attempt must wait `base * 2 ** (failures - free)` seconds (at most `cap`) and is
    refused meanwhile (429, `Retry-After`) without the password being checked. A success
    forgets the failures.

        wait = throttle.wait("ana", "10.0.0.7")     # seconds to wait first; 0.0: go ahead
        throttle.failed("ana", "10.0.0.7")          # or throttle.succeeded(...)

    At most `keep` keys are remembered (the stalest are dropped first). `clock` is
    `time.monotonic` unless given (tests pass their own).
    """

    def __init__(self, *, free: int = 5, base: float = 1.0, cap: float = 300.0, keep: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base, self.cap, self.keep, self.clock = free, base, cap, keep, clock
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # key -> (failures, not before)

    def wait(self, user: str, client: str) -> float:
        _, not_before = self._failures.get((user, client), (0, 0.0))
        return max(0.0, not_before - self.clock())

    def failed(self, user: str, client: str) -> None:
        key = (user, client)
        failures = self._failures.pop(key, (0, 0.0))[0] + 1
        delay = 0.0 if failures < self.free else min(self.cap, self.base * 2 ** (failures - self.free))
        if len(self._failures) >= self.keep:
            for stale in sorted(self._failures, key=lambda k: self._failures[k][1])[:self.keep // 2]:
                del self._failures[stale]
        self._failures[key] = (failures, self.clock() + delay)

    def succeeded(self, user: str, client: str) -> None:
        self._failures.pop((user, client), None)


class Throttled(Exception):
    """Too many failed logins of `user` from this client: try again in `seconds` (429)."""

    def __init__(self, user: str, seconds: float) -> None:
        super().__init__(f"too many failed logins as {user!r} from this address: try again in "
                         f"{math.ceil(seconds)} s.")
        self.user, self.seconds = user, seconds


@dataclass(frozen=True)
class Auth:
    """Who may use the server. `Auth()` is nobody in particular: loopback binds only.

        Auth(token="s3cret")                                   # one shared token
        Auth(users={"ana": hash_password("correct horse")})    # people with passwords
        auth.login("ana", "correct horse", client="10.0.0.7")  # True, False, or Throttled raised

    `token_user` is the identity recorded for requests made with the token.
    `secret` signs session cookies and CSRF tokens: random per process unless given.
    `throttle` slows down guessing (`Throttle`); `remember` is how many seconds a verified
    password is remembered (see `check_password`).
    """

    token: str | None = None
    users: Mapping[str, str] = field(default_factory=dict)  # name -> hash_password(...) result
    token_user: str = "token"
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    throttle: Throttle = field(default_factory=Throttle, repr=False, compare=False)
    remember: float = 60.0
    _verified: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    @property
    def required(self) -> bool:
        """Whether requests must authenticate (a token or users are configured)."""
        return self.token is not None or bool(self.users)

    def login(self, user: str, password: str, *, client: str) -> bool:
        """`check_password` under the throttle: `Throttled` (nothing checked) while `user` must
        wait after failures from `client`; a failure counts towards the next wait."""
        wait = self.throttle.wait(user, client)
        if wait > 0:
            raise Throttled(user, wait)
        if self.check_password(user, password):
            self.throttle.succeeded(user, client)
            return True
        self.throttle.failed(user, client)
        return False

    def login_token(self, token: str, *, client: str) -> bool:
        """`check_token` under the throttle (as `login`, for the token's user)."""
        wait = self.throttle.wait(self.token_user, client)
        if wait > 0:
            raise Throttled(self.token_user, wait)
        ok = self.check_token(token)
        (self.throttle.succeeded if ok else self.throttle.failed)(self.token_user, client)
        return ok

    def check_password(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s. A match is remembered for `remember` seconds (as an
        HMAC under `secret` of the user, their hash and the password: never the password), so
        an API client sending Basic credentials with every request pays scrypt (~50-250 ms)
        once a minute, not per request; a miss always pays it."""
        hashed = self.users.get(user)
        if hashed is None:
            verify_password(password, _dummy_hash())  # same cost for unknown users: no user probing
            return False
        key = _sign(self.secret, "\0".join(("password", user, hashed, password)))
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return True
        if not verify_password(password, hashed):
            return False
        if len(self._verified) >= 1024:
            for old in [k for k, until in self._verified.items() if until <= now] or list(self._verified):
                del self._verified[old]
        self._verified[key] = now + self.remember
        return True

    def check_token(self, token: str) -> bool:
        return self.token is not None and hmac.compare_digest(token.encode(), self.token.encode())


# -- passwords -----------------------------------------------------------------------
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$16384$8$1$<salt b64>$<hash b64>`: what `Auth(users=...)` stores per user."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether `password` matches `hashed` (scrypt, or Django's pbkdf2_sha256 format)."""
    try:
        scheme, *parts = hashed.split("$")
        if scheme == "scrypt":
            n, r, p, salt, want = parts
            got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                                 dklen=len(_unb64(want)), maxmem=2**27)
            return hmac.compare_digest(got, _unb64(want))
        if scheme == "pbkdf2_sha256":
            iterations, salt_text, want_text = parts
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt_text.encode(), int(iterations))
            return hmac.compare_digest(base64.b64encode(got).decode(), want_text)
    except (ValueError, TypeError):
        return False
    return False


def check_hash(hashed: str, user: str) -> None:
    """A ValueError naming `user` unless `hashed` is a hash `verify_password` reads."""
    scheme = hashed.split("$", 1)[0]
    if scheme not in ("scrypt", "pbkdf2_sha256") or hashed.count("$") < 3:
        raise ValueError(
            f"user {user!r}: the password must be given hashed (scrypt$... or pbkdf2_sha256$...), "
            "not as plain text; make one with `waypoint serve --hash-password`.")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.cache
def _dummy_hash() -> str:
    return hash_password("waypoint", salt=b"\0" * 16)


# -- sessions ------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    """What the session cookie carries: a random id (CSRF tokens hang on it) and the user."""

    sid: str
    user: str | None
    expires: float

    def encode(self, secret: bytes) -> str:
        body = _b64(json.dumps({"s": self.sid, "u": self.user, "e": self.expires}).encode())
        return f"{body}.{_sign(secret, body)}"

    @classmethod
    def decode(cls, text: str, secret: bytes, now: float) -> Session | None:
        body, _, signature = text.partition(".")
        if not signature or not hmac.compare_digest(signature, _sign(secret, body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = cls(str(data["s"]), data["u"], float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    @classmethod
    def new(cls, user: str | None) -> Session:
        return cls(secrets.token_urlsafe(18), user, time.time() + SESSION_SECONDS)


def _sign(secret: bytes, text: str) -> str:
    return _b64(hmac.new(secret, text.encode(), hashlib.sha256).digest())


def cookie_header(session: Session, secret: bytes, *, https: bool, clear: bool = False) -> bytes:
    """The Set-Cookie value for `session` (or one that deletes the cookie)."""
    value = "" if clear else session.encode(secret)
    age = 0 if clear else SESSION_SECONDS
    flags = f"; Max-Age={age}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if https else "")
    return f"{COOKIE}={value}{flags}".encode("latin-1")


# -- what handlers call ----------------------------------------------------------------
def current_user(request: HTTPConnection) -> str:
    """The authenticated identity of `request`: recorded as `by` with answers, edits, cancels.

    A configured user's name, `Auth.token_user` for the bearer token, or, on a loopback
    server without authentication, the OS user who started it (`getpass.getuser()`,
    else "local"). The `Guard` middleware has already refused unauthenticated requests,
    so a handler always gets a name.
    """
    user = request.scope.get("waypoint.user")
    return user if isinstance(user, str) else local_user()


@functools.cache
def local_user() -> str:
    """Who a loopback server without authentication acts for: the OS user, else "local"
    (asked once: a password-database lookup per request showed in the server's profile)."""
    try:
        return getpass.getuser() or "local"
    except Exception:  # no user name in the environment (some containers)
        return "local"


def csrf_token(request: HTTPConnection) -> str:
    """The token every HTML form must carry as `<input type="hidden" name="csrf_token">`."""
    session = request.scope.get("waypoint.session")
    secret = request.scope.get("waypoint.secret")
    if not isinstance(session, Session) or not isinstance(secret, bytes):
        raise RuntimeError("csrf_token() needs the Guard middleware (waypoint.web.app.create_app)")
    return _sign(secret, "csrf:" + session.sid)


async def check_csrf(request: HTTPConnection, form: Mapping[str, Any]) -> None:
    """Refuse (HTTPException 403) a form whose `csrf_token` is missing or not this session's."""
    given = form.get("csrf_token")
    if not isinstance(given, str) or not hmac.compare_digest(given, csrf_token(request)):
        raise HTTPException(403, "this form has no valid csrf_token (it was not sent by this "
                                 "server's page, or your session expired): reload the page and "
                                 "submit it again.")
