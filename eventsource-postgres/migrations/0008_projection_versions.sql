-- Versions of a projection (blue/green rebuilds): which version readers are pointed at, a
-- switch under way, and the seal that keeps a version's checkpoint where it is while it is
-- switched away from (see `eventsource_core::store::versions`).
--
-- A projection with no row here serves version 1 (its checkpoint is named as before). A
-- switch to version `switching_to` has sealed the serving version's checkpoint at
-- (switch_commit_id, switch_seq); it ends with `serving` moved to it, or aborted.
CREATE TABLE projection_versions (
    name text PRIMARY KEY,
    serving integer NOT NULL CHECK (serving > 0),
    switching_to integer CHECK (switching_to > serving),
    switch_commit_id bigint,
    switch_seq bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((switching_to IS NULL) = (switch_commit_id IS NULL)
       AND (switch_commit_id IS NULL) = (switch_seq IS NULL))
);

-- A sealed checkpoint is never saved: every save (each sets `updated_at`) or move of it
-- fails with SQLSTATE ES001 (the checkpoint's name in the error's detail), whatever wrote it:
-- the store's own saves, a transactional runner's fenced commit (its batch rolls back, with
-- a dead-letter retry's writes), or a store of an earlier version, which knows nothing of
-- seals. Taking a lease on it still works (neither the position nor `updated_at` changes),
-- and the seal itself is set and lifted by an update that changes it.
ALTER TABLE checkpoints ADD COLUMN sealed boolean NOT NULL DEFAULT false;

CREATE FUNCTION refuse_sealed_checkpoint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'ES001',
        MESSAGE = format('checkpoint %s is sealed: its version of the projection is switched away from', OLD.name),
        DETAIL = OLD.name;
END
$$;

-- The condition is the trigger's own, so the function runs only for a save of a sealed
-- checkpoint: other checkpoint saves pay for no call.
CREATE TRIGGER checkpoints_sealed BEFORE UPDATE ON checkpoints
FOR EACH ROW
WHEN (OLD.sealed AND NEW.sealed
      AND ((NEW.commit_id, NEW.seq) IS DISTINCT FROM (OLD.commit_id, OLD.seq)
           OR NEW.updated_at IS DISTINCT FROM OLD.updated_at))
EXECUTE FUNCTION refuse_sealed_checkpoint();
