-- PostgresStore's schema and queries, in one file you can read (loaded by name).
--
-- A block starts at a line "-- name: <name>" and runs to the next one. Blocks
-- named "migration_<n>" take the schema from version n - 1 to n, in one
-- transaction, under an advisory lock (see postgres.py); the others are the
-- queries, with psycopg's %(name)s placeholders: every value is bound, no
-- identifier ever comes from input. Lease expiries are on the database's clock
-- (now(), the start of the writing transaction), never a worker's.

-- name: migration_1
-- `info` keeps the RunInfo as created (msgpack, as in SQLite); the columns hold what
-- changes and what is filtered on, so a new RunInfo field with a default needs no
-- migration. `queue`, `priority` and `lease_epoch` are for queued workers: a claim
-- bumps the epoch, so a write fenced on an epoch fails once the run was taken again.
CREATE TABLE waypoint_runs (
    run_id       text PRIMARY KEY,
    graph        text NOT NULL,
    status       text NOT NULL,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    last_seq     bigint NOT NULL,
    lease_owner  text,
    lease_epoch  bigint NOT NULL DEFAULT 0,
    lease_expiry timestamptz,
    lease_ttl    double precision NOT NULL DEFAULT 0,
    queue        text NOT NULL DEFAULT 'default',
    priority     integer NOT NULL DEFAULT 0,
    error        text,
    waiting      bytea NOT NULL,
    info         bytea NOT NULL,
    inserted     bigserial NOT NULL  -- ties of created_at list newest-inserted first
);
CREATE INDEX waypoint_runs_status ON waypoint_runs (status);
CREATE INDEX waypoint_runs_created_at ON waypoint_runs (created_at DESC, inserted DESC);
CREATE INDEX waypoint_runs_queue ON waypoint_runs (queue, priority DESC, created_at)
    WHERE status = 'queued';
CREATE TABLE waypoint_steps (
    run_id  text NOT NULL REFERENCES waypoint_runs (run_id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    kind    text NOT NULL,
    node    text NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE waypoint_snapshots (
    run_id  text NOT NULL REFERENCES waypoint_runs (run_id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- name: schema_version
-- Read before migrating: a current schema is opened without writing anything.
SELECT max(version) FROM waypoint_schema_version;

-- name: schema_lock
-- Opens racing on a fresh database migrate one at a time (the lock ends with the transaction).
SELECT pg_advisory_xact_lock(hashtext('waypoint schema'));
CREATE TABLE IF NOT EXISTS waypoint_schema_version (version integer NOT NULL);

-- name: set_schema_version
WITH old AS (DELETE FROM waypoint_schema_version)
INSERT INTO waypoint_schema_version (version) VALUES (%(version)s);

-- name: create
-- With an owner the run starts leased (epoch 1) and running; without, as `info` says.
-- ON CONFLICT returns no row: the caller says the run exists, and nothing was written.
INSERT INTO waypoint_runs (run_id, graph, status, created_at, updated_at, last_seq, lease_owner,
                           lease_epoch, lease_expiry, lease_ttl, error, waiting, info)
VALUES (%(run_id)s, %(graph)s, %(status)s, %(created_at)s, %(updated_at)s, %(last_seq)s,
        %(owner)s, CASE WHEN %(leased)s::boolean THEN 1 ELSE 0 END,
        CASE WHEN %(leased)s::boolean THEN now() + make_interval(secs => %(ttl)s::float8)
             WHEN %(expiry)s::float8 > 0 THEN to_timestamp(%(expiry)s::float8) END,
        %(ttl)s::float8, %(error)s, %(waiting)s, %(info)s)
ON CONFLICT (run_id) DO NOTHING
RETURNING lease_epoch;

-- name: first_snapshot
INSERT INTO waypoint_snapshots (run_id, seq, payload) VALUES (%(run_id)s, %(seq)s, %(payload)s)
ON CONFLICT (run_id, seq) DO UPDATE SET payload = excluded.payload;

-- name: claim
-- The compare-and-set claim: free, expired or ours, and (if asked) the log end and status
-- the caller saw. Concurrent claims queue on the row lock; each re-checks the row as the
-- winner left it, so of many that saw one run at most one succeeds.
UPDATE waypoint_runs
SET status = 'running', lease_owner = %(owner)s, lease_epoch = lease_epoch + 1,
    lease_expiry = now() + make_interval(secs => %(ttl)s::float8), lease_ttl = %(ttl)s::float8,
    updated_at = extract(epoch FROM now())
WHERE run_id = %(run_id)s
  AND (lease_owner IS NULL OR lease_owner = %(owner)s OR lease_expiry IS NULL OR lease_expiry < now())
  AND (%(expect_seq)s::bigint IS NULL OR last_seq = %(expect_seq)s)
  AND (%(expect_status)s::text IS NULL OR status = %(expect_status)s)
RETURNING info, status, updated_at, last_seq, lease_owner,
          coalesce(extract(epoch FROM lease_expiry), 0)::float8, error, waiting, lease_epoch;

-- name: renew
UPDATE waypoint_runs
SET lease_expiry = now() + make_interval(secs => %(ttl)s::float8), lease_ttl = %(ttl)s::float8
WHERE run_id = %(run_id)s AND lease_owner = %(owner)s
RETURNING run_id;

-- name: release
UPDATE waypoint_runs
SET status = %(status)s, error = %(error)s, waiting = %(waiting)s, lease_owner = NULL,
    lease_expiry = NULL, updated_at = extract(epoch FROM now())
WHERE run_id = %(run_id)s AND lease_owner = %(owner)s
RETURNING run_id;

-- name: append
-- One fenced append in ONE statement: the fence (owner, epoch if known, previous seq)
-- moves the log end and extends the lease; the steps and the snapshot are inserted only
-- if it held. The last SELECT reads the row as it was before this statement (all parts
-- of a statement see one snapshot): the holder and log end a refusal names. A stray
-- step row makes the primary key refuse the whole statement (its savepoint rolls back).
WITH fence AS (
    UPDATE waypoint_runs
    SET last_seq = coalesce(%(last)s::bigint, last_seq), updated_at = extract(epoch FROM now()),
        lease_expiry = greatest(lease_expiry, now() + make_interval(secs => lease_ttl))
    WHERE run_id = %(run_id)s AND lease_owner = %(owner)s
      AND lease_epoch = coalesce(%(epoch)s::bigint, lease_epoch)
      AND CASE WHEN %(first)s::bigint IS NULL THEN last_seq >= %(snap_seq)s::bigint
               ELSE last_seq = %(first)s::bigint - 1 END
    RETURNING run_id
), steps AS (
    INSERT INTO waypoint_steps (run_id, seq, kind, node, payload)
    SELECT fence.run_id, s.seq, s.kind, s.node, s.payload
    FROM fence, unnest(%(seqs)s::bigint[], %(kinds)s::text[], %(nodes)s::text[],
                       %(payloads)s::bytea[]) AS s (seq, kind, node, payload)
    RETURNING seq
), snapshot AS (
    INSERT INTO waypoint_snapshots (run_id, seq, payload)
    SELECT fence.run_id, %(snap_seq)s, %(snap)s::bytea FROM fence WHERE %(snap)s::bytea IS NOT NULL
    ON CONFLICT (run_id, seq) DO UPDATE SET payload = excluded.payload
    RETURNING seq
)
SELECT (SELECT count(*) FROM fence) AS written, run.run_id IS NOT NULL AS found, run.lease_owner,
       run.last_seq, run.lease_epoch
FROM (SELECT 1) AS one LEFT JOIN waypoint_runs AS run ON run.run_id = %(run_id)s;

-- name: run
SELECT info, status, updated_at, last_seq, lease_owner,
       coalesce(extract(epoch FROM lease_expiry), 0)::float8, error, waiting,
       lease_epoch, extract(epoch FROM now())::float8
FROM waypoint_runs WHERE run_id = %(run_id)s;

-- name: list_runs
SELECT run_id, graph, created_at, info, status, updated_at, last_seq, lease_owner,
       coalesce(extract(epoch FROM lease_expiry), 0)::float8, error, waiting
FROM waypoint_runs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(graph)s::text IS NULL OR graph = %(graph)s)
ORDER BY created_at DESC, inserted DESC
LIMIT %(limit)s;

-- name: exists
SELECT EXISTS (SELECT 1 FROM waypoint_runs WHERE run_id = %(run_id)s);

-- name: history
SELECT seq, payload FROM waypoint_steps
WHERE run_id = %(run_id)s AND seq > %(after)s AND seq <= %(upto)s
ORDER BY seq;

-- name: snapshot_at
SELECT seq, payload FROM waypoint_snapshots
WHERE run_id = %(run_id)s AND seq <= %(seq)s
ORDER BY seq DESC LIMIT 1;
