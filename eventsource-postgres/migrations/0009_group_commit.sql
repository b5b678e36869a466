-- Group commit (`PgStoreBuilder::group_commit`): the direct appends of several members, each to
-- its own stream at an exact version, in one statement and one commit.
--
-- m_*: one entry per member, in order: its stream, expected version (0 = no stream) and number
-- of events. e_*: one entry per event, members in order, e_m the 1-based index of its member.
--
-- Returns one row per member, in order: the stream's version before, how many events were
-- written, the commit, the sequences in version order and the recorded-at time (NULLs when
-- nothing was written), whether an event id is stored (asked only of a member that was not at
-- its version), and whether the stream's writers' lock kept it out.
--
-- Only members at their expected version are inserted, in (stream, version) order: every group
-- takes its rows in that order, so two groups never wait on each other in a cycle. ON CONFLICT
-- DO NOTHING turns a lost race (a writer that committed the version after this statement's
-- snapshot) or a stored id into a member that wrote nothing, not an error that fails all: the
-- store tries that member again on its own. A member of several events could lose the race
-- for some of them and not others; `append_group_split` then raises, and its error rolls the
-- whole group back (each member is tried again on its own): no append is written in part.
--
-- A function for its cached generic plan: the same statement sent with arrays bound is planned
-- anew on every call (a custom plan), which cost more than a small group's rows.
CREATE FUNCTION append_group_split(p_stream text) RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'a grouped append to stream % was written in part', p_stream
        USING ERRCODE = 'ES002';
END;
$$;

CREATE FUNCTION append_group(
    m_streams text[],
    m_expected bigint[],
    m_counts bigint[],
    e_m bigint[],
    e_ids uuid[],
    e_types text[],
    e_schema bigint[],
    e_payloads bytea[],
    e_meta jsonb[]
) RETURNS TABLE (
    r_actual bigint,
    r_written bigint,
    r_commit bigint,
    r_seqs bigint[],
    r_recorded timestamptz,
    r_stored boolean,
    r_locked boolean,
    r_split boolean
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH m AS MATERIALIZED (
        SELECT mm.ord, mm.s, mm.x, mm.n, coalesce(c.version, 0) AS cur, c.recorded_at AS last_at,
               pg_try_advisory_xact_lock_shared(
                   hashtextextended(current_schema() || '/' || mm.s, 11)) AS may
        FROM unnest(m_streams, m_expected, m_counts) WITH ORDINALITY AS mm (s, x, n, ord)
        LEFT JOIN LATERAL (
            SELECT e.version, e.recorded_at FROM events e
            WHERE e.stream_id = mm.s ORDER BY e.version DESC LIMIT 1
        ) AS c ON true
    ),
    i AS (
        SELECT ii.w, ii.id, ii.ty, ii.sv, ii.p, ii.md,
               row_number() OVER (PARTITION BY ii.w ORDER BY ii.ord) AS k
        FROM unnest(e_m, e_ids, e_types, e_schema, e_payloads, e_meta) WITH ORDINALITY
             AS ii (w, id, ty, sv, p, md, ord)
    ),
    ins AS (
        INSERT INTO events (commit_id, stream_id, version, event_id, event_type, schema_version,
                            payload, metadata, recorded_at)
        SELECT (SELECT CASE WHEN xx.id < (1::bigint << 48) THEN (store_era() << 48) | xx.id END
                FROM (SELECT pg_current_xact_id()::text::bigint AS id) xx),
               m.s, m.x + i.k, i.id, i.ty, i.sv, i.p, i.md,
               greatest(now(), coalesce(m.last_at, now()))
        FROM i JOIN m ON m.ord = i.w
        WHERE m.cur = m.x AND m.may
        ORDER BY m.s, i.k
        ON CONFLICT DO NOTHING
        RETURNING events.stream_id, events.version, events.commit_id, events.seq,
                  events.recorded_at
    )
    SELECT m.cur, count(ins.seq), min(ins.commit_id),
           array_agg(ins.seq ORDER BY ins.version) FILTER (WHERE ins.seq IS NOT NULL),
           min(ins.recorded_at),
           CASE WHEN count(ins.seq) = 0 AND m.cur <> m.x THEN EXISTS (
               SELECT 1 FROM unnest(e_m, e_ids) AS u (w, id)
               CROSS JOIN LATERAL (SELECT 1 FROM events y WHERE y.event_id = u.id LIMIT 1) z
               WHERE u.w = m.ord) END,
           NOT m.may,
           CASE WHEN count(ins.seq) > 0 AND count(ins.seq) < m.n
                THEN append_group_split(m.s) END
    FROM m LEFT JOIN ins ON ins.stream_id = m.s
    GROUP BY m.ord, m.s, m.x, m.n, m.cur, m.may
    ORDER BY m.ord;
END;
$$;
