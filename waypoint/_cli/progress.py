"""What is running right now, for the live panel under `run`/`resume`'s event lines.

    running = Running()
    for event in events:
        running.update(event)                  # node_started, node_finished, map_progress...
        took = running.took(event)             # seconds since its activation started, or None
    console.print(running.panel(now=time.time()))   # each running node's elapsed time, maps' bars

Built only from the events it is given and the `now` it is asked about, so a
test renders it from a fixed sequence of events; in a terminal, rich's Live
calls `panel` a few times a second and a long node's time goes up as it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STOPS = ("node_finished", "node_failed", "gate_waiting")


@dataclass
class Active:
    node: str
    started: float
    done: int | None = None   # a map's items done, of `total`
    total: int | None = None


class Running:
    def __init__(self) -> None:
        self.active: dict[str, Active] = {}  # by activation id
        self.starts: dict[str, float] = {}   # every activation seen starting, kept for `took`

    def update(self, event: Any) -> None:
        act = event.activation
        if act is None or event.node is None:
            return
        if event.kind == "node_started":
            self.active[act] = Active(event.node, event.at)
            self.starts.setdefault(act, event.at)
        elif event.kind in STOPS:
            self.active.pop(act, None)
        elif event.kind == "map_progress" and act in self.active:
            self.active[act].done, self.active[act].total = event.data["done"], event.data["total"]

    def took(self, event: Any) -> float | None:
        """How long the activation of a finishing `event` ran (None if its start was not seen)."""
        start = self.starts.get(event.activation or "")
        return None if start is None or event.kind not in STOPS else max(0.0, event.at - start)

    def panel(self, now: float) -> Any:
        """A rich table: each running node, its elapsed time, and a map's progress bar."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("RUNNING", "ACT", "ELAPSED", "PROGRESS"):
            table.add_column(column, justify="right" if column == "ELAPSED" else "left")
        for act, a in sorted(self.active.items(), key=lambda kv: kv[1].started):
            bar: Any = ""
            if a.total:
                bar = Table.grid(padding=(0, 1))
                bar.add_row(ProgressBar(total=a.total, completed=a.done or 0, width=30),
                            f"{a.done}/{a.total} items")
            table.add_row(a.node, act, elapsed(now - a.started), bar)
        return table


def elapsed(seconds: float) -> str:
    """`0.04s`, `12.3s`, `2m05s`, `1h02m`: short, and its width stays small."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
