-- Dead letters: the events a projection passed by (its handler failed on them, or their
-- stream is parked behind one that failed), one row per (projection, event id), kept until
-- they are retried or discarded. Resolving one records how and when; no row is deleted.
--
-- This only adds a table: a store of an earlier version never reads or writes it, so it keeps
-- working beside this one during a rolling upgrade.
CREATE TABLE dead_letters (
    projection text NOT NULL,
    event_id uuid NOT NULL,
    -- The event's position and stream, copied from the log when the letter is written, so a
    -- listing is ordered, paged and filtered by this table's own index; the event itself is
    -- joined from `events` by its id.
    commit_id bigint NOT NULL,
    seq bigint NOT NULL,
    stream_id text NOT NULL,
    reason text NOT NULL CHECK (reason IN ('failed', 'parked')),
    error text NOT NULL,
    -- 1 when written, one more each time the event fails again.
    attempts integer NOT NULL CHECK (attempts > 0),
    first_failed_at timestamptz NOT NULL,
    last_failed_at timestamptz NOT NULL,
    -- NULL while pending.
    resolution text CHECK (resolution IN ('retried', 'discarded')),
    resolved_at timestamptz,
    PRIMARY KEY (projection, event_id),
    -- A resolution always has its time, and a pending letter none.
    CHECK ((resolution IS NULL) = (resolved_at IS NULL))
);
-- Listing a projection's letters in position order, a page after a position.
CREATE INDEX dead_letters_position ON dead_letters (projection, commit_id, seq);
-- Listing its pending letters (what an operator looks at) without walking the resolved ones,
-- which only accumulate.
CREATE INDEX dead_letters_pending ON dead_letters (projection, commit_id, seq)
    WHERE resolution IS NULL;
