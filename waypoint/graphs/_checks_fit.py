"""Whether a value annotated one way can fit a field annotated another way.

    may_fit(int, float)            # True: pydantic accepts an int for a float
    may_fit(str, int)              # False: the annotations disagree
    may_fit(Approval, Approval | None)   # True

`compile()` uses this where annotations tell what a node writes (a return
annotation, a gate's answer model, a map's item type). It answers False only
when no value of the first type can fit the second: anything it does not
understand (custom classes, Any, forward references) is given the benefit of
the doubt, so a graph is never rejected on a guess.
"""

from __future__ import annotations

import collections.abc as abc
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, TypeAdapter, ValidationError

_SEQUENCES = (list, tuple, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set,
              abc.MutableSet, abc.Collection, abc.Iterable)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
_NUMBERS = ("bool", "int", "float")
# Coercions pydantic makes (lax mode) that are not subclassing, by kind.
_COERCE = {("str", "bytes"), ("bytes", "str"), ("map", "model")}


def strip(annotation: Any) -> Any:
    """The type under `Annotated[...]`, `NewType` and `type X = ...` aliases."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = annotation.__origin__
        elif hasattr(annotation, "__supertype__"):  # NewType
            annotation = annotation.__supertype__
        elif type(annotation).__name__ == "TypeAliasType":
            annotation = annotation.__value__
        else:
            return annotation


def kind(annotation: Any) -> str | None:
    """A coarse kind: none, bool, int, float, str, bytes, seq, map, model; None if unknown."""
    annotation = strip(annotation)
    cls = typing.get_origin(annotation) or annotation
    if annotation is None or cls is type(None):
        return "none"
    if not isinstance(cls, type):
        return None
    if typing.is_typeddict(cls) or issubclass(cls, _MAPPINGS):
        return "map"
    if issubclass(cls, BaseModel):
        return "model"
    for name, types_ in (("bool", bool), ("int", int), ("float", float), ("str", str),
                         ("bytes", (bytes, bytearray))):
        if issubclass(cls, types_):
            return name
    if cls in _SEQUENCES or issubclass(cls, (list, tuple, set, frozenset)):
        return "seq"
    return None


def may_fit(source: Any, target: Any) -> bool:
    """False only if no value of type `source` can be validated into `target`."""
    source, target = strip(source), strip(target)
    if _unknown(source) or _unknown(target):
        return True
    if _is_union(target):
        return any(may_fit(source, member) for member in typing.get_args(target))
    if _is_union(source):
        return any(may_fit(member, target) for member in typing.get_args(source))
    if typing.get_origin(source) is Literal:
        return any(_value_fits(value, target) for value in typing.get_args(source))
    if typing.get_origin(target) is Literal:
        cls = typing.get_origin(source) or source
        return not isinstance(cls, type) or any(isinstance(v, cls) for v in typing.get_args(target))
    return _kinds_fit(source, target)


def _kinds_fit(source: Any, target: Any) -> bool:
    have, want = kind(source), kind(target)
    if have is None or want is None:
        return True
    if have in _NUMBERS and want in _NUMBERS:
        return True
    if have != want:
        return (have, want) in _COERCE
    if have == "model":
        try:
            return issubclass(typing.get_origin(source) or source, typing.get_origin(target) or target)
        except TypeError:
            return True
    if have in ("seq", "map"):
        return may_fit(_element(source), _element(target))
    return True


def one_item(source: Any, target: Any, reducer: Any) -> Any:
    """What writing one value of type `source` puts into a field: `list[source]` for a list field
    with a reducer (an LLM node appends its reply to `Annotated[list[str], append]` as `[reply]`),
    else `source` itself. Mirrors `waypoint.nodes.llm_node._collects`, which decides it at run time.
    """
    return list[source] if reducer is not None and kind(target) == "seq" else source


def element_type(annotation: Any) -> Any:
    """The item type of a list-like annotation (Any when it does not say)."""
    return _element(strip(annotation))


def _element(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if not args:
        return Any
    if kind(annotation) == "map":
        return args[-1]
    # a typing.Union built at run time from a tuple of arguments: `|` has no such form
    return Union[tuple(args)] if len(args) > 1 else args[0]  # noqa: UP007


def _value_fits(value: Any, target: Any) -> bool:
    try:
        TypeAdapter(target).validate_python(value)
    except ValidationError:
        return False
    except Exception:  # a type pydantic cannot build a validator for: no opinion
        return True
    return True


def _unknown(annotation: Any) -> bool:
    return (annotation is Any or annotation is object or isinstance(annotation, (str, typing.TypeVar))
            or isinstance(annotation, typing.ForwardRef))


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def describe(annotation: Any) -> str:
    """A short readable name for a type: `int`, `list[str]`, `Approval | None`."""
    annotation = strip(annotation)
    if annotation is None or annotation is type(None):
        return "None"
    args, origin = typing.get_args(annotation), typing.get_origin(annotation)
    if isinstance(annotation, type) and not args:
        return annotation.__name__
    if _is_union(annotation):
        return " | ".join(describe(a) for a in args)
    if isinstance(origin, type) and args:  # list[Finding], not list[my_module.Finding]
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else describe(a) for a in args)}]"
    return repr(annotation).replace("typing.", "").replace("collections.abc.", "")


def return_annotation(fn: Any) -> Any:
    """`fn`'s resolved return annotation, or None when it has none or it cannot be resolved."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    annotation = hints.get("return")
    if typing.get_origin(annotation) in (abc.Awaitable, abc.Coroutine):
        annotation = typing.get_args(annotation)[-1]
    return annotation


def without_none(annotation: Any) -> Any:
    """`T | None` -> T: a node may return None (no update) as well as its declared update."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation
