"""A run's row as the SQL stores keep it: its columns, how they encode and decode.

    RUN_COLUMNS                      # the columns every run query selects, in this order
    info = run_from_row(run_id, row) # a RunInfo; CorruptRecordError naming the run if it does not decode
    info = listed(run_id, graph, created_at, *row)   # the same, flagged instead of raised, for listings

One home for SQLiteStore and PostgresStore: the immutable part of a run (its
RunInfo) is one msgpack blob, the columns a lease or a status changes are plain.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import structs

from waypoint.checkpoints.records import RunInfo
from waypoint.errors import CorruptRecordError

__all__ = ["RUN_COLUMNS", "decode_info", "decode_waiting", "encode_info", "encode_waiting", "listed",
           "run_from_row"]

RUN_COLUMNS = "info, status, updated_at, last_seq, lease_owner, lease_expiry, error, waiting"
encode_info, decode_info = msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder(RunInfo).decode
encode_waiting, decode_waiting = msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder(list[str]).decode


def listed(run_id: str, graph: str, created_at: float, *row: Any) -> RunInfo:
    """A listed run; a row that does not decode is still listed, flagged, so one bad row hides no other."""
    try:
        return run_from_row(run_id, row)
    except CorruptRecordError as exc:
        _, status, updated_at, last_seq, owner, expiry, _, _ = row
        return RunInfo(run_id=run_id, graph=graph, graph_hash="", status=status, created_at=created_at,
                       updated_at=updated_at, last_seq=last_seq, lease_owner=owner,
                       lease_expiry=expiry, error=str(exc))


def run_from_row(run_id: str, row: tuple[Any, ...]) -> RunInfo:
    info, status, updated_at, last_seq, owner, expiry, error, waiting = row
    try:
        return structs.replace(decode_info(info), status=status, updated_at=updated_at,
                               last_seq=last_seq, lease_owner=owner, lease_expiry=expiry,
                               error=error, waiting=decode_waiting(waiting))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptRecordError(f"run {run_id!r}: its row cannot be decoded ({exc}); restore the "
                                 "database from a backup", run_id=run_id) from None
