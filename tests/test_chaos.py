"""The chaos suite (issue 14): a fleet of workers on one PostgreSQL, killed at random, and the server
itself crashed and restarted, mid-load.

WORKERS worker processes (tests/chaos_worker.py: `waypoint worker` with its claims
logged) execute RUNS queued runs of the five fault shapes (tests/chaos_flows.py:
chain, fan-out into a join, loop, map, a gate answered with `resume(...,
enqueue=True)` while the workers run). Meanwhile, at seeded random moments, the
test SIGKILLs workers (a third of their replacements armed to SIGKILL themselves
at a fault point, before or after a commit) and stops PostgreSQL with `pg_ctl stop
-m immediate` (a crash: no checkpoint, no goodbye to clients), then starts it again.

A second test cuts a worker off by a network partition (a network namespace and a
veth pair; it needs root and `ip`, and skips saying so without them).

Then it checks what happened, from what the nodes and the workers recorded:
- every run is done, and its final state equals an uninterrupted run's;
- no seq gaps: each run's steps are 1..last_seq;
- no completed node executed again: no execution of a node (or map item) started
  after the step that recorded its completion was built;
- one owner at a time: for each run, the spans during which each claim (owner)
  was executing nodes, from its first node's start to its last node's end (or
  stop, or the process's death), never overlap.

CI runs RUNS=100 with 6 kills and 2 restarts of PostgreSQL (about a minute on 2
cores). A bigger run: WAYPOINT_CHAOS_RUNS=200 WAYPOINT_CHAOS_KILLS=20
WAYPOINT_CHAOS_RESTARTS=5 WAYPOINT_CHAOS_SEED=7 python -m pytest tests/test_chaos.py.
The time limits only turn a hang into a failure; nothing is decided by the clock.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests import pg_server
from tests.fault_harness import record

pytest.importorskip("psycopg", reason='the chaos suite needs psycopg: pip install -e ".[postgres]"')
pytest.importorskip("psycopg_pool", reason='the chaos suite needs psycopg-pool: pip install -e ".[postgres]"')

import psycopg  # noqa: E402

import waypoint as wp  # noqa: E402
from tests.chaos_flows import ANSWER, HOLD, SHAPES, reference  # noqa: E402
from waypoint.checkpoints.postgres import PostgresStore  # noqa: E402
from waypoint.errors import WaypointError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("WAYPOINT_CHAOS_RUNS", "100"))
KILLS = int(os.environ.get("WAYPOINT_CHAOS_KILLS", "6"))
RESTARTS = int(os.environ.get("WAYPOINT_CHAOS_RESTARTS", "2"))
SEED = int(os.environ.get("WAYPOINT_CHAOS_SEED", "1414"))
WORKERS, CONCURRENCY, TTL = 4, 4, 3.0
LIMIT = 240.0  # seconds before the load counts as hung


@pytest.fixture
def server():
    """A server of this test's own: it is crashed and restarted, which others must not see."""
    with pg_server.running() as server:
        yield server


class Fleet:
    """The worker processes; each started one is waited for until it says "ready"."""

    def __init__(self, url: str, folder: Path, rng: random.Random) -> None:
        self.url, self.folder, self.rng = url, folder, rng
        self.procs: list[subprocess.Popen[str]] = []
        self.killed: dict[int, int] = {}  # pid -> time_ns of our SIGKILL
        self.self_killed: list[int] = []  # pids that died at their fault point
        self.armed = 0
        self.stderr = (folder / "stderr").open("a")

    def start(self, fault: str | None = None, *, prefix: tuple[str, ...] = (),
              url: str | None = None) -> None:
        """One more worker; `prefix` runs it inside something (`ip netns exec NS`), on `url`."""
        env = {**os.environ, "WAYPOINT_CHAOS_DIR": str(self.folder), "PYTHONPATH": str(ROOT)}
        env.pop("WAYPOINT_FAULT", None)
        if fault is not None:
            env["WAYPOINT_FAULT"] = fault
            self.armed += 1
        proc = subprocess.Popen([*prefix, sys.executable, str(ROOT / "tests" / "chaos_worker.py"),
                                 url or self.url, "chaos",
                                 str(CONCURRENCY), str(TTL)], stdout=subprocess.PIPE,
                                stderr=self.stderr, text=True, env=env)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            self.stderr.flush()
            raise AssertionError(f"a worker did not start (exit {proc.wait()}):\n"
                                 f"{(self.folder / 'stderr').read_text()[-3000:]}")
        self.procs.append(proc)

    def kill_one(self) -> None:
        proc = self.rng.choice(self.alive())
        self.killed[proc.pid] = time.time_ns()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fault = self.rng.choice(["before_commit", "after_commit"]) + f"@{self.rng.randint(3, 30)}"
        self.start(fault if self.rng.random() < 1 / 3 else None)

    def replace_the_dead(self) -> None:
        """Workers that SIGKILLed themselves at their fault point are replaced, unarmed."""
        for proc in self.procs:
            if proc.poll() is not None and proc.pid not in self.killed and proc.pid not in self.self_killed:
                assert proc.returncode == -signal.SIGKILL, f"worker {proc.pid} exited {proc.returncode}"
                self.self_killed.append(proc.pid)
                self.start()

    def alive(self) -> list[subprocess.Popen[str]]:
        return [p for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=60)
            assert proc.stdout is not None
            proc.stdout.close()
        self.stderr.close()


def shapes_of_runs() -> dict[str, str]:
    """RUNS run ids, the shapes in turn: run id -> shape."""
    return {f"{shape}-{i:03d}": shape for i in range(RUNS) for shape in [list(SHAPES)[i % len(SHAPES)]]}


async def drive(url: str, server: pg_server.PgServer, fleet: Fleet, rng: random.Random,
                shapes: dict[str, str]) -> dict[str, int]:
    """Submit the runs in waves and inject the faults while runs execute; answer gates; until
    every run is done and every fault was injected.

    A new wave is queued whenever the last one is done, so the load never stops while
    faults remain; a fault is injected only while runs are pending, unless all are done."""
    faults = ["kill"] * KILLS + ["restart"] * RESTARTS
    rng.shuffle(faults)
    run_ids = list(shapes)
    count = 2 * len(faults) + 2
    waves = [run_ids[i::count] for i in range(count)]
    figures = {"answers": 0, "faults_while_runs_pending": 0, "restarts": 0}
    deadline, submitted = time.monotonic() + LIMIT, 0
    async with PostgresStore(url, timeout=2.0, connect_timeout=2) as store:
        next_fault = await submit_wave(store, waves.pop(0), shapes, rng)
        submitted = RUNS - sum(len(w) for w in waves)
        while True:
            assert time.monotonic() < deadline, f"not every run finished within {LIMIT}s"
            fleet.replace_the_dead()
            try:
                figures["answers"] += await answer_gates(store)
                pending = submitted - len(await store.list_runs(status="done", limit=RUNS))
            except WaypointError:  # the server is down or restarting: ask again
                await asyncio.sleep(0.05)
                continue
            if not pending and waves:
                next_fault = max(next_fault, await submit_wave(store, waves.pop(0), shapes, rng))
                submitted = RUNS - sum(len(w) for w in waves)
                continue
            if not pending and not faults:
                return figures
            if faults and time.monotonic() >= next_fault:
                figures["faults_while_runs_pending"] += pending > 0
                if faults.pop() == "kill":
                    fleet.kill_one()
                else:
                    server.stop("immediate")
                    server.restart()
                    figures["restarts"] += 1
                next_fault = time.monotonic() + rng.uniform(0.2, 0.8)
            await asyncio.sleep(0.05)


async def submit_wave(store: PostgresStore, run_ids: list[str], shapes: dict[str, str],
                      rng: random.Random) -> float:
    """Queue these runs (again after a failure: submit is idempotent); when the next fault is due."""
    while True:
        try:
            await asyncio.gather(*(wp.submit(SHAPES[shapes[r]], store=store, queue="chaos", run_id=r)
                                   for r in run_ids))
            return time.monotonic() + rng.uniform(0.1, 0.4)
        except WaypointError:  # the server is still coming back
            await asyncio.sleep(0.1)


async def answer_gates(store: PostgresStore) -> int:
    answered = 0
    for info in await store.list_runs(status="waiting", limit=RUNS):
        try:
            await wp.resume(SHAPES["gate"], info.run_id, ANSWER, store=store, by="chaos", enqueue=True)
            answered += 1
        except WaypointError:  # answered meanwhile, or the server went away: the next pass sees
            pass
    return answered


@pytest.mark.timeout(600)
def test_workers_and_postgres_crash_mid_load_and_every_run_ends_as_if_nothing_happened(server, tmp_path):
    rng, url, started = random.Random(SEED), server.new_database(), time.monotonic()
    shapes, fleet = shapes_of_runs(), Fleet(url, tmp_path, rng)
    try:
        for _ in range(WORKERS):
            fleet.start()
        figures = asyncio.run(drive(url, server, fleet, rng, shapes))
    finally:
        fleet.stop()
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr, stderr[-3000:]

    steps = asyncio.run(check_runs(url, shapes, {shape: reference(shape) for shape in SHAPES}))
    executions = read_executions(tmp_path)
    again = completed_then_executed(executions, steps)
    assert not again, f"completed nodes executed again: {again[:5]}"
    overlaps, owners = owner_overlaps(tmp_path, executions, fleet)
    assert not overlaps, f"two owners executed one run at once: {overlaps[:5]}"
    record("chaos_postgres", seed=SEED, runs=RUNS, workers=WORKERS, concurrency=CONCURRENCY,
           workers_killed=len(fleet.killed), fault_point_kills=len(fleet.self_killed),
           kills_survived=len(fleet.killed) + len(fleet.self_killed), armed=fleet.armed,
           postgres_restarts_survived=figures["restarts"],
           faults_while_runs_pending=figures["faults_while_runs_pending"], gate_answers=figures["answers"],
           rows_checked=sum(len(s) for s in steps.values()), node_executions=len(executions),
           in_flight_executed_again=sum(n - 1 for n in executions_per_node(executions).values() if n > 1),
           claims=owners, seconds=round(time.monotonic() - started, 1))


# -- checks ---------------------------------------------------------------------------------
async def check_runs(url: str, shapes: dict[str, str],
                     references: dict[str, dict]) -> dict[str, list[wp.Step]]:
    """Every run done, its steps 1..last_seq, its state an uninterrupted run's; its steps."""
    with psycopg.connect(url) as conn:
        gaps = conn.execute(
            "SELECT r.run_id, r.last_seq, count(s.seq), min(s.seq), max(s.seq) FROM waypoint_runs r "
            "LEFT JOIN waypoint_steps s USING (run_id) GROUP BY r.run_id, r.last_seq "
            "HAVING count(s.seq) <> r.last_seq OR min(s.seq) <> 1 OR max(s.seq) <> r.last_seq").fetchall()
    assert not gaps, f"runs whose steps are not 1..last_seq (run, last_seq, count, min, max): {gaps[:5]}"
    steps = {}
    async with PostgresStore(url) as store:
        for run_id, shape in shapes.items():
            info = await store.get_run(run_id)
            assert info.status == "done", f"{run_id}: {info.status} {info.error}"
            state = await wp.state_at(SHAPES.get(shape, HOLD), run_id, store=store)
            assert state.model_dump(mode="json") == references[shape], run_id
            steps[run_id] = await store.history(run_id)
    return steps


def read_executions(folder: Path) -> list[tuple[str, int, int, str, str]]:
    """(kind S/E/X, time_ns, pid, run_id, activation key) of every node execution recorded."""
    lines = (folder / "executions").read_text().splitlines()
    fields = (line.split() for line in lines)
    return [(k, int(t), int(pid), run, act) for k, t, pid, run, act, _node in fields]


def executions_per_node(executions: list[tuple[str, int, int, str, str]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for kind, _t, _pid, run, act in executions:
        counts[run, act] += kind == "S"
    return counts


def completed_then_executed(executions: list[tuple[str, int, int, str, str]],
                            steps: dict[str, list[wp.Step]]) -> list[str]:
    """Executions that started after the step recording their node's completion was built."""
    completed = {}
    for run_id, log in steps.items():
        for step in log:
            if step.kind == "done":
                completed[run_id, step.activation] = step.at
            elif step.kind == "item":  # the item's value is index + 1 (chaos_flows: items 1..8)
                completed[run_id, f"{step.activation}/{step.extra['index'] + 1}"] = step.at
    return [f"{run} {act} started {t / 1e9:.6f}, completed at {completed[run, act]:.6f}"
            for kind, t, _pid, run, act in executions
            if kind == "S" and (run, act) in completed and t / 1e9 > completed[run, act]]


def owner_overlaps(folder: Path, executions: list[tuple[str, int, int, str, str]],
                   fleet: Fleet) -> tuple[list[str], int]:
    """Per run, the spans of node activity of each claim (owner) overlapping another's; claims seen."""
    claims: dict[tuple[int, str], list[tuple[int, str]]] = defaultdict(list)  # (pid, run) -> [(t, owner)]
    last_of: dict[int, int] = defaultdict(int)  # pid -> its last record, for a pid that died by itself
    for line in (folder / "claims").read_text().splitlines():
        t, pid, *words = line.split()
        last_of[int(pid)] = max(last_of[int(pid)], int(t))
        if words[0] == "claimed":
            claims[int(pid), words[1]].append((int(t), words[-1].rstrip(")")))
    spans: dict[tuple[str, str], list[int]] = {}  # (run, owner) -> [first start, last activity]
    open_: dict[tuple[str, str], int] = defaultdict(int)  # starts not yet ended or stopped
    for kind, t, pid, run, _act in executions:
        last_of[pid] = max(last_of[pid], t)
        owner = max((c for c in claims[pid, run] if c[0] <= t), default=(0, f"unclaimed:{pid}"))[1]
        span = spans.setdefault((run, owner), [t, t, pid])
        span[1] = max(span[1], t)
        open_[run, owner] += 1 if kind == "S" else -1
    for (run, owner), span in spans.items():
        if open_[run, owner] > 0:  # a node was running when its process died: until the death
            span[1] = max(span[1], fleet.killed.get(span[2], last_of[span[2]]))
    overlaps = []
    by_run: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for (run, owner), (first, last, _pid) in spans.items():
        by_run[run].append((first, last, owner))
    for run, owned in by_run.items():
        owned.sort()
        overlaps += [f"{run}: {a[2]} until {a[1]} and {b[2]} from {b[0]}"
                     for a, b in zip(owned, owned[1:], strict=False) if b[0] <= a[1]]
    return overlaps, len(spans)


# -- a partition ---------------------------------------------------------------------------
class Partition:
    """A network namespace joined to the host by a veth pair: cut() and heal() its link."""

    def __init__(self, tag: int) -> None:
        self.ns, self.host_if, self.ns_if = f"wpchaos{tag}", f"wph{tag}", f"wpn{tag}"
        net = f"10.231.{tag % 250}"
        self.host_ip, self.ns_ip = f"{net}.1", f"{net}.2"

    def create(self) -> None:
        ip("netns", "add", self.ns)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        ip("link", "set", self.ns_if, "netns", self.ns)
        ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        for args in (("link", "set", self.host_if, "up"), ("-n", self.ns, "link", "set", self.ns_if, "up"),
                     ("-n", self.ns, "link", "set", "lo", "up")):
            ip(*args)

    def cut(self) -> None:
        ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.host_if], capture_output=True)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def partition():
    if os.geteuid() != 0:
        pytest.skip("the partition test makes a network namespace and a veth pair: it needs root")
    if shutil.which("ip") is None:
        pytest.skip("the partition test needs `ip` (iproute2): apt-get install iproute2")
    part = Partition(os.getpid() % 10000)
    try:
        part.create()
    except subprocess.CalledProcessError as exc:
        part.destroy()
        pytest.skip(f"cannot make a network namespace here ({' '.join(exc.cmd)}: {exc.stderr.strip()})")
    try:
        yield part
    finally:
        part.destroy()


def listen_also(server: pg_server.PgServer, address: str) -> None:
    """Restart the server listening on `address` too, trusting the partition's subnet."""
    server.stop("fast")
    with (server.data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {address.rsplit('.', 1)[0]}.0/24 trust\n")
    options = (f"-c listen_addresses=127.0.0.1,{address} -c port={server.port} -c fsync=off "
               f"-c full_page_writes=off -c unix_socket_directories={server.root} -c max_connections=200")
    server._run("pg_ctl", "start", "-w", "-D", str(server.data), "-o", options,
                "-l", str(server.root / "server.log"))


def wait_until(what: str, check, limit: float = 60.0, show=lambda: "") -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {limit}s {show()}"
        time.sleep(0.05)


def heard_back(line: str, run_id: str) -> bool:
    """A worker's log line saying its execution of `run_id` ended ("ended RUN: ...", "lost RUN: ...")."""
    words = line.split()
    return len(words) > 1 and words[0] in ("lost", "ended") and words[1].rstrip(":") == run_id


async def status_of(url: str, run_id: str) -> str:
    async with PostgresStore(url) as store:
        return (await store.get_run(run_id)).status


def claims_of(folder: Path, pid: int) -> list[str]:
    lines = (folder / "claims").read_text().splitlines()
    return [" ".join(line.split()[2:]) for line in lines if line.split()[1] == str(pid)]


@pytest.mark.timeout(300)
def test_a_partitioned_worker_is_fenced_and_goes_back_to_claiming(server, partition, tmp_path, monkeypatch):
    """Worker A, in its own network namespace, is inside a node when its link to PostgreSQL is cut
    (`ip link set ... down` on the host's end of the veth). A's renewals go unanswered, so it stops
    the run; its lease lapses on the server's clock and worker B, on the host, finishes the run.
    Nothing A built after the cut reaches the log (a late append would be fenced by owner and
    epoch), and once the link is back A claims and executes a new run cleanly."""
    listen_also(server, partition.host_ip)
    url = server.new_database()
    fleet = Fleet(url, tmp_path, random.Random(SEED))

    async def submit(run_id: str) -> None:
        async with PostgresStore(url) as store:
            await wp.submit(HOLD, store=store, queue="chaos", run_id=run_id)

    try:
        inside = url.replace("127.0.0.1", partition.host_ip)  # the server, seen from the namespace
        fleet.start(prefix=("ip", "netns", "exec", partition.ns), url=inside)
        a = fleet.procs[0].pid
        asyncio.run(submit("cut"))
        wait_until("A enters the node", (tmp_path / "held-cut").exists)
        cut_at = time.time()
        partition.cut()
        (tmp_path / "release").touch()  # A's node ends; its commit cannot reach the server
        fleet.start()  # B, on the host: it claims the run once A's lease lapses on the server's clock
        wait_until("B finishes the run", lambda: asyncio.run(status_of(url, "cut")) == "done")
        partition.heal()
        wait_until("A hears back", lambda: any(heard_back(line, "cut") for line in claims_of(tmp_path, a)),
                   show=lambda: "\n".join(claims_of(tmp_path, a)))
        fleet.procs[1].send_signal(signal.SIGTERM)  # B leaves: the next run can only be A's
        assert fleet.procs[1].wait(timeout=60) == 0
        asyncio.run(submit("after"))
        wait_until("A executes a new run", lambda: asyncio.run(status_of(url, "after")) == "done")
    finally:
        fleet.stop()
    a_log = claims_of(tmp_path, a)
    assert any(line.startswith("claimed after") for line in a_log), a_log
    monkeypatch.setenv("WAYPOINT_CHAOS_DIR", str(tmp_path))  # the reference run passes `hold` at once
    steps = asyncio.run(check_runs(url, {"cut": "hold", "after": "hold"}, {"hold": reference("hold")}))
    b_claimed = min(int(line.split()[0]) for line in (tmp_path / "claims").read_text().splitlines()
                    if line.split()[1] == str(fleet.procs[1].pid) and line.split()[2] == "claimed") / 1e9
    late = [s for s in steps["cut"] if cut_at < s.at < b_claimed]
    assert not late, f"steps built by A after the cut reached the log: {late}"
    executions = read_executions(tmp_path)
    assert not completed_then_executed(executions, steps)
    assert owner_overlaps(tmp_path, executions, fleet)[0] == []
    stopped = next(line for line in a_log if heard_back(line, "cut"))
    print(stopped)  # what the cut-off worker logged when it stopped executing the run
    record("chaos_partition", partitions=1, runs=2, rows_checked=sum(len(s) for s in steps.values()),
           cut_off_worker_stopped_itself=True, its_steps_after_the_cut=len(late))


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The two checks read from records; fed records of a broken run, each says what broke."""
    done = wp.Step(seq=1, kind="done", node="c0", activation="0.0", at=10.0)
    executions = [("S", 9_000_000_000, 1, "r", "0.0"), ("E", 9_500_000_000, 1, "r", "0.0"),
                  ("S", 11_000_000_000, 2, "r", "0.0")]  # started again after its completion
    assert completed_then_executed(executions, {"r": [done]}) == [
        "r 0.0 started 11.000000, completed at 10.000000"]
    (tmp_path / "claims").write_text("8000000000 1 claimed r (graph g, owner A)\n"
                                     "8500000000 2 claimed r (graph g, owner B)\n")
    fleet = Fleet.__new__(Fleet)
    fleet.killed = {}
    both = [("S", 9_000_000_000, 1, "r", "0.0"), ("S", 9_100_000_000, 2, "r", "0.1"),
            ("E", 9_200_000_000, 2, "r", "0.1"), ("E", 9_500_000_000, 1, "r", "0.0")]
    overlaps, claims = owner_overlaps(tmp_path, both, fleet)
    assert claims == 2 and overlaps == ["r: A until 9500000000 and B from 9100000000"]
    one_after_the_other = [("S", 9_000_000_000, 1, "r", "0.0"), ("X", 9_050_000_000, 1, "r", "0.0"),
                           ("S", 9_100_000_000, 2, "r", "0.0"), ("E", 9_200_000_000, 2, "r", "0.0")]
    assert owner_overlaps(tmp_path, one_after_the_other, fleet) == ([], 2)
    fleet.killed = {1: 9_600_000_000}  # A's node never ended: A was killed at 9.6 s, after B began
    assert owner_overlaps(tmp_path, one_after_the_other[:1] + one_after_the_other[2:], fleet)[0] == [
        "r: A until 9600000000 and B from 9100000000"]
