"""A gate's answer schema for people: a compact shape and an example answer.

    schema = Approval.model_json_schema()
    shape(schema)      # '{approved: boolean, comment: string = ""}'
    example(schema)    # {"approved": True, "comment": ""}

The example takes each field's default where there is one and a placeholder of
the right type otherwise, so the printed resume command is valid as printed.
`shape` lives in `waypoint._messages`, so the library's errors print the same shape.
"""

from __future__ import annotations

from typing import Any

from waypoint._messages import MAX_DEPTH, resolve, shape

__all__ = ["example", "shape"]

PLACEHOLDERS: dict[str, Any] = {
    "string": "", "integer": 0, "number": 0, "boolean": True, "null": None, "array": [],
    "object": {},
}


def example(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    root = root if root is not None else schema
    node = resolve(schema, root)
    for key in ("default", "const"):
        if key in node:
            return node[key]
    if node.get("enum"):
        return node["enum"][0]
    if node.get("examples"):
        return node["examples"][0]
    variants = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
    if variants:
        useful = [v for v in variants if resolve(v, root).get("type") != "null"] or variants
        return example(useful[0], root, depth)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" and "properties" in node and depth < MAX_DEPTH:
        return {name: example(sub, root, depth + 1) for name, sub in node["properties"].items()}
    if kind in ("integer", "number") and "minimum" in node:
        return node["minimum"]
    return PLACEHOLDERS.get(kind, None)  # type: ignore[arg-type]


def check_input(graph: Any, value: Any) -> None:
    """Refuse a `--input` that does not fit the graph's state, naming each field and the shape.

    A key that is not a field is refused too (pydantic would drop it silently), with
    the field it was probably meant to be.
    """
    from pydantic import ValidationError

    from waypoint._cli.common import UsageProblem
    from waypoint._messages import misfit, unknown_keys

    try:
        graph.schema.initial(value)
    except ValidationError as exc:
        raise UsageProblem(f"--input for graph {graph.name!r}: "
                           f"{misfit('the input', value, graph.state_type, exc)}") from None
    if unknown_keys(value, graph.state_type):
        raise UsageProblem(f"--input for graph {graph.name!r}: "
                           f"{misfit('the input', value, graph.state_type)}")


def check_set(graph: Any, update: Any) -> None:
    """Refuse a `--set` that is not a JSON object, or names a field the state lacks (with the
    closest name); the values themselves are checked by the library, field by field."""
    from waypoint._cli.common import UsageProblem
    from waypoint._messages import misfit, unknown_keys

    if update is None:
        return
    if not isinstance(update, dict) or not update:
        raise UsageProblem(f"--set takes a JSON object of the fields to change, e.g. "
                           f"--set '{{\"draft\": \"shorter\"}}'; got {update!r:.80}.")
    if unknown_keys(update, graph.state_type):
        raise UsageProblem(f"--set for graph {graph.name!r}: "
                           f"{misfit('the edit', update, graph.state_type)} Nothing was written.")
