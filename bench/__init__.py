"""Side-by-side benchmarks of waypoint and LangGraph (outside the test suite).

    pip install -e ".[bench]"
    python -m bench.run              # full sizes, 5 repetitions, medians
    python -m bench.run --quick      # small sizes, one repetition (what CI runs)
    python -m bench.profile          # where waypoint's time goes (pyinstrument)

`wp.py` and `lg.py` build the same graph shapes over the same state on each
library and time them; `resume_worker.py` is the fresh process of workload 4;
`run.py` runs every workload on both, in one process tree, and prints the table.
"""
