-- Group commit (migration 0009), its ids looked up first: `append_group` keeps its signature
-- and its rows, and now asks of every member, before anything is inserted, whether one of its
-- event ids is stored. A member with a stored id (a repeat of an append that committed, or an
-- id reused) is left out of the insert and answered `r_stored`: the store decides it on its
-- own (`append_events`), as it does an ungrouped append. Before, such a member of several events
-- was inserted and, if only some of its ids were stored, rolled its whole group back through
-- `append_group_split` in every group it joined; and a member at its version on a locked stream
-- was answered locked without its ids being looked at.
--
-- Only members at their expected version, not kept out by a writers' lock and with no stored id,
-- are inserted, in (stream, version) order: two groups never wait on each other's rows in a
-- cycle. A group can still wait in a cycle with a multi-stream append (`append_events` inserts
-- in request order) or with a concurrent writer of the same ids; PostgreSQL then ends one of
-- them after `deadlock_timeout` (40P01) and the store tries it again: a delay, never a wrong
-- outcome. ON CONFLICT DO NOTHING turns a lost race (a writer that committed the version after
-- this statement's snapshot) into a member that wrote nothing; `append_group_split` still rolls
-- the group back when a member of several events lost the race for some of them only.
CREATE OR REPLACE FUNCTION append_group(
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
                   hashtextextended(current_schema() || '/' || mm.s, 11)) AS may,
               EXISTS (
                   SELECT 1 FROM unnest(e_m, e_ids) AS u (w, id)
                   CROSS JOIN LATERAL (SELECT 1 FROM events y WHERE y.event_id = u.id LIMIT 1) z
                   WHERE u.w = mm.ord) AS stored
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
        WHERE m.cur = m.x AND m.may AND NOT m.stored
        ORDER BY m.s, i.k
        ON CONFLICT DO NOTHING
        RETURNING events.stream_id, events.version, events.commit_id, events.seq,
                  events.recorded_at
    )
    SELECT m.cur, count(ins.seq), min(ins.commit_id),
           array_agg(ins.seq ORDER BY ins.version) FILTER (WHERE ins.seq IS NOT NULL),
           min(ins.recorded_at),
           m.stored,
           NOT m.may,
           CASE WHEN count(ins.seq) > 0 AND count(ins.seq) < m.n
                THEN append_group_split(m.s) END
    FROM m LEFT JOIN ins ON ins.stream_id = m.s
    GROUP BY m.ord, m.s, m.x, m.n, m.cur, m.may, m.stored
    ORDER BY m.ord;
END;
$$;
