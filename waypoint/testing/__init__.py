"""What users need to test their own graphs.

    from waypoint.testing import ScriptedModel, tool_call

    model = ScriptedModel(["Paris", tool_call("search", {"q": "tides"})])
"""

from waypoint.testing.scripted import ScriptedModel, ScriptExhausted, tool_call

__all__ = ["ScriptExhausted", "ScriptedModel", "tool_call"]
