"""Gate addresses: how a run names a gate, in its own graph or inside a child run.

    GateAddress.parse("review")            # a gate of this graph
    GateAddress.parse("sub/review")        # gate 'review' inside subgraph 'sub'
    GateAddress.parse("book[3]/confirm")   # gate 'confirm' inside item 3 of map 'book'
    str(GateAddress("book", 3, GateAddress("confirm")))   # 'book[3]/confirm'
    child_prefix("book", 3)                # 'book[3]/': what item 3's gates are prefixed with

The one place the format is defined. It lives with the node kinds (it imports
nothing) so that compile() can refuse node names that would collide with it and
the engine's waits (`engine/waits.py`) can parse and print it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEAD = re.compile(r"(.+)\[(\d+)\]")  # 'book[3]': item 3 of map 'book'


@dataclass(frozen=True)
class GateAddress:
    """A gate's name as a run sees it: `node`, then `[index]` for a map item, then `/inner`
    when the gate is inside the child run that node (or item) runs."""

    node: str
    index: int | None = None
    inner: GateAddress | None = None

    @classmethod
    def parse(cls, text: str) -> GateAddress:
        """`"book[3]/confirm"` -> GateAddress("book", 3, GateAddress("confirm"))."""
        head, _, rest = text.partition("/")
        node, index = split_head(head) if rest else (head, None)  # 'x[1]' alone: a node's name
        return cls(node, index, cls.parse(rest) if rest else None)

    @property
    def head(self) -> str:
        """The part naming the child run: `sub`, or `book[3]` for a map item."""
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    def __str__(self) -> str:
        return self.head if self.inner is None else f"{self.head}/{self.inner}"


def split_head(head: str) -> tuple[str, int | None]:
    """`"book[1]"` -> `("book", 1)`: a map and an item index; anything else -> `(head, None)`."""
    match = _HEAD.fullmatch(head)
    return (match[1], int(match[2])) if match else (head, None)


def child_prefix(node: str, index: int | None = None) -> str:
    """What the gates inside a child run are prefixed with: `sub/`, or `book[3]/` for an item."""
    return GateAddress(node, index).head + "/"
