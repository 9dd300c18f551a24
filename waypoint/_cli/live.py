"""The running display of `run` and `resume`, and what a run that stopped prints.

    run_id: run-3f2a9c1d7e4b
    EVENT     NODE          ACT    SEQ      TIME  DETAIL
    started   research      0.0
    finished  research      0.0    1       0.01s  notes+=["researching 'tides' in two sources"]
    ...
    waiting   approve       5.0    6       0.00s  Publish revision 1 of the article on 'tides'?
    status: waiting
    gate: approve
      question: ...
      answer:   {approved: boolean, comment: string = ""}
      resume:   waypoint resume run-3f2a9c1d7e4b --gate approve --input '{"approved": true, ...}'

One line per node event, built on `RunHandle.events()`, TIME being how long the
activation ran; in a terminal, a live panel (`progress.Running`) shows what runs
now, for how long, and each map's progress bar. `run_id:` and `status:` lines
are stable for scripts to grep.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import click

from waypoint._cli.answers import example, shape
from waypoint._cli.common import Db, clip, command, dumps
from waypoint._cli.output import STATUS_STYLES, Out
from waypoint._cli.progress import Running, elapsed

LABELS = {  # event kind -> (shown as, style)
    "node_started": ("started", "dim"),
    "node_finished": ("finished", "green"),
    "node_failed": ("failed", "bold red"),
    "node_retried": ("retried", "magenta"),
    "gate_waiting": ("waiting", "bold yellow"),
}


def short_delta(delta: dict[str, Any], graph: Any, width: int = 110) -> str:
    """`notes+=["x"] draft="..."`: += for reducer fields, whose delta is what is added."""
    parts = []
    for name, value in delta.items():
        spec = graph.schema.fields.get(name)
        op = "+=" if spec is not None and spec.reducer is not None else "="
        parts.append(f"{name}{op}{clip(dumps(value), 60)}")
    return clip(" ".join(parts), width)


class EventView:
    """Prints one line per node event of a run, under a header naming the columns."""

    def __init__(self, graph: Any, out: Out) -> None:
        self.graph, self.out = graph, out
        self.width = max([len(n) for n in qualified_names(graph)] + [8])
        self.running = Running()
        self.headed = False

    def show(self, event: Any) -> None:
        self.running.update(event)
        if event.kind not in LABELS or event.node is None:
            return  # run-level events are summed up at the end; custom ones (tokens) skipped
        if not self.headed:
            self.headed = True
            self.out.line((f"{'EVENT':<9} {'NODE':<{self.width}}  {'ACT':<5}  {'SEQ':<4}  "
                           f"{'TIME':>7}  DETAIL", "bold"))
        label, style = LABELS[event.kind]
        seq = str(event.seq) if event.seq is not None and event.kind != "node_started" else ""
        took = self.running.took(event)
        self.out.line((f"{label:<9} ", style), (f"{event.node:<{self.width}}", "bold"),
                      (f"  {event.activation or '-':<5}  {seq:<4}", "dim"),
                      (f"  {elapsed(took) if took is not None else '':>7}  ", "cyan"),
                      self._detail(event))

    def _detail(self, event: Any) -> str:
        data = event.data
        if event.kind == "node_finished":
            return self._finished(event.node, data)
        if event.kind == "gate_waiting" and "gates" in data:
            return "waits at " + ", ".join(data["gates"])  # a gate inside a subgraph
        if event.kind == "gate_waiting":
            return clip(str(data.get("prompt") or ""), 110)
        if event.kind == "node_failed":
            return clip(f"{data.get('type', 'error')}: {data.get('error', '')}", 200)
        if event.kind == "node_retried":
            return f"attempt {data.get('attempt')} raised {clip(str(data.get('error')), 100)}; " \
                   f"retrying in {data.get('delay', 0):.2f}s"
        return ""

    def _finished(self, node: str, data: dict[str, Any]) -> str:
        parts = []
        if "route" in data:
            parts.append("-> " + ", ".join(data["route"]))
        if "answer" in data:
            parts.append(f"answered by {data.get('by') or 'unknown'}")
        graph = _inner_graph(self.graph, node)
        if data.get("delta") and graph is not None:
            parts.append(short_delta(data["delta"], graph))
        return "  ".join(parts)


def qualified_names(graph: Any, prefix: str = "") -> list[str]:
    """Every node name, those inside subgraphs as `sub/node`."""
    names = []
    for name, node in graph.nodes.items():
        names.append(prefix + name)
        if _is_subgraph(node):
            names += qualified_names(node.inner_graph, f"{prefix}{name}/")
    return names


def _inner_graph(graph: Any, node: str) -> Any:
    """The graph that owns `node` (`sub/child` belongs to subgraph `sub`)."""
    from waypoint.nodes.address import GateAddress  # loaded with the run that shows events

    address = GateAddress.parse(node)
    if address.inner is None:
        return graph
    inner = graph.nodes.get(address.head)
    if inner is None or not _is_subgraph(inner):
        return None
    return _inner_graph(inner.inner_graph, str(address.inner))


def _is_subgraph(node: Any) -> bool:
    """A node that runs one child graph as itself (not per item, as a map does)."""
    return node.inner_graph is not None and node.item_field is None


async def follow(handle: Any, graph: Any, out: Out) -> Any:
    """Show the run's events until it stops; its RunResult (failures not raised).

    In a terminal, a live panel under the lines shows what is running, for how
    long, and each map's progress bar; piped output gets the lines only.
    """
    view = EventView(graph, out)
    with _live_panel(view, out):
        async for event in handle.events():
            view.show(event)
    return await handle.result(raise_on_failure=False)


def _live_panel(view: EventView, out: Out) -> Any:
    if not out.color:
        return contextlib.nullcontext()
    from rich.live import Live

    # get_renderable is called on every refresh: a long node's time goes up while it runs
    return Live(console=out.console, get_renderable=lambda: view.running.panel(time.time()),
                refresh_per_second=4, transient=True)


async def report(result: Any, graph: Any, store: Any, db: Db, out: Out) -> None:
    """The end of `run`/`resume`: status, then the state, the questions, or the error."""
    status = result.status
    out.line("status: ", (status, STATUS_STYLES.get(status)))
    if status == "done":
        out.line("state:")
        out.block(dumps(result.state.model_dump(mode="json"), indent=2))
    elif status == "waiting":
        await show_gates(graph, store, result.run_id, db, out)
    elif status == "failed":
        out.line("fix the cause, then: " + resume_command(result.run_id, None, None, db))
        raise click.ClickException(str(result.error or "the run failed"))
    else:  # interrupted (resumable as it is) or cancelled on purpose (resumable by force)
        how = command("resume", result.run_id, *(["--force"] if status == "cancelled" else []), db=db)
        raise click.ClickException(f"run {result.run_id!r} was {status}; `{how}` continues it.")


async def show_gates(graph: Any, store: Any, run_id: str, db: Db, out: Out) -> None:
    from waypoint import pending_gates

    gates = await pending_gates(graph, run_id, store=store)
    out.line(f"the run is waiting for {len(gates)} answer{'s' if len(gates) != 1 else ''}; "
             "it is saved, answer whenever from any shell:")
    for gate in gates:
        gate_block(gate, run_id, db, out)


def gate_block(gate: Any, run_id: str, db: Db, out: Out) -> None:
    out.line("gate: ", (gate.name, "bold yellow"))
    out.line("  question: ", (gate.prompt or "(no prompt)", "bold"))
    if gate.payload is not None:
        text = dumps(gate.payload)
        if len(text) <= 100:
            out.line("  payload:  " + text)
        else:
            out.line("  payload:")
            out.block(dumps(gate.payload, indent=2), indent="    ")
    out.line("  answer:   " + shape(gate.schema))
    out.line(f"  asked:    at step {gate.seq} (with --seen-seq {gate.seq}, an answer is refused if "
             "someone answered first)")
    out.line("  resume:   ", (resume_command(run_id, gate.name, example(gate.schema), db), "cyan"))


def resume_command(run_id: str, gate: str | None, answer: Any, db: Db) -> str:
    """The `waypoint resume` line printed at a gate, after a failure or an interruption."""
    options = ["--gate", gate, "--input", dumps(answer)] if gate is not None else []
    return command("resume", run_id, *options, db=db)


async def finished_run(store: Any, info: Any, db: Db) -> str:
    """What `resume` of a done run says: the exact fork command that runs part of it again.

    The fork starts after the run's last wait at a gate (so the gate asks again), or
    from the start when it never waited.
    """
    from waypoint import history

    waits = [s.seq for s in await history(info.run_id, store=store) if s.kind == "wait"]
    at, what = (waits[-1], "asks its last gate again") if waits else (0, "runs it again from the start")
    return (f"run {info.run_id!r} already finished (done); there is nothing to resume. To run part "
            f"of it again, fork it from a step: `{command('fork', info.run_id, '--at', str(at), db=db)}` "
            f"{what} (`{command('show', info.run_id, db=db)}` lists the steps).")
