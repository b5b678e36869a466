-- An append repeated with the same event ids (a retry after its connection was lost with
-- the commit's answer, or a caller's own retry) gets its first commit even while another
-- session holds the writers' lock of its stream: `append_events` looks the ids up before it
-- answers "locked" (status 5). Under 0005 the repeat was told the stream was locked, and a
-- repository would then have decided and committed the command a second time.
--
-- The function keeps its signature (a store of an earlier version keeps calling it during a
-- rolling upgrade). A function is replaced whole: the rest is as in 0005.
CREATE OR REPLACE FUNCTION append_events(
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
    v_locked text;
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

    -- A stream whose writers' lock another session holds (or waits for) is written by that
    -- session alone: write nothing, and say which stream (status 5, below: a repeat gets its
    -- first commit first). The lock's own session passes. Shared and transaction-scoped, so
    -- appends never wait on each other for it.
    SELECT s INTO v_locked
    FROM unnest(w_streams) AS s
    WHERE NOT pg_try_advisory_xact_lock_shared(hashtextextended(current_schema() || '/' || s, 11))
    LIMIT 1;

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
    -- index), or before reporting a conflict or a locked stream (a retried append must get
    -- its first commit, not a conflict, and not "locked": told that, a repository would decide
    -- and commit the command again). Otherwise the unique index is the check, at no extra cost.
    -- Each id is a LIMIT 1 lateral probe of the event_id index: a plain `= ANY(array)` or an
    -- EXISTS (pulled up into a semi-join) lets the planner scan the whole log.
    IF p_check_ids OR v_conflict IS NOT NULL OR v_locked IS NOT NULL THEN
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
    IF v_locked IS NOT NULL THEN
        RETURN QUERY SELECT 5::smallint, v_locked, NULL::bigint, NULL::bigint, NULL::bigint,
            NULL::timestamptz, NULL::uuid, NULL::text;
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
