"""Shared concurrency limits: at most `size` activations at once of every node naming one limit.

    OPENAI = Limit("openai", 4)                      # at most 4 model calls at a time
    g.add(llm("summarise", prompt="{text}", into="summary"), limit=OPENAI)
    g.node(classify, limit=OPENAI)

Unlike a node's `concurrency=` (per run), a limit is shared by every run in the
process that executes a node naming it, whichever graph that node belongs to: a
pool of slots per name. The engine keeps the slots (`waypoint.engine.limits`);
two limits of one name must agree on the size.

With `processes=True` the bound holds across every process sharing the run's store
(a worker fleet): a slot is also claimed in the store (`Store.claim_slot`), held
under a lease that is renewed while the node runs and expires if its process dies.

    OPENAI = Limit("openai", 4, processes=True)     # 4 calls at a time in the whole fleet
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """`Limit(name, size)`: `size` slots shared, in this process, by every node naming `name`;
    with `processes=True`, by every process using the same store."""

    name: str
    size: int
    processes: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Limit(name={self.name!r}, ...): the name is a non-empty string, e.g. "
                             "Limit('openai', 4)")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"Limit({self.name!r}, size={self.size!r}): the size is an int >= 1 (how many "
                             "activations may run at once)")
