"""What a store persists: frozen msgspec Structs, encoded as msgpack.

A run is an append-only log of `Step`s numbered 1, 2, 3... (`seq`), plus an
occasional `Snapshot` of the full state and scheduler frontier so that loading
a run replays a bounded tail. User state only appears here as plain data
(`dict`/`list`/`str`/numbers); it is turned back into the declared pydantic
types by the engine, never by looking at a type name inside the data.

Schema evolution follows msgspec's rules: new fields get defaults, an existing
field never changes type. `v` is the record schema version; a record with a
newer `v` than `RECORD_VERSION` raises `SchemaVersionError`. Records are written
as version 1 unless they need a later reader: version 2 is a snapshot that holds
an append-only list field by reference (`Snapshot.appended`), which a version 1
reader would take for a missing field.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

from waypoint.errors import CorruptRecordError, SchemaVersionError

RECORD_VERSION = 2  # the newest record this code reads
APPENDED_VERSION = 2  # a Snapshot with `appended`

StepKind = Literal[
    "done",  # a node activation completed: delta, children, extra (route, counters)
    "item",  # one item of a map node completed: extra = {"index", "result"}
    "wait",  # a gate activation is waiting for an answer: extra = the request
    "fail",  # a node failed: extra = {"error", "type"}; the run is failed
    "edit",  # a person changed fields of the state: delta = the update, extra = {"by"}
    "event",  # a run-level fact: resumed, answered by, forked from...
]

RunStatus = Literal[
    "queued",  # submitted (or answered with enqueue=True) for a worker to claim: claim_next
    "running",  # leased by a process that is executing it (or crashed holding it)
    "waiting",  # blocked on one or more gates; resume with an answer
    "done",  # reached the end
    "failed",  # a node failed; fix the cause and resume
    "interrupted",  # stopped from outside (Ctrl-C, SIGTERM, handle.interrupt()); resumable
    "cancelled",  # cancelled on purpose (cancel()); resumes only with force=True
]


def claimable(status: str, lease_expiry: float, now: float) -> bool:
    """Whether `Store.claim_next` may take a run: queued, or running under a lapsed lease."""
    return status == "queued" or (status == "running" and lease_expiry < now)


class Step(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of a run's log."""

    seq: int
    kind: StepKind
    node: str
    activation: str
    at: float
    delta: dict[str, Any] = {}
    children: list[str] = []
    extra: dict[str, Any] = {}
    v: int = 1


class Snapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    """The full state and the engine's frontier as of step `seq`."""

    seq: int
    state: dict[str, Any]
    frontier: dict[str, Any] = {}
    v: int = 1
    # field -> [base_seq, length]: the field is not in `state`; it is the list held whole by the
    # snapshot at base_seq, then the items the log's steps after it append (engine/_appended.py)
    appended: dict[str, list[int]] = {}


class RunInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A run's row: identity, status and lease."""

    run_id: str
    graph: str
    graph_hash: str
    status: RunStatus
    created_at: float
    updated_at: float
    last_seq: int = 0
    graph_ref: str | None = None  # "module:attr" the CLI can import to resume
    parent_run_id: str | None = None
    forked_from: str | None = None  # "run_id@seq"
    lease_owner: str | None = None
    lease_expiry: float = 0.0
    error: str | None = None
    waiting: list[str] = []  # gate names pending when status == "waiting"
    queue: str = "default"  # which workers claim it (claim_next): set at submit, never changed
    priority: int = 0  # higher first among a queue's claimable runs


_encoder = msgspec.msgpack.Encoder()


def _refuse_ext(code: int, data: memoryview) -> Any:
    """waypoint never writes msgpack extension types: one in a record means damage or tampering."""
    raise TypeError(f"msgpack extension type {code} found; waypoint records hold plain data only")


_step_decoder = msgspec.msgpack.Decoder(Step, ext_hook=_refuse_ext)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot, ext_hook=_refuse_ext)


def encode(record: Step | Snapshot) -> bytes:
    """Encode a record to msgpack bytes."""
    return _encoder.encode(record)


def decode_step(data: bytes, *, run_id: str, seq: int | None = None) -> Step:
    """Decode a Step; a bad or newer record raises a typed error naming run and step."""
    return _checked(_step_decoder, data, run_id=run_id, seq=seq, what="step")


def decode_snapshot(data: bytes, *, run_id: str, seq: int | None = None) -> Snapshot:
    """Decode a Snapshot; a bad or newer record raises a typed error naming run and step."""
    return _checked(_snapshot_decoder, data, run_id=run_id, seq=seq, what="snapshot")


R = TypeVar("R", Step, Snapshot)


def _checked(decoder: msgspec.msgpack.Decoder[R], data: bytes, *, run_id: str, seq: int | None,
             what: str) -> R:
    try:
        record = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
        raise CorruptRecordError(
            f"run {run_id!r}: {what} at seq {seq} cannot be decoded ({exc}); the store "
            "file was damaged or written by something else. Fork the run from an "
            "earlier step, or restore the database from a backup.",
            run_id=run_id,
            seq=seq,
        ) from None
    if record.v > RECORD_VERSION:
        raise SchemaVersionError(
            f"run {run_id!r}: {what} at seq {seq} has schema version {record.v}, this "
            f"waypoint reads up to {RECORD_VERSION}; upgrade waypoint to read it.",
            run_id=run_id,
            seq=seq,
        )
    return record
