"""Bad and hostile input to the API and the `waypoint` command: a clear error, nothing changed.

Every refused call is checked against a dump of all three tables taken before
it. Answers are validated before resume's first write (its claim), after a
read-only check that no live process holds the run, so a refused answer leaves
the store byte-identical (test_a_refused_answer_leaves_the_store_byte_identical);
`stable()`, which leaves out the run row's `updated_at`, is the weaker check.
"""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import BaseModel

import waypoint as wp
from waypoint.errors import GateError, GraphChangedError, RunError, RunNotFoundError, RunStateError

sys.path.insert(0, str(Path(__file__).parent))
import fault_harness as harness  # noqa: E402

GRAPH = harness.gated_graph()
ANSWER = {"approved": True, "comment": "fine"}
FIVE_MB = "x" * 5_000_000
NASTY = [
    "x'; DROP TABLE runs; --",
    '"; DELETE FROM steps; --',
    "r' OR '1'='1",
    "robert'); DROP TABLE snapshots;--",
    "1; UPDATE runs SET status = 'done'",
    "%", "_", "*", "\x00nul", "ünï 🧨", "-- comment", "' UNION SELECT * FROM steps --",
]


def stable(dump: dict[str, list]) -> dict[str, list]:
    """The dump without runs.updated_at (column 4), which a claim-then-refuse moves."""
    return {**dump, "runs": [r[:4] + r[5:] for r in dump["runs"]]}


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> Path:
    """waiting (at gate approve), done, and failed (a counter run that failed at n2)."""
    path = tmp_path / "runs.db"
    async with wp.SQLiteStore(path) as store:
        for run_id in ("waiting", "done"):
            await (await wp.start(GRAPH, store=store, run_id=run_id, graph_ref=harness.GATED_REF)).result()
        for _gate in ("approve", "review"):
            await (await wp.resume(GRAPH, "done", ANSWER, store=store)).result()
        failed = await wp.start(harness.counter_graph(), store=store, run_id="failed", deps={"fail": True})
        assert (await failed.result(raise_on_failure=False)).status == "failed"
    return path


def changed_graph() -> wp.Graph:
    """gated, with one more node: the same name, another structure."""
    g = wp.GraphBuilder(harness.Ticket, name="gated")
    for name in ("a", "b", "c", "d", "e"):
        async def fn(state: harness.Ticket) -> dict:
            return {"n": state.n + 1}

        g.node(fn, name=name, writes=["n"])
    g.gate("approve", harness.Approval, into="approval")
    g.gate("review", harness.Approval, into="review")
    for a, b in zip([wp.START, "a", "b", "approve", "c", "review", "d", "e"],
                    ["a", "b", "approve", "c", "review", "d", "e", wp.END]):
        g.edge(a, b)
    return g.compile()


async def _resume(store, graph, run_id, answer=None, **kw):
    return await (await wp.resume(graph, run_id, answer, store=store, **kw)).result()


# name -> (call(store), error type, what the message must say, exact: store byte-identical)
API_CASES = {
    "resume an unknown run": (lambda s: _resume(s, GRAPH, "nope"), RunNotFoundError, "no run 'nope'", True),
    "state of an unknown run": (lambda s: wp.state_at(GRAPH, "nope", store=s), RunNotFoundError, "'nope'", True),
    "history of an unknown run": (lambda s: wp.history("nope", store=s), RunNotFoundError, "'nope'", True),
    "gates of an unknown run": (lambda s: wp.pending_gates(GRAPH, "nope", store=s), RunNotFoundError, "'nope'", True),
    "fork an unknown run": (lambda s: wp.fork(GRAPH, "nope", at=0, store=s), RunNotFoundError, "'nope'", True),
    "fork beyond the log": (lambda s: wp.fork(GRAPH, "waiting", at=99, store=s), RunError, "step 99 does not exist", True),
    "resume a finished run": (lambda s: _resume(s, GRAPH, "done"), RunStateError, "already finished", True),
    "answer a finished run": (lambda s: _resume(s, GRAPH, "done", ANSWER), RunStateError, "already finished", True),
    "answer a failed run": (lambda s: _resume(s, harness.counter_graph(), "failed", ANSWER), GateError,
                            "is not waiting|waits at", False),
    "answer a gate that is not pending": (lambda s: _resume(s, GRAPH, "waiting", ANSWER, gate="review"),
                                          GateError, "gate 'review' is not waiting", False),
    "answer a gate that does not exist": (lambda s: _resume(s, GRAPH, "waiting", ANSWER, gate="nope"),
                                          GateError, "'nope'", False),
    "answer two gates, one pending": (lambda s: _resume(s, GRAPH, "waiting", answers={
        "approve": ANSWER, "review": ANSWER}), GateError, "'review'", False),
    "resume with a changed graph": (lambda s: _resume(s, changed_graph(), "waiting", ANSWER),
                                    GraphChangedError, "different structure", True),
    "start with input that does not fit": (lambda s: wp.start(GRAPH, {"n": "many"}, store=s), RunError,
                                           "does not fit Ticket", True),
    "start with a taken run id": (lambda s: wp.start(GRAPH, store=s, run_id="done"), RunStateError,
                                  "already exists", True),
}
WRONG_SHAPES = [
    {"approved": "maybe"}, {"comment": "no decision"}, {"approved": None}, [], [True], 42, 4.2, True,
    "not json", '{"approved": true', '{"approved": "yes", }', {"approved": {"nested": [1, 2]}},
    {"approved": FIVE_MB}, {"approved": True, "comment": ["not", "a", "string"]},
    {"approved": True, "comment": 12},
]


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(API_CASES))
async def test_bad_api_calls_are_clear_errors_and_change_nothing(db, case):
    call, expected, says, exact = API_CASES[case]
    before = harness.dump(db)
    async with wp.SQLiteStore(db) as store:
        with pytest.raises(expected, match=says) as err:
            await call(store)
    assert isinstance(err.value, wp.WaypointError)
    after = harness.dump(db)
    assert (after == before) if exact else (stable(after) == stable(before))
    harness.record(f"bad_api_call[{case}]", inputs_tried=1, error=expected.__name__)


@pytest.mark.asyncio
async def test_answers_of_the_wrong_shape_are_refused_and_the_run_keeps_waiting(db):
    before = harness.dump(db)
    async with wp.SQLiteStore(db) as store:
        for answer in WRONG_SHAPES:
            with pytest.raises(GateError, match="run 'waiting', gate 'approve'") as err:
                await _resume(store, GRAPH, "waiting", answer)
            assert len(str(err.value)) < 2000, "the error repeats the oversized input"
            assert (await store.get_run("waiting")).waiting == ["approve"]
    assert stable(harness.dump(db)) == stable(before)
    harness.record("wrong_shape_answers", inputs_tried=len(WRONG_SHAPES), refused=len(WRONG_SHAPES))


@pytest.mark.asyncio
async def test_an_oversized_answer_the_schema_allows_is_accepted_and_stored(db):
    async with wp.SQLiteStore(db) as store:
        result = await _resume(store, GRAPH, "waiting", {"approved": True, "comment": FIVE_MB})
        assert result.status == "waiting" and result.state.approval.comment == FIVE_MB
        assert (await wp.state_at(GRAPH, "waiting", store=store)).approval.comment == FIVE_MB
        log = await wp.approval_log("waiting", store=store)
        assert [len(e.answer["comment"]) for e in log] == [5_000_000]
    harness.record("oversized_answer", inputs_tried=1, answer_mb=5, outcome="accepted and stored")


@pytest.mark.asyncio
async def test_a_refused_answer_leaves_the_store_byte_identical(db):
    # resume validates answers before its first write (the claim), so updated_at stays too
    before = harness.dump(db)
    async with wp.SQLiteStore(db) as store:
        with pytest.raises(GateError):
            await _resume(store, GRAPH, "waiting", {"approved": "maybe"})
        for call, expected, says, _ in API_CASES.values():
            with pytest.raises(expected, match=says):
                await call(store)
    assert harness.dump(db) == before
    async with wp.SQLiteStore(db) as store:  # executing elsewhere: the lease is refused first
        await store.claim("waiting", "otherhost:1:x", 60)
        before = harness.dump(db)
        with pytest.raises(wp.LeaseError, match="is being executed by otherhost:1:x"):
            await _resume(store, GRAPH, "waiting", {"approved": "maybe"})
    assert harness.dump(db) == before


@pytest.mark.asyncio
async def test_a_gate_with_a_slash_in_its_name_is_refused_at_compile():
    # '/' addresses gates inside subgraphs ('review/approve'), so a node named with it could
    # never be answered: compile() refuses it, naming the node and a name that would work.
    g = wp.GraphBuilder(harness.Ticket, name="slash")
    g.gate("team/approve", harness.Approval, into="approval")
    g.edge(wp.START, "team/approve")
    g.edge("team/approve", wp.END)
    with pytest.raises(wp.GraphError, match=r"node 'team/approve' has '/' in its name.*'team_approve'"):
        g.compile()
    class Trips(BaseModel):
        cities: list[str] = []
        approval: harness.Approval | None = None

    b = wp.GraphBuilder(Trips, name="brackets")  # 'book[1]' next to map 'book'
    b.map("book", lambda city: city, over="cities", into="cities", max_items=3)
    b.gate("book[1]", harness.Approval, into="approval")
    b.edge(wp.START, "book")
    b.edge("book", "book[1]")
    b.edge("book[1]", wp.END)
    with pytest.raises(wp.GraphError, match=r"node 'book\[1\]' has the address of item 1 of map 'book'.*'book_1'"):
        b.compile()
    harness.record("slash_gate_name", inputs_tried=1, outcome="refused by compile()")


# -- SQL injection ------------------------------------------------------------------------------
class Named(BaseModel):
    n: int = 0
    approval: harness.Approval | None = None


def nasty_graph(name: str) -> wp.Graph:
    """A graph, a node and a gate all named `name` (plus a suffix for uniqueness)."""
    g = wp.GraphBuilder(Named, name=name)

    async def node(state: Named) -> dict:
        return {"n": state.n + 1}

    g.node(node, name=name, writes=["n"])
    g.gate(name + " gate", harness.Approval, into="approval")
    g.edge(wp.START, name)
    g.edge(name, name + " gate")
    g.edge(name + " gate", wp.END)
    return g.compile()


@pytest.mark.asyncio
async def test_injection_strings_as_run_ids_node_names_gate_names_and_filters_are_plain_data(tmp_path):
    db = tmp_path / "runs.db"
    tried = 0
    async with wp.SQLiteStore(db) as store:
        for i, nasty in enumerate(NASTY):
            graph = nasty_graph(nasty)
            first = await (await wp.start(graph, store=store, run_id=nasty)).result()
            assert first.waiting == [nasty + " gate"]
            done = await _resume(store, graph, nasty, ANSWER, gate=nasty + " gate")
            assert done.status == "done" and done.state.n == 1
            steps = [(s.kind, s.node) for s in await wp.history(nasty, store=store)]
            gate = nasty + " gate"  # it waits, its answer is written (an event step), it takes it
            assert steps == [("done", nasty), ("wait", gate), ("event", gate), ("done", gate)]
            tried += 4
        before = harness.dump(db)
        assert len(before["runs"]) == len(NASTY)
        for nasty in NASTY:  # as filters: each matches exactly what equals it, nothing else
            assert [r.run_id for r in await store.list_runs(graph=nasty)] == [nasty]
            assert await store.list_runs(status=nasty) == []  # type: ignore[arg-type]
            assert await store.list_runs(status=nasty, graph=nasty) == []  # type: ignore[arg-type]
            with pytest.raises(RunNotFoundError):
                await store.get_run(nasty + "'--")
            tried += 4
    assert harness.dump(db) == before
    with closing(sqlite3.connect(db)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "steps", "snapshots"} <= tables
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    harness.record("sql_injection_api", strings=len(NASTY), inputs_tried=tried, tables_intact=True)


def test_injection_strings_as_cli_arguments_change_nothing(tmp_path):
    db = tmp_path / "runs.db"
    nasty = NASTY[0]
    done = harness.cli("run", harness.GATED_REF, "--db", str(db), "--run-id", nasty)
    assert done.returncode == 0, done.stderr
    before = harness.dump(db)
    calls = [
        (["show", nasty, "--db", str(db)], 0),
        (["runs", "--db", str(db), "--status", nasty], 2),
        (["show", NASTY[2], "--db", str(db)], 1),
        (["resume", NASTY[2], "--db", str(db)], 1),
        (["resume", nasty, "--gate", NASTY[3], "--input", "{}", "--db", str(db)], 1),
        (["resume", nasty, "--input", '{"approved": "' + NASTY[1].replace('"', "") + '"}', "--db", str(db)], 1),
        (["render", "--run", NASTY[4], "--db", str(db)], 1),
    ]
    for args, code in calls:
        result = harness.cli(*args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
    assert stable(harness.dump(db)) == stable(before)
    listing = harness.cli("runs", "--db", str(db))
    assert nasty in listing.stdout
    harness.record("sql_injection_cli", inputs_tried=len(calls) + 1, tables_intact=True)


# -- the command line ---------------------------------------------------------------------------
FLOW = '''
from pydantic import BaseModel
import waypoint as wp

class Answer(BaseModel):
    approved: bool
    comment: str = ""

class State(BaseModel):
    n: int = 0
    answer: Answer | None = None

g = wp.GraphBuilder(State, name="flow")

@g.node
def first(state: State) -> dict:
    return {"n": state.n + 1}

g.gate("approve", Answer, prompt="ok?", into="answer")
g.edge(wp.START, "first")
g.edge("first", "approve")
g.edge("approve", wp.END)
graph = g.compile()
'''
CHANGED = FLOW.replace('g.edge("approve", wp.END)', '''@g.node
def extra(state: State) -> dict:
    return {"n": state.n + 10}

g.edge("approve", "extra")
g.edge("extra", wp.END)''')


@pytest.mark.timeout(120)
def test_bad_command_lines_are_clear_errors_with_the_store_unchanged(tmp_path):
    db, flow = tmp_path / "runs.db", tmp_path / "flow.py"
    flow.write_text(FLOW)
    (tmp_path / "broken.py").write_text("raise RuntimeError('broken on import')\n")
    (tmp_path / "big.json").write_text('{"approved": true, "comment": "' + FIVE_MB + '"}')
    started = harness.cli("run", f"{flow}:graph", "--db", str(db), "--run-id", "w")
    assert started.returncode == 0 and "status: waiting" in started.stdout, started.stderr
    harness.cli("run", f"{flow}:graph", "--db", str(db), "--run-id", "big")
    d = ["--db", str(db)]
    calls = [  # (args, exit code, what stderr says)
        (["resume", "nope", *d], 1, "no run 'nope'"),
        (["resume", "w", "--gate", "nope", "--input", "{}", *d], 1, "'nope'"),
        (["resume", "w", "--input", '{"approved": "maybe"}', *d], 1, "does not fit"),
        (["resume", "w", "--input", "[1, 2]", *d], 1, "does not fit"),
        (["resume", "w", "--input", "{bad", *d], 2, "not valid JSON"),
        (["resume", "w", "--input", "", *d], 2, "not valid JSON"),
        (["resume", "w", "--input", f"@{tmp_path / 'missing.json'}", *d], 2, "cannot read"),
        (["resume", "w", "--gate", "approve", *d], 2, "--input"),
        (["resume", "w", "--graph", "no.such.module:graph", "--input", "{}", *d], 2, "no module named"),
        (["resume", "w", "--graph", f"{tmp_path / 'broken.py'}:graph", *d], 2, "broken on import"),
        (["show", "nope", *d], 1, "no run 'nope'"),
        (["show", "w", "--state-at", "-1", *d], 2, ""),
        (["runs", "--status", "bogus", *d], 2, "bogus"),
        (["runs", "--limit", "0", *d], 2, ""),
        (["run", "no.such.module:graph", *d], 2, "no module named"),
        (["run", f"{tmp_path / 'broken.py'}:graph", *d], 2, "broken on import"),
        (["run", f"{flow}:missing", *d], 2, "no attribute 'missing'"),
        (["run", str(flow), *d], 2, "MODULE_OR_FILE:GRAPH"),
        (["run", f"{flow}:graph", "--input", '{"n": "many"}', *d], 2, "does not fit"),
        (["run", f"{flow}:graph", "--input", "{bad", *d], 2, "not valid JSON"),
        (["run", f"{flow}:graph", "--run-id", "w", *d], 2, "already exists"),
        (["resume", "w", "--input", "{}", "--db", str(tmp_path / "nowhere.db")], 2, "no waypoint database"),
    ]
    before = harness.dump(db)
    for args, code, says in calls:
        result = harness.cli(*args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert says in result.stderr, (args, result.stderr)
        assert stable(harness.dump(db)) == stable(before), args

    flow.write_text(CHANGED)  # the graph changed under the waiting run
    changed = harness.cli("resume", "w", "--input", '{"approved": true}', *d)
    assert changed.returncode == 1 and "different structure" in changed.stderr, changed.stderr
    assert stable(harness.dump(db)) == stable(before)
    flow.write_text(FLOW)

    big = harness.cli("resume", "big", "--input", f"@{tmp_path / 'big.json'}", *d)  # 5 MB: the schema allows it
    assert big.returncode == 0 and "status: done" in big.stdout, big.stderr[-500:]
    assert not (tmp_path / "nowhere.db").exists()
    harness.record("bad_command_lines", inputs_tried=len(calls) + 2, nonzero_exits=len(calls) + 1,
                   store_changed_by_refusals=0)


def test_deeply_nested_json_on_the_command_line_is_a_usage_error(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result = harness.cli("run", harness.GATED_REF, "--input", f"@{tmp_path / 'deep.json'}",
                         "--db", str(tmp_path / "runs.db"))  # asserts: no traceback
    assert result.returncode == 2, result.stderr[-500:]
    assert "nested too deeply" in result.stderr
    assert not (tmp_path / "runs.db").exists()

