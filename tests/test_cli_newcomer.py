"""The CLI as a newcomer meets it: the README's own graph file, graph files edited
after a run started, and every printed command run as printed.

Real processes (`python -m waypoint.cli`) on real SQLite files; a printed command
is shlex-split and run, never rebuilt by the test.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest

from tests.test_cli import ROOT, wp

LOOP_CLASH = "cannot be called from a running event loop"


def run_id_of(output: str) -> str:
    return next(l.split(": ", 1)[1] for l in output.splitlines() if l.startswith("run_id: "))


def printed(text: str, verb: str) -> list[str]:
    """The `waypoint <verb> ...` command printed in `text`, as argv after `waypoint`."""
    match = re.search(rf"waypoint {verb} [^`\n]*", text)
    assert match, f"no `waypoint {verb}` command in:\n{text}"
    argv = shlex.split(match.group(0))
    return argv[1:]


def readme_graph(tmp_path: Path) -> str:
    """The README's "graph in a minute" snippet as a file: it runs itself at import."""
    snippet = re.search(r"## A graph in a minute\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(),
                        re.S)
    assert snippet and "asyncio.run(main())" in snippet.group(1)
    (tmp_path / "minute.py").write_text(snippet.group(1))
    return f"{tmp_path / 'minute.py'}:graph"


SELF_RUNNING_SYNC = '''
from pydantic import BaseModel
import waypoint as wp


class Ticket(BaseModel):
    log: list[str] = []


class Approval(BaseModel):
    approved: bool


g = wp.GraphBuilder(Ticket, name="deadlines")
g.gate("approve", Approval, deadline=0.0, escalate="manager")
g.gate("manager", Approval)
g.edge(wp.START, "approve")
g.edge("approve", wp.END)
g.edge("manager", wp.END)
graph = g.compile()

print("the pattern ran:", wp.run_sync(graph, {}).status)   # as docs/patterns.md's do
'''


def test_every_verb_works_on_the_readmes_graph_file(tmp_path):
    ref = readme_graph(tmp_path)
    db = str(tmp_path / "runs.db")
    started = wp("run", ref, "--input", '{"topic": "tides"}', "--db", db)
    assert started.returncode == 0, started.stderr
    run_id = run_id_of(started.stdout)
    for args in (["show", run_id], ["render", "--run", run_id], ["fork", run_id, "--at", "1"],
                 ["tick"]):
        done = wp(*args, "--db", db)
        assert done.returncode == 0 and LOOP_CLASH not in done.stderr, (args, done.stderr)
    assert "status: waiting at review" in wp("show", run_id, "--db", db).stdout
    resumed = wp(*printed(started.stdout, "resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "finished  review" in resumed.stdout and "status: done" in resumed.stdout


def test_tick_and_resume_import_a_file_that_calls_run_sync_at_import(tmp_path):
    (tmp_path / "pattern.py").write_text(SELF_RUNNING_SYNC)
    db = str(tmp_path / "runs.db")
    started = wp("run", f"{tmp_path / 'pattern.py'}:graph", "--db", db)
    assert started.returncode == 0, started.stderr
    run_id = run_id_of(started.stdout)
    swept = wp("tick", "--db", db)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert f"{run_id}  waiting  waiting: manager" in swept.stdout
    done = wp("resume", run_id, "--input", '{"approved": true}', "--db", db)
    assert done.returncode == 0, done.stderr
    assert "status: done" in done.stdout


# -- a graph file edited after the run started ------------------------------------------
FLOW = '''
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder


class S(BaseModel):
    n: int = 0
{extra_field}

class Ok(BaseModel):
    ok: bool


g = GraphBuilder(S, name="flow")
g.node(lambda s: {{"n": s.n + 1}}, name="bump", writes=["n"])
g.gate("{gate}", Ok, prompt="ok?")
g.node(lambda s: {{"n": s.n * 10}}, name="{last}", writes=["n"])
g.edge(START, "bump")
g.edge("bump", "{gate}")
g.edge("{gate}", "{last}")
g.edge("{last}", END)
graph = g.compile()
'''


def flow(path: Path, gate: str = "check", last: str = "last", extra_field: str = "") -> str:
    path.write_text(FLOW.format(gate=gate, last=last, extra_field=extra_field))
    return f"{path}:graph"


@pytest.fixture
def started(tmp_path):
    """(run id, db) of a run of flow.py waiting at its gate `check`."""
    db = str(tmp_path / "runs.db")
    return run_id_of(wp("run", flow(tmp_path / "flow.py"), "--db", db).stdout), db


def test_resume_after_a_safe_edit_takes_the_printed_flag(started, tmp_path):
    run_id, db = started
    flow(tmp_path / "flow.py", last="finish", extra_field="    label: str = ''")
    refused = wp("resume", run_id, "--input", '{"ok": true}', "--db", db)
    assert refused.returncode == 1
    assert "no node the run used was removed" in refused.stderr
    assert "state fields added: label" in refused.stderr
    assert "allow_graph_change=True" not in refused.stderr  # a library name, not a CLI one
    forced = wp(*printed(refused.stderr, "resume"), "--input", '{"ok": true}')
    assert forced.returncode == 0, forced.stderr
    assert "finished  finish" in forced.stdout and '"n": 10' in forced.stdout


def test_resume_after_removing_the_waiting_gate_offers_a_fork_from_before_it(started, tmp_path):
    run_id, db = started
    flow(tmp_path / "flow.py", gate="confirm")
    refused = wp("resume", run_id, "--input", '{"ok": true}', "--db", db)
    assert refused.returncode == 1
    assert "nodes the run used that the graph no longer has: check" in refused.stderr
    forked = wp(*printed(refused.stderr, "fork"))
    assert forked.returncode == 0, forked.stderr
    assert "status: waiting" in forked.stdout and "gate: confirm" in forked.stdout
    forced = wp(*printed(refused.stderr, "resume"), "--input", '{"ok": true}')
    assert forced.returncode == 1 and "check" in forced.stderr  # unsafe: refused, one clear line


def test_show_and_render_of_an_edited_graph_explain_instead_of_failing(started, tmp_path):
    run_id, db = started
    flow(tmp_path / "flow.py", gate="confirm")
    shown = wp("show", run_id, "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert "status: waiting at check" in shown.stdout and "done   bump" in shown.stdout
    assert "restore the database" not in shown.stderr
    assert "nodes the run used that the graph no longer has: check" in shown.stderr
    assert "--allow-graph-change" in shown.stderr and "waypoint fork" in shown.stderr
    drawn = wp("render", "--run", run_id, "--db", db)
    assert "KeyError" not in drawn.stderr
    assert "nodes the run used that the graph no longer has: check" in drawn.stderr
    flow(tmp_path / "flow.py")  # put back: everything draws again, without a warning
    drawn = wp("render", "--run", run_id, "--db", db)
    assert drawn.returncode == 0 and drawn.stderr == ""


# -- printed commands, run as printed ----------------------------------------------------
def test_printed_commands_work_for_a_dash_run_id_and_the_default_database(tmp_path):
    from tests.test_cli import EXAMPLE

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    started = wp("run", EXAMPLE, "--input", '{"topic": "tides"}', "--run-id", "-17", cwd=here)
    assert started.returncode == 0, started.stderr
    resume = printed(started.stdout, "resume")
    assert resume[-2:] == ["--", "-17"] and str(here / "waypoint.db") in resume
    done = wp(*resume, cwd=elsewhere)  # the default database, found from another directory
    assert done.returncode == 0, done.stderr
    assert "status: done" in done.stdout

    again = wp("resume", "--db", str(here / "waypoint.db"), "--", "-17", cwd=elsewhere)
    assert again.returncode == 1 and "already finished" in again.stderr
    fork = printed(again.stderr, "fork")
    assert fork[-2:] == ["--", "-17"] and "--at" in fork
    forked = wp(*fork, cwd=elsewhere)  # after the last wait: the gate asks again
    assert forked.returncode == 0, forked.stderr
    assert "status: waiting" in forked.stdout and "gate: approve" in forked.stdout
    listed = wp(*printed(again.stderr, "show"), cwd=elsewhere)
    assert listed.returncode == 0 and "status: done" in listed.stdout


def test_an_unknown_run_names_the_database_it_looked_in(tmp_path):
    from tests.test_cli import EXAMPLE

    db = str(tmp_path / "runs.db")
    assert wp("run", EXAMPLE, "--input", '{"topic": "t"}', "--db", db).returncode == 0
    for verb in ("show", "resume", "fork", "render --run", "cancel"):
        done = wp(*verb.split(), "run-nope", "--db", db)
        assert done.returncode == 1, (verb, done.stderr)
        assert f"no run 'run-nope' in {db}" in done.stderr, (verb, done.stderr)
        assert wp(*printed(done.stderr, "runs")).returncode == 0


# -- messages that lead to the fix ---------------------------------------------------------
SHAPE = '{approved: boolean, comment: string = ""}'


def test_a_wrong_answer_names_the_field_and_prints_the_waiting_screens_shape(tmp_path):
    from tests.test_cli import EXAMPLE

    db = str(tmp_path / "runs.db")
    started = wp("run", EXAMPLE, "--input", '{"topic": "t"}', "--db", db)
    run_id = run_id_of(started.stdout)
    assert f"answer:   {SHAPE}" in started.stdout
    cases = {'{"aproved": true}': ["'aproved' is not a field of Approval (did you mean 'approved'?)",
                                   "field 'approved' is missing"],
             '{"approved": "maybe"}': ["field 'approved': Input should be a valid boolean",
                                       '(got "maybe")']}
    for answer, expected in cases.items():
        done = wp("resume", run_id, "--input", answer, "--db", db)
        assert done.returncode == 1
        for text in [*expected, f"Expected shape: {SHAPE}.", "still waiting"]:
            assert text in done.stderr, (answer, done.stderr)
        assert '"title"' not in done.stderr  # no raw JSON Schema


def test_a_bad_input_names_the_field_the_shape_and_the_closest_name(tmp_path):
    from tests.test_cli import EXAMPLE

    db = str(tmp_path / "runs.db")
    cases = {'{"topik": "t"}': ["'topik' is not a field of Article (did you mean 'topic'?)",
                                "field 'topic' is missing"],
             '{"topic": "t", "revison": 2}': ["'revison' is not a field of Article (did you mean "
                                              "'revision'?)"],
             '{"topic": 3}': ["field 'topic': Input should be a valid string (got 3)"],
             '[1]': ["the value: Input should be a valid dictionary"]}
    for given, expected in cases.items():
        done = wp("run", EXAMPLE, "--input", given, "--db", db)
        assert done.returncode == 2, given
        for text in [*expected, "--input for graph 'approval'", "Expected shape: {topic: string, "]:
            assert text in done.stderr, (given, done.stderr)
        assert "errors.pydantic.dev" not in done.stderr and "input_value" not in done.stderr
    assert not Path(db).exists()  # refused before the database was even opened


def test_misfit_in_process():
    from pydantic import BaseModel, ConfigDict, ValidationError

    from waypoint._messages import misfit, unknown_keys

    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    class Strict(BaseModel):
        count: int

    assert unknown_keys({"a": 1, "b": 2}, Loose) == [] and unknown_keys({"cuont": 1}, Strict) == ["cuont"]
    try:
        Strict.model_validate({"cuont": 1})
    except ValidationError as exc:
        text = misfit("the input", {"cuont": 1}, Strict, exc)
    assert text == ("the input does not fit Strict: 'cuont' is not a field of Strict (did you mean "
                    "'count'?); field 'count' is missing. Expected shape: {count: integer}.")


def test_the_commands_printed_after_a_failure_and_a_cancel_run_as_printed(tmp_path):
    from tests.test_cli import FLAKY

    (tmp_path / "flaky.py").write_text(FLAKY)
    db = str(tmp_path / "runs.db")
    failed = wp("run", f"{tmp_path / 'flaky.py'}:graph", "--run-id", "-x", "--db", db)
    assert failed.returncode == 1
    again = wp(*printed(failed.stdout, "resume"))  # the node fails again, but it did run again
    assert again.returncode == 1 and "retried   explode" in again.stdout, again.stderr
    cancelled = wp("cancel", "--db", db, "--", "-x")
    assert cancelled.returncode == 0, cancelled.stderr
    forced = wp(*printed(cancelled.stdout, "resume"))
    assert forced.returncode == 1 and "retried   explode" in forced.stdout, forced.stderr


# -- editing the state: fork --set ---------------------------------------------------------
def test_fork_set_edits_fields_and_a_bad_field_writes_nothing(tmp_path):
    from tests.test_cli import EXAMPLE

    db = str(tmp_path / "runs.db")
    run_id = run_id_of(wp("run", EXAMPLE, "--input", '{"topic": "t"}', "--db", db).stdout)
    forked = wp("fork", run_id, "--at", "5", "--set", '{"draft": "short", "notes": ["edited"]}',
                "--by", "ana", "--run-id", "edited", "--db", db)
    assert forked.returncode == 0, forked.stderr
    assert "status: waiting" in forked.stdout and '"draft": "short"' in forked.stdout
    shown = wp("show", "edited", "--db", db).stdout
    assert 'set draft="short" notes+=["edited"]  by ana' in shown
    before = wp("runs", "--db", db).stdout
    unknown = wp("fork", run_id, "--set", '{"revison": 3}', "--db", db)
    assert unknown.returncode == 2
    assert "'revison' is not a field of Article (did you mean 'revision'?)" in unknown.stderr
    wrong = wp("fork", run_id, "--set", '{"revision": "x"}', "--db", db)
    assert wrong.returncode == 1 and "field 'revision'" in wrong.stderr
    not_object = wp("fork", run_id, "--set", "[1]", "--db", db)
    assert not_object.returncode == 2 and "--set takes a JSON object" in not_object.stderr
    assert wp("runs", "--db", db).stdout == before  # nothing was written


def test_resume_set_edits_fields_before_the_answer_and_a_bad_field_writes_nothing(tmp_path):
    from tests.test_cli import EXAMPLE

    db = str(tmp_path / "runs.db")
    run_id = run_id_of(wp("run", EXAMPLE, "--input", '{"topic": "t"}', "--db", db).stdout)
    steps = wp("show", run_id, "--db", db).stdout.count("\n")
    unknown = wp("resume", run_id, "--set", '{"drafts": "x"}', "--input", '{"approved": true}',
                 "--db", db)
    assert unknown.returncode == 2 and "did you mean 'draft'?" in unknown.stderr
    wrong = wp("resume", run_id, "--set", '{"revision": "x"}', "--input", '{"approved": true}',
               "--db", db)
    assert wrong.returncode == 1 and "field 'revision'" in wrong.stderr
    assert wp("show", run_id, "--db", db).stdout.count("\n") == steps  # nothing was written
    done = wp("resume", run_id, "--set", '{"draft": "edited by hand"}', "--input",
              '{"approved": true}', "--by", "ana", "--db", db)
    assert done.returncode == 0, done.stderr
    assert "status: done" in done.stdout and '"draft": "edited by hand"' in done.stdout
    assert 'set draft="edited by hand"  by ana' in wp("show", run_id, "--db", db).stdout
