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
-- The run row (leased to an owner, epoch 1, running; or as `info` says) and its first
-- snapshot, in one statement. A run id that exists returns no row and writes nothing.
WITH run AS (
    INSERT INTO waypoint_runs (run_id, graph, status, created_at, updated_at, last_seq, lease_owner,
                               lease_epoch, lease_expiry, lease_ttl, error, waiting, info, queue, priority)
    VALUES (%(run_id)s, %(graph)s, %(status)s, %(created_at)s, %(updated_at)s, %(last_seq)s,
            %(owner)s, CASE WHEN %(leased)s::boolean THEN 1 ELSE 0 END,
            CASE WHEN %(leased)s::boolean THEN now() + make_interval(secs => %(ttl)s::float8)
                 WHEN %(expiry)s::float8 > 0 THEN to_timestamp(%(expiry)s::float8) END,
            %(ttl)s::float8, %(error)s, %(waiting)s, %(info)s, %(queue)s, %(priority)s)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id, lease_epoch
), snapshot AS (
    INSERT INTO waypoint_snapshots (run_id, seq, payload)
    SELECT run.run_id, %(snap_seq)s, %(snap)s::bytea FROM run WHERE %(snap)s::bytea IS NOT NULL
)
SELECT lease_epoch FROM run;

-- name: import_run
-- A whole run copied from another store (`waypoint copy`): its row as that store held
-- it but leased to nobody (epoch 0), its steps and its snapshots, in one statement. A
-- run id that exists returns no row and writes nothing.
WITH run AS (
    INSERT INTO waypoint_runs (run_id, graph, status, created_at, updated_at, last_seq, error, waiting,
                               info, queue, priority)
    VALUES (%(run_id)s, %(graph)s, %(status)s, %(created_at)s, %(updated_at)s, %(last_seq)s,
            %(error)s, %(waiting)s, %(info)s, %(queue)s, %(priority)s)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id
), steps AS (
    INSERT INTO waypoint_steps (run_id, seq, kind, node, payload)
    SELECT run.run_id, s.seq, s.kind, s.node, s.payload
    FROM run, unnest(%(seqs)s::bigint[], %(kinds)s::text[], %(nodes)s::text[],
                     %(payloads)s::bytea[]) AS s (seq, kind, node, payload)
), snapshots AS (
    INSERT INTO waypoint_snapshots (run_id, seq, payload)
    SELECT run.run_id, s.seq, s.payload
    FROM run, unnest(%(snap_seqs)s::bigint[], %(snaps)s::bytea[]) AS s (seq, payload)
)
SELECT run_id FROM run;

-- Every write below is ONE statement that locks the run's row (FOR UPDATE: a concurrent
-- writer's change is waited for, then seen), writes only if its condition holds on that
-- row, and returns the row as it found it: what a refusal names. No row: no such run.

-- name: claim
-- The compare-and-set claim: free, expired or ours, and (if asked) the log end and status
-- the caller saw. Concurrent claims queue on the row lock and each sees the winner's row,
-- so of many that saw one run at most one succeeds. A claim bumps the lease epoch.
WITH cur AS (
    SELECT run_id, status, last_seq, lease_owner, lease_expiry,
           lease_owner IS NULL OR lease_owner = %(owner)s OR lease_expiry IS NULL
               OR lease_expiry < now() AS free
    FROM waypoint_runs WHERE run_id = %(run_id)s FOR UPDATE
), won AS (
    UPDATE waypoint_runs AS r
    SET status = 'running', lease_owner = %(owner)s, lease_epoch = r.lease_epoch + 1,
        lease_expiry = now() + make_interval(secs => %(ttl)s::float8), lease_ttl = %(ttl)s::float8,
        updated_at = extract(epoch FROM now())
    FROM cur
    WHERE r.run_id = cur.run_id AND cur.free
      AND (%(expect_seq)s::bigint IS NULL OR cur.last_seq = %(expect_seq)s::bigint)
      AND (%(expect_status)s::text IS NULL OR cur.status = %(expect_status)s::text)
    RETURNING r.info, r.status, r.updated_at, r.last_seq, r.lease_owner,
              extract(epoch FROM r.lease_expiry)::float8 AS expiry, r.error, r.waiting, r.lease_epoch
)
SELECT cur.status, cur.last_seq, cur.lease_owner,
       coalesce(extract(epoch FROM cur.lease_expiry), 0)::float8, extract(epoch FROM now())::float8,
       won.info, won.status, won.updated_at, won.last_seq, won.lease_owner, won.expiry, won.error,
       won.waiting, won.lease_epoch
FROM cur LEFT JOIN won ON true;

-- name: claim_next
-- A worker's poll: the best claimable run of a queue (queued, or running under a lapsed
-- lease), claimed as `claim` does. SKIP LOCKED: concurrent workers pass over a row another
-- is claiming instead of queueing behind it, so each run goes to one and none waits.
UPDATE waypoint_runs AS r
SET status = 'running', lease_owner = %(owner)s, lease_epoch = r.lease_epoch + 1,
    lease_expiry = now() + make_interval(secs => %(ttl)s::float8), lease_ttl = %(ttl)s::float8,
    updated_at = extract(epoch FROM now())
WHERE r.run_id IN (
    SELECT run_id FROM waypoint_runs
    WHERE queue = %(queue)s
      AND (%(graphs)s::text[] IS NULL OR graph = ANY (%(graphs)s::text[]))
      AND (status = 'queued' OR (status = 'running' AND coalesce(lease_expiry < now(), true)))
    ORDER BY priority DESC, created_at, inserted
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING r.run_id, r.info, r.status, r.updated_at, r.last_seq, r.lease_owner,
          extract(epoch FROM r.lease_expiry)::float8, r.error, r.waiting, r.lease_epoch;

-- name: renew
WITH cur AS (
    SELECT run_id, lease_owner FROM waypoint_runs WHERE run_id = %(run_id)s FOR UPDATE
), done AS (
    UPDATE waypoint_runs AS r
    SET lease_expiry = now() + make_interval(secs => %(ttl)s::float8), lease_ttl = %(ttl)s::float8
    FROM cur WHERE r.run_id = cur.run_id AND cur.lease_owner = %(owner)s
    RETURNING r.run_id
)
SELECT done.run_id IS NOT NULL, cur.lease_owner FROM cur LEFT JOIN done ON true;

-- name: release
WITH cur AS (
    SELECT run_id, lease_owner FROM waypoint_runs WHERE run_id = %(run_id)s FOR UPDATE
), done AS (
    UPDATE waypoint_runs AS r
    SET status = %(status)s, error = %(error)s, waiting = %(waiting)s, lease_owner = NULL,
        lease_expiry = NULL, updated_at = extract(epoch FROM now())
    FROM cur WHERE r.run_id = cur.run_id AND cur.lease_owner = %(owner)s
    RETURNING r.run_id
)
SELECT done.run_id IS NOT NULL, cur.lease_owner FROM cur LEFT JOIN done ON true;

-- name: append
-- One fenced append: the fence (owner, epoch if known, previous seq) moves the log end
-- and extends the lease (progress proves the holder alive); the steps and the snapshot
-- are inserted only if it held. A stray step row makes the primary key refuse the
-- statement; the store then retries its batch with a savepoint per write.
WITH cur AS (
    SELECT run_id, lease_owner, last_seq, lease_epoch
    FROM waypoint_runs WHERE run_id = %(run_id)s FOR UPDATE
), fence AS (
    UPDATE waypoint_runs AS r
    SET last_seq = coalesce(%(last)s::bigint, r.last_seq), updated_at = extract(epoch FROM now()),
        lease_expiry = greatest(r.lease_expiry, now() + make_interval(secs => r.lease_ttl))
    FROM cur
    WHERE r.run_id = cur.run_id AND cur.lease_owner = %(owner)s
      AND cur.lease_epoch = coalesce(%(epoch)s::bigint, cur.lease_epoch)
      AND CASE WHEN %(first)s::bigint IS NULL THEN cur.last_seq >= %(snap_seq)s::bigint
               ELSE cur.last_seq = %(first)s::bigint - 1 END
    RETURNING r.run_id
), steps AS (
    INSERT INTO waypoint_steps (run_id, seq, kind, node, payload)
    SELECT fence.run_id, s.seq, s.kind, s.node, s.payload
    FROM fence, unnest(%(seqs)s::bigint[], %(kinds)s::text[], %(nodes)s::text[],
                       %(payloads)s::bytea[]) AS s (seq, kind, node, payload)
), snapshot AS (
    INSERT INTO waypoint_snapshots (run_id, seq, payload)
    SELECT fence.run_id, %(snap_seq)s, %(snap)s::bytea FROM fence WHERE %(snap)s::bytea IS NOT NULL
    ON CONFLICT (run_id, seq) DO UPDATE SET payload = excluded.payload
)
SELECT EXISTS (SELECT 1 FROM fence), cur.lease_owner, cur.last_seq, cur.lease_epoch FROM cur;

-- name: run
SELECT info, status, updated_at, last_seq, lease_owner,
       coalesce(extract(epoch FROM lease_expiry), 0)::float8, error, waiting
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

-- name: migration_2
-- The cache of node results (`cache=` on a node): key -> value until expires_at (NULL: never),
-- on the database's clock, shared by every worker.
CREATE TABLE waypoint_cache (
    key        text PRIMARY KEY,
    value      bytea NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX waypoint_cache_expires_at ON waypoint_cache (expires_at) WHERE expires_at IS NOT NULL;

-- name: cache_get
SELECT value FROM waypoint_cache WHERE key = %(key)s AND (expires_at IS NULL OR expires_at > now());

-- name: cache_put
-- Replaces the entry, and drops up to 100 expired ones so dead keys do not pile up.
WITH gone AS (
    DELETE FROM waypoint_cache WHERE key IN (
        SELECT key FROM waypoint_cache WHERE expires_at <= now() AND key <> %(key)s LIMIT 100)
)
INSERT INTO waypoint_cache (key, value, stored_at, expires_at)
VALUES (%(key)s, %(value)s, now(),
        CASE WHEN %(ttl)s::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => %(ttl)s::float8) END)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, stored_at = EXCLUDED.stored_at,
                                expires_at = EXCLUDED.expires_at;

-- name: migration_3
-- Wake-ups for workers (checkpoints/signals.py listens): a run that becomes "queued"
-- (submitted, answered with enqueue=True, handed back by a draining worker) sends
-- NOTIFY waypoint_work with its queue as payload, inside the transaction that queued it,
-- so a worker is told at commit and never before. Only on becoming queued: never per step.
CREATE FUNCTION waypoint_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('waypoint_work', NEW.queue);
    RETURN NULL;
END
$$;
CREATE TRIGGER waypoint_queued_insert AFTER INSERT ON waypoint_runs
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION waypoint_queued();
CREATE TRIGGER waypoint_queued_update AFTER UPDATE OF status ON waypoint_runs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued') EXECUTE FUNCTION waypoint_queued();

-- name: migration_4
-- The slots of limits shared by processes (`Limit(..., processes=True)`): (limit, slot) held by
-- a holder until expires_at, on the database's clock.
CREATE TABLE waypoint_slots (
    name       text NOT NULL,
    slot       integer NOT NULL,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (name, slot)
);

-- name: claim_slot
-- The first slot with no live holder, taken in one statement. Two claims racing for one free
-- slot: the second finds the first's row on conflict, live, so it updates nothing and returns
-- no row (its caller tries again).
WITH free AS (
    SELECT s.slot FROM generate_series(0, %(size)s::integer - 1) AS s (slot)
    WHERE NOT EXISTS (SELECT 1 FROM waypoint_slots w
                      WHERE w.name = %(name)s AND w.slot = s.slot AND w.expires_at > now())
    ORDER BY s.slot LIMIT 1
)
INSERT INTO waypoint_slots (name, slot, holder, expires_at)
SELECT %(name)s, free.slot, %(holder)s, now() + make_interval(secs => %(ttl)s::float8) FROM free
ON CONFLICT (name, slot) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE waypoint_slots.expires_at <= now()
RETURNING slot;

-- name: renew_slot
UPDATE waypoint_slots SET expires_at = now() + make_interval(secs => %(ttl)s::float8)
WHERE name = %(name)s AND slot = %(slot)s AND holder = %(holder)s
RETURNING slot;

-- name: release_slot
DELETE FROM waypoint_slots WHERE name = %(name)s AND slot = %(slot)s AND holder = %(holder)s;
