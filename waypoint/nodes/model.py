"""The `Model` protocol, and `OpenAIModel` for OpenAI and OpenAI-compatible servers.

    model = OpenAIModel("gpt-4o-mini", temperature=0)
    request = ModelRequest(messages=[{"role": "user", "content": "Say hi"}])
    response = await model.complete(request)
    response.text, response.usage        # "Hi!", {"input_tokens": 9, "output_tokens": 3}

Another provider plugs in by implementing `complete`; `waypoint.testing.scripted`
has a `ScriptedModel` for tests. Messages are OpenAI chat messages (dicts);
tools are neutral function specs `{"name", "description", "parameters"}` that each
model maps to its own wire format.

`OpenAIModel` speaks Chat Completions by default, which vLLM, Ollama, LM Studio
and others share, or the Responses API with `api="responses"`. The key and the
base URL come from `OPENAI_API_KEY` and `OPENAI_BASE_URL` unless given; the model
name from `OPENAI_MODEL` unless given. Transport failures (429 honouring
Retry-After, 408/409/5xx, timeouts, dropped connections) are retried by the openai
client itself, `max_retries` times with backoff; after that `complete` raises
`NodeError` saying what failed and what to do. A streamed reply is retried only
until its first byte arrives.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel

from waypoint.errors import NodeError

if TYPE_CHECKING:
    import ssl

    import openai

__all__ = ["Model", "ModelRequest", "ModelResponse", "OpenAIModel", "ToolCall", "TokenCallback"]

TokenCallback = Callable[[str], None]
DEFAULT_MODEL = "gpt-4o-mini"


@dataclass
class ModelRequest:
    """One call to a model: chat messages, tool specs, an output type, settings, the node asking."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "description", "parameters"}
    response_format: type[BaseModel] | None = None  # ask for JSON fitting this model
    settings: dict[str, Any] = field(default_factory=dict)  # model name, temperature, ...
    node: str | None = None  # the name of the LLM node asking; None for a call made outside a graph


class ToolCall(NamedTuple):
    """A tool call the model asked for; `arguments` is JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass
class ModelResponse:
    """What a model answered: text and/or tool calls, token usage, the finish reason."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})
    finish_reason: str | None = None  # as the provider reported it ("stop", "tool_calls", ...)


class Model(Protocol):
    """Anything that completes a `ModelRequest`; `on_token` receives text deltas."""

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse: ...


class OpenAIModel:
    """A `Model` backed by `openai.AsyncOpenAI`.

        OpenAIModel("gpt-4o", temperature=0)                      # key/URL from the env
        OpenAIModel("llama3", base_url="http://localhost:11434/v1", api_key="ollama")
        OpenAIModel("gpt-4o", api="responses")                    # the Responses API

    Extra keyword arguments are sent with every request (temperature, max_tokens,
    ...); a request's `settings` override them, and `settings["model"]` overrides
    the model name. Without `client=`, each `complete` opens and closes its own
    HTTP client, so the model works from any event loop; to reuse connections,
    pass your own `client=` (you close it) or use `async with OpenAIModel(...) as m:`.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        api: Literal["chat", "responses"] = "chat",
        max_retries: int = 3,
        timeout: float = 60.0,
        strict: bool = True,
        client: openai.AsyncOpenAI | None = None,
        **settings: Any,
    ) -> None:
        if api not in ("chat", "responses"):
            raise ValueError(f"OpenAIModel(api={api!r}): use api='chat' or api='responses'")
        self.model = model or os.environ.get("OPENAI_MODEL") or DEFAULT_MODEL
        self.api_key = api_key
        self.base_url = base_url
        self.api = api
        self.max_retries = max_retries
        self.timeout = timeout
        self.strict = strict  # structured output with the provider's strict JSON schema mode
        self.settings = settings
        self._client = client
        self._owned: openai.AsyncOpenAI | None = None

    def __repr__(self) -> str:
        return f"OpenAIModel({self.model!r}, api={self.api!r}, base_url={self._url()!r})"

    async def __aenter__(self) -> OpenAIModel:
        self._owned = self._new_client()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.close()

    async def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        import openai

        from waypoint.nodes import _openai

        settings = {**self.settings, **request.settings}
        name = settings.pop("model", None) or self.model
        call = _openai.chat if self.api == "chat" else _openai.responses
        try:
            async with self._session() as client:
                return await call(client, name, settings, request, on_token, strict=self.strict)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[openai.AsyncOpenAI]:
        shared = self._client or self._owned
        if shared is not None:
            yield shared
            return
        client = self._new_client()
        try:
            yield client
        finally:
            await client.close()

    def _new_client(self) -> openai.AsyncOpenAI:
        import openai

        try:
            return openai.AsyncOpenAI(
                api_key=self.api_key, base_url=self.base_url,
                max_retries=self.max_retries, timeout=self.timeout,
                http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
            )
        except openai.OpenAIError as exc:
            raise NodeError(
                f"cannot create the OpenAI client: {exc} Set OPENAI_API_KEY (and "
                "OPENAI_BASE_URL for a compatible server) or pass OpenAIModel(api_key=..., "
                "base_url=...); for a local server without auth any key works."
            ) from exc

    def _url(self) -> str:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def _error(self, exc: Exception) -> NodeError:
        """A transport or API failure as a NodeError that says what to do next."""
        import openai

        where = f"{self.model!r} at {self._url()}"
        tries = f"after {self.max_retries + 1} attempt(s)"
        if isinstance(exc, openai.APITimeoutError):
            why = (f"no answer within timeout={self.timeout}s {tries}; raise OpenAIModel(timeout=...) "
                   "or check that the server is not overloaded")
        elif isinstance(exc, openai.APIConnectionError):
            why = (f"connection failed {tries} ({exc.__cause__ or exc}); check the base URL "
                   "(OPENAI_BASE_URL) and that the server is up")
        elif isinstance(exc, openai.AuthenticationError):
            why = f"HTTP 401, the API key was refused ({exc.message}); check OPENAI_API_KEY"
        elif isinstance(exc, openai.RateLimitError):
            why = (f"HTTP 429 rate limited {tries} ({exc.message}); wait or raise your quota, "
                   "or raise OpenAIModel(max_retries=...)")
        elif isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
            why = (f"HTTP {exc.status_code} server error {tries} ({exc.message}); "
                   "the provider is failing, retry later")
        elif isinstance(exc, openai.APIStatusError):
            why = (f"HTTP {exc.status_code}, the request was rejected ({exc.message}); check the "
                   "model name, settings and messages")
        else:
            why = f"{type(exc).__name__}: {exc}"
        return NodeError(f"model call to {where} failed: {why}. Resume the run once fixed.")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: building one costs ~30 ms, a client per call less than 1."""
    import httpx2

    return httpx2.create_ssl_context()
