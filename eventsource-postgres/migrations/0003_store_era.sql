-- The era as a constant: `store_era()` returns `store_meta.era`, written into its body, so the
-- planner folds it into the one-event append statement (an immutable SQL function is inlined)
-- instead of that statement reading `store_meta` on every append (measured: reading the
-- one-row table cost a one-event append ~20-35 microseconds of server CPU, the largest part
-- of what it cost beyond a bare insert).
--
-- `store_meta.era` stays the record. Whoever changes it replaces this function in the same
-- transaction (the store's era check on start does, and also repairs a mismatch); replacing
-- it invalidates every session's cached plans that inlined it.
DO $$
BEGIN
    EXECUTE format(
        'CREATE FUNCTION store_era() RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %L',
        'SELECT ' || (SELECT m.era FROM store_meta m) || '::bigint');
END
$$;
