"""`ScriptedModel`: a `Model` that answers from a script, for tests and offline demos.

    model = ScriptedModel([
        tool_call("search", {"query": "waypoint"}),    # turn 1: the model calls a tool
        Invoice(total=12.5),                            # turn 2: structured output
    ])
    node = llm("extract", prompt="{email}", output=Invoice, into="invoice",
               tools=[search], model=model)
    ...
    assert model.requests[1].messages[-1]["role"] == "tool"

    model = ScriptedModel({                             # a script per node, for nodes that run
        "logs": ["500s since 00:12"],                   # at the same time, in no fixed order
        "metrics": ["DB connections saturated"],
    })
    assert model.requests_for("logs")[0].node == "logs"

A script item is one reply: a `str` (text), a pydantic model, dict or list (sent
as JSON text, i.e. structured output), a `ToolCall` or a list of them (one turn
of tool calls), a `ModelResponse` (as is), an exception (raised, to simulate a
failing provider), or a function of the `ModelRequest` returning any of these.
Streaming is simulated word by word. Token usage is a rough count of words, so
that usage and budgets can be tested.

Given a list, the model replies in the order it is called. Given a dict
`{node name: [replies]}`, each LLM node consumes its own script (the request's
`node`), so parallel branches get their replies whatever order they run in; the
same node's calls are still answered in its script's order. Running out of
script, or a call from a node with no script, raises `ScriptExhausted`, naming
the node, how many replies it used and the last message.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from waypoint.nodes.model import ModelRequest, ModelResponse, TokenCallback, ToolCall

__all__ = ["ScriptExhausted", "ScriptedModel", "tool_call"]

Reply = str | BaseModel | dict[str, Any] | list[Any] | ToolCall | ModelResponse | BaseException
ScriptItem = Reply | Callable[[ModelRequest], Reply]


class ScriptExhausted(AssertionError):
    """The model was called more often than its script has replies."""


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *, id: str | None = None) -> ToolCall:
    """A scripted tool call: `tool_call("add", {"a": 1, "b": 2})`."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return ToolCall(id or "", name, text)  # an empty id is numbered by the model


class ScriptedModel:
    """Replies with the scripted items (in call order, or per node) and records every request."""

    def __init__(self, replies: Iterable[ScriptItem] | Mapping[str, Iterable[ScriptItem]] = ()) -> None:
        self.script: deque[ScriptItem] = deque()  # the replies in call order, when not per node
        self.scripts: dict[str, deque[ScriptItem]] | None = None  # node name -> its replies
        if isinstance(replies, Mapping):
            self.scripts = {node: deque(_script(node, items)) for node, items in replies.items()}
        else:
            self.script.extend(replies)
        self.requests: list[ModelRequest] = []
        self._ids = 0

    def add(self, *replies: ScriptItem, node: str | None = None) -> None:
        """Append replies to the script, or with `node=` to that node's script (a per-node model)."""
        if node is None and self.scripts is not None:
            raise ValueError("ScriptedModel.add(...): this model scripts each node (it was built from a dict "
                             "{node: [replies]}); name the node, e.g. .add('Hi', node='agent')")
        if node is not None and self.scripts is None:
            raise ValueError(f"ScriptedModel.add(..., node={node!r}): this model replies in call order "
                             f"(it was built from a list); drop node=, "
                             f"or build ScriptedModel({{{node!r}: [...]}})")
        if self.scripts is None or node is None:
            self.script.extend(replies)
        else:
            self.scripts.setdefault(node, deque()).extend(replies)

    @property
    def remaining(self) -> int:
        """Replies not used yet, over all nodes."""
        return len(self.script) + sum(len(s) for s in (self.scripts or {}).values())

    def requests_for(self, node: str) -> list[ModelRequest]:
        """The requests the LLM node `node` made, in order."""
        return [r for r in self.requests if r.node == node]

    async def complete(self, request: ModelRequest, *,
                       on_token: TokenCallback | None = None) -> ModelResponse:
        self.requests.append(request)
        item = self._next(request)
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

    def _next(self, request: ModelRequest) -> ScriptItem:
        last = request.messages[-1] if request.messages else None
        if self.scripts is None:
            if not self.script:
                raise ScriptExhausted(
                    f"ScriptedModel ran out of replies: call {len(self.requests)} "
                    f"(from node {request.node!r}) has nothing scripted (last message: {last!r}); "
                    "add replies with ScriptedModel([...]) or .add(...)"
                )
            return self.script.popleft()
        if request.node is None:
            raise ScriptExhausted(
                f"ScriptedModel scripts each node ({sorted(self.scripts)}), but this request names no node "
                "(a call made outside an LLM node); set ModelRequest(node=...) or use ScriptedModel([...])"
            )
        script = self.scripts.get(request.node)
        if script is None:
            raise ScriptExhausted(
                f"ScriptedModel has no script for node {request.node!r} (it scripts {sorted(self.scripts)}); "
                f"add one: ScriptedModel({{{request.node!r}: [...], ...}}) "
                f"or .add(..., node={request.node!r})"
            )
        if not script:
            raise ScriptExhausted(
                f"ScriptedModel ran out of replies for node {request.node!r}: its call "
                f"{len(self.requests_for(request.node))} has nothing scripted (last message: {last!r}); "
                f"add replies with .add(..., node={request.node!r})"
            )
        return script.popleft()

    def _numbered(self, call: ToolCall) -> ToolCall:
        if call.id:
            return call
        self._ids += 1
        return call._replace(id=f"call_{self._ids}")


def _script(node: Any, items: Any) -> Iterable[ScriptItem]:
    """One node's script from a per-node dict: a list of replies, not a single reply."""
    if (not isinstance(node, str) or not isinstance(items, (list, tuple, deque))
            or isinstance(items, ToolCall)):
        raise TypeError(
            f"ScriptedModel({{{node!r}: {items!r}}}): a per-node script maps a node's name to a list of its "
            f"replies, e.g. ScriptedModel({{'agent': ['Hi', tool_call('search', {{...}})]}}); for JSON "
            "structured output in call order, pass a list: ScriptedModel([{...}])"
        )
    return items


def _response(item: Any, request: ModelRequest) -> ModelResponse:
    if isinstance(item, ModelResponse):
        return item
    if isinstance(item, ToolCall) or (
            isinstance(item, list) and item and all(isinstance(i, ToolCall) for i in item)):
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
