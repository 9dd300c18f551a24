"""`waypoint runs` and `waypoint show`: what is in the database.

`show` needs the run's graph only for the state and the gates' questions (it
replays the log through the graph's reducers); when the graph does not load any
more, it still prints the run's row and history, and says why the rest is missing.
"""

from __future__ import annotations

import time
from typing import Any

import click
import msgspec

from waypoint._cli.common import Db, UsageProblem, clip, dumps, opened
from waypoint._cli.live import gate_block
from waypoint._cli.output import STATUS_STYLES, Out

RUN_COLUMNS = ["RUN ID", "GRAPH", "STATUS", "STEPS", "CREATED", "UPDATED", "WAITING"]


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


async def list_runs(db: Db, status: str | None, limit: int, children: bool, out: Out) -> None:
    async with opened(db) as store:
        runs = await store.list_runs(status=status, limit=limit)
    runs = [r for r in runs if children or r.parent_run_id is None]
    if not runs:
        out.line(f"no runs{f' with status {status}' if status else ''} in {db.shown}")
        return
    damaged = [r for r in runs if not r.graph_hash]  # listed by the store, flagged: its row is damaged
    rows = [[r.run_id, r.graph, r.status if r.graph_hash else "damaged", str(r.last_seq),
             when(r.created_at), when(r.updated_at), _waiting(r) or "-"] for r in runs]
    out.table(RUN_COLUMNS, rows, styles={"STATUS": {**STATUS_STYLES, "damaged": "bold red"}})
    for r in damaged:
        out.line((r.error or f"run {r.run_id!r}: its row is damaged", "red"))


async def show_run(db: Db, info: Any, graph: Any, problem: str | None, graph_ref: str | None,
                   seq: int | None, as_json: bool, out: Out) -> None:
    """Print run `info`; `graph` (None when it did not load, `problem` says why) gives the state."""
    from waypoint import history
    from waypoint._cli.changes import graph_change

    async with opened(db) as store:
        steps = await history(info.run_id, store=store)
        state: Any = None
        gates: list[Any] = []
        change = await graph_change(graph, store, info) if graph is not None else None
        if change is not None:
            problem = change.explain(db)
        if graph is not None:
            state, gates = await _state_and_gates(graph, store, info, seq, change is not None)
        if as_json:
            return _print_json(info, steps, state, gates, seq, problem)
        _print_run(info, graph_ref or info.graph_ref, out)
        if problem:
            click.echo(f"warning: {problem}" + ("" if change else "; the state and the gates' "
                       "questions need the graph (pass --graph MODULE_OR_FILE:GRAPH)."), err=True)
        for gate in gates:
            gate_block(gate, info.run_id, db, out)
        if state is not None:
            out.line(f"state (after step {info.last_seq if seq is None else seq}):")
            out.block(dumps(state, indent=2))
        _print_history(steps, graph, out)


def graph_for(info: Any, graph_ref: str | None) -> tuple[Any, str | None]:
    """The run's graph, or None and why not (the run's row and history print without it)."""
    from waypoint._cli.loading import load_graph

    ref = graph_ref or info.graph_ref
    if ref is None and info.parent_run_id:
        return None, (f"run {info.run_id!r} is the child run of a subgraph of run "
                      f"{info.parent_run_id!r}, whose `show` includes its state")
    if ref is None:
        return None, f"run {info.run_id!r} records no graph reference (started from Python?)"
    try:
        return load_graph(ref)[0], None
    except UsageProblem as exc:
        return None, exc.message


async def _state_and_gates(graph: Any, store: Any, info: Any, seq: int | None,
                           changed: bool) -> tuple[Any, list[Any]]:
    from waypoint import pending_gates, state_at
    from waypoint.errors import StoreError

    try:
        state = (await state_at(graph, info.run_id, seq, store=store)).model_dump(mode="json")
        gates = await pending_gates(graph, info.run_id, store=store) if info.status == "waiting" else []
    except (StoreError, KeyError):
        if not changed:
            raise
        return None, []  # the log names what the graph lacks: `explain` has said so
    return state, gates


def _print_run(info: Any, ref: str | None, out: Out) -> None:
    out.line(f"run_id: {info.run_id}")
    out.line(f"graph:  {info.graph}" + (f" ({ref})" if ref else ""))
    status = info.status + (f" at {_waiting(info)}" if _waiting(info) else "")
    out.line("status: ", (status, STATUS_STYLES.get(info.status)))
    out.line(f"steps:  {info.last_seq}   created {when(info.created_at)}   "
             f"updated {when(info.updated_at)}")
    for label, value in (("parent", info.parent_run_id), ("forked from", info.forked_from)):
        if value:
            out.line(f"{label}: {value}")
    if info.error:
        out.line("error:  ", (info.error, "red"))


def _waiting(info: Any) -> str:
    # the row keeps its last gate list while a resume runs; it only means something when waiting
    return ", ".join(info.waiting) if info.status == "waiting" else ""


def _print_history(steps: list[Any], graph: Any, out: Out) -> None:
    out.line("history:")
    if not steps:
        out.line("  (no steps yet)")
        return
    width = max(len(s.node) for s in steps)
    act_width = max(len(s.activation) for s in steps)
    for s in steps:
        out.line(f"  {s.seq:>4}  ", (f"{s.kind:<5}", _KIND_STYLES.get(s.kind)),
                 (f"  {s.node:<{width}}", "bold"), (f"  {s.activation:<{act_width}}  ", "dim"),
                 step_detail(s, graph))


_KIND_STYLES = {"done": "green", "wait": "yellow", "fail": "red", "item": "dim", "event": "cyan",
                "edit": "magenta"}


def step_detail(step: Any, graph: Any = None) -> str:
    """What one history entry did, in a line: delta, route, answer, error..."""
    extra = step.extra
    if step.kind == "wait":
        if "child" in extra:
            return f"waits in child run {extra['child']} at {', '.join(extra.get('gates', []))}"
        if "items" in extra:
            return f"items wait in their child runs at {', '.join(extra.get('gates', []))}"
        return f"asks: {clip(str(extra.get('prompt') or ''), 100)}"
    if step.kind == "fail":
        spent = f"  usage={dumps(extra['usage'])}" if extra.get("usage") else ""  # it counts against budgets
        return clip(f"{extra.get('type', 'error')}: {extra.get('error', '')}", 240) + spent
    if step.kind == "item":
        return _item_text(extra)
    if step.kind == "edit":  # fields a person set (fork/resume --set)
        return f"set {_delta_text(step, graph)}  by {extra.get('by') or 'unknown'}"
    if step.kind != "done":
        return clip(dumps(extra), 160)
    return "  ".join(_done_parts(step, graph))


def _item_text(extra: dict[str, Any]) -> str:
    """A map item, an LLM node's tool turn, or the verdicts of its guardrails' stage."""
    result = extra.get("result")
    if isinstance(result, dict) and "messages" in result and "trace" in result:  # an LLM tool turn
        calls = ", ".join(f"{t.get('tool')}({clip(dumps(t.get('arguments')), 40)})"
                          for t in result["trace"] if isinstance(t, dict))
        return f"tool turn {extra.get('index', 0) + 1}: {clip(calls, 160)}"
    if isinstance(result, dict) and "guardrails" in result:  # nodes/_guarding.py: a stage's verdicts
        return clip(f"{result['guardrails']} guardrails: {_verdicts(result.get('verdicts'))}", 240)
    return f"item {extra.get('index')}: {clip(dumps(result), 80)}"


def _verdicts(verdicts: Any) -> str:
    """`no_passwords=pass, refund_limits=trip (too large)`."""
    parts = []
    for v in verdicts or ():
        if isinstance(v, dict):
            reason = f" ({v['reason']})" if v.get("reason") else ""
            parts.append(f"{v.get('guardrail')}={v.get('verdict')}{reason}")
    return ", ".join(parts)


def _done_parts(step: Any, graph: Any) -> list[str]:
    extra, parts = step.extra, []
    if step.delta:
        parts.append(_delta_text(step, graph))
    if "route" in extra:
        parts.append("route=" + ",".join(extra["route"]))
    if "answer" in extra:
        answer = extra["answer"]
        said = "" if answer in step.delta.values() else f"answer={clip(dumps(answer), 70)} "
        parts.append(f"{said}answered by {extra.get('by') or 'unknown'} at {when(extra.get('answered_at'))}")
    if extra.get("guardrails"):
        parts.append(f"guardrails: {clip(_verdicts(extra['guardrails']), 120)}")
    if step.children:
        parts.append("next=" + ",".join(step.children))
    for key in ("attempt", "loop_count"):
        if key in extra:
            parts.append(f"{key}={extra[key]}")
    return parts


def _delta_text(step: Any, graph: Any) -> str:
    """`n=3 notes+=["x"]`: += for reducer fields, whose delta is what is added."""
    known = graph is not None and (step.node in graph.nodes or step.kind == "edit")
    fields = graph.schema.fields if known else {}
    return " ".join(f"{k}{'+=' if getattr(fields.get(k), 'reducer', None) else '='}"
                    f"{clip(dumps(v), 70)}" for k, v in step.delta.items())


def _print_json(info: Any, steps: list[Any], state: Any, gates: list[Any], seq: int | None,
                problem: str | None) -> None:
    data = {
        "run": msgspec.to_builtins(info),
        "graph_problem": problem,
        "state": state,
        "state_at": info.last_seq if seq is None else seq,
        "waiting": [{"gate": g.name, "prompt": g.prompt, "payload": g.payload, "schema": g.schema}
                    for g in gates],
        "history": [msgspec.to_builtins(s) for s in steps],
    }
    click.echo(dumps(data, indent=2))
