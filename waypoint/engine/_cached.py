"""`cache=` at run time: look a node's result up in the store before it runs, keep it after.

    cache = NodeCache(graph, store, run_id, bus)
    key = cache.key(node, state)                                 # from the state the node would see
    finished = await cache.lookup(node, key, act, started_seq)   # a hit, or None
    finished = await cache.follow(node, key, act, started_seq)   # another run's, or None: we lead
    cache.land(key, await cache.keep(node, key, finished))       # after a live completion

A hit is a `Finished` like a live one (its update and route, `extra["cached"]`
with the key and when it was stored), so it is committed as the node's step and
replay never asks the cache again. Entries are `CacheEntry` records (msgpack) in
the store (`Store.cache_get` / `cache_put`); the key is `nodes.cache.cache_key`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

import msgspec
from pydantic import BaseModel

from waypoint.checkpoints.protocol import Store
from waypoint.engine._frontier import Activation
from waypoint.engine._messages import Finished
from waypoint.engine.events import Event, EventBus
from waypoint.errors import RunError, WaypointError
from waypoint.graphs.graph import Graph
from waypoint.nodes.base import Node, Outcome
from waypoint.nodes.cache import cache_key


class CacheEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """A node's cached result: its update as plain data and its route (None: its edges)."""

    update: dict[str, Any]
    labels: list[str] | None = None
    at: float = 0.0  # when it was stored
    run_id: str = ""  # the run that computed it


_decoder = msgspec.msgpack.Decoder(CacheEntry)
# (store, key) -> the result an activation of this process is computing now, per event loop
_FLIGHTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, str], asyncio.Future[
    CacheEntry | None]]] = weakref.WeakKeyDictionary()


class NodeCache:
    def __init__(self, graph: Graph[Any], store: Store | None, run_id: str, bus: EventBus) -> None:
        self.graph, self.store, self.run_id, self.bus = graph, store, run_id, bus

    def key(self, node: Node, state: BaseModel) -> str:
        assert node.cache is not None
        return cache_key(self.graph.name, node.name, node.cache.inputs(state), node.cache.version)

    async def lookup(self, node: Node, key: str, act: Activation, started_seq: int) -> Finished | None:
        """The stored result of `key` as this activation's, or None (a miss)."""
        blob = await self._store(node).cache_get(key)
        return self._hit(key, act, started_seq, self._entry(node, blob))

    async def follow(self, node: Node, key: str, act: Activation, started_seq: int) -> Finished | None:
        """After a miss: the result of an activation of this process already computing `key`
        (waited for), or None, and this one computes it (then `land` it).

        Runs of one process asking the same thing at once make one call: the others
        wait for it. A leader that fails or is stopped hands the lead to a follower.
        """
        flights = _FLIGHTS.setdefault(asyncio.get_running_loop(), {})
        while (flight := flights.get((id(self.store), key))) is not None:
            self.bus.publish(Event("cache_waiting", self.run_id, act.node, act.id, data={"key": key}))
            hit = self._hit(key, act, started_seq, await asyncio.shield(flight))
            if hit is not None:
                return hit
        flights[id(self.store), key] = asyncio.get_running_loop().create_future()
        return None

    def land(self, key: str, entry: CacheEntry | None) -> None:
        """End this activation's lead on `key`: its entry for the followers, or None (it failed)."""
        flight = _FLIGHTS.get(asyncio.get_running_loop(), {}).pop((id(self.store), key), None)
        if flight is not None and not flight.done():
            flight.set_result(entry)

    async def keep(self, node: Node, key: str, finished: Finished) -> CacheEntry | None:
        """Store a live completion's update and route; one the state would refuse is not kept."""
        assert node.cache is not None
        schema, outcome = self.graph.schema, finished.outcome
        try:
            plain = schema.encode(schema.check_update(node.name, outcome.update, run_id=self.run_id))
        except WaypointError:
            return None  # the commit reports it as the node's failure
        labels = list(outcome.labels) if outcome.labels is not None else None
        entry = CacheEntry(update=plain, labels=labels, at=time.time(), run_id=self.run_id)
        await self._store(node).cache_put(key, msgspec.msgpack.encode(entry), ttl=node.cache.ttl)
        return entry

    def _hit(self, key: str, act: Activation, started_seq: int, entry: CacheEntry | None) -> Finished | None:
        if entry is None:
            return None
        try:
            update = self.graph.schema.decode(entry.update)
        except (KeyError, ValueError):
            return None  # written for another shape of the state: a miss, overwritten after the run
        self.bus.publish(Event("cache_hit", self.run_id, act.node, act.id, data={"key": key}))
        labels = tuple(entry.labels) if entry.labels is not None else None
        record = {"cached": {"key": key, "at": entry.at, "run_id": entry.run_id}}
        return Finished(Outcome(update=update, labels=labels), record, started_seq)

    def _entry(self, node: Node, blob: bytes | None) -> CacheEntry | None:
        if blob is None:
            return None
        try:
            entry = _decoder.decode(blob)
        except msgspec.DecodeError:
            return None  # not ours, or damaged: recomputed and replaced
        routes = self.graph.routes.get(node.name, {})
        if entry.labels is not None and not all(label in routes for label in entry.labels):
            return None  # a route the graph no longer has
        return entry

    def _store(self, node: Node) -> Any:
        if self.store is None or not hasattr(self.store, "cache_get"):
            raise RunError(
                f"run {self.run_id!r}, node {node.name!r} has cache=, but its store "
                f"{type(self.store).__name__} has no cache_get/cache_put; use MemoryStore, SQLiteStore or "
                "PostgresStore, or implement those two methods (see waypoint.checkpoints.protocol).",
                run_id=self.run_id, node=node.name)
        return self.store
