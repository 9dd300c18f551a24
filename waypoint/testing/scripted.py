"""`ScriptedModel`: a `Model` that answers from a script, for tests and offline demos.

    model = ScriptedModel([
        tool_call("search", {"query": "waypoint"}),    # turn 1: the model calls a tool
        Invoice(total=12.5),                            # turn 2: structured output
    ])
    node = llm("extract", prompt="{email}", output=Invoice, into="invoice",
               tools=[search], model=model)
    ...
    assert model.requests[1].messages[-1]["role"] == "tool"

A script item is one reply: a `str` (text), a pydantic model, dict or list (sent
as JSON text, i.e. structured output), a `ToolCall` or a list of them (one turn
of tool calls), a `ModelResponse` (as is), an exception (raised, to simulate a
failing provider), or a function of the `ModelRequest` returning any of these.
Streaming is simulated word by word. Token usage is a rough count of words, so
that usage and budgets can be tested. Running out of script raises
`ScriptExhausted`, naming how many replies were used and the last message.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any, Callable, Iterable, Union

from pydantic import BaseModel

from waypoint.nodes.model import ModelRequest, ModelResponse, TokenCallback, ToolCall

__all__ = ["ScriptExhausted", "ScriptedModel", "tool_call"]

Reply = Union[str, BaseModel, dict, list, ToolCall, ModelResponse, BaseException]
ScriptItem = Union[Reply, Callable[[ModelRequest], Reply]]


class ScriptExhausted(AssertionError):
    """The model was called more often than its script has replies."""


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *, id: str | None = None) -> ToolCall:
    """A scripted tool call: `tool_call("add", {"a": 1, "b": 2})`."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return ToolCall(id or "", name, text)  # an empty id is numbered by the model


class ScriptedModel:
    """Replies with the scripted items in order and records every request it received."""

    def __init__(self, replies: Iterable[ScriptItem] = ()) -> None:
        self.script: deque[ScriptItem] = deque(replies)
        self.requests: list[ModelRequest] = []
        self._ids = 0

    def add(self, *replies: ScriptItem) -> None:
        """Append replies to the script."""
        self.script.extend(replies)

    @property
    def remaining(self) -> int:
        return len(self.script)

    async def complete(self, request: ModelRequest, *, on_token: TokenCallback | None = None) -> ModelResponse:
        self.requests.append(request)
        if not self.script:
            last = request.messages[-1] if request.messages else None
            raise ScriptExhausted(
                f"ScriptedModel ran out of replies: call {len(self.requests)} has nothing scripted "
                f"(last message: {last!r}); add replies with ScriptedModel([...]) or .add(...)"
            )
        item = self.script.popleft()
        if callable(item) and not isinstance(item, (BaseModel, BaseException, type)):
            item = item(request)
        if isinstance(item, BaseException):
            raise item
        response = _response(item, request)
        response.tool_calls = [self._numbered(call) for call in response.tool_calls]
        if on_token is not None and response.text:
            for piece in re.findall(r"\S+\s*|\s+", response.text):
                on_token(piece)
        return response

    def _numbered(self, call: ToolCall) -> ToolCall:
        if call.id:
            return call
        self._ids += 1
        return call._replace(id=f"call_{self._ids}")


def _response(item: Any, request: ModelRequest) -> ModelResponse:
    if isinstance(item, ModelResponse):
        return item
    if isinstance(item, ToolCall) or (isinstance(item, list) and item and all(isinstance(i, ToolCall) for i in item)):
        calls = [item] if isinstance(item, ToolCall) else list(item)
        return ModelResponse(None, calls, _usage(request, " ".join(c.arguments for c in calls)), "tool_calls")
    if isinstance(item, BaseModel):
        text = item.model_dump_json()
    elif isinstance(item, (dict, list)):
        text = json.dumps(item)
    elif isinstance(item, str):
        text = item
    else:
        raise TypeError(f"ScriptedModel cannot reply with {type(item).__name__}: {item!r}")
    return ModelResponse(text, [], _usage(request, text), "stop")


def _usage(request: ModelRequest, output: str) -> dict[str, int]:
    words = sum(len(str(m.get("content") or "").split()) for m in request.messages)
    return {"input_tokens": words, "output_tokens": len(output.split())}
