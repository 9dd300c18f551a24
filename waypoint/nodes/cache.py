"""Caching a node's result across runs: `cache=Cache(ttl=...)` on a node.

    g.add(llm("summarise", prompt="{text}", into="summary"), cache=Cache(ttl=24 * 3600))
    g.node(lookup, cache=Cache(ttl=600, key=lambda s: s.sku, version="v2"))

Before a cached node runs, the engine looks its key up in the run's store
(`Store.cache_get`); a live entry is the node's result, committed as its step like
any completion (with `extra["cached"]`), so replay, the log and the diagram are
unchanged. After a live run the result (its update and route) is stored with
`Store.cache_put`, so every run and every process sharing the store sees it.

The key is `cache_key(graph, node, inputs, version)`: the graph's name, the node's
name, `version`, and the canonical JSON of the node's inputs, which are
`key(state)` when given, else the whole state. What invalidates an entry: its TTL
passing (`ttl=None` keeps it until replaced), a different input or `version`, a
renamed graph or node. Changing the node's code or prompt does not: bump `version`.
`deps` are never part of the key. A failed node stores nothing. Runs of one process
that miss the same key at once make one call: the others wait for its result
(a `cache_waiting` event), and compute it themselves if it fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

_PLAIN: TypeAdapter[Any] = TypeAdapter(Any)


@dataclass(frozen=True)
class Cache:
    """How a node's result is cached: for `ttl` seconds (None: no expiry), keyed by `key(state)`
    (None: the whole state) and `version` (bump it when the node's code or prompt changes)."""

    ttl: float | None = None
    key: Callable[[Any], Any] | None = None
    version: str = ""

    def __post_init__(self) -> None:
        if self.ttl is not None and not (isinstance(self.ttl, (int, float)) and self.ttl > 0):
            raise ValueError(f"Cache(ttl={self.ttl!r}): the TTL is a number of seconds > 0, or None "
                             "for entries that never expire")

    def inputs(self, state: BaseModel) -> Any:
        """What the key is computed from: `key(state)`, or the whole state, as plain data."""
        if self.key is None:
            return state.model_dump(mode="json")
        return _PLAIN.dump_python(self.key(state), mode="json")


def cache_key(graph: str, node: str, inputs: Any, version: str = "") -> str:
    """The store key of a node's result: sha256 of the graph, node, version and canonical inputs."""
    canonical = json.dumps([graph, node, version, inputs], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=False)
    return f"{graph}:{node}:" + hashlib.sha256(canonical.encode()).hexdigest()
