"""A gate's answer schema for people: a compact shape and an example answer.

    schema = Approval.model_json_schema()
    shape(schema)      # '{approved: boolean, comment: string = ""}'
    example(schema)    # {"approved": True, "comment": ""}

The example takes each field's default where there is one and a placeholder of
the right type otherwise, so the printed resume command is valid as printed.
"""

from __future__ import annotations

import json
from typing import Any

PLACEHOLDERS: dict[str, Any] = {
    "string": "", "integer": 0, "number": 0, "boolean": True, "null": None, "array": [],
    "object": {},
}
MAX_DEPTH = 4


def shape(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> str:
    root = root if root is not None else schema
    node = _resolve(schema, root)
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    variants = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
    if variants:
        return " | ".join(shape(v, root, depth) for v in variants)
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array":
        return f"list[{shape(node.get('items', {}), root, depth + 1)}]"
    if kind == "object" and "properties" in node and depth < MAX_DEPTH:
        return "{" + ", ".join(_fields(node, root, depth)) + "}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"dict[string, {shape(node['additionalProperties'], root, depth + 1)}]"
    return kind or "any"


def _fields(node: dict[str, Any], root: dict[str, Any], depth: int) -> list[str]:
    required = set(node.get("required", ()))
    fields = []
    for name, sub in node["properties"].items():
        text = f"{name}: {shape(sub, root, depth + 1)}"
        if name not in required:
            text += f" = {json.dumps(sub['default'])}" if "default" in sub else " (optional)"
        fields.append(text)
    return fields


def example(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    root = root if root is not None else schema
    node = _resolve(schema, root)
    for key in ("default", "const"):
        if key in node:
            return node[key]
    if node.get("enum"):
        return node["enum"][0]
    if node.get("examples"):
        return node["examples"][0]
    variants = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
    if variants:
        useful = [v for v in variants if _resolve(v, root).get("type") != "null"] or variants
        return example(useful[0], root, depth)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" and "properties" in node and depth < MAX_DEPTH:
        return {name: example(sub, root, depth + 1) for name, sub in node["properties"].items()}
    if kind in ("integer", "number") and "minimum" in node:
        return node["minimum"]
    return PLACEHOLDERS.get(kind, None)  # type: ignore[arg-type]


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node
