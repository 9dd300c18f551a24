"""The `waypoint` command's parts; `waypoint.cli` wires them into click commands.

    common    databases, JSON options, errors -> exit codes
    loading   MODULE_OR_FILE:GRAPH references
    output    plain text for pipes, rich colours for terminals
    answers   a gate's JSON schema as a compact shape and an example answer
    live      the running display, and what a run that stopped prints
    inspect   `runs` and `show`
    check     `check`: a graph's problems, warnings and execution bound
    ops       `tick`: the gate-deadline sweep
    runs      `run`, `resume`, `fork`, `cancel`: start, follow and report a run
    changes   a graph edited after its run started: what changed, the ways on
    progress  the live panel: running nodes, their time, maps' bars

A run's marks for `render --run` come from `waypoint.engine.marks` (public as
`waypoint.run_marks`).

Everything heavy (rich, the engine, user code) is imported inside commands, so
`waypoint --help` costs little more than `import waypoint` and click.
"""
