"""`waypoint chat`: a conversation fed through a pipe, carried on by the next process."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRAPH = f"{ROOT / 'tests' / 'conversation_graphs.py'}:graph"
CLI = [sys.executable, "-m", "waypoint.cli"]


def chat(db: Path, lines: str, *args: str, graph: str = GRAPH, env: dict[str, str] | None = None,
         thread: str = "t") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "chat", graph, "--thread", thread, "--db", str(db), "--by", "ana", *args],
                          input=lines, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_a_piped_conversation_with_history_and_rewind(tmp_path):
    db = tmp_path / "chat.db"
    done = chat(db, "hello\nhow are you\n/history\n/rewind 2\nagain\n/history\n/quit\nnever read\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["#1: hello", "#2: how are you"]
    assert lines[2].startswith("turn 1  step 3  ana  20") and lines[3:5] == ["  > hello", "  #1: hello"]
    assert lines[5].startswith("turn 2  step 8  ana")
    assert lines[6:8] == ["  > how are you", "  #2: how are you"]
    assert lines[8] == "rewound: the thread goes on from before turn 2 (as run t~1)"
    assert lines[9] == "#2: again"
    # t~1 forks at step 7 (turn 2's answered step); its own steps: the answered step 8, the done step 9
    redone = lines[5].replace("step 8", "step 9")
    assert lines[10:] == [lines[2], "  > hello", "  #1: hello", redone, "  > again", "  #2: again"]
    assert "never read" not in done.stdout and done.stderr == ""


def test_the_next_process_carries_the_thread_on(tmp_path):
    db = tmp_path / "chat.db"
    assert chat(db, "one\n").stdout == "#1: one\n"  # the end of input ends the session
    later = chat(db, "two\n/history\n/history 1\n")
    assert later.returncode == 0 and later.stdout.splitlines()[0] == "#2: two"
    assert [line for line in later.stdout.splitlines() if line.startswith("  > ")] == [
        "  > one", "  > two", "  > two"]  # all of them, then the last one


def test_mistakes_are_said_on_stderr_and_the_session_goes_on(tmp_path):
    done = chat(tmp_path / "chat.db", "/bogus\n/rewind two\n/rewind 5\n//slash\n\n/help\n/history x\n")
    assert done.returncode == 1  # something went wrong on the way
    assert done.stdout.splitlines()[0] == "#1: /slash"  # '//' sends a line starting with '/'
    assert "/rewind N    go back to before turn N" in done.stdout
    errors = done.stderr.splitlines()
    assert errors[0].startswith("error: unknown command /bogus; /help lists them")
    assert errors[1] == ("error: /rewind takes a turn number, as /history shows them (e.g. /rewind 2); "
                         "got 'two'")
    assert errors[2].startswith("error: thread 't': there is no turn 5 to rewind to; it has no turns yet")
    assert errors[3].startswith("error: /history takes how many of the last turns to show")


def test_a_failed_turn_is_reported_and_retry_finishes_it_in_the_next_session(tmp_path):
    db = tmp_path / "chat.db"
    failed = chat(db, "boom\nnext\n", env={"TALK_FAIL": "boom"})
    assert failed.returncode == 1 and failed.stdout == ""
    errors = failed.stderr.splitlines()
    assert "the assistant cannot answer 'boom'" in errors[0]
    assert "its last turn did not finish" in errors[1] and "`/retry` in waypoint chat" in errors[1]
    fixed = chat(db, "/history\n/retry\nnext\n")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stderr.startswith("note: the last turn did not finish (run t is failed); /retry finishes it")
    out = fixed.stdout.splitlines()
    assert out[1:3] == ["  > boom", "  (no reply: the turn did not finish; /retry finishes it)"]
    assert out[3:] == ["#1: boom", "#2: next"]


def test_a_graph_that_cannot_hold_a_conversation_is_refused_before_reading(tmp_path):
    done = chat(tmp_path / "chat.db", "hello\n", graph=f"{ROOT / 'examples' / 'approval.py'}:graph")
    assert done.returncode == 2 and done.stdout == ""
    assert "Conversation(graph 'approval'): the state Article has no field 'reply'" in done.stderr
    assert not (tmp_path / "chat.db").exists()  # refused before anything was opened


def test_the_example_chats_offline(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run([*CLI, "chat", f"{ROOT / 'examples' / 'chat.py'}:graph", "--thread", "trip", "--db",
                           str(tmp_path / "chat.db")], input="Lisbon in May?\nAnd Porto?\n", env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "(offline) You asked: 'Lisbon in May?'. That is message 1 of this thread; set OPENAI_API_KEY "
        "for real travel advice.",
        "(offline) You asked: 'And Porto?'. That is message 2 of this thread; set OPENAI_API_KEY "
        "for real travel advice."]
    script = subprocess.run([sys.executable, str(ROOT / "examples" / "chat.py")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr
    assert "rewound: the thread goes on as run trip~1" in script.stdout
    assert "turn 2 (step 9, you): And in June?" in script.stdout


def read_until(fd: int, text: str, seen: bytearray) -> str:
    """Read the terminal's output until `text` shows (a select timeout guards against a hang)."""
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, f"waited 60 s for {text!r}; the terminal showed {seen.decode(errors='replace')!r}"
        seen.extend(os.read(fd, 4096))
    return seen.decode(errors="replace")


def in_a_terminal(db: Path, line: str, reply: str) -> str:
    """A `waypoint chat` session in a pseudo-terminal: wait for the prompt, send `line`, wait for
    `reply` and the prompt again, /quit. What the terminal showed."""
    main, child = pty.openpty()
    process = subprocess.Popen([*CLI, "chat", GRAPH, "--thread", "tty", "--db", str(db)],
                               stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    seen = bytearray()
    try:
        read_until(main, "you> ", seen)
        os.write(main, line.encode() + b"\n")
        read_until(main, reply + "\r\nyou> ", seen)  # the reply, then the prompt again
        os.write(main, b"/quit\n")
        assert process.wait(timeout=60) == 0
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
            process.wait()
    return seen.decode(errors="replace")


def test_in_a_terminal_it_greets_and_prompts(tmp_path):
    first = in_a_terminal(tmp_path / "chat.db", "hello", "#1: hello")
    assert first.startswith("thread tty: a new thread; /help for commands, /quit to leave\r\nyou> ")
    again = in_a_terminal(tmp_path / "chat.db", "again", "#2: again")
    assert again.startswith("thread tty: 1 turn so far; /help for commands")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_mid_turn_interrupts_it_and_the_next_session_retries_it(tmp_path, sig, code):
    db, hold = tmp_path / "chat.db", tmp_path / "hold"
    hold.mkdir()
    # preexec_fn: SIGINT's default disposition, whatever this runner inherited (see test_cli.py)
    process = subprocess.Popen([*CLI, "chat", GRAPH, "--thread", "t", "--db", str(db)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "TALK_HOLD": str(hold)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.stdin.write("a\n")
    process.stdin.flush()
    deadline = time.monotonic() + 60  # a guard against a hang, not a condition of the test
    while not (hold / "started").exists():  # the turn is in flight
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code and out == "", err
    later = chat(db, "/retry\nb\n")
    assert later.stderr.startswith("note: the last turn did not finish (run t is interrupted)")
    assert later.returncode == 0 and later.stdout.splitlines() == ["#1: a", "#2: b"]
