"""`waypoint batch`: many inputs through one graph, a few at a time, carried on by running it again.

    waypoint batch flows.py:graph --inputs tickets.jsonl --batch-id night-0601 --concurrency 4

The inputs are JSON Lines (one JSON object a line; blank lines skipped) or one
JSON array, from a file or `-` (stdin). Item i runs as `<batch-id>/<i>` (i from
0, in input order): running the same command again reads finished items back,
resumes failed or interrupted ones and starts the rest (`waypoint.run_batch`).
Exit 0 when every item is done or waiting at a gate, 1 when any failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from waypoint._cli.common import Db, UsageProblem, command, opened
from waypoint._cli.output import STATUS_STYLES, Out


def read_inputs(source: str) -> list[Any]:
    """The inputs of `source` (a path or "-"): a JSON array, or JSON Lines."""
    if source == "-":
        text, where = sys.stdin.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise UsageProblem(f"--inputs {source}: no such file; give a JSON Lines file (one input a "
                               "line) or a JSON array, or - to read stdin.")
        text, where = path.read_text(encoding="utf-8"), str(path)
    if text.lstrip().startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageProblem(f"--inputs {where}: not a JSON array ({exc}).") from None
        return list(loaded)
    return [_line(line, n, where) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _line(line: str, n: int, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"--inputs {where}, line {n}: not JSON ({exc.msg}): {line[:80]!r}; each "
                           "line is one input, e.g. {\"topic\": \"tides\"}.") from None


async def batch_run(graph: Any, ref: str, source: str, db: Db, batch_id: str, concurrency: int) -> int:
    """Run the batch and print where each item stands; the exit code (1: an item failed)."""
    from waypoint.engine.batch import run_batch

    out, inputs = Out(), read_inputs(source)
    async with opened(db) as store:
        batch = await run_batch(graph, inputs, batch_id=batch_id, store=store, concurrency=concurrency,
                                graph_ref=ref)
    rows = []
    for key in batch.keys:
        result, error = batch.results.get(key), batch.errors.get(key)
        status = "failed" if error is not None else result.status if result is not None else "-"
        problem = error or (result.error if result is not None else None)
        rows.append([str(key), batch.run_id(key), status, str(problem or "")[:100]])
    out.table(["ITEM", "RUN", "STATUS", "ERROR"], rows, styles={"STATUS": STATUS_STYLES})
    failed, waiting = batch.failed, batch.waiting
    out.line(f"{len(batch.done)} done, {len(waiting)} waiting, {len(failed)} failed of {len(batch.keys)}")
    if failed:
        where = source if source == "-" else str(Path(source).resolve())  # works from any directory
        again = command("batch", None, ref, "--inputs", where, "--batch-id", batch_id, db=db)
        out.line(f"fix the cause, then run the batch again to carry it on: {again}")
    return 1 if failed else 0
