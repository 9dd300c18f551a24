"""`waypoint tick`: escalate every gate whose deadline has passed.

    waypoint tick --db /srv/runs.db

It is meant for cron (`* * * * * waypoint tick --db /srv/runs.db`): it
resumes each waiting run with a due gate, loading its graph from the reference
stored with the run, and prints one line per run it touched.
"""

from __future__ import annotations

from typing import Any

from waypoint._cli.common import Db, UsageProblem, opened
from waypoint._cli.output import STATUS_STYLES, Out


async def tick_runs(db: Db, out: Out) -> bool:
    """Resume every waiting run whose gate deadline passed; False if one could not be."""
    from waypoint import tick
    from waypoint._cli.loading import stored_graph_off_loop

    skipped: list[tuple[str, str]] = []
    graphs: dict[str, Any] = {}

    def graph_for(info: Any) -> Any:
        try:
            if info.graph_ref not in graphs:
                graphs[info.graph_ref] = stored_graph_off_loop(info)
            return graphs[info.graph_ref]
        except UsageProblem as exc:
            skipped.append((info.run_id, exc.message))
            return None

    async with opened(db) as store:
        results = await tick(graph_for, store=store)
    skipped += [(s.run_id, s.reason) for s in getattr(results, "skipped", ())]
    for result in results:
        waiting = f"  waiting: {', '.join(result.waiting)}" if result.waiting else ""
        out.line(f"{result.run_id}  ", (result.status, STATUS_STYLES.get(result.status)), waiting)
    for run_id, why in skipped:
        out.line(f"{run_id}  ", ("skipped", "bold red"), f"  {why}")
    out.line(f"{len(results)} run(s) resumed, {len(skipped)} skipped")
    return not skipped
