"""Plain text for pipes and files, rich colours for a terminal.

    out = Out()
    out.line(("finished", "green"), "  draft", ("  seq 3", "dim"))
    out.table(["ID", "STATUS"], [["run-1", "done"]], styles={"STATUS": STATUS_STYLES})

A line is a sequence of segments, each a str or a (str, style) pair; styles
only apply when stdout is a terminal (and NO_COLOR is unset), so what a test
or a script reads is exactly the text. rich is imported on first coloured use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

Segment = str | tuple[str, str | None]

STATUS_STYLES = {
    "done": "green", "waiting": "bold yellow", "running": "cyan", "failed": "bold red",
    "interrupted": "yellow", "cancelled": "magenta",
}


class Out:
    def __init__(self, color: bool | None = None) -> None:
        if color is None:
            color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        self.color = color
        self._console: Any = None

    def line(self, *segments: Segment) -> None:
        if not self.color:
            click.echo("".join(s if isinstance(s, str) else s[0] for s in segments).rstrip())
            return
        from rich.text import Text

        text = Text()
        for s in segments:
            text.append(*((s, None) if isinstance(s, str) else s))
        self.console.print(text, soft_wrap=True)  # long lines run on; a terminal wraps them

    def block(self, text: str, indent: str = "  ", style: str | None = None) -> None:
        for row in text.splitlines() or [""]:
            self.line((indent + row, style))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]],
              styles: dict[str, dict[str, str]] | None = None) -> None:
        """Aligned columns, never wrapped; `styles` maps a header to {cell value: style}."""
        styles = styles or {}
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        self.line(("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), "bold"))
        for row in rows:
            cells = [(c.ljust(w) + "  ", styles.get(h, {}).get(c))
                     for h, c, w in zip(headers, row, widths, strict=True)]
            self.line(*cells)

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

