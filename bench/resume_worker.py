"""The fresh process of workload 4: resume one waiting run, print how long the call took.

    python -m bench.resume_worker wp|lg DB RUN_ID K FULL|NORMAL

Only the library under test is imported. The parent times the whole process
around it; this prints the resume call alone, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    side, db, run_id, k, sync = argv
    if side == "wp":
        from bench import wp as lib
    else:
        from bench import lg as lib
    seconds = asyncio.run(lib.resume_call(Path(db), run_id, int(k), sync))  # type: ignore[arg-type]
    print(json.dumps({"resume_s": seconds}))


if __name__ == "__main__":
    main(sys.argv[1:])
