"""Inferring from a function what it writes and which labels it returns."""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal


def literal_labels(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The labels of a `-> Literal[...]` (or `-> list[Literal[...]]`) return annotation."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    ret = hints.get("return")
    if typing.get_origin(ret) in (list, tuple, set, frozenset):
        args = typing.get_args(ret)
        ret = args[0] if args else None
    if typing.get_origin(ret) is Literal:
        return tuple(str(a) for a in typing.get_args(ret))
    return None


def returned_keys(fn: Callable[..., Any]) -> frozenset[str] | None:
    """Keys of the dict literals a function returns, if every return is one (or None)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)).strip())
    except (OSError, TypeError, SyntaxError):
        return None
    if getattr(fn, "__name__", "") == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        return _dict_keys([lambdas[0].body]) if len(lambdas) == 1 else None
    func = tree.body[0] if tree.body else None
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    return _dict_keys([r.value for r in _own_returns(func)])


def _dict_keys(values: list[ast.expr | None]) -> frozenset[str] | None:
    keys: set[str] = set()
    for value in values:
        if value is None or (isinstance(value, ast.Constant) and value.value is None):
            continue
        if not isinstance(value, ast.Dict):
            return None
        for key in value.keys:
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return None
            keys.add(key.value)
    return frozenset(keys)


def _own_returns(func: ast.AST) -> Iterator[ast.Return]:
    """Return statements of `func`, not of functions nested in it."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return):
            yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
