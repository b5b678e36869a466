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

-- The current version of each stream, and the recorded-at time of its last event (kept so
-- recorded_at never decreases within a stream).
CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0),
    last_recorded_at timestamptz NOT NULL
);

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
CREATE FUNCTION append_events(
    w_streams text[],
    w_expected bigint[],
    e_w integer[],
    e_ids uuid[],
    e_types text[],
    e_schema bigint[],
    e_payloads bytea[],
    e_meta jsonb[]
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
AS $$
DECLARE
    n_found integer;
    n_total integer := cardinality(e_ids);
    v_commit bigint;
    v_xid bigint;
    v_now timestamptz := now();
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

    -- Idempotency, checked under the stream locks: a concurrent append of the same events to
    -- the same streams has committed by now (each statement here takes a new snapshot).
    SELECT count(*) INTO n_found FROM events e WHERE e.event_id = ANY (e_ids);
    IF n_found > 0 THEN
        RETURN QUERY
        WITH input AS (
            SELECT i.id, w_streams[i.w] AS stream, i.ty, i.sv, i.p
            FROM unnest(e_w, e_ids, e_types, e_schema, e_payloads) AS i (w, id, ty, sv, p)
        )
        SELECT 3::smallint, e.stream_id, e.version, e.commit_id, e.seq, e.recorded_at, e.event_id,
               CASE WHEN e.stream_id <> i.stream THEN 'it is stored on another stream'
                    ELSE 'its type, schema version or payload differ' END
        FROM input i JOIN events e ON e.event_id = i.id
        WHERE e.stream_id <> i.stream OR e.event_type <> i.ty
           OR e.schema_version <> i.sv OR e.payload <> i.p
        LIMIT 1;
        IF FOUND THEN RETURN; END IF;
        IF n_found < n_total THEN
            RETURN QUERY
            SELECT 3::smallint, e.stream_id, e.version, e.commit_id, e.seq, e.recorded_at,
                   e.event_id, 'the append repeats only some events of an earlier one'::text
            FROM events e WHERE e.event_id = ANY (e_ids)
            ORDER BY e.commit_id, e.seq LIMIT 1;
            RETURN;
        END IF;
        RETURN QUERY
        SELECT 1::smallint, e.stream_id, e.version, e.commit_id, e.seq, e.recorded_at, e.event_id,
               NULL::text
        FROM events e WHERE e.event_id = ANY (e_ids)
        ORDER BY e.commit_id, e.seq;
        RETURN;
    END IF;

    -- Optimistic concurrency: every stream must be at its expected version.
    RETURN QUERY
    SELECT 2::smallint, w.s, coalesce(st.version, 0), NULL::bigint, NULL::bigint,
           NULL::timestamptz, NULL::uuid, NULL::text
    FROM unnest(w_streams, w_expected) WITH ORDINALITY AS w (s, x, ord)
    LEFT JOIN streams st ON st.stream_id = w.s
    WHERE (w.x = -2 AND coalesce(st.version, 0) = 0)
       OR (w.x >= 0 AND coalesce(st.version, 0) <> w.x)
    ORDER BY w.ord
    LIMIT 1;
    IF FOUND THEN RETURN; END IF;

    -- The position's commit part: this transaction's xid8 under the current era.
    v_xid := pg_current_xact_id()::text::bigint;
    IF v_xid >= (1::bigint << 48) THEN
        RETURN QUERY SELECT 4::smallint, NULL::text, NULL::bigint, v_xid, NULL::bigint,
            NULL::timestamptz, NULL::uuid, 'xid8 exceeds 2^48'::text;
        RETURN;
    END IF;
    SELECT (m.era << 48) | v_xid INTO v_commit FROM store_meta m;

    RETURN QUERY
    WITH base AS (
        SELECT w.ord::integer AS w, w.s, coalesce(st.version, 0) AS version,
               greatest(v_now, coalesce(st.last_recorded_at, v_now)) AS at
        FROM unnest(w_streams) WITH ORDINALITY AS w (s, ord)
        LEFT JOIN streams st ON st.stream_id = w.s
    ),
    input AS (
        SELECT i.ord, b.s, b.version + row_number() OVER (PARTITION BY i.w ORDER BY i.ord) AS version,
               i.id, i.ty, i.sv, i.p, i.m, b.at
        FROM unnest(e_w, e_ids, e_types, e_schema, e_payloads, e_meta) WITH ORDINALITY
             AS i (w, id, ty, sv, p, m, ord)
        JOIN base b ON b.w = i.w
    ),
    ins AS (
        INSERT INTO events (commit_id, stream_id, version, event_id, event_type, schema_version,
                            payload, metadata, recorded_at)
        SELECT v_commit, i.s, i.version, i.id, i.ty, i.sv, i.p, i.m, i.at
        FROM input i
        ORDER BY i.ord
        RETURNING events.stream_id, events.version, events.commit_id, events.seq,
                  events.recorded_at, events.event_id
    ),
    upd AS (
        INSERT INTO streams (stream_id, version, last_recorded_at)
        SELECT b.s, b.version + c.n, b.at
        FROM base b
        JOIN (SELECT u.w, count(*) AS n FROM unnest(e_w) AS u (w) GROUP BY u.w) AS c ON c.w = b.w
        ON CONFLICT (stream_id) DO UPDATE
            SET version = excluded.version, last_recorded_at = excluded.last_recorded_at
    )
    SELECT 0::smallint, ins.stream_id, ins.version, ins.commit_id, ins.seq, ins.recorded_at,
           ins.event_id, NULL::text
    FROM ins
    ORDER BY ins.seq;
END;
$$;
