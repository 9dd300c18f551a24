"""Map nodes: what they iterate over (`over=`, a dotted path), their worker, and their results.

    problems = check_map(spec, "delegate", spec.nodes["delegate"])   # called by check_fields
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from waypoint.graphs._checks import Spec
from waypoint.graphs._checks_fit import (
    describe,
    element_type,
    kind,
    may_fit,
    return_annotation,
    strip,
    without_none,
)
from waypoint.graphs.graph import Graph


def check_map(spec: Spec, name: str, node: Any) -> list[str]:
    problems = _map_worker(name, node)
    item, found = _map_over(spec, name, node.over)
    problems += found
    if isinstance(node.graph, Graph):
        problems += _map_child_input(name, node, item)
    if node.into in spec.fields:
        problems += _map_into(spec, name, node)
    if node.max_concurrency < 1 or (node.max_items is not None and node.max_items < 0):
        problems.append(f"map {name!r} has max_concurrency={node.max_concurrency}, "
                        f"max_items={node.max_items}; use max_concurrency >= 1 and max_items >= 0.")
    return problems


def _map_worker(name: str, node: Any) -> list[str]:
    graph = getattr(node, "graph", None)
    if graph is not None and not isinstance(graph, Graph):
        return [f"map {name!r} runs a worker graph that is not compiled ({type(graph).__name__}); "
                f"pass builder.compile(): g.map({name!r}, worker.compile(), over=..., into=...)."]
    if graph is None and not callable(node.fn):
        return [f"map {name!r} has no function to run per item; pass one: "
                f"g.map({name!r}, fn, over=..., into=...)."]
    if graph is None and (node.input is not None or node.output is not None):
        return [f"map {name!r}: input= and output= apply to a worker graph, but its worker is the "
                "function itself, which takes the item and returns the result; drop them."]
    return []


def _map_over(spec: Spec, name: str, path: str) -> tuple[Any, list[str]]:
    """(the item type of `state.<path>` or Any, problems): the path's first part must be a
    field; later parts are checked where the types are models."""
    first, *rest = parts = path.split(".")
    if not all(parts):
        return Any, [f"map {name!r} iterates over {path!r}, which has an empty part; write a field "
                     "name or a dotted path into one (over='items' or over='plan.items')."]
    if first not in spec.fields:
        if not rest:
            return Any, [f"map {name!r} iterates over unknown field {path!r}; the state has "
                         f"{sorted(spec.fields)}."]
        return Any, [f"map {name!r} iterates over {path!r}, whose first part {first!r} is not a state "
                     f"field; the state has {sorted(spec.fields)}: start the path with one of them."]
    annotation = spec.fields[first]
    for i, part in enumerate(rest):
        model, at = _model_of(annotation), ".".join(parts[:i + 1])
        if model is None and kind(without_none(annotation)) not in ("map", None):
            return Any, [f"map {name!r} iterates over {path!r}, but {at} is a {describe(annotation)}, "
                         f"which has no field {part!r}; a path goes through models and dicts only."]
        if model is None:
            return Any, []  # a dict or a type not understood: the path is taken on trust
        if part not in model.model_fields:
            return Any, [f"map {name!r} iterates over {path!r}, but {at} is a {model.__name__}, "
                         f"which has no field {part!r}; its fields are "
                         f"{sorted(model.model_fields)}."]
        annotation = model.model_fields[part].annotation
    if kind(annotation) not in ("seq", None):
        return Any, [f"map {name!r} iterates over field {path!r} of type {describe(annotation)}, which "
                     "is not a list; point over= at a list field (e.g. list[str])."]
    return element_type(annotation), []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation = strip(without_none(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _map_child_input(name: str, node: Any, item: Any) -> list[str]:
    """Without input=, an item must be a model or a dict that the worker's state can take."""
    child, item = node.graph, strip(item)
    theirs = child.state_type.__name__
    if node.input is not None or kind(item) in ("map", None):
        return []
    if kind(item) != "model":
        return [f"map {name!r}: its items are {describe(item)}, which cannot be the input of worker graph "
                f"{child.name!r}; pass input=lambda item: {{...}} (a dict of {theirs}'s fields)."]
    problems = [f"map {name!r}: field {f!r} of {theirs} is required but the items ({item.__name__}) have "
                f"no field of that name to fill it; pass input=lambda item: {{...}} or give {f!r} a default."
                for f, info in child.state_type.model_fields.items()
                if info.is_required() and f not in item.model_fields]
    for f, info in item.model_fields.items():
        target = child.schema.fields[f].annotation if f in child.schema.fields else None
        if target is not None and not may_fit(info.annotation, target):
            problems.append(f"map {name!r} passes the items' field {f!r} ({describe(info.annotation)}) into "
                            f"{theirs}'s {f!r} ({describe(target)}), which cannot hold it; align the "
                            "types or pass input=...")
    return problems


def _map_into(spec: Spec, name: str, node: Any) -> list[str]:
    target = spec.fields[node.into]
    if kind(target) not in ("seq", None):
        return [f"map {name!r} writes its list of results to field {node.into!r} of type "
                f"{describe(target)}, which is not a list; type the field list[...] or pick another."]
    if isinstance(node.graph, Graph) and node.output is None:
        state = node.graph.state_type
        if not may_fit(state, element_type(target)):
            return [f"map {name!r}: each item's result is the final state of worker graph "
                    f"{node.graph.name!r} ({state.__name__}), which cannot fit the items of field "
                    f"{node.into!r} ({describe(target)}); pass output=lambda final: final.<field>, "
                    f"or type the field list[{state.__name__}]."]
        return []
    made_by = node.output if isinstance(node.graph, Graph) else node.fn
    returned = return_annotation(made_by) if callable(made_by) else None
    if returned is not None and not may_fit(returned, element_type(target)):
        what = "its output= function" if made_by is node.output else "its function"
        return [f"map {name!r}: {what} returns {describe(returned)}, which cannot fit the items "
                f"of field {node.into!r} ({describe(target)}); fix the annotation or the field's type."]
    return []
