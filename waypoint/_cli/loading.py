"""MODULE_OR_FILE:GRAPH references: how the commands find a graph.

    examples/approval.py:graph     a file, imported by path (module `approval`)
    myapp.flows:essay              a module importable from the current directory
    myapp.flows:make_graph         a function of no arguments returning a graph

The attribute may be a compiled `Graph`, a `GraphBuilder` (compiled here) or a
function of no arguments returning either. A run stores the reference with the
file made absolute, so `resume` finds the graph from any directory. Graphs are
always imported with no event loop running (`graph_of_run`), since a graph file
may run itself at import.
`load_definition` stops short of compiling, for `waypoint check`, and a
`GraphError` raised while importing or calling the definition is a
`DefinitionFailed` (still a usage problem to the other commands) that carries it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from waypoint._cli.common import Db, UsageProblem, read_run, run_async
from waypoint.errors import GraphError

EXAMPLES = "e.g. examples/approval.py:graph or myapp.flows:graph"
_HERE = str(Path(__file__).resolve().parent.parent) + os.sep  # the waypoint package


class DefinitionFailed(UsageProblem):
    """Importing, calling or compiling the definition raised `error`: the graph is wrong.

    `doing` says what raised it ("importing flows.py"), `where` the line of user
    code (" (at flows.py line 12)", or "").
    """

    def __init__(self, message: str, error: GraphError, doing: str, where: str) -> None:
        super().__init__(message)
        self.error, self.doing, self.where = error, doing, where


def load_graph(ref: str) -> tuple[Any, str]:
    """The compiled graph `ref` names, and the reference to store with a run."""
    from waypoint import Graph

    value, canonical = load_definition(ref)
    if not isinstance(value, Graph):
        try:
            value = value.compile()
        except Exception as exc:
            raise _failed(ref, "compile()", exc) from None
    return value, canonical


def stored_graph(info: Any, graph_ref: str | None = None) -> tuple[Any, str]:
    """The graph a stored run was started from (or `graph_ref`, when it moved), and its reference."""
    ref = graph_ref or info.graph_ref
    if ref is None:
        raise UsageProblem(f"run {info.run_id!r} records no graph reference (it was started from "
                           "Python, not this command); pass --graph MODULE_OR_FILE:GRAPH.")
    try:
        return load_graph(ref)
    except UsageProblem as exc:
        hint = "" if graph_ref else (f" (the reference stored with run {info.run_id!r}; pass "
                                     "--graph MODULE_OR_FILE:GRAPH if it moved)")
        raise UsageProblem(exc.message + hint) from None


def graph_of_run(db: Db, run_id: str, graph_ref: str | None) -> tuple[Any, Any, str]:
    """(RunInfo, graph, reference) of a stored run, its graph file imported outside any event loop.

    A graph file may run itself at import (`asyncio.run(main())`, `run_sync(...)`,
    as the README's snippet does): that only works with no loop running, so the
    run's row is read in a loop of its own and the graph imported after it closed.
    """
    info = run_async(read_run(db, run_id))
    return (info, *stored_graph(info, graph_ref))


def stored_graph_off_loop(info: Any) -> Any:
    """`stored_graph(info)[0]` from inside a running event loop (`tick`'s `graph_for`):
    imported in a thread of its own, which runs no loop, for a file that runs itself."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(stored_graph, info).result()[0]


def load_definition(ref: str) -> tuple[Any, str]:
    """The `Graph` or the `GraphBuilder` (not compiled) `ref` names, and its canonical reference."""
    target, attr = split_ref(ref)
    if is_file(target):
        path = Path(target).expanduser().resolve()
        module, canonical = _import_file(path, ref), f"{path}:{attr}"
    else:
        module, canonical = _import_module(target, ref), ref
    return _definition(_attribute(module, attr, ref), ref), canonical


def split_ref(ref: str) -> tuple[str, str]:
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not all(p.isidentifier() for p in attr.split(".")):
        raise UsageProblem(f"{ref!r} is not MODULE_OR_FILE:GRAPH ({EXAMPLES}).")
    return target, attr


def is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_file(path: Path, ref: str) -> ModuleType:
    if not path.is_file():
        raise UsageProblem(f"cannot load graph {ref!r}: there is no file {path}.")
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageProblem(f"cannot load graph {ref!r}: {path} is not a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic and dataclasses look their module up by name
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # as `python file.py` would: siblings import
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise _failed(ref, f"importing {path}", exc) from None
    return module


def _module_name(path: Path) -> str:
    name = path.stem if path.stem.isidentifier() else "graph_file"
    existing = sys.modules.get(name)
    if existing is None or getattr(existing, "__file__", None) == str(path):
        return name
    return f"_waypoint_file_{name}_{abs(hash(str(path))):x}"


def _import_module(target: str, ref: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # as `python -m` would: modules of the current directory
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise UsageProblem(
                f"cannot load graph {ref!r}: no module named {exc.name!r} in the current "
                f"directory ({cwd}) or on sys.path; give a file path ({EXAMPLES})."
            ) from None
        raise UsageProblem(f"cannot load graph {ref!r}: importing {target} raised {_describe(exc)}") from None
    except Exception as exc:
        raise _failed(ref, f"importing {target}", exc) from None


def _attribute(module: ModuleType, attr: str, ref: str) -> Any:
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise UsageProblem(
                f"cannot load graph {ref!r}: {module.__name__} ({module.__file__}) has no "
                f"attribute {attr!r}; graphs it defines: {_candidates(module) or 'none'}."
            )
        value = getattr(value, part)
    return value


def _candidates(module: ModuleType) -> list[str]:
    from waypoint import Graph, GraphBuilder

    return sorted(k for k, v in vars(module).items() if isinstance(v, (Graph, GraphBuilder)))


def _definition(value: Any, ref: str) -> Any:
    from waypoint import Graph, GraphBuilder

    if callable(value) and not isinstance(value, (Graph, GraphBuilder, type)):
        try:
            value = value()
        except Exception as exc:
            raise _failed(ref, "calling it", exc) from None
    if not isinstance(value, (Graph, GraphBuilder)):
        raise UsageProblem(
            f"cannot load graph {ref!r}: it is a {type(value).__name__}, not a waypoint Graph, "
            "a GraphBuilder, or a function of no arguments returning one."
        )
    return value


def _failed(ref: str, doing: str, exc: Exception) -> UsageProblem:
    message = f"cannot load graph {ref!r}: {doing} raised {_describe(exc)}"
    if isinstance(exc, GraphError):
        return DefinitionFailed(message, exc, doing, _where(exc))
    return UsageProblem(message)


def _describe(exc: BaseException) -> str:
    """`TypeError: ... (at flows.py line 12)`: the error and where in user code it came from."""
    return f"{type(exc).__name__}: {exc}{_where(exc)}"


def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith((_HERE, "<frozen"))]
    return f" (at {frames[-1].filename} line {frames[-1].lineno})" if frames else ""
