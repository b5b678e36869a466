-- Group commit (`PgStoreBuilder::group_commit`): appends to different streams share one
-- statement and one commit. Each member's rows are inserted with ON CONFLICT DO NOTHING, so a
-- member that lost a race on its version or met a stored event id writes nothing and raises
-- nothing: only that member is then tried again, on its own. A member of several events could
-- lose the race for some of them and not others; the statement calls this function then, and
-- its error rolls the whole group back (every member is tried again on its own): no append is
-- ever written in part.
CREATE FUNCTION append_group_split(p_stream text) RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'a grouped append to stream % was written in part', p_stream
        USING ERRCODE = 'ES002';
END;
$$;
