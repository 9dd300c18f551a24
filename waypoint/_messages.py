"""Messages that lead to the fix: a model's shape, and what in a value does not fit it.

    shape(Approval.model_json_schema())     # '{approved: boolean, comment: string = ""}'
    problems(exc, whole="reply")            # "approved: Input should be a valid boolean; ..."
    misfit("the answer", {"aproved": True}, Approval, exc)
    # 'the answer does not fit Approval: 'aproved' is not a field of Approval (did you
    #  mean 'approved'?); field 'approved' is missing. Expected shape: {approved: ...}.'

One home for these words, used by a gate refusing an answer, by `start()`
refusing an input and by the CLI: the shape is the one the waiting screen prints.
Imports nothing of waypoint, so any layer may use it.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

MAX_DEPTH = 4


def misfit(what: str, value: Any, model: Any, exc: Any = None) -> str:
    """`<what> does not fit <Model>: <each problem>. Expected shape: <shape>.`

    `exc` is the pydantic ValidationError, if validating raised one; keys that are
    not fields of `model` (which pydantic ignores by default) are named either way.
    """
    found = [*_unknown(value, model), *(_problem(e) for e in (exc.errors() if exc else ()))]
    return (f"{what} does not fit {model.__name__}: {'; '.join(found) or 'invalid'}. "
            f"Expected shape: {shape(model.model_json_schema())}.")


def problems(exc: Any, *, whole: str | None = None, named: str | None = None) -> str:
    """Each error of a pydantic ValidationError as `location: message`, joined by "; ".

    An error about the whole value (no location) reads `whole: message`, or the bare
    message without `whole`; `named="argument"` writes a location as `argument 'amount'`.
    """
    out = []
    for error in exc.errors(include_url=False):
        loc = ".".join(map(str, error["loc"]))
        where = (f"{named} {loc!r}" if named else loc) if loc else whole
        out.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(out)


def located(exc: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Each error of a pydantic ValidationError as (location, message): a web form shows
    each message beside the input at that location (`()` is the value as a whole)."""
    return [(tuple(error["loc"]), error["msg"]) for error in exc.errors(include_url=False)]


def unknown_keys(value: Any, model: Any) -> list[str]:
    """The top-level keys of a dict `value` that `model` has no field for (none if it allows extras)."""
    if not isinstance(value, dict) or model.model_config.get("extra") == "allow":
        return []
    names = {name for name, f in model.model_fields.items()} | {
        f.alias for f in model.model_fields.values() if f.alias}
    return [k for k in value if k not in names]


def closest(name: str, choices: Any) -> str | None:
    """The choice `name` was probably meant to be, if one is close enough."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown(value: Any, model: Any) -> list[str]:
    out = []
    for key in unknown_keys(value, model):
        near = closest(str(key), model.model_fields)
        out.append(f"{key!r} is not a field of {model.__name__}"
                   + (f" (did you mean {near!r}?)" if near else ""))
    return out


def _problem(error: dict[str, Any]) -> str:
    where = f"field {'.'.join(str(p) for p in error['loc'])!r}" if error["loc"] else "the value"
    if error["type"] == "missing":
        return f"{where} is missing"
    got = json.dumps(error.get("input"), default=str)
    return f"{where}: {error['msg']} (got {got if len(got) <= 60 else got[:57] + '...'})"


def shape(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> str:
    """A JSON schema as people read it: `{approved: boolean, comment: string = ""}`."""
    root = root if root is not None else schema
    node = resolve(schema, root)
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


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """`node` with its `$ref` (into `root`'s `$defs`) followed."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node
