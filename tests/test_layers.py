"""Layers hold at run time: importing a layer loads only the layers below it.

docs/design.md draws them: cli -> engine -> graphs -> nodes, engine -> checkpoints,
and checkpoints knows nothing of the engine. Importing a subpackage runs the
package root's `__init__` first, so an eager front door would load everything;
each import below runs in a fresh interpreter.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

HELPERS = {"waypoint", "waypoint._lazy", "waypoint._messages", "waypoint._faults", "waypoint._reducers"}  # no layer
BELOW = {  # what each layer may load besides itself and the helpers
    "waypoint": set(),
    "waypoint.errors": set(),
    "waypoint.checkpoints": {"waypoint.errors"},
    "waypoint.checkpoints.sqlite": {"waypoint.errors"},
    "waypoint.nodes": {"waypoint.errors"},
    "waypoint.graphs": {"waypoint.errors", "waypoint.nodes"},
    "waypoint.engine": {"waypoint.errors", "waypoint.nodes", "waypoint.graphs", "waypoint.checkpoints"},
    "waypoint.web.pages": {"waypoint.errors", "waypoint.nodes", "waypoint.graphs", "waypoint.checkpoints",
                           "waypoint.engine"},  # the server sits on the engine, beside the CLI
}


def loaded_by(module: str) -> set[str]:
    """The waypoint packages (and root modules) in sys.modules after `import <module>` alone."""
    code = (f"import sys, json, {module}\n"
            "print(json.dumps(sorted({'.'.join(m.split('.')[:2]) for m in sys.modules "
            "if m == 'waypoint' or m.startswith('waypoint.')})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_a_layer_loads_only_the_layers_below_it(layer):
    own = ".".join(layer.split(".")[:2])
    extra = loaded_by(layer) - HELPERS - BELOW[layer] - {own}
    assert not extra, f"import {layer} loaded {sorted(extra)}, which docs/design.md puts above it"


def test_checkpoints_never_load_the_engine_even_with_its_sqlite_store():
    assert "waypoint.engine" not in loaded_by("waypoint.checkpoints.sqlite")


def test_the_engine_loads_what_it_runs_on():
    assert {"waypoint.graphs", "waypoint.nodes", "waypoint.checkpoints"} <= loaded_by("waypoint.engine")


@pytest.mark.parametrize("helper", sorted(HELPERS - {"waypoint"}))
def test_the_shared_helpers_import_no_layer(helper):
    assert loaded_by(helper) <= HELPERS, f"{helper} must import nothing of waypoint's layers"


ROOT = Path(__file__).resolve().parent.parent / "waypoint"


def imported(node: ast.AST, package: str) -> list[str]:
    """The dotted names an import statement brings in (`a.b` for `from a import b`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the package, up level - 1
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, *([base] if base else [])])
    return [f"{base}.{alias.name}" for alias in node.names]


def private_home(target: str) -> str | None:
    """The package a private module or name in `target` belongs to, or None if nothing is private."""
    parts = target.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            home = parts[:i]
            while home and not ROOT.parent.joinpath(*home).is_dir():
                home = home[:-1]  # a private name of a module belongs to that module's package
            return ".".join(home)
    return None


def private_imports() -> list[str]:
    """`module imports target` for each import of another package's private module or name."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in imported(node, package):
                home = private_home(target) if target.startswith("waypoint.") else None
                if home is not None and package != home and not package.startswith(home + "."):
                    found.append(f"{module} imports {target}")
    return found


def test_no_module_imports_another_packages_private_names():
    assert private_imports() == [], "make the name public in its home package, or move it there"


def test_the_private_import_finder_sees_what_it_must():
    assert private_home("waypoint.nodes._call.in_thread") == "waypoint.nodes"
    assert private_home("waypoint.checkpoints.memory._held") == "waypoint.checkpoints"
    assert private_home("waypoint._faults") == "waypoint"  # shared by every package below the root
    assert private_home("waypoint.graphs.builder.GraphBuilder") is None
    tree = ast.parse("from ..graphs import _checks\nfrom . import _lease")
    assert [imported(n, "waypoint.engine") for n in tree.body] == [
        ["waypoint.graphs._checks"], ["waypoint.engine._lease"]]
