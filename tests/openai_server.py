"""A local OpenAI-compatible HTTP server for tests: real sockets, scripted replies.

    with OpenAIServer() as server:
        server.push(error(429, retry_after=0.01), text("Paris"))
        model = OpenAIModel("test-model", base_url=server.url, api_key="test")
        ...
        server.bodies[-1]["messages"]          # what the client sent

Serves POST /v1/chat/completions and /v1/responses on 127.0.0.1 with an
ephemeral port, in a background thread. Each request takes the next behaviour
from the queue: text, tool calls, JSON content (valid or not), an HTTP error with
optional Retry-After, a delay longer than the client's timeout, a dropped
connection. A request that asks for `stream: true` gets the reply as SSE chunks
(with a final usage chunk). An empty queue answers 500 "script exhausted" with
`x-should-retry: false`, so a test that calls too often fails clearly.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    """How the server answers one request."""

    text: str | None = None
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, arguments dict or raw str)
    chunks: list[str] | None = None  # text split for streaming; default: the whole text
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # close the connection without answering
    usage: tuple[int, int] = (10, 5)  # (input, output) tokens


def text(content: str, usage: tuple[int, int] = (10, 5)) -> Behaviour:
    return Behaviour(text=content, usage=usage)


def json_content(value: Any) -> Behaviour:
    """Structured output: the JSON text of `value` as the message content."""
    return Behaviour(text=json.dumps(value))


def tool_calls(*calls: tuple[str, Any], usage: tuple[int, int] = (10, 5)) -> Behaviour:
    return Behaviour(tool_calls=list(calls), usage=usage)


def stream(*chunks: str, usage: tuple[int, int] = (10, 5)) -> Behaviour:
    return Behaviour(text="".join(chunks), chunks=list(chunks), usage=usage)


def error(status: int, retry_after: float | None = None, message: str = "scripted failure") -> Behaviour:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Behaviour(status=status, headers=headers, text=message)


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    reply = then or text("too late")
    return Behaviour(**{**reply.__dict__, "delay": seconds})


def drop() -> Behaviour:
    return Behaviour(drop=True)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class OpenAIServer:
    """The server; `push` behaviours, read `requests`/`bodies`, `close` when done."""

    def __init__(self) -> None:
        self.queue: deque[Behaviour] = deque()
        self.requests: list[Request] = []
        self.closing = threading.Event()
        self.httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def push(self, *behaviours: Behaviour) -> None:
        self.queue.extend(behaviours)

    def next(self) -> Behaviour:
        try:
            return self.queue.popleft()
        except IndexError:
            return Behaviour(status=500, text="test server script exhausted", headers={"x-should-retry": "false"})

    def close(self) -> None:
        self.closing.set()  # wakes handlers that are sleeping through a `slow` behaviour
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _HTTPServer(ThreadingHTTPServer):
    owner: OpenAIServer
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that gave up (timeouts) leave broken pipes; that is expected here


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw or b"{}")
        owner.requests.append(Request(self.path, dict(self.headers), body))
        behaviour = owner.next()
        if behaviour.delay and owner.closing.wait(behaviour.delay):
            return
        if behaviour.drop:
            self.close_connection = True
            return
        try:
            self.answer(behaviour, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def answer(self, b: Behaviour, body: dict[str, Any]) -> None:
        responses = self.path.rstrip("/").endswith("/responses")
        if b.status != 200:
            return self.send_json(b.status, {"error": {"message": b.text, "type": "scripted", "code": None}}, b.headers)
        if body.get("stream"):
            events = _response_events(b, body) if responses else _chat_chunks(b, body)
            return self.send_sse(events, done=not responses)
        self.send_json(200, _response(b, body) if responses else _completion(b, body), b.headers)

    def send_json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events: list[tuple[str | None, Any]], *, done: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event, data in events:
            prefix = f"event: {event}\n" if event else ""
            self.wfile.write(f"{prefix}data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        if done:
            self.wfile.write(b"data: [DONE]\n\n")


def _arguments(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _calls(b: Behaviour) -> list[dict[str, Any]]:
    return [{"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": _arguments(args)}}
            for i, (name, args) in enumerate(b.tool_calls)]


def _completion(b: Behaviour, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": b.text}
    if b.tool_calls:
        message["tool_calls"] = _calls(b)
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if b.tool_calls else "stop"}],
        "usage": {"prompt_tokens": b.usage[0], "completion_tokens": b.usage[1], "total_tokens": sum(b.usage)},
    }


def _chat_chunks(b: Behaviour, body: dict[str, Any]) -> list[tuple[str | None, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> tuple[None, Any]:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []
        return None, {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
                      "model": body.get("model"), "choices": choices, **extra}

    chunks = [chunk({"role": "assistant", "content": c}) for c in (b.chunks or ([b.text] if b.text else []))]
    for i, call in enumerate(_calls(b)):  # each call's arguments arrive in two fragments
        args = call["function"]["arguments"]
        half = len(args) // 2
        chunks.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"], "arguments": args[:half]}}]}))
        chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]}))
    chunks.append(chunk({}, "tool_calls" if b.tool_calls else "stop"))
    usage = {"prompt_tokens": b.usage[0], "completion_tokens": b.usage[1], "total_tokens": sum(b.usage)}
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append(chunk(None, usage=usage))
    return chunks


def _response(b: Behaviour, body: dict[str, Any]) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if b.text is not None:
        output.append({"type": "message", "id": "msg_0", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": b.text, "annotations": []}]})
    for call in _calls(b):
        output.append({"type": "function_call", "id": f"fc_{call['id']}", "call_id": call["id"],
                       "name": call["function"]["name"], "arguments": call["function"]["arguments"],
                       "status": "completed"})
    return {
        "id": "resp_test", "object": "response", "created_at": 0, "model": body.get("model"),
        "status": "completed", "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "error": None, "incomplete_details": None,
        "usage": {"input_tokens": b.usage[0], "output_tokens": b.usage[1], "total_tokens": sum(b.usage),
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
    }


def _response_events(b: Behaviour, body: dict[str, Any]) -> list[tuple[str | None, Any]]:
    events: list[tuple[str | None, Any]] = []
    for n, piece in enumerate(b.chunks or ([b.text] if b.text else [])):
        events.append(("response.output_text.delta", {
            "type": "response.output_text.delta", "item_id": "msg_0", "output_index": 0,
            "content_index": 0, "delta": piece, "logprobs": [], "sequence_number": n}))
    final = {"type": "response.completed", "response": _response(b, body), "sequence_number": len(events)}
    return [*events, ("response.completed", final)]
