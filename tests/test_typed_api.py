"""The public API's types hold: mypy checks tests/typed_api.py's `assert_type`s.

`GraphBuilder(Essay).compile()` is a `Graph[Essay]`, `start` gives a
`RunHandle[Essay]` and `RunResult.state` is an `Essay`, as a user's IDE shows.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed: pip install -e '.[test]' (or pip install mypy)")
    # follow-imports=silent: report on the file checked, not on waypoint's own code (test_tooling's job)
    return subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", *args],
                          cwd=HERE.parent, capture_output=True, text=True, timeout=110)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("mypy-cache"))  # the second check reuses the first's work


def test_the_public_api_has_the_types_users_read(cache):
    done = mypy("--cache-dir", cache, str(HERE / "typed_api.py"))
    assert done.returncode == 0, done.stdout


def test_a_wrong_type_is_caught(tmp_path, cache):
    wrong = tmp_path / "wrong.py"  # the check itself can fail: a state read as the wrong model
    wrong.write_text((HERE / "typed_api.py").read_text().replace(
        "assert_type(result.state, Essay)", "assert_type(result.state, Review)"))
    done = mypy("--cache-dir", cache, str(wrong))
    assert done.returncode == 1
    assert 'Expression is of type "Essay", not "Review"' in done.stdout
