//! The store's SQL, built once per store with the validated, quoted schema name. Every value
//! is a bound parameter; the schema name is the only thing spliced in.

use crate::schema::PgSchema;

/// The columns of an event row after its stream's, in the order [`crate::rows`] decodes them.
const EVENT_FIELDS: &str = "e.version, e.commit_id, e.seq, e.event_id, e.event_type, \
     e.schema_version, e.payload, e.metadata, e.recorded_at";

/// The horizon: every transaction whose commit part is below it has ended, so every event
/// below it that will ever be visible already is.
fn horizon(s: &str) -> String {
    format!(
        "(SELECT (m.era << 48) | (pg_snapshot_xmin(pg_current_snapshot())::text::bigint) \
         FROM {s}.store_meta m)"
    )
}

/// The seed of the writers' lock's advisory-lock keys: `hashtextextended('<schema>/<stream>',
/// WRITERS_LOCK_SEED)`. The append function (migrations 0005, 0006) uses the same.
pub(crate) const WRITERS_LOCK_SEED: i64 = 11;

/// Whether this transaction may append to the stream `stream` (an SQL expression): true
/// unless another session holds the stream's writers' lock (`EventStore::lock_streams`),
/// or waits for it. A shared, transaction-scoped try-lock: appends never wait on each other
/// for it, the lock's own session always passes, and it is released at commit.
fn may_append(name: &str, stream: &str) -> String {
    format!(
        "pg_try_advisory_xact_lock_shared(hashtextextended('{name}/' || {stream}, {WRITERS_LOCK_SEED}))"
    )
}

/// The direct-path batch append (see `Sql::append_batch`): `select` makes the rows to insert from
/// `{commit}` (the position's commit part, NULL when the xid does not fit 48 bits: a not-null
/// violation, nothing written), `{at}` (the recorded-at time, never before the stream's last
/// one) and `{ok}` (the stream is at the expected version `$2`, and no other session holds its
/// writers' lock: one test, an init plan, not one per row); `stored` says whether any event id
/// is stored. One row comes back: the stream's version before, the number of events written,
/// their commit, their first and last sequence and their recorded-at time (one commit and one
/// time for all of them), or, when nothing was written, 0, NULLs, `stored` and whether the
/// stream's writers' lock kept it out.
///
/// The rows are inserted in version order, and each takes its sequence as it is inserted, so
/// the sequences rise with the versions; only the first and last come back, not one per event
/// (measured: returning and sorting every event's sequence was some 7% of a 1,000-event
/// append's server time). When the sequences are contiguous they are every event's; when a
/// concurrent insert took some in between, the caller that needs each event's position
/// (inline projections) reads them (`Sql::batch_seqs`).
fn direct(s: &str, name: &str, select: &str, stored: &str) -> String {
    let may = may_append(name, "$1");
    let select = select
        .replace(
            "{commit}",
            &format!(
                "(SELECT CASE WHEN x.id < (1::bigint << 48) THEN ({s}.store_era() << 48) | x.id END \
                 FROM (SELECT pg_current_xact_id()::text::bigint AS id) x)"
            ),
        )
        .replace(
            "{at}",
            "greatest(now(), coalesce((SELECT cur.recorded_at FROM cur), now()))",
        )
        .replace(
            "{ok}",
            &format!("(SELECT coalesce((SELECT cur.version FROM cur), 0) = $2 AND {may})"),
        );
    let stored = stored.replace("{s}", s);
    format!(
        "WITH cur AS (SELECT e.version, e.recorded_at FROM {s}.events e WHERE e.stream_id = $1 \
           ORDER BY e.version DESC LIMIT 1), \
         ins AS (INSERT INTO {s}.events (commit_id, stream_id, version, event_id, event_type, \
           schema_version, payload, metadata, recorded_at) {select} \
           RETURNING commit_id, seq, recorded_at) \
         SELECT coalesce((SELECT cur.version FROM cur), 0), count(*), min(ins.commit_id), \
           min(ins.seq), max(ins.seq), min(ins.recorded_at), \
           CASE WHEN count(*) = 0 THEN {stored} END, \
           CASE WHEN count(*) = 0 THEN NOT {may} END \
         FROM ins"
    )
}

/// Prepared statement texts for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) append_one: String,
    pub(crate) append_batch: String,
    pub(crate) batch_seqs: String,
    pub(crate) append_group: String,
    pub(crate) append: String,
    pub(crate) conflict_probe: String,
    pub(crate) read_stream: String,
    pub(crate) read_stream_fold: String,
    pub(crate) read_from_snapshot: String,
    pub(crate) version_at_time: String,
    pub(crate) stream_version: String,
    pub(crate) read_all: String,
    pub(crate) newest_below: String,
    pub(crate) head: String,
    pub(crate) probe: String,
    pub(crate) event_by_id: String,
    pub(crate) save_snapshot: String,
    pub(crate) load_snapshot_version: String,
    pub(crate) load_snapshot_time: String,
    pub(crate) load_checkpoint: String,
    pub(crate) save_checkpoint: String,
    pub(crate) save_checkpoint_fenced: String,
    pub(crate) take_lease: String,
    pub(crate) load_leased_checkpoint: String,
    pub(crate) load_versions: String,
    pub(crate) insert_versions: String,
    pub(crate) lock_versions: String,
    pub(crate) update_versions: String,
    pub(crate) insert_checkpoint_at_zero: String,
    pub(crate) lock_checkpoint: String,
    pub(crate) seal_checkpoint: String,
    pub(crate) lag: String,
    pub(crate) write_dead_letters: String,
    pub(crate) dead_letters: String,
    pub(crate) pending_dead_letters: String,
}

impl Sql {
    pub(crate) fn new(schema: &PgSchema) -> Self {
        let s = schema.quoted();
        let name = schema.as_str();
        let may = may_append(name, "$1");
        let h = horizon(&s);
        let fields = EVENT_FIELDS;
        let cols = format!("e.stream_id, {fields}");
        Self {
            // The direct path: one stream at an exact expected version (`NoStream` is 0),
            // no locks. The rows are inserted only when the stream's last version (read in
            // the same statement) is the expected one, so a conflict writes nothing. A writer
            // that commits the same version after this statement's snapshot makes the insert
            // fail on the primary key: the store then goes to `append_events`.
            //
            // One event (every repository command) is a plain INSERT .. RETURNING with
            // scalar parameters: PostgreSQL plans it once, and its plan has few nodes (each
            // node is set up again on every execution: measured, that set-up was most of
            // what the append cost the server beyond a bare insert) and reads no table but
            // `events` (the era is folded in as a constant: migration 0003). It answers the
            // commit, sequence and recorded-at time of the event, or no row on a conflict;
            // `conflict_probe` then reads the actual version and looks the id up. It also writes
            // nothing while another session holds the stream's writers' lock (`may_append`).
            append_one: format!(
                "INSERT INTO {s}.events (commit_id, stream_id, version, event_id, event_type, \
                   schema_version, payload, metadata, recorded_at) \
                 SELECT CASE WHEN x.id < (1::bigint << 48) THEN ({s}.store_era() << 48) | x.id END, \
                        $1, $2 + 1, $3, $4, $5, $6, $7::text::jsonb, \
                        greatest(now(), c.recorded_at) \
                 FROM (SELECT pg_current_xact_id()::text::bigint AS id) x LEFT JOIN LATERAL \
                   (SELECT e.version, e.recorded_at FROM {s}.events e WHERE e.stream_id = $1 \
                    ORDER BY e.version DESC LIMIT 1) c ON true \
                 WHERE coalesce(c.version, 0) = $2 AND {may} \
                 RETURNING commit_id, seq, recorded_at"
            ),
            // A batch binds arrays (planning is small beside its rows) and answers in one
            // row, conflict included: the stream's version before, the number of events
            // written, their commit, first and last sequence and time, or 0, NULLs and
            // whether any of the ids is stored (see `direct`).
            append_batch: direct(
                &s,
                name,
                "SELECT {commit}, $1, $2 + i.ord, i.id, i.ty, i.sv, i.p, i.m, {at} \
                 FROM unnest($3::uuid[], $4::text[], $5::bigint[], $6::bytea[], \
                   $7::text[]::jsonb[]) WITH ORDINALITY AS i (id, ty, sv, p, m, ord) \
                 WHERE {ok} ORDER BY i.ord",
                "EXISTS (SELECT 1 FROM unnest($3::uuid[]) AS u (id) CROSS JOIN LATERAL \
                   (SELECT 1 FROM {s}.events x WHERE x.event_id = u.id LIMIT 1) y)",
            ),
            // Every sequence of a batch whose sequences are not contiguous (see `direct`), in
            // version order: versions $2 + 1 to $3 of stream $1, read in the append's own
            // transaction.
            batch_seqs: format!(
                "SELECT e.seq FROM {s}.events e WHERE e.stream_id = $1 \
                 AND e.version > $2 AND e.version <= $3 ORDER BY e.version"
            ),
            // Group commit (`append::group`): migration 0009's function (0010's body), one row
            // per member, with its lock waits bounded by `$1` (migration 0011).
            append_group: format!(
                "SELECT r_actual, r_written, r_commit, r_seqs, r_recorded, r_stored, r_locked \
                 FROM {s}.append_group_within($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                   $10::text[]::jsonb[])"
            ),
            // After a one-event direct append wrote nothing, or a direct append lost a race
            // on the primary key: the stream's version, whether any of the event ids is
            // stored (a repeat of a committed append), and whether the stream's writers' lock
            // keeps this session out.
            conflict_probe: format!(
                "SELECT coalesce((SELECT e.version FROM {s}.events e WHERE e.stream_id = $1 \
                   ORDER BY e.version DESC LIMIT 1), 0), \
                 EXISTS (SELECT 1 FROM unnest($2::uuid[]) AS u (id) CROSS JOIN LATERAL \
                   (SELECT 1 FROM {s}.events x WHERE x.event_id = u.id LIMIT 1) y), \
                 NOT {may}"
            ),
            append: format!(
                "SELECT status, r_stream, r_version, r_commit, r_seq, r_recorded, r_id, r_reason \
                 FROM {s}.append_events($1, $2, $3, $4, $5, $6, $7, $8::text[]::jsonb[], $9)"
            ),
            read_stream: format!(
                // The stream is known: its column is not sent back.
                "SELECT {fields} FROM {s}.events e WHERE e.stream_id = $1 \
                 AND e.version >= $2 AND e.version <= $3 ORDER BY e.version"
            ),
            // What a fold needs (`rows::fold_event`): fewer columns, less to send and decode
            // per event (every column costs, even a NULL one).
            read_stream_fold: format!(
                "SELECT e.version, e.commit_id, e.seq, e.event_type, e.schema_version, e.payload \
                 FROM {s}.events e WHERE e.stream_id = $1 \
                 AND e.version >= $2 AND e.version <= $3 ORDER BY e.version"
            ),
            // A load from a snapshot in one round trip: the newest snapshot of stream $1 in
            // schema version $2 at or below version $3, and the stream's events from that
            // snapshot's version on (or from 1), as `read_stream_fold`'s columns. The snapshot
            // rides on the row of the event at its version, as one record (`rows::snapshot_at`;
            // NULL on every other row: one column, one comparison per row, where six columns
            // cost a full replay about a tenth more), so the plan stays `read_stream_fold`'s
            // ordered walk of the primary key, with the snapshot found once (InitPlans), and no
            // join that could make the planner sort the stream. When the stream does not hold
            // that event (a snapshot ahead of its stream), it holds none after it either
            // (versions have no gaps), so the first branch is empty and the second sends the
            // snapshot alone, with NULL event columns.
            read_from_snapshot: format!(
                "WITH snap AS MATERIALIZED ( \
                   SELECT ROW(version, commit_id, seq, event_recorded_at, event_recorded_ns, \
                     payload) AS r, version \
                   FROM {s}.snapshots \
                   WHERE stream_id = $1 AND schema_version = $2 AND version <= $3 AND version > 0 \
                   ORDER BY version DESC LIMIT 1) \
                 (SELECT e.version, e.commit_id, e.seq, e.event_type, e.schema_version, e.payload, \
                   CASE WHEN e.version = (SELECT version FROM snap) THEN (SELECT r FROM snap) END \
                  FROM {s}.events e WHERE e.stream_id = $1 \
                  AND e.version >= COALESCE((SELECT version FROM snap), 1) AND e.version <= $3 \
                  ORDER BY e.version) \
                 UNION ALL \
                 SELECT NULL, NULL, NULL, NULL, NULL, NULL, n.r \
                 FROM snap n WHERE NOT EXISTS \
                   (SELECT 1 FROM {s}.events e WHERE e.stream_id = $1 AND e.version = n.version)"
            ),
            // The last version of stream $1 recorded at or before $2 (0 if none): a binary
            // search over the primary key, which works because a stream's recorded-at never
            // decreases with its version (every append records greatest(now(), the stream's
            // last recorded-at)). Invariant: version `lo` is recorded at or before $2 (or is
            // 0), every version above `hi` after it; each step probes the middle version
            // (about log2(stream length) probes, no index on recorded-at: migration 0004).
            version_at_time: format!(
                "WITH RECURSIVE b(lo, hi) AS ( \
                   SELECT 0::bigint, coalesce((SELECT e.version FROM {s}.events e \
                     WHERE e.stream_id = $1 ORDER BY e.version DESC LIMIT 1), 0) \
                   UNION ALL \
                   SELECT CASE WHEN m.at <= $2 THEN m.mid ELSE b.lo END, \
                          CASE WHEN m.at <= $2 THEN b.hi ELSE m.mid - 1 END \
                   FROM b CROSS JOIN LATERAL (SELECT x.mid, (SELECT e.recorded_at FROM {s}.events e \
                       WHERE e.stream_id = $1 AND e.version = x.mid) AS at \
                     FROM (SELECT (b.lo + b.hi + 1) / 2 AS mid) x) m \
                   WHERE b.lo < b.hi) \
                 SELECT b.lo FROM b WHERE b.lo >= b.hi"
            ),
            stream_version: format!(
                "SELECT e.version FROM {s}.events e WHERE e.stream_id = $1 \
                 ORDER BY e.version DESC LIMIT 1"
            ),
            // A page of the log: the events after ($1, $2) below the horizon, in position
            // order (at most $3; $4: the types, or NULL for all), and one meta row (NULL
            // stream; then the horizon), both from the statement's one snapshot (each `{h}`
            // reads `pg_current_snapshot()`, which is the statement's). Plain SQL planned once
            // (migration 0002's `read_log` function did the same through a tuplestore, at
            // several times the execution cost). PostgreSQL plans it again on every execution
            // (it keeps a custom plan: its generic plan is costed higher), so it reads the
            // events table once: a second scan of it (the newest readable event, for a page
            // filtered by type) doubled the planning time of every page (about 0.3 ms against
            // 0.13 ms, beside 0.6-0.8 ms of execution), so that is now `newest_below`, run
            // only when a filtered page comes back short. Its plan
            // must walk the position index from $1, whatever the statistics: on a table
            // autoanalyze has not reached, `event_type = ANY($4)` is taken to be selective,
            // and the planner then reads *every later event* with a bitmap scan and sorts
            // them, for every page (a catch-up goes quadratic). The type test is therefore a
            // null test on an expression, `CASE WHEN e.event_type = ANY($4) THEN 1 END IS NOT
            // NULL`, which the planner (having no statistics for an expression) takes to keep
            // 99.5% of rows, so the ordered index scan with its limit is always the cheapest
            // plan. (`array_position($4, e.event_type) IS NOT NULL` is estimated alike, but
            // sets up an array iterator for every row: that filter took about a fifth of a
            // page's read time.)
            read_all: format!(
                "(SELECT {cols} FROM {s}.events e \
                  WHERE (e.commit_id, e.seq) > ($1, $2) AND e.commit_id < {h} \
                    AND CASE WHEN $4::text[] IS NULL OR e.event_type = ANY($4::text[]) THEN 1 END IS NOT NULL \
                  ORDER BY e.commit_id, e.seq LIMIT $3) \
                 UNION ALL \
                 SELECT NULL, {h}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
            ),
            // The newest event below horizon $1 (of any type). Every transaction below a
            // horizon has ended, so what lies below it never changes: this needs no common
            // snapshot with the page that reported the horizon.
            newest_below: format!(
                "SELECT e.commit_id, e.seq FROM {s}.events e WHERE e.commit_id < $1 \
                 ORDER BY e.commit_id DESC, e.seq DESC LIMIT 1"
            ),
            head: format!(
                "SELECT h.horizon, e.commit_id, e.seq FROM (SELECT {h} AS horizon) h \
                 LEFT JOIN LATERAL (SELECT e.commit_id, e.seq FROM {s}.events e \
                   WHERE e.commit_id < h.horizon \
                   ORDER BY e.commit_id DESC, e.seq DESC LIMIT 1) e ON true"
            ),
            probe: format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.events e \
                    WHERE (e.commit_id, e.seq) > ($1, $2) AND e.commit_id < {h}), \
                 EXISTS (SELECT 1 FROM {s}.events e WHERE (e.commit_id, e.seq) > ($1, $2))"
            ),
            event_by_id: format!("SELECT {cols} FROM {s}.events e WHERE e.event_id = $1"),
            save_snapshot: format!(
                "INSERT INTO {s}.snapshots (stream_id, version, schema_version, commit_id, seq, \
                   event_recorded_at, event_recorded_ns, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (stream_id, schema_version, version) DO UPDATE SET \
                   commit_id = excluded.commit_id, seq = excluded.seq, \
                   event_recorded_at = excluded.event_recorded_at, \
                   event_recorded_ns = excluded.event_recorded_ns, payload = excluded.payload"
            ),
            load_snapshot_version: format!(
                "SELECT stream_id, schema_version, version, commit_id, seq, event_recorded_at, \
                   event_recorded_ns, payload FROM {s}.snapshots \
                 WHERE stream_id = $1 AND schema_version = $2 AND version <= $3 \
                 ORDER BY version DESC LIMIT 1"
            ),
            load_snapshot_time: format!(
                "SELECT stream_id, schema_version, version, commit_id, seq, event_recorded_at, \
                   event_recorded_ns, payload FROM {s}.snapshots \
                 WHERE stream_id = $1 AND schema_version = $2 \
                   AND (event_recorded_at, event_recorded_ns) <= ($3, $4) \
                 ORDER BY event_recorded_at DESC, event_recorded_ns DESC, version DESC LIMIT 1"
            ),
            load_checkpoint: format!("SELECT commit_id, seq FROM {s}.checkpoints WHERE name = $1"),
            // A checkpoint that moves forward (or stays) commits without waiting for its WAL
            // flush (`synchronous_commit` off for this statement's transaction only): if the
            // server crashes before the flush, the checkpoint is found where it was before,
            // and the events after it are handled again, which the core runner's handlers
            // allow (at least once). One that moves back (a rebuild's reset), or the first
            // one, is as durable as the server's setting makes any commit: losing a reset
            // would skip events.
            save_checkpoint: format!(
                "INSERT INTO {s}.checkpoints (name, commit_id, seq) \
                 SELECT $1, $2, $3 FROM (SELECT set_config('synchronous_commit', \
                   CASE WHEN EXISTS (SELECT 1 FROM {s}.checkpoints c \
                     WHERE c.name = $1 AND (c.commit_id, c.seq) <= ($2, $3)) \
                   THEN 'off' ELSE current_setting('synchronous_commit') END, true)) AS commit_wait \
                 ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, \
                   seq = excluded.seq, updated_at = now()"
            ),
            save_checkpoint_fenced: format!(
                "UPDATE {s}.checkpoints SET commit_id = $2, seq = $3, updated_at = now() \
                 WHERE name = $1 AND lease_token = $4"
            ),
            // The checkpoint, if this runner's lease token is still on it.
            load_leased_checkpoint: format!(
                "SELECT commit_id, seq FROM {s}.checkpoints WHERE name = $1 AND lease_token = $2"
            ),
            // Where projection $1's versions stand (`crate::versions`).
            load_versions: format!(
                "SELECT serving, switching_to, switch_commit_id, switch_seq \
                 FROM {s}.projection_versions WHERE name = $1"
            ),
            insert_versions: format!(
                "INSERT INTO {s}.projection_versions (name, serving) VALUES ($1, 1) \
                 ON CONFLICT (name) DO NOTHING"
            ),
            lock_versions: format!(
                "SELECT serving, switching_to, switch_commit_id, switch_seq \
                 FROM {s}.projection_versions WHERE name = $1 FOR UPDATE"
            ),
            update_versions: format!(
                "UPDATE {s}.projection_versions SET serving = $2, switching_to = $3, \
                   switch_commit_id = $4, switch_seq = $5, updated_at = now() WHERE name = $1"
            ),
            insert_checkpoint_at_zero: format!(
                "INSERT INTO {s}.checkpoints (name, commit_id, seq) VALUES ($1, 0, 0) \
                 ON CONFLICT (name) DO NOTHING"
            ),
            // Waits for a batch of that version committing now, and keeps the next one
            // waiting until the switch's step commits.
            lock_checkpoint: format!(
                "SELECT commit_id, seq FROM {s}.checkpoints WHERE name = $1 FOR UPDATE"
            ),
            seal_checkpoint: format!(
                "UPDATE {s}.checkpoints SET sealed = $2, updated_at = now() WHERE name = $1"
            ),
            take_lease: format!(
                "INSERT INTO {s}.checkpoints (name, commit_id, seq, lease_token) \
                 VALUES ($1, 0, 0, $2) \
                 ON CONFLICT (name) DO UPDATE SET lease_token = excluded.lease_token \
                 RETURNING commit_id, seq"
            ),
            lag: format!(
                "SELECT m.era, pg_snapshot_xmin(pg_current_snapshot()), \
                   pg_snapshot_xmax(pg_current_snapshot()), \
                   (SELECT e.commit_id FROM {s}.events e ORDER BY e.commit_id DESC, e.seq DESC LIMIT 1), \
                   (SELECT e.seq FROM {s}.events e ORDER BY e.commit_id DESC, e.seq DESC LIMIT 1), \
                   (SELECT count(*) FROM {s}.events e \
                      WHERE e.commit_id >= (m.era << 48) | (pg_snapshot_xmin(pg_current_snapshot())::text::bigint)) \
                 FROM {s}.store_meta m"
            ),
            // One call's dead-letter changes of projection $1, in one statement (no
            // transaction to open, one round trip). The caller collapses the changes to one
            // row per event id (`crate::dead_letters`), so no row is touched twice: $2..$9 the
            // events that failed in the call (their position and stream, the last failure's
            // reason and error, how many failures, and the kind of the first resolution after
            // the last failure, or NULL), upserted: a new letter, or one with that many more
            // attempts, pending again or resolved as the call ended; $10, $11 the events only
            // resolved in the call, whose letters are resolved if pending. The two sets are
            // disjoint, so the UPDATE (which sees the table as before the statement) never
            // misses a row the INSERT wrote.
            write_dead_letters: format!(
                "WITH failed AS ( \
                   INSERT INTO {s}.dead_letters AS d (projection, event_id, commit_id, seq, \
                     stream_id, reason, error, attempts, first_failed_at, last_failed_at, \
                     resolution, resolved_at) \
                   SELECT $1, f.event_id, f.commit_id, f.seq, f.stream_id, f.reason, f.error, \
                     f.failures, now(), now(), f.resolution, \
                     CASE WHEN f.resolution IS NOT NULL THEN now() END \
                   FROM unnest($2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
                     $7::text[], $8::integer[], $9::text[]) \
                     AS f (event_id, commit_id, seq, stream_id, reason, error, failures, resolution) \
                   ON CONFLICT (projection, event_id) DO UPDATE SET \
                     attempts = least(d.attempts::bigint + excluded.attempts, 2147483647)::integer, \
                     reason = excluded.reason, error = excluded.error, \
                     last_failed_at = excluded.last_failed_at, \
                     resolution = excluded.resolution, resolved_at = excluded.resolved_at) \
                 UPDATE {s}.dead_letters d SET resolution = r.kind, resolved_at = now() \
                 FROM unnest($10::uuid[], $11::text[]) AS r (event_id, kind) \
                 WHERE d.projection = $1 AND d.event_id = r.event_id AND d.resolution IS NULL"
            ),
            // A page of projection $1's letters after position ($2, $3), at most $4, only of
            // stream $5 unless it is NULL, each with its event (the columns `rows::event`
            // decodes, then the letter's own): walks `dead_letters_position` in order.
            dead_letters: dead_letters(&s, ""),
            // The same, pending letters only: walks the partial index `dead_letters_pending`,
            // past no resolved letter (a statement of its own, as a generic plan could not
            // use the partial index for a parameter that says "pending only").
            pending_dead_letters: dead_letters(&s, "AND d.resolution IS NULL"),
        }
    }
}

/// The listing of dead letters (see `Sql::dead_letters`), with the extra condition `only`.
fn dead_letters(s: &str, only: &str) -> String {
    format!(
        "SELECT e.stream_id, {EVENT_FIELDS}, d.reason, d.error, d.attempts::bigint, \
           d.first_failed_at, d.last_failed_at, d.resolution, d.resolved_at \
         FROM {s}.dead_letters d JOIN {s}.events e ON e.event_id = d.event_id \
         WHERE d.projection = $1 AND (d.commit_id, d.seq) > ($2, $3) {only} \
           AND ($5::text IS NULL OR d.stream_id = $5::text) \
         ORDER BY d.commit_id, d.seq LIMIT $4"
    )
}
