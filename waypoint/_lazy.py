"""One lazy loader for the packages' front doors: a name is imported on first use.

    __getattr__, __dir__ = lazy(__name__, {"SQLiteStore": "waypoint.checkpoints.sqlite"})

The module `__getattr__` (PEP 562) this returns imports the module a name lives
in the first time the name is read, and keeps it in the package's namespace so
the next read is a plain lookup. This is what keeps `import waypoint` and
`import waypoint.checkpoints` light: importing a package runs its parent's
`__init__` first, so an eager front door would load every layer below it.
Imports nothing of waypoint, so any package may use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy"]


def lazy(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, whose names in `table` map to the module defining them.

    A module name starting with "." is relative to `package`.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
