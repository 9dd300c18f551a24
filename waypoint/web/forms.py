"""HTML forms for gate answers: the answer schema as form fields, and a submitted form back
into the answer, checked by the very model `resume` validates with.

    schema = Approval.model_json_schema()
    fields = form_fields(schema)                 # [FormField(name="approved", widget="checkbox"), ...]
    reading = read_form(Approval, request_form)  # a Reading: .answer (a dict) or .errors
    if reading.errors:                           # {"comment": "String should have at least 3 ..."}
        fields = form_fields(schema, values=request_form, errors=reading.errors)  # shown beside inputs

Widgets: a boolean is a checkbox (an optional one a yes/no/blank select); an enum, a
`Literal` or a const a select; an integer or number a number input; a string a text
input; a nested model a fieldset whose inputs are named with dots (`address.street`);
a list of scalars a textarea with one item a line; anything else (dicts, lists of
models, unions) a textarea holding JSON. Defaults fill the inputs, descriptions are
help text, required fields are marked. A blank input means "not given": the field's
default applies, a required field is reported missing, an optional one is None.

Pure: no Starlette, no HTML; `waypoint/web/templates/_form.html` draws the fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from waypoint._messages import MAX_DEPTH, located, resolve

__all__ = ["FormField", "Reading", "form_fields", "read_form"]

Widget = Literal["checkbox", "select", "number", "text", "lines", "json", "fieldset"]
SCALARS = ("string", "integer", "number")
_OMIT: Any = object()  # a blank input of a field that is not required: its default applies


@dataclass(frozen=True)
class FormField:
    """One input of an answer form (or a fieldset of them), as the template draws it."""

    name: str  # the input's name: dotted inside nested models ("address.street")
    label: str
    widget: Widget
    required: bool = False
    help: str = ""  # the field's description
    value: str = ""  # what the input shows: the default, or what was submitted
    checked: bool = False  # a checkbox's state
    options: tuple[tuple[str, str], ...] = ()  # a select's (value, label) pairs
    step: str = ""  # a number input's step: "1" for integers, "any" otherwise
    minimum: str = ""
    maximum: str = ""
    children: tuple[FormField, ...] = ()  # a fieldset's fields
    error: str = ""  # why the submitted value was refused, shown beside the input

    @property
    def id(self) -> str:
        """The input's HTML id (its label's `for`)."""
        return "f-" + self.name.replace(".", "-")


@dataclass(frozen=True)
class Reading:
    """A submitted form read back: the answer to give `resume`, or the errors by input name
    ("" holds those about the answer as a whole). Exactly one of the two is set."""

    answer: dict[str, Any] | None
    errors: dict[str, str]


# -- schema -> fields ---------------------------------------------------------------
def form_fields(schema: dict[str, Any], *, values: Mapping[str, str] | None = None,
                errors: Mapping[str, str] | None = None) -> list[FormField]:
    """The fields of a form for answers of `schema` (a model's JSON schema).

    `values` (a submitted form) and `errors` (from `read_form`) redraw a refused form
    with what was typed and each error beside its input.
    """
    return _fields(schema, schema, "", 0, schema.get("default"), values, errors or {})


def _fields(node: dict[str, Any], root: dict[str, Any], prefix: str, depth: int, defaults: Any,
            values: Mapping[str, str] | None, errors: Mapping[str, str]) -> list[FormField]:
    required = set(node.get("required", ()))
    out = []
    for name, prop in node.get("properties", {}).items():
        spec, nullable = unwrap(prop, root)
        widget = widget_for(spec, nullable, depth)
        full = prefix + name
        default = defaults[name] if isinstance(defaults, dict) and name in defaults else prop.get("default")
        label = str(prop.get("title") or name.replace("_", " ").capitalize())
        help_text = str(prop.get("description") or spec.get("description") or "")
        base = FormField(full, label, widget, required=name in required, help=help_text,
                         error=errors.get(full, ""))
        if widget == "fieldset":
            children = _fields(spec, root, full + ".", depth + 1, default, values, errors)
            out.append(_with(base, children=tuple(children)))
        else:
            out.append(_filled(base, spec, nullable, default, values))
    return out


def unwrap(prop: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema of a property with its `$ref` followed, and whether it may be null
    (`X | None` is X, nullable; other unions stay unions)."""
    node = resolve(prop, root)
    variants = node.get("anyOf") or node.get("oneOf")
    if variants:
        real = [v for v in variants if resolve(v, root).get("type") != "null"]
        if len(real) == 1 and len(real) < len(variants):
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
            return {**resolve(real[0], root), **rest}, True
    return node, False


def widget_for(spec: dict[str, Any], nullable: bool, depth: int) -> Widget:
    """How a field of schema `spec` is entered."""
    if "const" in spec or spec.get("enum"):
        return "select"
    if spec.get("anyOf") or spec.get("oneOf") or spec.get("allOf"):
        return "json"
    kind = spec.get("type")
    if kind == "boolean":
        return "select" if nullable else "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind == "string":
        return "text"
    if kind == "object" and "properties" in spec and depth < MAX_DEPTH:
        return "fieldset"
    items = spec.get("items", {})
    if kind == "array" and isinstance(items, dict) and (items.get("type") in SCALARS or items.get("enum")):
        return "lines"
    return "json"


def _filled(base: FormField, spec: dict[str, Any], nullable: bool, default: Any,
            values: Mapping[str, str] | None) -> FormField:
    """`base` with its options, bounds and the value it shows."""
    extra: dict[str, Any] = {}
    if base.widget == "select":
        blank = nullable or (not base.required and default is None)
        extra["options"] = (("", "—"),) * blank + tuple((token(v), _label(v)) for v in choices(spec))
    if base.widget == "number":
        extra["step"] = "1" if spec.get("type") == "integer" else "any"
        extra["minimum"] = _text(spec.get("minimum", spec.get("exclusiveMinimum")))
        extra["maximum"] = _text(spec.get("maximum", spec.get("exclusiveMaximum")))
    if values is not None:  # redrawn as submitted
        extra.update(value=values.get(base.name, ""), checked=base.name in values)
    else:
        extra.update(value=shown(base.widget, default), checked=default is True)
    return _with(base, **extra)


def choices(spec: dict[str, Any]) -> list[Any]:
    """The values a select offers: an enum's, a const, or a boolean's."""
    if "const" in spec:
        return [spec["const"]]
    return list(spec.get("enum") or [True, False])


def token(value: Any) -> str:
    """How a choice is written in the form: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _label(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def shown(widget: Widget, default: Any) -> str:
    """A default value as its input shows it."""
    if default is None or widget == "checkbox":
        return ""
    if widget == "select":
        return token(default)
    if widget == "lines":
        return "\n".join(str(item) for item in default)
    if widget == "json":
        return json.dumps(default, indent=2)
    return str(default)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _with(base: FormField, **changes: Any) -> FormField:
    return replace(base, **changes)


# -- form -> answer -----------------------------------------------------------------
def read_form(model: type[BaseModel], form: Mapping[str, str]) -> Reading:
    """The answer a submitted `form` gives, validated by `model` (the gate's answer model).

    Inputs the schema does not name (a CSRF token, the gate's address) are ignored.
    A refusal maps each error to the input it is about; nothing is written anywhere.
    """
    schema = model.model_json_schema()
    errors: dict[str, str] = {}
    data = _read(schema, schema, "", 0, form, errors)
    if errors:
        return Reading(None, errors)
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return Reading(None, placed(located(exc), _widgets(form_fields(schema))))
    return Reading(data, {})


def _read(node: dict[str, Any], root: dict[str, Any], prefix: str, depth: int, form: Mapping[str, str],
          errors: dict[str, str]) -> dict[str, Any]:
    required = set(node.get("required", ()))
    data: dict[str, Any] = {}
    for name, prop in node.get("properties", {}).items():
        spec, nullable = unwrap(prop, root)
        widget, full = widget_for(spec, nullable, depth), prefix + name
        value: Any
        if widget == "fieldset":
            given = any(str(v).strip() for k, v in form.items() if k.startswith(full + "."))
            value = _read(spec, root, full + ".", depth + 1, form, errors) if given or not nullable else None
        elif widget == "checkbox":
            value = full in form
        else:
            value = _value(widget, spec, nullable, name in required, form.get(full), errors, full)
        if value is not _OMIT:
            data[name] = value
    return data


def _value(widget: Widget, spec: dict[str, Any], nullable: bool, required: bool, raw: str | None,
           errors: dict[str, str], name: str) -> Any:
    """The value an input gives its field (or _OMIT); JSON that does not parse is an error."""
    if raw is None or (not raw.strip() and widget != "text"):
        return None if nullable else ([] if widget == "lines" and required else _OMIT)
    if widget == "text":
        return None if nullable and not raw else raw
    if widget == "lines":
        return [_scalar(spec.get("items", {}), line.strip()) for line in raw.splitlines() if line.strip()]
    if widget == "json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            errors[name] = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            return _OMIT
    return _scalar(spec, raw.strip())


def _scalar(spec: dict[str, Any], raw: str) -> Any:
    """A typed value from its text: a choice, a number; as typed when it is neither, so
    the model's own message says what is wrong with it."""
    if "const" in spec or spec.get("enum") or spec.get("type") == "boolean":
        return next((v for v in choices(spec) if token(v) == raw), raw)
    for kind, parse in (("integer", int), ("number", float)):
        if spec.get("type") == kind:
            try:
                return parse(raw)
            except ValueError:
                return raw
    return raw


def _widgets(fields: list[FormField], out: dict[str, Widget] | None = None) -> dict[str, Widget]:
    """Every input name (fieldsets too) -> its widget."""
    out = {} if out is None else out
    for field in fields:
        out[field.name] = field.widget
        _widgets(list(field.children), out)
    return out


def placed(errors: list[tuple[tuple[str | int, ...], str]], widgets: Mapping[str, Widget]) -> dict[str, str]:
    """Validation errors by the input they are about: the longest location that names an
    input; what lies below it is said in the message (`item 2: ...` of a list)."""
    out: dict[str, list[str]] = {}
    for loc, message in errors:
        parts = [str(p) for p in loc]
        cut = next((i for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in widgets), 0)
        name, rest = ".".join(parts[:cut]), loc[cut:]
        if rest and isinstance(rest[0], int) and widgets.get(name) == "lines":
            message = f"item {rest[0] + 1}: {message}"
        elif rest:
            message = f"{'.'.join(map(str, rest))}: {message}"
        out.setdefault(name, []).append(message)
    return {name: "; ".join(messages) for name, messages in out.items()}
