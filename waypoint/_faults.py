"""Named fault points, for crash tests of the engine and the stores.

    WAYPOINT_FAULT=after_commit@3 python my_run.py    # SIGKILL itself the 3rd time

Points: `before_commit` (a node's work is done, its step not yet written),
`inside_commit` (SQLite: rows written, COMMIT not yet run), `after_commit` (the
step is durable, the nodes it activates have not started). Without the
variable, `reached()` is a single comparison.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("WAYPOINT_FAULT")
_POINT, _, _NTH = (_SPEC or "").partition("@")
_counts: dict[str, int] = {}


def reached(point: str) -> None:
    """Kill this process with SIGKILL if the configured fault point is reached."""
    if _SPEC is None or point != _POINT:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
