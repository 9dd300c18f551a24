"""What users need to test their own graphs.

    from waypoint.testing import ScriptedModel, assert_terminates, tool_call

    model = ScriptedModel(["Paris", tool_call("search", {"q": "tides"})])   # an offline Model

    def test_every_run_of_the_essay_graph_ends():
        assert_terminates(graph, runs=100, input={"topic": "tides"})

    @given(router_choices(graph))                # Hypothesis picks every route and answer
    def test_one_path(choices):
        check_terminates(graph, choices, input={"topic": "tides"})

    async def test_my_store_conforms():
        await check_store(lambda: MyStore(...))

- `ScriptedModel`, `tool_call`, `ScriptExhausted`: a Model that replays a script
  (waypoint.testing.scripted).
- `assert_terminates`, `check_terminates`, `run_driven`, `DrivenRun`: runs with
  every router, LLM node, guard condition and gate driven by Hypothesis, each
  of which must end within `graph.max_steps` (waypoint.testing.termination).
- `router_choices`, `random_graphs`, `Choices`: the Hypothesis strategies behind
  them (waypoint.testing.strategies).
- `check_store`, `run_check`, `CHECKS`: the conformance suite every Store passes
  (waypoint.testing.store_conformance).

Hypothesis is only needed for the termination checks and the strategies
(`pip install hypothesis`, part of the `test` extra); they are imported on first use, so
`from waypoint.testing import ScriptedModel` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from waypoint._lazy import lazy
from waypoint.testing.scripted import ScriptedModel, ScriptExhausted, tool_call

if TYPE_CHECKING:
    from waypoint.testing.store_conformance import CHECKS, check_store, run_check
    from waypoint.testing.strategies import Choices, random_graphs, router_choices
    from waypoint.testing.termination import DrivenRun, assert_terminates, check_terminates, run_driven

__all__ = [
    "CHECKS", "Choices", "DrivenRun", "ScriptExhausted", "ScriptedModel", "assert_terminates",
    "check_store", "check_terminates", "random_graphs", "router_choices", "run_check", "run_driven",
    "tool_call",
]

__getattr__, __dir__ = lazy(__name__, {  # imported on first use (Hypothesis, the engine)
    **dict.fromkeys(["assert_terminates", "check_terminates", "run_driven", "DrivenRun"], ".termination"),
    **dict.fromkeys(["router_choices", "random_graphs", "Choices"], ".strategies"),
    **dict.fromkeys(["check_store", "run_check", "CHECKS"], ".store_conformance"),
})
