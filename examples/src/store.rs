//! Choosing the event store at run time: PostgreSQL when `DATABASE_URL` is set, the embedded
//! in-memory store otherwise. Both come back as an [`AnyStore`], so the domain code, the
//! repositories and the projections are the same whichever runs underneath.

use eventsource_core::{AnyStore, InMemoryStore, StoreError};
use eventsource_postgres::PgStore;

/// The environment variable that selects PostgreSQL.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// A store and a line saying which one it is.
#[derive(Debug, Clone)]
pub struct ChosenStore {
    /// The store.
    pub store: AnyStore,
    /// What it is, for the user (`"the in-memory store"`, `"PostgreSQL (schema ...)"`).
    pub description: String,
}

/// PostgreSQL at `DATABASE_URL` if it is set (tables in the schema `EVENTSOURCE_SCHEMA`, by
/// default `eventsource`), else a fresh in-memory store.
pub async fn from_env() -> Result<ChosenStore, StoreError> {
    match std::env::var(DATABASE_URL) {
        Ok(url) if !url.is_empty() => {
            let schema =
                std::env::var("EVENTSOURCE_SCHEMA").unwrap_or_else(|_| "eventsource".to_owned());
            postgres(&url, &schema).await
        }
        _ => Ok(in_memory()),
    }
}

/// The embedded in-memory store: nothing to set up, gone when the process ends.
pub fn in_memory() -> ChosenStore {
    ChosenStore {
        store: AnyStore::new(InMemoryStore::new()),
        description: "the embedded in-memory store".to_owned(),
    }
}

/// The PostgreSQL store at `url`, its tables in `schema` (created and migrated if needed).
pub async fn postgres(url: &str, schema: &str) -> Result<ChosenStore, StoreError> {
    let store = PgStore::builder().schema(schema).connect(url).await?;
    Ok(ChosenStore {
        store: AnyStore::new(store),
        description: format!("PostgreSQL (schema `{schema}`)"),
    })
}
