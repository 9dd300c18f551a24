"""Lifecycle hooks: your code called as a run's live work happens.

    class Log(RunHooks):
        def on_node_start(self, event: Event) -> None:
            print("started", event.node)

        def on_llm_end(self, event: Event) -> None:
            print(event.node, event.data["output_tokens"], "tokens out")

    handle = await start(graph, input, store=store, hooks=Log())   # or hooks=[Log(), Audit()]

Every hook is derived from the run's event stream (`engine/events.py`), so every
path that publishes an event fires it, child runs' nodes included (named
`sub/node`); steps replayed on resume publish nothing, so hooks see live work
only. Hooks are plain functions called on the event loop when the event is
published: keep them quick (hand slow work to a queue or a task).

A hook that raises is reported on the run's stream as a `hook_failed` event and
the run goes on, unless its class says `strict = True`: then the run fails with
a `RunError` naming the hook (before its first node when it was a run-start hook;
a run-end hook cannot fail a run that has already ended, so it is only reported).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from waypoint.engine.events import TERMINAL, Event, EventBus
from waypoint.errors import RunError

Listener = Callable[[Event], None]

# event kind -> the hook it fires; a gate's answer is a node_finished carrying "answer"
_HOOKS = {
    "run_started": "on_run_start", "run_resumed": "on_run_start",
    **dict.fromkeys(TERMINAL, "on_run_end"),
    "node_started": "on_node_start", "node_finished": "on_node_end", "node_failed": "on_node_end",
    "llm_call_started": "on_llm_start", "llm_call_finished": "on_llm_end",
    "tool_started": "on_tool_start", "tool_finished": "on_tool_end",
    "gate_waiting": "on_gate_waiting", "guardrail_verdict": "on_guardrail",
}


class RunHooks:
    """Subclass and override the hooks you need; each receives the `Event`.

    `strict = True` makes a hook that raises fail the run instead of being reported.
    """

    strict = False

    def on_run_start(self, event: Event) -> None: ...   # run_started or run_resumed
    def on_run_end(self, event: Event) -> None: ...     # finished, failed, waiting, interrupted, cancelled
    def on_node_start(self, event: Event) -> None: ...
    def on_node_end(self, event: Event) -> None: ...    # node_finished or node_failed
    def on_llm_start(self, event: Event) -> None: ...   # data: model, provider
    def on_llm_end(self, event: Event) -> None: ...     # data: input/output_tokens, finish_reason, error
    def on_tool_start(self, event: Event) -> None: ...  # data: tool, call_id
    def on_tool_end(self, event: Event) -> None: ...    # data: tool, call_id, error when it raised
    def on_gate_waiting(self, event: Event) -> None: ...
    def on_gate_answered(self, event: Event) -> None: ...  # data: answer, by
    def on_guardrail(self, event: Event) -> None: ...  # data: guardrail, stage, verdict, reason, info (tool)


class ObservedBus(EventBus):
    """An EventBus that also calls `listeners` synchronously, in order, on each publish."""

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        super().__init__()
        self.listeners = list(listeners)

    def publish(self, event: Event) -> None:
        super().publish(event)
        for listener in self.listeners:
            listener(event)


class HookCaller:
    """Calls a run's hooks for each event; the listener `runs.start` puts on the bus."""

    def __init__(self, hooks: RunHooks | Sequence[RunHooks], bus: EventBus) -> None:
        self.hooks = [hooks] if isinstance(hooks, RunHooks) else list(hooks)
        for hook in self.hooks:
            if not isinstance(hook, RunHooks):
                raise TypeError(f"hooks=: {hook!r} is not a RunHooks; subclass waypoint.RunHooks and "
                                "override the on_* methods you need, e.g. on_node_end(self, event).")
        self.bus = bus
        self.pending: RunError | None = None  # a strict run-start hook's failure, raised by `check`
        self.raised = False  # a strict hook failed: the run is failing, later failures are only reported

    def __call__(self, event: Event) -> None:
        name = _HOOKS.get(event.kind)
        if name is None:
            return
        names = [name, "on_gate_answered"] if name == "on_node_end" and "answer" in event.data else [name]
        for hook in self.hooks:
            for method in names:
                self._call(hook, method, event)

    def _call(self, hook: RunHooks, method: str, event: Event) -> None:
        try:
            getattr(hook, method)(event)
        except Exception as exc:
            where = f"hook {type(hook).__name__}.{method}"
            self.bus.publish(Event("hook_failed", event.run_id, event.node, event.activation, event.seq,
                                   {"hook": where, "error": repr(exc), "strict": hook.strict}))
            if hook.strict and event.kind not in TERMINAL and not self.raised:
                self.raised = True
                error = RunError(
                    f"run {event.run_id!r}: strict {where} raised {exc!r} on {event.kind}"
                    f"{f' of node {event.node!r}' if event.node else ''}. Fix the hook and resume the "
                    "run, or declare it strict = False to have its failures only reported.",
                    run_id=event.run_id, node=event.node)
                if event.kind in ("run_started", "run_resumed"):
                    self.pending = error  # published before the run's task exists: see check()
                    return
                raise error from exc

    def check(self) -> None:
        """Raise a strict run-start hook's failure, once the run can fail properly."""
        if self.pending is not None:
            raise self.pending
