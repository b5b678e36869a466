//! An append request as the statements' parameters: the arrays `append_events` and the batch
//! statement bind, built once and only when needed.

use eventsource_core::{ExpectedVersion, NewEvent, StoreError, StreamWrite};
use uuid::Uuid;

use crate::rows::to_i64;

/// The request as the arrays `append_events` and the batch statement take, borrowed from the
/// request (no payload is copied).
struct AppendParams<'a> {
    streams: Vec<&'a str>,
    expected: Vec<i64>,
    write_of: Vec<i32>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i64>,
    payloads: Vec<&'a [u8]>,
    metadata: Vec<Option<String>>,
}

impl<'a> AppendParams<'a> {
    /// Binds the per-event arrays, in the order both statements take them next: ids, types,
    /// schema versions, payloads, metadata.
    fn bind_events<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q>
    where
        'a: 'q,
    {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.schema_versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
    }
}

/// A statement with its arguments being bound.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn expected_code(e: ExpectedVersion) -> i64 {
    match e {
        ExpectedVersion::Any => -1,
        ExpectedVersion::StreamExists => -2,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(v) => to_i64(v.get()),
    }
}

/// An event's metadata as the JSON text its column takes (`None` when empty).
pub(super) fn metadata_json(e: &NewEvent) -> Result<Option<String>, StoreError> {
    if e.metadata.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&e.metadata).map(Some).map_err(|err| {
        StoreError::InvalidRequest(format!("event {}: metadata cannot be encoded: {err}", e.id))
    })
}

impl<'a> AppendParams<'a> {
    fn new(writes: &'a [StreamWrite]) -> Result<Self, StoreError> {
        let n: usize = writes.iter().map(|w| w.events.len()).sum();
        let mut p = AppendParams {
            streams: Vec::with_capacity(writes.len()),
            expected: Vec::with_capacity(writes.len()),
            write_of: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
        };
        for (i, w) in writes.iter().enumerate() {
            p.streams.push(w.stream.as_str());
            p.expected.push(expected_code(w.expected));
            let index = i32::try_from(i + 1)
                .map_err(|_| StoreError::InvalidRequest("too many streams in one append".into()))?;
            for e in &w.events {
                p.write_of.push(index);
                p.ids.push(*e.id.as_uuid());
                p.types.push(&e.event_type);
                p.schema_versions.push(i64::from(e.schema_version));
                p.payloads.push(&e.payload);
                p.metadata.push(metadata_json(e)?);
            }
        }
        Ok(p)
    }
}

/// An append request, with its arrays built on first use: a single-event append at an exact
/// version (every repository command) binds scalars and never needs them.
pub(super) struct Request<'a> {
    pub(super) writes: &'a [StreamWrite],
    params: std::sync::OnceLock<AppendParams<'a>>,
}

impl<'a> Request<'a> {
    pub(super) fn new(writes: &'a [StreamWrite]) -> Self {
        Self {
            writes,
            params: std::sync::OnceLock::new(),
        }
    }

    /// The arrays, built on the first call.
    fn params(&self) -> Result<&AppendParams<'a>, StoreError> {
        if let Some(p) = self.params.get() {
            return Ok(p);
        }
        let built = AppendParams::new(self.writes)?;
        Ok(self.params.get_or_init(|| built))
    }

    /// `append_events` (`sql`: `Sql::append`) with the request bound; `check_ids`: look the
    /// event ids up first.
    pub(super) fn locked_query<'q>(
        &'q self,
        sql: &'q str,
        check_ids: bool,
    ) -> Result<PgQuery<'q>, StoreError> {
        let p = self.params()?;
        let query = sqlx::query(sql)
            .bind(&p.streams)
            .bind(&p.expected)
            .bind(&p.write_of);
        Ok(p.bind_events(query).bind(check_ids))
    }

    /// The direct batch statement (`sql`: `Sql::append_batch`) for the request's one write,
    /// `write`, at `expected`.
    pub(super) fn batch_query<'q>(
        &'q self,
        sql: &'q str,
        write: &'q StreamWrite,
        expected: i64,
    ) -> Result<PgQuery<'q>, StoreError> {
        let p = self.params()?;
        let query = sqlx::query(sql).bind(write.stream.as_str()).bind(expected);
        Ok(p.bind_events(query))
    }
}
