"""`waypoint copy`: move runs from one database to another (SQLite or PostgreSQL, either way).

    waypoint copy --from runs.db --to postgresql://waypoint@db.internal/waypoint
    waypoint copy --from postgresql://... --to backup.db --run order-42 --run order-43

Each run is copied whole or not at all (`Store.import_run`), with the same seqs
and records; the source is only read. Copying again skips what is already there
and reports, without overwriting, a run whose log there differs. A run that was
running at the source arrives "interrupted" (see `waypoint.checkpoints.transfer`).
Exit 1 when a run conflicted or could not be read.
"""

from __future__ import annotations

from collections import Counter

from waypoint._cli.common import Db, command, opened
from waypoint._cli.output import Out
from waypoint.checkpoints.transfer import Copied, copy_runs

STYLES = {"copied": "green", "present": "dim", "conflict": "bold red", "unreadable": "bold red",
          "missing": "bold red"}
SUMMARY = {"copied": "copied", "present": "already there", "conflict": "conflicting (not overwritten)",
           "unreadable": "unreadable at the source", "missing": "not at the source"}


async def copy_command(source: Db, dest: Db, run_ids: list[str] | None, out: Out) -> bool:
    """Copy the runs and print one line per run; False when one conflicted or could not be read."""
    counts: Counter[str] = Counter()
    async with opened(source) as src, opened(dest) as dst:
        async for copied in copy_runs(src, dst, run_ids=run_ids):
            counts[copied.outcome] += 1
            out.line((f"{copied.outcome:<10}", STYLES[copied.outcome]), f" {copied.run_id}  ",
                     _detail(copied, dest))
    if not counts:
        out.line(f"no runs in {source.shown}")
        return True
    out.line(", ".join(f"{counts[k]} {SUMMARY[k]}" for k in SUMMARY if counts[k]) + f" -> {dest.shown}")
    return not (counts["conflict"] or counts["unreadable"] or counts["missing"])


def _detail(copied: Copied, dest: Db) -> str:
    if copied.outcome not in ("copied", "present"):
        return copied.detail
    text = f"{copied.status}, {copied.steps} step(s)"
    if copied.outcome == "copied":
        text += f", {copied.snapshots} snapshot(s)"
    else:
        text += f"; {copied.detail}"
    if copied.was_running:
        text += (f"; it was running at the source, so it is here as interrupted: once it no longer runs "
                 f"there, carry it on with `{command('resume', copied.run_id, db=dest)}`")
    return text
