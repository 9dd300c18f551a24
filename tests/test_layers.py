"""Layers hold at run time: importing a layer loads only the layers below it.

docs/design.md draws them: cli -> engine -> graphs -> nodes, engine -> checkpoints,
and checkpoints knows nothing of the engine. Importing a subpackage runs the
package root's `__init__` first, so an eager front door would load everything;
each import below runs in a fresh interpreter.
"""

import json
import subprocess
import sys

import pytest

HELPERS = {"waypoint", "waypoint._lazy", "waypoint._messages", "waypoint._faults"}  # import no layer
BELOW = {  # what each layer may load besides itself and the helpers
    "waypoint": set(),
    "waypoint.errors": set(),
    "waypoint.checkpoints": {"waypoint.errors"},
    "waypoint.checkpoints.sqlite": {"waypoint.errors"},
    "waypoint.nodes": {"waypoint.errors"},
    "waypoint.graphs": {"waypoint.errors", "waypoint.nodes"},
    "waypoint.engine": {"waypoint.errors", "waypoint.nodes", "waypoint.graphs", "waypoint.checkpoints"},
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
