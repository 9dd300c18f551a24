"""The security of `waypoint serve`, each rule tried against a real uvicorn on 127.0.0.1:
binds, Host allowlist, same origin, authentication (token, hashed passwords, sessions),
CSRF, cookie flags, escaping, and the approval log naming the authenticated user."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.test_web_api import GOOD, make_runs, settled
from tests.web_graphs import review_graph
from tests.web_server import served
from waypoint._cli.serve import ServeSettings, allowed_hosts, is_loopback
from waypoint.web.login import safe_next
from waypoint.web.security import Auth, Session, hash_password, verify_password

ROOT = Path(__file__).resolve().parent.parent
ANA = hash_password("correct horse")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no csrf_token field"
    return found.group(1)


# -- binding ---------------------------------------------------------------------------
def test_serve_refuses_a_public_bind_without_authentication(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "waypoint.cli", "serve", "--host", "0.0.0.0",
                           "--db", str(tmp_path / "runs.db"), "tests/web_graphs.py:review_graph"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in done.stderr
    assert "--token" in done.stderr and not (tmp_path / "runs.db").exists()


def test_a_users_file_with_a_plain_password_is_refused(tmp_path: Path):
    users = tmp_path / "users.txt"
    users.write_text("ana:hunter2\n")
    done = subprocess.run([sys.executable, "-m", "waypoint.cli", "serve", "--host", "0.0.0.0", "--users",
                           str(users), "--db", str(tmp_path / "runs.db"), "tests/web_graphs.py:review_graph"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 2 and "line 1" in done.stderr and "--hash-password" in done.stderr


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "WAYPOINT_TOKEN": "", "PYTHONPATH": str(ROOT)}


def test_loopback_binds_allow_only_loopback_host_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    hosts = allowed_hosts(ServeSettings("127.0.0.1", 8000, None, None, (), False))
    assert "127.0.0.1:8000" in hosts and "localhost:8000" in hosts and "evil.example:8000" not in hosts
    assert allowed_hosts(ServeSettings("0.0.0.0", 8000, "t", None, (), False)) == ["*"]  # auth guards it


# -- requests ----------------------------------------------------------------------------
@pytest.fixture
def open_server(tmp_path: Path):
    make_runs(tmp_path / "runs.db", 2)
    with served(tmp_path / "runs.db", [review_graph]) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, server


def test_a_foreign_host_header_is_refused(open_server):
    """DNS rebinding: evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    client, server = open_server
    assert client.get("/api/runs", headers={"Host": f"evil.example:{server.port}"}).status_code == 400
    assert client.get("/inbox", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/runs", headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_create_app_accepts_only_loopback_names_unless_told(tmp_path: Path):
    """The default is the safe one: a DNS-rebinding Host is refused without any allowed_hosts."""
    make_runs(tmp_path / "runs.db", 1)
    with served(tmp_path / "runs.db", [review_graph], allowed_hosts=None) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        port = server.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host
        for host in (f"evil.example:{server.port}", "evil.example", f"127.0.0.1.evil.example:{server.port}"):
            refused = client.get("/api/runs", headers={"Host": host})
            assert refused.status_code == 400 and "--allow-host" in refused.json()["error"], host
    with served(tmp_path / "runs.db", [review_graph], allowed_hosts=["*"]) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/api/runs", headers={"Host": "app.internal"}).status_code == 200
    with served(tmp_path / "runs.db", [review_graph], allowed_hosts=["app.internal"]) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/api/runs", headers={"Host": "app.internal:443"}).status_code == 200  # any port
        assert client.get("/api/runs", headers={"Host": "localhost"}).status_code == 400  # only as told


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}])
def test_a_state_change_from_another_site_is_refused_and_writes_nothing(open_server, headers):
    client, _ = open_server
    before = client.get("/api/runs/r0").json()
    response = client.post("/api/runs/r0/resume", json={"answer": GOOD}, headers=headers)
    assert response.status_code == 403 and "only from its own pages" in response.json()["error"]
    assert client.post("/api/runs/r0/cancel", json={}, headers=headers).status_code == 403
    assert client.get("/api/runs/r0").json() == before


def test_a_state_change_from_the_servers_own_page_passes(open_server):
    client, server = open_server
    headers = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/runs/r0/resume", json={"answer": GOOD}, headers=headers).status_code == 202
    assert settled(client, "r0")["status"] == "done"


def test_a_form_post_without_the_csrf_token_is_refused_and_writes_nothing(open_server):
    client, _ = open_server
    before = client.get("/api/runs/r0").json()
    form = {"approved": "on", "comment": "fine by me", "amount": "5", "level": "low"}
    assert client.post("/gates/r0/review", data=form).status_code == 403
    assert client.post("/gates/r0/review", data={**form, "csrf_token": "forged"}).status_code == 403
    other = httpx.Client(base_url=client.base_url)  # another browser: its token is not ours
    token = csrf_of(other.get("/gates/r0/review").text)
    other.close()
    assert client.post("/gates/r0/review", data={**form, "csrf_token": token}).status_code == 403
    assert client.get("/api/runs/r0").json() == before
    mine = csrf_of(client.get("/gates/r0/review").text)
    assert client.post("/gates/r0/review", data={**form, "csrf_token": mine}).status_code == 303


def test_the_session_cookie_is_httponly_and_strict(open_server):
    client, _ = open_server
    cookie = client.get("/inbox").headers["set-cookie"]
    assert "waypoint_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http on loopback: a Secure cookie would never come back


def test_the_session_cookie_is_secure_behind_https(tmp_path: Path):
    """A TLS-terminating proxy on 127.0.0.1 says X-Forwarded-Proto: https; uvicorn trusts it."""
    with served(tmp_path / "runs.db", [review_graph], proxy_headers=True) as server, \
            httpx.Client(base_url=server.url) as client:
        cookie = client.get("/inbox", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
        assert "; Secure" in cookie and "HttpOnly" in cookie


def test_a_tampered_session_cookie_is_a_new_anonymous_session():
    auth = Auth(token="t")
    good = Session.new("ana").encode(auth.secret)
    assert Session.decode(good, auth.secret, 0).user == "ana"
    _, _, signature = good.partition(".")
    forged = base64.urlsafe_b64encode(b'{"s": "x", "u": "admin", "e": 9e99}').decode().rstrip("=")
    assert Session.decode(f"{forged}.{signature}", auth.secret, 0) is None
    assert Session.decode(good, Auth(token="t").secret, 0) is None  # another server's secret


# -- authentication ------------------------------------------------------------------------
@pytest.fixture
def guarded(tmp_path: Path):
    make_runs(tmp_path / "runs.db", 2)
    auth = Auth(token="s3cret", users={"ana": ANA})
    with served(tmp_path / "runs.db", [review_graph], auth=auth) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, server


def test_the_api_needs_credentials(guarded):
    client, _ = guarded
    response = client.get("/api/runs")
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/runs", headers=basic("ana", "wrong")).status_code == 401
    assert client.get("/api/runs", headers=basic("bob", "correct horse")).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/api/runs", headers=basic("ana", "correct horse")).status_code == 200
    described = client.get("/api/openapi.json")  # the description is public, and says what to send
    assert described.status_code == 200 and described.json()["security"] == [{"token": []}, {"user": []}]


def test_the_approval_log_records_the_authenticated_user(guarded):
    client, _ = guarded
    ana = basic("ana", "correct horse")
    assert client.post("/api/runs/r0/resume", json={"answer": GOOD}, headers=ana).status_code == 202
    token = {"Authorization": "Bearer s3cret"}
    assert client.post("/api/runs/r1/resume", json={"answer": GOOD}, headers=token).status_code == 202
    for run_id in ("r0", "r1"):
        assert settled(client, run_id, headers=token)["status"] == "done"
    entries = client.get("/api/approvals", headers=token).json()["approvals"]
    assert sorted((e["run_id"], e["by"]) for e in entries) == [("r0", "ana"), ("r1", "token")]


def test_pages_redirect_to_login_and_a_login_opens_a_session(guarded):
    client, _ = guarded
    response = client.get("/inbox?x=1")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Finbox%3Fx%3D1"
    page = client.get("/login?next=/inbox")
    token = csrf_of(page.text)
    wrong = client.post("/login", data={"csrf_token": token, "next": "/inbox", "user": "ana", "secret": "no"})
    assert wrong.status_code == 401 and "Wrong user name" in wrong.text
    no_token = client.post("/login", data={"next": "/inbox", "user": "ana", "secret": "correct horse"})
    assert no_token.status_code == 403
    before = client.cookies.get("waypoint_session")
    ok = client.post("/login", data={"csrf_token": token, "next": "/inbox", "user": "ana",
                                     "secret": "correct horse"})
    assert ok.status_code == 303 and ok.headers["location"] == "/inbox"
    assert client.cookies.get("waypoint_session") != before  # a new session id: no fixation
    assert client.get("/inbox").status_code == 200
    assert client.get("/api/runs").status_code == 200  # the API takes the session too
    token = csrf_of(client.get("/inbox").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/api/runs").status_code == 401


def test_the_login_page_escapes_and_never_redirects_off_site(guarded):
    client, _ = guarded
    page = client.get("/login", params={"next": '/"><script>alert(1)</script>'})
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example", None, 3):
        assert safe_next(target) == "/"
    assert safe_next("/runs/a?b=1") == "/runs/a?b=1"


# -- passwords ---------------------------------------------------------------------------
def test_passwords_are_hashed_with_a_standard_kdf():
    assert ANA.startswith("scrypt$16384$8$1$") and "correct horse" not in ANA
    assert verify_password("correct horse", ANA) and not verify_password("correct hors", ANA)
    assert hash_password("x") != hash_password("x")  # salted
    import hashlib

    django = "pbkdf2_sha256$1000$salt$" + base64.b64encode(
        hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1000)).decode()
    assert verify_password("pw", django) and not verify_password("pW", django)
    assert not verify_password("pw", "md5$x$y") and not verify_password("pw", "scrypt$bad")


def test_json_answers_with_markup_come_back_as_json_strings(open_server):
    """Escaping in the API is JSON's: markup in a payload stays a string, typed as JSON."""
    client, _ = open_server
    evil = "<script>alert('x')</script>"
    started = client.post("/api/runs", json={"graph": "review", "input": {"title": evil}})
    assert started.status_code == 201
    run_id = started.json()["run_id"]
    settled(client, run_id)
    response = client.get(f"/api/runs/{run_id}")
    assert response.headers["content-type"] == "application/json"
    assert response.json()["gates"][0]["payload"]["title"] == evil


def test_a_users_file_is_read_and_a_verified_password_is_remembered(tmp_path: Path):
    from waypoint._cli.common import UsageProblem
    from waypoint._cli.serve import read_users

    users = tmp_path / "users.txt"
    users.write_text(f"# reviewers\n\nana:{ANA}\n")
    assert read_users(users) == {"ana": ANA}
    users.write_text("# nobody\n")
    with pytest.raises(UsageProblem, match="no users in it"):
        read_users(users)
    auth = Auth(users={"ana": ANA})
    assert auth.check_password("ana", "correct horse") and auth.check_password("ana", "correct horse")
    assert not auth.check_password("ana", "correct horse ") and not auth.check_password("bob", "x")
    assert not Auth(users={"ana": hash_password("other")}).check_password("ana", "correct horse")


# -- the cost of a password, and guessing it -----------------------------------------------
def test_basic_credentials_cost_scrypt_once_in_a_while_not_per_request(tmp_path: Path, monkeypatch):
    from waypoint.web import security

    checks: list[str] = []

    def counted(password: str, hashed: str) -> bool:
        checks.append(password)
        return verify_password(password, hashed)

    monkeypatch.setattr(security, "verify_password", counted)
    make_runs(tmp_path / "runs.db", 1)
    auth = Auth(users={"ana": ANA})
    with served(tmp_path / "runs.db", [review_graph], auth=auth) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(5):
            assert client.get("/api/runs", headers=basic("ana", "correct horse")).status_code == 200
        assert checks == ["correct horse"]  # verified once, then remembered
        assert client.get("/api/runs", headers=basic("ana", "correct hors")).status_code == 401
        assert client.get("/api/runs", headers=basic("ana", "correct hors")).status_code == 401
        assert checks == ["correct horse", "correct hors", "correct hors"]  # a miss always pays
    assert "correct horse" not in repr(auth) and all("correct" not in k for k in auth._verified)
    forgetful = Auth(users={"ana": ANA}, remember=0)  # remembered for no time: each check pays
    assert forgetful.check_password("ana", "correct horse")
    assert forgetful.check_password("ana", "correct horse")
    assert checks[-2:] == ["correct horse", "correct horse"]


def test_guessing_a_password_is_slowed_down_per_user_and_client(tmp_path: Path):
    from waypoint.web.security import Throttle

    now = [1000.0]
    auth = Auth(token="s3cret", users={"ana": ANA, "bob": hash_password("bob's")},
                throttle=Throttle(free=3, base=60, clock=lambda: now[0]))
    make_runs(tmp_path / "runs.db", 1)
    with served(tmp_path / "runs.db", [review_graph], auth=auth) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):  # three free tries; the third failure starts a 60 s wait
            assert client.get("/api/runs", headers=basic("ana", "guess")).status_code == 401
        refused = client.get("/api/runs", headers=basic("ana", "correct horse"))  # even the right one
        assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
        assert "too many failed logins as 'ana'" in refused.json()["error"]
        assert client.get("/api/runs", headers=basic("bob", "bob's")).status_code == 200  # per user
        page = client.get("/login")
        form = client.post("/login", data={"csrf_token": csrf_of(page.text), "user": "ana",
                                           "secret": "correct horse"})
        assert form.status_code == 429 and "too many failed logins" in form.text  # the form too
        now[0] += 60
        assert client.get("/api/runs", headers=basic("ana", "guess")).status_code == 401
        again = client.get("/api/runs", headers=basic("ana", "correct horse"))
        assert again.status_code == 429 and again.headers["retry-after"] == "120"  # doubled
        now[0] += 120
        assert client.get("/api/runs", headers=basic("ana", "correct horse")).status_code == 200
        # forgiven: the next failure is a free one again
        assert client.get("/api/runs", headers=basic("ana", "guess")).status_code == 401
        assert client.get("/api/runs", headers=basic("ana", "correct horse")).status_code == 200
        for _ in range(3):
            assert client.get("/api/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 429
