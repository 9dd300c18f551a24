"""The front door: the exported names are pinned, and each one is really there."""

import waypoint


def test_exported_names_are_pinned():
    assert sorted(waypoint.__all__) == sorted(
        name for name in dir(waypoint) if not name.startswith("_") and name in waypoint.__all__
    )
    for name in waypoint.__all__:
        assert getattr(waypoint, name) is not None, name
    assert {"GraphBuilder", "START", "END", "start", "resume", "SQLiteStore", "append"} <= set(
        waypoint.__all__
    )
