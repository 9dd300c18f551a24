"""Fields and node settings: does every write name a state field, and fit it where types tell."""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel

from waypoint.graphs._checks import Spec
from waypoint.graphs._checks_fit import (
    describe,
    kind,
    may_fit,
    one_item,
    return_annotation,
    without_none,
)
from waypoint.graphs._checks_map import check_map
from waypoint.graphs.graph import Graph


def check_fields(spec: Spec) -> list[str]:
    fields = set(spec.fields)
    problems = []
    for name, node in spec.nodes.items():
        for field in sorted((node.writes or frozenset()) - fields):
            problems.append(f"node {name!r} writes unknown field {field!r}; the state has {sorted(fields)}.")
        problems += node.check(NodeChecks(spec), name)
        if node.concurrency is not None and node.concurrency < 1:
            problems.append(f"node {name!r} has concurrency={node.concurrency}; use 1 or more "
                            "(or leave it out for no limit).")
    return problems


def _function(spec: Spec, name: str, node: Any) -> list[str]:
    """A return annotation that lists fields (TypedDict, model, dict[str, T]) must fit them."""
    if getattr(node, "fn", None) is None:
        return []
    returned = return_annotation(node.fn)
    if returned is None:
        return []
    returned = without_none(returned)
    if typing.is_typeddict(returned):
        return _named_writes(spec, name, returned)
    if isinstance(returned, type) and issubclass(returned, BaseModel):
        if issubclass(spec.schema.model, returned):
            return []  # the state model itself (or a base of it)
        return _named_writes(spec, name, returned)
    if kind(returned) == "map" and typing.get_args(returned):
        value = typing.get_args(returned)[-1]
        return [p for f in sorted(node.writes or ()) if f in spec.fields
                for p in _fit(spec, f, value, f"node {name!r} is annotated to return dict values of")]
    return []


def _named_writes(spec: Spec, name: str, returned: type) -> list[str]:
    if typing.is_typeddict(returned):
        hints = typing.get_type_hints(returned)
    else:
        hints = {k: f.annotation for k, f in returned.model_fields.items()}  # type: ignore[attr-defined]
    problems = []
    for field, annotation in hints.items():
        if field not in spec.fields:
            problems.append(f"node {name!r} returns {returned.__name__}, whose field {field!r} is not a "
                            f"state field; the state has {sorted(spec.fields)}: rename or remove it.")
        else:
            problems += _fit(spec, field, annotation, f"node {name!r} returns {returned.__name__} with")
    return problems


def _gate(spec: Spec, name: str, node: Any) -> list[str]:
    answer = node.answer
    if not (isinstance(answer, type) and issubclass(answer, BaseModel)):
        return [f"gate {name!r}: its answer schema {describe(answer)} is not a pydantic model, so answers "
                "cannot be validated; declare one (class Answer(BaseModel): approved: bool) and pass "
                f"g.gate({name!r}, Answer, ...)."]
    if node.into in spec.fields:
        return _fit(spec, node.into, answer, f"gate {name!r} writes its answer as", into=True)
    return []


def _subgraph(spec: Spec, name: str, node: Any) -> list[str]:
    child = node.graph
    if not isinstance(child, Graph):
        return [f"subgraph {name!r} needs a compiled Graph (builder.compile()), got {type(child).__name__}."]
    inner, outer = child.schema.fields, spec.schema.fields
    shared = sorted(set(inner) & set(outer))
    theirs, ours = child.state_type.__name__, spec.schema.model.__name__
    problems = []
    if node.input is None:
        problems += _subgraph_input(name, child, shared, theirs, ours, spec)
    if node.output is None and not shared:
        problems.append(f"subgraph {name!r}: {theirs} and {ours} share no field name, so nothing flows "
                        f"back; pass output=lambda sub: {{...}} (a dict of {ours}'s fields).")
    elif node.output is None:
        problems += [p for f in shared for p in _fit(spec, f, inner[f].annotation,
                                                     f"subgraph {name!r} hands back {f!r} as")]
    return problems


def _subgraph_input(name: str, child: Graph[Any], shared: list[str], theirs: str, ours: str,
                    spec: Spec) -> list[str]:
    if not shared:
        return [f"subgraph {name!r}: {theirs} and {ours} share no field name, so nothing flows in; "
                f"pass input=lambda s: {{...}} (a dict of {theirs}'s fields)."]
    problems = [f"subgraph {name!r}: field {f!r} of {theirs} is required but {ours} has no field of "
                f"that name to fill it; pass input=... or give {f!r} a default."
                for f, info in child.state_type.model_fields.items()
                if info.is_required() and f not in shared]
    for f in shared:
        source, target = spec.fields[f], child.schema.fields[f].annotation
        if not may_fit(source, target):
            problems.append(f"subgraph {name!r} passes field {f!r} ({describe(source)}) into {theirs}'s "
                            f"{f!r} ({describe(target)}), which cannot hold it; "
                            "align the types or pass input=...")
    return problems


def _llm(spec: Spec, name: str, node: Any) -> list[str]:
    problems = []
    into = getattr(node, "into", None)
    if into in spec.fields:
        if node.writes_label:
            written: Any = Literal[tuple(lb for lb in node.labels if lb not in node.optional_labels)]
        else:
            written = getattr(node, "output", None) or str
        written = one_item(written, spec.fields[into], spec.schema.fields[into].reducer)
        problems += _fit(spec, into, written, f"LLM node {name!r} writes its reply as", into=True)
    history = getattr(node, "history", None)
    if history in spec.fields and kind(spec.fields[history]) not in ("seq", None):
        problems.append(f"LLM node {name!r} keeps its conversation in field {history!r} of type "
                        f"{describe(spec.fields[history])}; type it list[dict] (a list of messages).")
    return problems


def _tool(spec: Spec, name: str, node: Any) -> list[str]:
    tool, into = getattr(node, "tool", None), getattr(node, "into", None)
    if tool is None or into not in spec.fields:
        return []
    returned = return_annotation(tool.fn)
    if returned is None:
        return []
    return _fit(spec, into, returned, f"tool node {name!r} writes its result as", into=True)


def _guard(spec: Spec, name: str, node: Any) -> list[str]:
    problems = []
    if node.max_iterations < 0:
        problems.append(f"loop guard {name!r} has max_iterations={node.max_iterations}; use 0 or more.")
    if "continue" not in spec.routes.get(name, {}):
        problems.append(f"loop guard {name!r} has no 'continue' route; "
                        "add routes={'continue': ..., 'done': ...}.")
    return problems


def _fit(spec: Spec, field: str, source: Any, what: str, *, into: bool = False) -> list[str]:
    target = spec.fields[field]
    if may_fit(source, target):
        return []
    fix = (f"type the field {describe(source)} | None, or write another field" if into
           else "fix the annotation or the field's type")
    return [f"{what} {describe(source)}, which cannot fit field {field!r} of type {describe(target)}; {fix}."]


class NodeChecks:
    """The checks a node kind picks from in its `check(checks, name)`: `checks.gate(name, self)`."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def function(self, name: str, node: Any) -> list[str]:
        return _function(self.spec, name, node)

    def gate(self, name: str, node: Any) -> list[str]:
        return _gate(self.spec, name, node)

    def map(self, name: str, node: Any) -> list[str]:
        return check_map(self.spec, name, node)

    def subgraph(self, name: str, node: Any) -> list[str]:
        return _subgraph(self.spec, name, node)

    def llm(self, name: str, node: Any) -> list[str]:
        return _llm(self.spec, name, node)

    def tool(self, name: str, node: Any) -> list[str]:
        return _tool(self.spec, name, node)

    def guard(self, name: str, node: Any) -> list[str]:
        return _guard(self.spec, name, node)
