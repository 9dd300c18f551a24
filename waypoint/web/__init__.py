"""`waypoint serve`: a JSON API, live events and pages over a store (the `web` extra).

    from waypoint.web.app import create_app      # the ASGI app
    from waypoint.web.context import web         # the server's state, from a request
    from waypoint.web import serve_in_thread     # a real uvicorn in a thread (tests, examples)

Layer: above the engine, beside the CLI (`waypoint._cli.serve` starts it). Nothing
below imports it. Modules: `app` (create_app), `context` (WebContext), `security`
(auth, sessions, CSRF), `guard` (the middleware), `login`, `actions` (what the API
and the pages do to runs), `api` (JSON routes), `schemas` (request bodies, JSON of
records), `openapi` (/api/openapi.json), `events` (SSE); `pages`, `views`, `forms`,
`templates/`, `static/` are the HTML side; `threaded` (serve_in_thread).
"""

from waypoint.web.threaded import ServedApp, serve_in_thread

__all__ = ["ServedApp", "serve_in_thread"]
