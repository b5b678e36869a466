-- Group commit with a bound on lock waits: `append_group_within` is `append_group` (migrations
-- 0009, 0010) called with `lock_timeout` set to `lock_wait` for the rest of the statement's
-- own transaction (the store runs a group as one statement, outside any transaction block).
-- A group waits for a lock when a member meets a row another transaction has inserted and not
-- yet committed (a writer of the same stream and version, or of the same event id): without
-- the bound, every other member of the group would wait as long as that one. With it, a wait
-- longer than `lock_wait` fails the statement (55P03, nothing written), and the store then
-- tries each member again on its own, as after any failed group: the one that waits, waits
-- alone. `append_group` itself is left as it is, for binaries that call it.
CREATE FUNCTION append_group_within(
    lock_wait text,
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
AS $$
BEGIN
    PERFORM set_config('lock_timeout', lock_wait, true);
    RETURN QUERY SELECT * FROM append_group(m_streams, m_expected, m_counts, e_m, e_ids,
                                            e_types, e_schema, e_payloads, e_meta);
END;
$$;
