"""LLM nodes through the real openai client against a local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from waypoint.errors import GraphError, NodeError
from waypoint.nodes.context import NodeContext
from waypoint.nodes.llm_node import LLMNode, llm
from waypoint.nodes.model import ModelRequest, OpenAIModel, ToolCall
from waypoint.testing.scripted import ScriptedModel, ScriptExhausted, tool_call

try:  # pytest puts tests/ on sys.path (rootdir-relative import mode) unless tests is a package
    from openai_server import OpenAIServer, drop, error, json_content, slow, stream, text, tool_calls
except ImportError:  # pragma: no cover
    from tests.openai_server import OpenAIServer, drop, error, json_content, slow, stream, text, tool_calls


def _append(current: list[Any] | None, update: list[Any]) -> list[Any]:  # a reducer, like waypoint.append
    return [*(current or []), *update]


class State(BaseModel):
    country: str = "France"
    question: str = ""
    answer: str = ""
    history: list[dict[str, Any]] = []
    log: Annotated[list[dict[str, Any]], _append] = []


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


def model_for(server: OpenAIServer, **options: Any) -> OpenAIModel:
    options = {"max_retries": 2, "timeout": 5.0, **options}
    return OpenAIModel("test-model", base_url=server.url, api_key="test", **options)


def context(**options: Any) -> NodeContext:
    return NodeContext(run_id="r1", node="n", activation="1.0", **options)


# -- text, prompts, history --------------------------------------------------------
@pytest.mark.asyncio
async def test_text_reply_goes_into_the_field(server):
    server.push(text("Paris"))
    node = llm("ask", prompt="Capital of {country}?", into="answer", instructions="Be brief.",
               model=model_for(server), temperature=0)
    outcome = await node.run(State(), context())
    assert outcome.update == {"answer": "Paris"}
    assert node.writes == frozenset({"answer"})
    body = server.bodies[0]
    assert server.requests[0].path == "/v1/chat/completions"
    assert body["model"] == "test-model" and body["temperature"] == 0
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]


@pytest.mark.asyncio
async def test_prompt_function_and_model_name_per_node(server):
    server.push(text("ok"))
    node = llm("ask", prompt=lambda s: f"About {s.country.upper()}", into="answer", model="other-model")
    await node.run(State(), context(deps={"model": model_for(server)}))  # the graph-wide model in deps
    assert server.bodies[0]["model"] == "other-model"
    assert server.bodies[0]["messages"][-1]["content"] == "About FRANCE"


@pytest.mark.asyncio
async def test_a_model_opened_with_async_with_reuses_its_client(server):
    server.push(text("one"), text("two"))

    class Deps:  # a graph's deps object: its `model` serves every LLM node without one
        def __init__(self, model: OpenAIModel) -> None:
            self.model = model

    node = llm("ask", prompt="?", into="answer")
    async with model_for(server) as model:
        client = model._owned
        answers = [(await node.run(State(), context(deps=Deps(model)))).update["answer"] for _ in range(2)]
    assert answers == ["one", "two"]
    assert client is not None and client.is_closed() and model._owned is None


@pytest.mark.asyncio
async def test_unknown_template_field_is_a_clear_error():
    node = llm("ask", prompt="Hello {nobody}", into="answer", model=ScriptedModel(["x"]))
    with pytest.raises(NodeError, match=r"'nobody'.*state fields: \['answer'"):
        await node.run(State(), context())


@pytest.mark.asyncio
async def test_history_field_makes_a_multi_turn_conversation(server):
    server.push(text("It is Paris."))
    past = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    node = llm("chat", prompt="{question}", history="history", model=model_for(server))
    outcome = await node.run(State(question="Capital of France?", history=past), context())
    assert server.bodies[0]["messages"] == [*past, {"role": "user", "content": "Capital of France?"}]
    turn = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "It is Paris."}]
    assert outcome.update == {"history": past + turn}  # last-value field: the whole list
    assert node.writes == frozenset({"history"})


@pytest.mark.asyncio
async def test_history_with_a_reducer_gets_only_the_new_messages():
    node = llm("chat", prompt="{question}", history="log", into="answer", model=ScriptedModel(["Yes."]))
    outcome = await node.run(State(question="Ok?", log=[{"role": "user", "content": "Hi"}]), context())
    assert outcome.update["log"] == [{"role": "user", "content": "Ok?"}, {"role": "assistant", "content": "Yes."}]


# -- structured output ---------------------------------------------------------------
@pytest.mark.asyncio
async def test_structured_output_is_parsed_into_the_model(server):
    server.push(json_content({"name": "Ada", "age": 36}))
    node = llm("extract", prompt="Who?", output=Person, into="person", model=model_for(server))
    outcome = await node.run(State(), context())
    assert outcome.update == {"person": Person(name="Ada", age=36)}
    fmt = server.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    assert fmt["json_schema"]["schema"]["required"] == ["name", "age"]


@pytest.mark.asyncio
async def test_malformed_json_is_asked_for_again_with_the_error(server):
    server.push(text('{"name": "Ada", "age": '), json_content({"name": "Ada", "age": 36}))
    ctx = context()
    node = llm("extract", prompt="Who?", output=Person, into="person", model=model_for(server))
    outcome = await node.run(State(), ctx)
    assert outcome.update == {"person": Person(name="Ada", age=36)}
    retry = server.bodies[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"name": "Ada", "age": '}
    assert retry[-1]["role"] == "user" and "Invalid JSON" in retry[-1]["content"]
    assert ctx.record["usage"]["calls"] == 2


@pytest.mark.asyncio
async def test_output_that_never_fits_fails_with_the_raw_output(server):
    server.push(*[json_content({"name": "Ada", "age": "old"}) for _ in range(3)])
    node = llm("extract", prompt="Who?", output=Person, into="person", max_validation_retries=2,
               model=model_for(server))
    with pytest.raises(NodeError) as caught:
        await node.run(State(), context())
    assert len(server.requests) == 3
    err = caught.value
    assert err.node == "extract" and err.run_id == "r1"
    assert err.raw_output == '{"name": "Ada", "age": "old"}'
    assert '{"name": "Ada", "age": "old"}' in str(err) and "age" in str(err)
    assert "max_validation_retries" in str(err)


# -- tools -------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_tool_calls_of_one_turn_run_concurrently_and_are_traced(server):
    first_started, second_started = asyncio.Event(), asyncio.Event()

    async def first(x: int) -> int:
        """Multiply by ten."""
        first_started.set()
        await asyncio.wait_for(second_started.wait(), 5)  # only returns if `second` runs meanwhile
        return x * 10

    async def second(x: int) -> dict[str, int]:
        second_started.set()
        await asyncio.wait_for(first_started.wait(), 5)
        return {"value": x + 1}

    server.push(tool_calls(("first", {"x": 1}), ("second", {"x": 2})), text("done", usage=(20, 3)))
    ctx = context()
    node = llm("agent", prompt="go", into="answer", tools=[first, second], model=model_for(server))
    outcome = await node.run(State(), ctx)
    assert outcome.update == {"answer": "done"}
    assert ctx.record["trace"] == [
        {"tool": "first", "arguments": {"x": 1}, "result": 10},
        {"tool": "second", "arguments": {"x": 2}, "result": {"value": 3}},
    ]
    assert ctx.record["usage"] == {"input_tokens": 30, "output_tokens": 8, "calls": 2, "tool_calls": 2}
    tools = server.bodies[0]["tools"]
    assert tools[0]["function"]["name"] == "first"
    assert tools[0]["function"]["description"] == "Multiply by ten."
    assert tools[0]["function"]["parameters"]["properties"]["x"]["type"] == "integer"
    followup = server.bodies[1]["messages"]
    assert [m["role"] for m in followup] == ["user", "assistant", "tool", "tool"]
    assert followup[1]["tool_calls"][0]["function"] == {"name": "first", "arguments": '{"x": 1}'}
    assert followup[2] == {"role": "tool", "tool_call_id": "call_0", "content": "10"}
    assert followup[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"value":3}'}


@pytest.mark.asyncio
async def test_bad_arguments_and_unknown_tools_go_back_to_the_model(server):
    seen: list[NodeContext] = []

    def add(a: int, b: int, ctx: NodeContext) -> int:  # sync: runs in a worker thread
        seen.append(ctx)
        return a + b

    server.push(tool_calls(("add", {"a": "many", "b": 2}), ("nope", {})), tool_calls(("add", {"a": 1, "b": 2})),
                text("3"))
    ctx = context()
    node = llm("calc", prompt="1+2?", into="answer", tools=[add], model=model_for(server))
    assert (await node.run(State(), ctx)).update == {"answer": "3"}
    refused = server.bodies[1]["messages"][-2:]
    assert "invalid arguments for 'add'" in refused[0]["content"] and "a: Input should be a valid integer" in refused[0]["content"]
    assert "no tool named 'nope'" in refused[1]["content"]
    assert [t.get("error", "")[:20] for t in ctx.record["trace"][:2]] == ["invalid arguments fo", "there is no tool nam"]
    assert ctx.record["trace"][2] == {"tool": "add", "arguments": {"a": 1, "b": 2}, "result": 3}
    assert seen == [ctx]
    assert "ctx" not in server.bodies[0]["tools"][0]["function"]["parameters"]["properties"]


@pytest.mark.asyncio
async def test_a_failing_tool_fails_the_node():
    def explode() -> str:
        raise RuntimeError("disk full")

    node = llm("agent", prompt="go", into="answer", tools=[explode], model=ScriptedModel([tool_call("explode")]))
    with pytest.raises(RuntimeError, match="disk full") as caught:
        await node.run(State(), context())
    assert "raised by tool 'explode' called by LLM node 'n'" in caught.value.__notes__[0]


@pytest.mark.asyncio
async def test_max_turns_bounds_the_tool_loop(server):
    def ping() -> str:
        return "pong"

    server.push(tool_calls(("ping", {})), tool_calls(("ping", {})), text("never reached"))
    ctx = context()
    node = llm("loop", prompt="go", into="answer", tools=[ping], max_turns=2, model=model_for(server))
    with pytest.raises(NodeError, match=r"still asked for tools \['ping'\] after max_turns=2"):
        await node.run(State(), ctx)
    assert len(server.requests) == 2 and len(ctx.record["trace"]) == 1


# -- transport failures ------------------------------------------------------------
@pytest.mark.asyncio
async def test_rate_limit_is_retried_after_retry_after(server):
    server.push(error(429, retry_after=0.01), text("Paris"))
    node = llm("ask", prompt="?", into="answer", model=model_for(server))
    assert (await node.run(State(), context())).update == {"answer": "Paris"}
    assert [r.headers.get("x-stainless-retry-count") for r in server.requests] == ["0", "1"]


@pytest.mark.asyncio
async def test_dropped_connection_is_retried(server):
    server.push(drop(), text("Paris"))
    node = llm("ask", prompt="?", into="answer", model=model_for(server))
    assert (await node.run(State(), context())).update == {"answer": "Paris"}
    assert len(server.requests) == 2


@pytest.mark.asyncio
async def test_server_errors_fail_the_node_after_the_retries(server):
    server.push(*[error(500, retry_after=0.01, message="overloaded") for _ in range(3)])
    node = llm("ask", prompt="?", into="answer", model=model_for(server, max_retries=2))
    with pytest.raises(NodeError) as caught:
        await node.run(State(), context())
    message = str(caught.value)
    assert len(server.requests) == 3
    assert "LLM node 'ask'" in message and "HTTP 500" in message and "after 3 attempt(s)" in message
    assert "overloaded" in message and "Resume the run once fixed" in message
    assert caught.value.node == "ask"


@pytest.mark.asyncio
async def test_rejected_request_is_not_retried(server):
    server.push(error(400, message="unknown parameter"))
    node = llm("ask", prompt="?", into="answer", model=model_for(server))
    with pytest.raises(NodeError, match="HTTP 400, the request was rejected .*unknown parameter"):
        await node.run(State(), context())
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_timeout_fails_the_node(server):
    server.push(slow(3), slow(3))
    node = llm("ask", prompt="?", into="answer", model=model_for(server, timeout=0.2, max_retries=1))
    with pytest.raises(NodeError, match=r"no answer within timeout=0.2s after 2 attempt\(s\)"):
        await node.run(State(), context())
    assert len(server.requests) == 2


@pytest.mark.asyncio
async def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    node = llm("ask", prompt="?", into="answer")
    with pytest.raises(NodeError, match="Set OPENAI_API_KEY"):
        await node.run(State(), context())


# -- streaming and usage -----------------------------------------------------------
@pytest.mark.asyncio
async def test_streaming_emits_tokens_in_order(server):
    server.push(stream("Hel", "lo", " world", usage=(7, 3)))
    events: list[tuple[str, dict[str, Any]]] = []
    ctx = context(emit=lambda kind, data: kind == "token" and events.append((kind, data)))
    node = llm("ask", prompt="?", into="answer", stream=True, model=model_for(server))
    outcome = await node.run(State(), ctx)
    assert events == [("token", {"text": "Hel"}), ("token", {"text": "lo"}), ("token", {"text": " world"})]
    assert outcome.update == {"answer": "Hello world"}
    assert server.bodies[0]["stream"] is True and server.bodies[0]["stream_options"] == {"include_usage": True}
    assert ctx.record["usage"] == {"input_tokens": 7, "output_tokens": 3, "calls": 1, "tool_calls": 0}
    assert ctx.record["llm_calls"] == [{"input_tokens": 7, "output_tokens": 3, "finish_reason": "stop"}]


@pytest.mark.asyncio
async def test_streamed_tool_calls_are_reassembled(server):
    def lookup(city: str) -> str:
        return f"{city}: sunny"

    server.push(tool_calls(("lookup", {"city": "Paris"})), stream("Sunny", "."))
    ctx = context()
    node = llm("ask", prompt="?", into="answer", stream=True, tools=[lookup], model=model_for(server))
    assert (await node.run(State(), ctx)).update == {"answer": "Sunny."}
    assert ctx.record["trace"] == [{"tool": "lookup", "arguments": {"city": "Paris"}, "result": "Paris: sunny"}]


# -- the Responses API ---------------------------------------------------------------
@pytest.mark.asyncio
async def test_responses_api_with_tools_and_structured_output(server):
    def age_of(name: str) -> int:
        return 36

    server.push(tool_calls(("age_of", {"name": "Ada"})), json_content({"name": "Ada", "age": 36}))
    ctx = context()
    node = llm("extract", prompt="Who?", instructions="Be exact.", output=Person, into="person",
               tools=[age_of], model=model_for(server, api="responses"))
    assert (await node.run(State(), ctx)).update == {"person": Person(name="Ada", age=36)}
    first, second = server.bodies
    assert server.requests[0].path == "/v1/responses"
    assert first["input"] == [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "Who?"}]
    assert first["text"]["format"]["type"] == "json_schema" and first["tools"][0]["name"] == "age_of"
    assert second["input"][2:] == [
        {"type": "function_call", "call_id": "call_0", "name": "age_of", "arguments": '{"name": "Ada"}'},
        {"type": "function_call_output", "call_id": "call_0", "output": "36"},
    ]
    assert ctx.record["usage"]["calls"] == 2 and ctx.record["usage"]["input_tokens"] == 20


@pytest.mark.asyncio
async def test_responses_api_streaming(server):
    server.push(stream("Bon", "jour"))
    events: list[str] = []
    ctx = context(emit=lambda kind, data: kind == "token" and events.append(data["text"]))
    node = llm("ask", prompt="?", into="answer", stream=True, model=model_for(server, api="responses"))
    assert (await node.run(State(), ctx)).update == {"answer": "Bonjour"}
    assert events == ["Bon", "jour"]


# -- the scripted model --------------------------------------------------------------
@pytest.mark.asyncio
async def test_scripted_model_drives_the_same_node_offline():
    def age_of(name: str) -> int:
        return 36

    model = ScriptedModel([tool_call("age_of", {"name": "Ada"}), "not json", Person(name="Ada", age=36)])
    events: list[str] = []
    ctx = context(emit=lambda kind, data: kind == "token" and events.append(data["text"]))
    node = llm("extract", prompt="Who is {question}?", output=Person, into="person", tools=[age_of],
               stream=True, model=model)
    outcome = await node.run(State(question="Ada"), ctx)
    assert outcome.update == {"person": Person(name="Ada", age=36)}
    assert model.remaining == 0 and len(model.requests) == 3
    assert model.requests[0].messages == [{"role": "user", "content": "Who is Ada?"}]
    assert model.requests[0].response_format is Person and model.requests[0].tools[0]["name"] == "age_of"
    assert model.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "36"}
    assert ctx.record["trace"] == [{"tool": "age_of", "arguments": {"name": "Ada"}, "result": 36}]
    assert "".join(events) == "not json" + Person(name="Ada", age=36).model_dump_json()
    assert ctx.record["usage"]["calls"] == 3


@pytest.mark.asyncio
async def test_scripted_model_exhaustion_and_failures():
    model = ScriptedModel([lambda request: f"echo {request.messages[-1]['content']}"])
    node = llm("ask", prompt="hi", into="answer", model=model)
    assert (await node.run(State(), context())).update == {"answer": "echo hi"}
    with pytest.raises(ScriptExhausted, match="ran out of replies: call 2"):
        await node.run(State(), context())
    model.add(NodeError("provider down"))
    with pytest.raises(NodeError, match="run 'r1', LLM node 'ask': provider down"):
        await node.run(State(), context())
    direct = await ScriptedModel([[tool_call("a", id="x"), tool_call("b")]]).complete(ModelRequest([]))
    assert direct.tool_calls == [ToolCall("x", "a", "{}"), ToolCall("call_1", "b", "{}")]


def test_llm_rejects_a_node_whose_reply_would_be_lost():
    with pytest.raises(GraphError, match="neither into= nor history="):
        llm("ask", prompt="?")
    node = LLMNode(name="raw", prompt="?", into="answer")
    assert node.kind == "llm" and hash(node)
