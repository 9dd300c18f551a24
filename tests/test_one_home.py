"""One home per concept (issue 12): shared wording and detection live in one helper each.

Each test parses waypoint's modules and pins where a concept is implemented, so a
sixth copy of "format a pydantic error" fails here instead of drifting in wording.
"""

import ast
from pathlib import Path

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from waypoint._messages import problems

ROOT = Path(__file__).resolve().parent.parent / "waypoint"


def modules_calling(method: str) -> set[str]:
    """The modules (relative to waypoint/) with a call `<anything>.<method>(...)`."""
    found = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == method):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_pydantic_validation_errors_are_worded_in_one_place():
    assert modules_calling("errors") == {"_messages.py"}


class Order(BaseModel):
    amount: int
    items: list[int] = []


def error_of(model, value) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.validate_python(value) if isinstance(model, TypeAdapter) else model.model_validate(value)
    return caught.value


def test_problems_name_each_location_and_the_whole_value_when_there_is_none():
    exc = error_of(Order, {"amount": "x", "items": [1, "y"]})
    assert problems(exc) == ("amount: Input should be a valid integer, unable to parse string as an "
                             "integer; items.1: Input should be a valid integer, unable to parse "
                             "string as an integer")
    assert problems(exc, named="argument").startswith("argument 'amount': Input should be")
    whole = error_of(TypeAdapter(int), "z")
    assert problems(whole) == "Input should be a valid integer, unable to parse string as an integer"
    assert problems(whole, whole="reply").startswith("reply: Input should be")


def test_reducers_are_told_in_one_place():
    from typing import Annotated

    from waypoint import append
    from waypoint._reducers import field_reducer

    class State(BaseModel):
        notes: Annotated[list[str], append] = []
        total: Annotated[int, max] = 0  # a builtin is a reducer too
        last: str = ""

    assert [field_reducer(State, f) for f in ("notes", "total", "last", "missing")] == [append, max, None, None]
    # the state schema (graphs) and the LLM node (nodes) both ask _reducers; no one else decides it
    assert functions_named("_reducer") == {"_reducers.py": ["is_reducer", "field_reducer"]}


def functions_named(part: str) -> dict[str, list[str]]:
    """Module (relative to waypoint/) -> the functions defined there whose name ends with `part`."""
    found: dict[str, list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and node.name.endswith(part):
                found.setdefault(path.relative_to(ROOT).as_posix(), []).append(node.name)
    return found


def test_usage_is_summed_in_one_place():
    from waypoint.nodes.context import add_usage

    total = {"calls": 1}
    add_usage(total, {"input_tokens": 9, "calls": 2, "finish_reason": "stop", "tool_calls": "x"})
    add_usage(total, None)  # a node that spent nothing
    assert total == {"calls": 3, "input_tokens": 9}
    assert set(functions_named("add_usage")) == {"nodes/context.py"}


def test_one_lazy_loader_serves_the_front_doors():
    modules = {path.relative_to(ROOT).as_posix() for path in ROOT.rglob("*.py")
               if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__"  # a module's own
                      for n in ast.parse(path.read_text()).body)}
    assert modules == set()  # every other front door calls _lazy.lazy
