"""Batches: many inputs through one graph, a bounded number at a time, resumable as a whole.

    batch = await run_batch(graph, ["tides", "moon", "sun"], batch_id="essays-2026-06",
                            store=SQLiteStore("runs.db"), concurrency=4)
    batch.states                  # final states, in input order (None where not done)
    batch.failed, batch.waiting   # keys of items that failed or wait at a gate

Each item is an ordinary run whose id is derived from the batch: `<batch_id>/<key>`,
where the key is the item's index in a list, or its key in a dict of inputs.
Running the same batch again (after a crash, an interrupt, or a fix) is therefore
`start(..., run_id=<item id>, if_exists="resume")` per item: a finished item is
not executed again (its final state is read back), a failed or interrupted one is
resumed from its last committed step, and one never started starts. An item's
input is read only when its run is created: changing the inputs of a batch
already under way changes only the items not yet started.

One item's failure does not stop the others: it is reported in `failed` (its
`RunResult` carries the error) and the batch goes on. Stopping the caller (Ctrl-C,
a cancelled task) interrupts the items in flight, which stay resumable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from waypoint.checkpoints.protocol import Store
from waypoint.engine.handles import RunResult
from waypoint.engine.runs import start
from waypoint.errors import WaypointError
from waypoint.graphs.graph import Graph

S = TypeVar("S")


@dataclass
class BatchResult(Generic[S]):
    """Where each item of a batch stands, by key (an int index, or the key of a dict of inputs)."""

    batch_id: str
    results: dict[Any, RunResult[S]] = field(default_factory=dict)
    errors: dict[Any, WaypointError] = field(default_factory=dict)  # items that could not be run at all
    keys: list[Any] = field(default_factory=list)  # the inputs' order

    @property
    def states(self) -> list[S | None]:
        """Each item's final state in input order; None for an item that is not done."""
        return [r.state if (r := self.results.get(k)) is not None and r.status == "done" else None
                for k in self.keys]

    @property
    def done(self) -> list[Any]:
        return self._with("done")

    @property
    def failed(self) -> list[Any]:
        """Items whose run failed, or that could not be started (see `errors`)."""
        return [k for k in self.keys if k in self.errors or self._status(k) == "failed"]

    @property
    def waiting(self) -> list[Any]:
        return self._with("waiting")

    def run_id(self, key: Any) -> str:
        return item_run_id(self.batch_id, key)

    def _status(self, key: Any) -> str | None:
        result = self.results.get(key)
        return None if result is None else result.status

    def _with(self, status: str) -> list[Any]:
        return [k for k in self.keys if self._status(k) == status]


def item_run_id(batch_id: str, key: Any) -> str:
    """The run id of item `key` of batch `batch_id`: `<batch_id>/<key>`."""
    return f"{batch_id}/{key}"


async def run_batch(graph: Graph[S], inputs: Sequence[Any] | Mapping[Any, Any], *, batch_id: str,
                    store: Store, concurrency: int = 8, **options: Any) -> BatchResult[S]:
    """Run every input through `graph`, at most `concurrency` runs at once; see the module docstring.

    `options` go to each item's `start` (deps, budget, max_concurrency, hooks, ...).
    Call it again with the same `batch_id` and store to carry an unfinished batch on.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"run_batch(concurrency={concurrency!r}): give an int >= 1 (how many runs at once)")
    if not batch_id or not isinstance(batch_id, str):
        raise ValueError(f"run_batch(batch_id={batch_id!r}): give a non-empty string; the items' run ids "
                         "are derived from it, so the same id carries the batch on")
    items = list(inputs.items()) if isinstance(inputs, Mapping) else list(enumerate(inputs))
    batch: BatchResult[S] = BatchResult(batch_id, keys=[key for key, _ in items])
    queue = iter(items)
    workers = [_worker(graph, queue, batch, store, options) for _ in range(min(concurrency, len(items)))]
    await asyncio.gather(*workers)
    return batch


async def _worker(graph: Graph[S], queue: Iterable[tuple[Any, Any]], batch: BatchResult[S], store: Store,
                  options: dict[str, Any]) -> None:
    for key, value in queue:  # workers share one iterator: each item is taken once
        try:
            handle = await start(graph, value, store=store, run_id=item_run_id(batch.batch_id, key),
                                 if_exists="resume", **options)
        except WaypointError as exc:  # held by a live process, a changed graph, a bad input...
            batch.errors[key] = exc
            continue
        try:
            batch.results[key] = await handle.result(raise_on_failure=False)
        except asyncio.CancelledError:
            await handle.interrupt()  # the caller is stopping: leave the item resumable
            raise
