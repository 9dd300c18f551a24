"""Span and attribute names: the one home of every name waypoint's traces use.

The GenAI semantic conventions of OpenTelemetry (`gen_ai.*`, `error.type`) where
they have a name for the fact; `waypoint.*` for the engine's own facts. Plain
strings, so this module imports nothing (the `opentelemetry-semantic-conventions`
package is not needed, and these names are what it defines).
"""

from __future__ import annotations

# span names: "<operation> <subject>", as the conventions ask
INVOKE_WORKFLOW = "invoke_workflow"  # + graph name: one attempt at a run (start or resume)
NODE = "waypoint.node"  # + node name: one activation
INVOKE_AGENT = "invoke_agent"  # + node name: an LLM node's conversation
CHAT = "chat"  # + model name: one model call
EXECUTE_TOOL = "execute_tool"  # + tool name: one tool call

# GenAI conventions
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
INPUT_MESSAGES = "gen_ai.input.messages"  # content: only with trace_content=True
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"
ERROR_TYPE = "error.type"

# waypoint's own
RUN_ID = "waypoint.run_id"
GRAPH = "waypoint.graph"
RESUMED = "waypoint.resumed"
NODE_NAME = "waypoint.node"
ACTIVATION = "waypoint.activation"
ATTEMPT = "waypoint.attempt"
SEQ = "waypoint.seq"  # the step that committed the activation
STARTED_SEQ = "waypoint.started_seq"  # the log's end when it was launched

# the event step that stores a run's trace context (W3C traceparent) when it starts
TRACED_EVENT = "traced"
