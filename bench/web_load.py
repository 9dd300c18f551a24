"""`waypoint serve` under load: concurrent SSE clients while answers arrive at a fixed rate.

    python -m bench.web_load                       # 50 SSE clients, 20 answers/s for 30 s
    python -m bench.web_load --clients 50 --rate 20 --seconds 30 --json out.json
    python -m bench.web_load --quick               # 10 clients, 10 answers/s for 3 s (CI)

The server is a real `waypoint serve` subprocess on 127.0.0.1 over a fresh SQLite file
(synchronous=FULL, the default) holding `rate * seconds` runs of examples/approval.py
waiting at their gate, made beforehand with the library. Then, in one asyncio client:

- `--clients` SSE clients each follow runs in turn (client k follows runs k, k + clients,
  ...): open /api/runs/{id}/events, read until the run's `end` event, move on. So that
  many event streams are open the whole time, each waiting for its run to be answered;
- an open-loop answerer POSTs /api/runs/{id}/resume `{"answer": {"approved": true}}` to
  run 0, 1, 2, ... every 1/rate seconds, without waiting for earlier answers.

Reported: the server's CPU time per answer (from /proc: what the load costs, whatever
else the machine runs), every request answered (a non-2xx or a transport error counts as a failure),
and the latency percentiles of (a) a resume POST, (b) answer-to-update: from sending an
answer to the `end` event of that run reaching its SSE client (the run executed, its
steps committed and streamed), (c) GET /api/runs/{id} probes made at 5/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
GRAPH = "examples/approval.py:graph"


@dataclass
class Tally:
    post: list[float] = field(default_factory=list)  # seconds per resume POST
    update: list[float] = field(default_factory=list)  # answer sent -> `end` event received
    probe: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sent_at: dict[int, float] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    server_cpu: float = 0.0  # seconds of CPU the server process used during the load
    wall: float = 0.0


def prepare(db: Path, count: int) -> None:
    """`count` approval runs waiting at their gate, `l0`, `l1`, ..."""
    from waypoint import SQLiteStore, start
    from waypoint._cli.loading import load_graph

    graph, ref = load_graph(str(ROOT / GRAPH))  # as the server loads it: the same structure hash

    async def go() -> None:
        store = SQLiteStore(db)
        try:
            for i in range(count):
                handle = await start(graph, {"topic": f"t{i}"}, store=store, run_id=f"l{i}", graph_ref=ref)
                assert (await handle.result()).status == "waiting"
        finally:
            await store.close()

    asyncio.run(go())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "waypoint.cli", "serve", "--db", str(db), "--port", str(port),
               str(ROOT / GRAPH)]
    env = {**os.environ, "WAYPOINT_TOKEN": ""}
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    banner = proc.stderr.readline().decode()  # printed just before uvicorn binds
    if "waypoint serve:" not in banner:
        proc.kill()
        raise RuntimeError(f"the server did not start: {banner}{proc.stderr.read().decode()}")
    return proc


async def wait_ready(client: httpx.AsyncClient) -> None:
    for _ in range(600):
        try:
            if (await client.get("/api/graphs", params={"svg": "false"})).status_code == 200:
                return
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the server never answered")


async def follower(client: httpx.AsyncClient, first: int, step: int, count: int, tally: Tally) -> None:
    for run in range(first, count, step):
        try:
            async with client.stream("GET", f"/api/runs/l{run}/events") as response:
                if response.status_code != 200:
                    tally.failures.append(f"events l{run}: {response.status_code}")
                    continue
                async for line in response.aiter_lines():
                    if line == "event: end":
                        tally.update.append(time.perf_counter() - tally.sent_at[run])
                        tally.ended.add(run)
                        break
        except httpx.HTTPError as exc:
            tally.failures.append(f"events l{run}: {type(exc).__name__} {exc}")


async def answer(client: httpx.AsyncClient, run: int, tally: Tally) -> None:
    tally.sent_at[run] = began = time.perf_counter()
    try:
        response = await client.post(f"/api/runs/l{run}/resume", json={"answer": {"approved": True}})
    except httpx.HTTPError as exc:
        tally.failures.append(f"resume l{run}: {type(exc).__name__} {exc}")
        return
    tally.post.append(time.perf_counter() - began)
    if response.status_code != 202:
        tally.failures.append(f"resume l{run}: {response.status_code} {response.text[:200]}")


async def probe(client: httpx.AsyncClient, count: int, stop: asyncio.Event, tally: Tally) -> None:
    i = 0
    while not stop.is_set():
        began = time.perf_counter()
        try:
            response = await client.get(f"/api/runs/l{i % count}")
            tally.probe.append(time.perf_counter() - began)
            if response.status_code != 200:
                tally.failures.append(f"probe: {response.status_code}")
        except httpx.HTTPError as exc:
            tally.failures.append(f"probe: {type(exc).__name__} {exc}")
        i += 1
        await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), 0.0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, clients: int, rate: float, count: int, pid: int = 0) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients + 200, max_keepalive_connections=clients + 50)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await wait_ready(client)
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        followers = [asyncio.create_task(follower(client, k, clients, count, tally)) for k in range(clients)]
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(client, count, stop, tally))
        answers = []
        began = time.perf_counter()
        for run in range(count):  # open loop: on schedule, whatever earlier answers are doing
            await asyncio.sleep(max(0.0, began + run / rate - time.perf_counter()))
            answers.append(asyncio.create_task(answer(client, run, tally)))
        await asyncio.gather(*answers)
        try:
            await asyncio.wait_for(asyncio.gather(*followers), timeout=60)
        except TimeoutError:
            tally.failures.append(f"{count - len(tally.ended)} runs' end events never arrived in 60 s")
        stop.set()
        await prober
        tally.server_cpu, tally.wall = cpu_seconds(pid) - cpu_before, time.perf_counter() - wall_before
        for run in range(count):  # what became of the runs whose end never reached a client
            if run not in tally.ended:
                row = (await client.get(f"/api/runs/l{run}")).json()
                tally.failures.append(f"l{run} never streamed its end: status {row.get('status')} "
                                      f"{row.get('error') or ''}")
    return tally


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def summary(tally: Tally, clients: int, rate: float, seconds: float) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"n": len(values), "p50_ms": round(pct(values, 50), 1), "p99_ms": round(pct(values, 99), 1),
                "max_ms": round(max(values) * 1000, 1) if values else float("nan"),
                "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else float("nan")}

    return {"clients": clients, "rate_per_s": rate, "seconds": seconds, "failures": len(tally.failures),
            "failure_examples": tally.failures[:5], "resume_post": stats(tally.post),
            "answer_to_sse_end": stats(tally.update), "get_run_probe": stats(tally.probe),
            "server_cpu_s": round(tally.server_cpu, 2), "wall_s": round(tally.wall, 1),
            "server_cpu_ms_per_answer": round(1000 * tally.server_cpu / max(1, len(tally.post)), 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="10 clients, 10 answers/s for 3 s")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--dir", type=Path, help="where the database goes [a temporary directory]")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.rate, args.seconds = 10, 10.0, 3.0
    count = max(args.clients, int(args.rate * args.seconds))
    import tempfile

    with tempfile.TemporaryDirectory(dir=args.dir) as where:
        db = Path(where) / "load.db"
        prepare(db, count)
        port = free_port()
        server = start_server(db, port)
        try:
            tally = asyncio.run(load(f"http://127.0.0.1:{port}", args.clients, args.rate, count, server.pid))
        finally:
            server.terminate()
            server.wait(30)
    result = summary(tally, args.clients, args.rate, args.seconds)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
