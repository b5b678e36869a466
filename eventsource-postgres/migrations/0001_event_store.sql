-- The event store's tables and its append function.
--
-- Every name here is unqualified on purpose: the store runs its migrations on a connection whose
-- search_path is exactly the store's (validated) schema, so one set of files serves any schema
-- without splicing the name into SQL. Functions pin that search_path with SET ... FROM CURRENT.

-- One row: the era folded into every position's commit part (see the crate docs, "Eras").
CREATE TABLE store_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    era bigint NOT NULL DEFAULT 0 CHECK (era >= 0 AND era < 32768)
);
INSERT INTO store_meta (era) VALUES (0);

-- The log. A position is (commit_id, seq): commit_id = era << 48 | xid8 of the writing
-- transaction, seq a global identity. Readers only pass commit_id below the horizon.
CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    commit_id bigint NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    schema_version bigint NOT NULL,
    -- The payload exactly as written (bytes): jsonb would normalise it, and idempotent retries
    -- compare payloads byte for byte.
    payload bytea NOT NULL,
    metadata jsonb,
    recorded_at timestamptz NOT NULL,
    -- Also how a stream's current version and last recorded-at time are found: the last
    -- entry of the stream in this index (no separate streams table to update on every append).
    CONSTRAINT events_stream_version PRIMARY KEY (stream_id, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);
CREATE UNIQUE INDEX events_position ON events (commit_id, seq);
-- Time travel by recorded-at: the last version recorded at or before t, by index.
CREATE INDEX events_stream_recorded ON events (stream_id, recorded_at, version);

CREATE TABLE snapshots (
    stream_id text NOT NULL,
    version bigint NOT NULL,
    schema_version bigint NOT NULL,
    commit_id bigint NOT NULL,
    seq bigint NOT NULL,
    -- The event's recorded-at time: microseconds here, the nanoseconds below them apart
    -- (timestamptz has microseconds; a snapshot must round-trip exactly).
    event_recorded_at timestamptz NOT NULL,
    event_recorded_ns smallint NOT NULL DEFAULT 0 CHECK (event_recorded_ns BETWEEN 0 AND 999),
    payload bytea NOT NULL,
    PRIMARY KEY (stream_id, schema_version, version)
);
CREATE INDEX snapshots_recorded
    ON snapshots (stream_id, schema_version, event_recorded_at, event_recorded_ns);

CREATE TABLE checkpoints (
    name text PRIMARY KEY,
    commit_id bigint NOT NULL,
    seq bigint NOT NULL,
    -- The runner that holds the projection's lease; checkpoint writes of a runner that lost it
    -- match no row and roll back.
    lease_token uuid,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Appends a batch in one statement (one round trip).
--
-- w_*: one entry per written stream, in request order; expected: -1 any, -2 stream exists,
-- n >= 0 exactly version n (0 = no stream). e_*: one entry per event, in request order, e_w the
-- 1-based index of its write.
--
-- Returns one row per event written (status 0), or, when the ids are already stored, one row
-- per stored event (status 1, the original commit), or one row describing why nothing was
-- written: status 2 conflict (r_stream, r_version = actual), status 3 id reused (r_id, r_stream
-- = stored stream, r_reason), status 4 the horizon's xid does not fit a position.
--
-- p_check_ids: look the event ids up first. Callers pass false, and true again after a
-- unique violation on events_event_id (the batch, or part of it, is already stored).
CREATE FUNCTION append_events(
    w_streams text[],
    w_expected bigint[],
    e_w integer[],
    e_ids uuid[],
    e_types text[],
    e_schema bigint[],
    e_payloads bytea[],
    e_meta jsonb[],
    p_check_ids boolean
) RETURNS TABLE (
    status smallint,
    r_stream text,
    r_version bigint,
    r_commit bigint,
    r_seq bigint,
    r_recorded timestamptz,
    r_id uuid,
    r_reason text
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- The statements' shapes do not depend on the values; re-planning them on every call (custom
-- plans) cost about 40% of the function's time.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n_found integer := 0;
    v_conflict integer;
    n_total integer := cardinality(e_ids);
    v_commit bigint;
    v_xid bigint;
    v_now timestamptz := now();
    v_versions bigint[];
    v_last_at timestamptz[];
BEGIN
    -- Lock the written streams in one fixed order (by lock key), so two multi-stream appends
    -- never wait on each other in a cycle. Transaction-scoped advisory locks need no row, so a
    -- stream that does not exist yet is serialised too: racing `Any` appends never meet a
    -- unique violation.
    PERFORM pg_advisory_xact_lock(k)
    FROM (
        SELECT DISTINCT hashtextextended(current_schema() || '/' || s, 7) AS k
        FROM unnest(w_streams) AS s
        ORDER BY 1
    ) AS keys;

    -- Each stream's current version and last recorded-at time, read under its lock.
    SELECT array_agg(coalesce(cur.version, 0) ORDER BY w.ord),
           array_agg(cur.recorded_at ORDER BY w.ord)
    INTO v_versions, v_last_at
    FROM unnest(w_streams) WITH ORDINALITY AS w (s, ord)
    LEFT JOIN LATERAL (
        SELECT e.version, e.recorded_at FROM events e
        WHERE e.stream_id = w.s ORDER BY e.version DESC LIMIT 1
    ) AS cur ON true;

    -- Optimistic concurrency: every stream must be at its expected version.
    FOR i IN 1 .. cardinality(w_streams) LOOP
        IF (w_expected[i] = -2 AND v_versions[i] = 0)
           OR (w_expected[i] >= 0 AND v_versions[i] <> w_expected[i]) THEN
            v_conflict := i;
            EXIT;
        END IF;
    END LOOP;

    -- Idempotency, checked under the stream locks (a concurrent append of the same events to
    -- the same streams has committed by now: each statement takes a new snapshot), and only
    -- when it can matter: when asked (the caller's first attempt met the event_id unique
    -- index), or before reporting a conflict (a retried append must get its first commit,
    -- not a conflict). Otherwise the unique index is the check, at no extra cost.
    -- Each id is a LIMIT 1 lateral probe of the event_id index: a plain `= ANY(array)` or an
    -- EXISTS (pulled up into a semi-join) lets the planner scan the whole log.
    IF p_check_ids OR v_conflict IS NOT NULL THEN
        SELECT count(*) INTO n_found FROM unnest(e_ids) AS u (id)
        CROSS JOIN LATERAL (SELECT 1 FROM events e WHERE e.event_id = u.id LIMIT 1) AS x;
    END IF;
    IF n_found > 0 THEN
        RETURN QUERY
        WITH input AS (
            SELECT i.id, w_streams[i.w] AS stream, i.ty, i.sv, i.p
            FROM unnest(e_w, e_ids, e_types, e_schema, e_payloads) AS i (w, id, ty, sv, p)
        )
        SELECT 3::smallint, e.stream_id, e.version, e.commit_id, e.seq, e.recorded_at, e.event_id,
               CASE WHEN e.stream_id <> i.stream THEN 'it is stored on another stream'
                    ELSE 'its type, schema version or payload differ' END
        FROM input i
        CROSS JOIN LATERAL (SELECT * FROM events x WHERE x.event_id = i.id LIMIT 1) AS e
        WHERE e.stream_id <> i.stream OR e.event_type <> i.ty
           OR e.schema_version <> i.sv OR e.payload <> i.p
        LIMIT 1;
        IF FOUND THEN RETURN; END IF;
        IF n_found < n_total THEN
            RETURN QUERY
            SELECT 3::smallint, e.stream_id, e.version, e.commit_id, e.seq, e.recorded_at,
                   e.event_id, 'the append repeats only some events of an earlier one'::text
            FROM unnest(e_ids) AS u (id)
            CROSS JOIN LATERAL (SELECT * FROM events x WHERE x.event_id = u.id LIMIT 1) AS e
            ORDER BY e.commit_id, e.seq LIMIT 1;
            RETURN;
        END IF;
        RETURN QUERY
        SELECT 1::smallint, e.stream_id, e.version, e.commit_id, e.seq, e.recorded_at, e.event_id,
               NULL::text
        FROM unnest(e_ids) AS u (id)
        CROSS JOIN LATERAL (SELECT * FROM events x WHERE x.event_id = u.id LIMIT 1) AS e
        ORDER BY e.commit_id, e.seq;
        RETURN;
    END IF;
    IF v_conflict IS NOT NULL THEN
        RETURN QUERY SELECT 2::smallint, w_streams[v_conflict], v_versions[v_conflict],
            NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::uuid, NULL::text;
        RETURN;
    END IF;

    -- The position's commit part: this transaction's xid8 under the current era.
    v_xid := pg_current_xact_id()::text::bigint;
    IF v_xid >= (1::bigint << 48) THEN
        RETURN QUERY SELECT 4::smallint, NULL::text, NULL::bigint, v_xid, NULL::bigint,
            NULL::timestamptz, NULL::uuid, 'xid8 exceeds 2^48'::text;
        RETURN;
    END IF;
    SELECT (m.era << 48) | v_xid INTO v_commit FROM store_meta m;

    -- One multi-row insert in request order: the identity hands out increasing sequences
    -- in that order, and each stream's versions continue from its current one.
    RETURN QUERY
    WITH input AS (
        SELECT i.ord, w_streams[i.w] AS s,
               v_versions[i.w] + row_number() OVER (PARTITION BY i.w ORDER BY i.ord) AS version,
               i.id, i.ty, i.sv, i.p, i.m,
               greatest(v_now, coalesce(v_last_at[i.w], v_now)) AS at
        FROM unnest(e_w, e_ids, e_types, e_schema, e_payloads, e_meta) WITH ORDINALITY
             AS i (w, id, ty, sv, p, m, ord)
    ),
    ins AS (
        INSERT INTO events (commit_id, stream_id, version, event_id, event_type, schema_version,
                            payload, metadata, recorded_at)
        SELECT v_commit, i.s, i.version, i.id, i.ty, i.sv, i.p, i.m, i.at
        FROM input i
        ORDER BY i.ord
        RETURNING events.stream_id, events.version, events.commit_id, events.seq,
                  events.recorded_at, events.event_id
    )
    SELECT 0::smallint, ins.stream_id, ins.version, ins.commit_id, ins.seq, ins.recorded_at,
           ins.event_id, NULL::text
    FROM ins
    ORDER BY ins.seq;
END;
$$;
