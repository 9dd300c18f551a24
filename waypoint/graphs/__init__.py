"""Defining graphs: builder, compiled Graph, validation, state schema, reducers."""

from waypoint.graphs.builder import GraphBuilder
from waypoint.graphs.graph import END, START, Graph
from waypoint.graphs.reducers import Reducer, append, merge, reducer

__all__ = ["END", "START", "Graph", "GraphBuilder", "Reducer", "append", "merge", "reducer"]
