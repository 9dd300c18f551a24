"""Wire formats of `OpenAIModel`: Chat Completions and the Responses API.

Requests are built from a neutral `ModelRequest` (chat messages, neutral tool
specs) and replies are read into a `ModelResponse`, streamed or not. Imported
only when a model call is made, so `openai` stays out of `import waypoint`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel

from waypoint.errors import NodeError
from waypoint.nodes.model import ModelRequest, ModelResponse, TokenCallback, ToolCall


# -- structured output ---------------------------------------------------------
def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema in the form strict mode accepts: closed objects, all keys required."""
    schema = copy.deepcopy(model.model_json_schema())
    _make_strict(schema, schema.get("$defs", {}))
    return schema


def _make_strict(node: Any, defs: dict[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _make_strict(item, defs)
        return
    if not isinstance(node, dict):
        return
    if "$ref" in node and len(node) > 1:  # strict mode forbids siblings of $ref: inline it
        target = defs.get(node.pop("$ref").rsplit("/", 1)[-1], {})
        node.update({**copy.deepcopy(target), **node})
    if node.get("type") == "object" and "properties" in node:
        node["additionalProperties"] = False
        node["required"] = list(node["properties"])
    if "default" in node and node["default"] is None:
        del node["default"]
    for value in node.values():
        _make_strict(value, defs)


def _schema_name(model: type[BaseModel]) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", model.__name__)[:64]


# -- Chat Completions ------------------------------------------------------------
def chat_params(name: str, settings: dict[str, Any], request: ModelRequest, strict: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"model": name, "messages": request.messages, **settings}
    if request.tools:
        params["tools"] = [{"type": "function", "function": spec} for spec in request.tools]
    if request.response_format is not None:
        fmt = request.response_format
        schema = strict_schema(fmt) if strict else fmt.model_json_schema()
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(fmt), "schema": schema, "strict": strict},
        }
    return params


async def chat(
    client: Any, name: str, settings: dict[str, Any], request: ModelRequest,
    on_token: TokenCallback | None, *, strict: bool,
) -> ModelResponse:
    params = chat_params(name, settings, request, strict)
    if on_token is None:
        return _from_completion(await client.chat.completions.create(**params))
    params.update(stream=True, stream_options={"include_usage": True})
    reply = _ChatStream(on_token)
    async with await client.chat.completions.create(**params) as stream:
        async for chunk in stream:
            reply.add(chunk)
    return reply.response()


def _usage(usage: Any, input_key: str, output_key: str) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": getattr(usage, input_key, 0) or 0,
            "output_tokens": getattr(usage, output_key, 0) or 0}


def _from_completion(completion: Any) -> ModelResponse:
    if not completion.choices:
        raise NodeError("the model returned no choices; check the model name and settings")
    choice = completion.choices[0]
    message = choice.message
    calls = [
        ToolCall(tc.id, tc.function.name, tc.function.arguments or "")
        for tc in message.tool_calls or []
        if getattr(tc, "function", None) is not None
    ]
    return ModelResponse(
        text=message.content if message.content is not None else getattr(message, "refusal", None),
        tool_calls=calls,
        usage=_usage(completion.usage, "prompt_tokens", "completion_tokens"),
        finish_reason=choice.finish_reason,
    )


class _ChatStream:
    """Accumulates streamed chunks: text deltas (passed on), tool call fragments, usage."""

    def __init__(self, on_token: TokenCallback) -> None:
        self.on_token = on_token
        self.text: list[str] = []
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        self.usage = _usage(None, "", "")
        self.finish_reason: str | None = None

    def add(self, chunk: Any) -> None:
        if chunk.usage is not None:
            self.usage = _usage(chunk.usage, "prompt_tokens", "completion_tokens")
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta.content:
                self.text.append(delta.content)
                self.on_token(delta.content)
            for part in delta.tool_calls or []:
                call = self.calls.setdefault(part.index, ["", "", ""])
                call[0] = part.id or call[0]
                if part.function is not None:
                    call[1] += part.function.name or ""
                    call[2] += part.function.arguments or ""
            self.finish_reason = choice.finish_reason or self.finish_reason

    def response(self) -> ModelResponse:
        calls = [ToolCall(*self.calls[i]) for i in sorted(self.calls)]
        text = "".join(self.text) if self.text or not calls else None
        return ModelResponse(text, calls, self.usage, self.finish_reason)


# -- Responses API ---------------------------------------------------------------
def responses_input(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages as Responses input items (tool calls and results become items)."""
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "tool":
            items.append({"type": "function_call_output", "call_id": message["tool_call_id"],
                          "output": message.get("content") or ""})
            continue
        if message.get("content") is not None or not message.get("tool_calls"):
            items.append({"role": message["role"], "content": message.get("content") or ""})
        for call in message.get("tool_calls") or []:
            items.append({"type": "function_call", "call_id": call["id"],
                          "name": call["function"]["name"], "arguments": call["function"]["arguments"]})
    return items


def responses_params(name: str, settings: dict[str, Any], request: ModelRequest,
                     strict: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"model": name, "input": responses_input(request.messages), **settings}
    if request.tools:
        params["tools"] = [{"type": "function", "strict": False, **spec} for spec in request.tools]
    if request.response_format is not None:
        fmt = request.response_format
        schema = strict_schema(fmt) if strict else fmt.model_json_schema()
        params["text"] = {"format": {"type": "json_schema", "name": _schema_name(fmt),
                                     "schema": schema, "strict": strict}}
    return params


async def responses(
    client: Any, name: str, settings: dict[str, Any], request: ModelRequest,
    on_token: TokenCallback | None, *, strict: bool,
) -> ModelResponse:
    params = responses_params(name, settings, request, strict)
    if on_token is None:
        return _from_response(await client.responses.create(**params))
    final = None
    async with await client.responses.create(**params, stream=True) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                on_token(event.delta)
            elif event.type in ("response.completed", "response.incomplete", "response.failed"):
                final = event.response
    if final is None:
        raise NodeError("the streamed response ended without a final response event")
    return _from_response(final)


def _from_response(response: Any) -> ModelResponse:
    if getattr(response, "error", None):
        raise NodeError(f"the model reported an error: {response.error.message}")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in response.output or []:
        if item.type == "message":
            texts += [part.text if part.type == "output_text" else part.refusal
                      for part in item.content if part.type in ("output_text", "refusal")]
        elif item.type == "function_call":
            calls.append(ToolCall(item.call_id, item.name, item.arguments or ""))
    return ModelResponse(
        text="".join(texts) if texts or not calls else None,
        tool_calls=calls,
        usage=_usage(response.usage, "input_tokens", "output_tokens"),
        finish_reason=response.status,
    )
