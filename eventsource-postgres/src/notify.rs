//! Wake-ups for live subscribers: a background NOTIFY after appends (never inside an append's
//! transaction) and a LISTEN connection that reconnects with backoff.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{Notify, watch};

use crate::schema::PgSchema;

const BACKOFF_START: Duration = Duration::from_millis(50);
/// The shortest time between two NOTIFYs: appends within it share one (each NOTIFY is a small
/// write transaction with its own commit).
const NOTIFY_EVERY: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The notification channel of a schema (channel names are at most 63 bytes; the schema name
/// is ASCII, so truncation is safe; two schemas sharing a long prefix only get spurious
/// wake-ups).
pub(crate) fn channel_name(schema: &PgSchema) -> String {
    let mut name = format!("eventsource_{}", schema.as_str());
    name.truncate(63);
    name
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(BACKOFF_MAX)
}

/// Sends one NOTIFY per burst of appends: the appends only flag `pending`, so the cost of the
/// notification queue (a lock taken at commit) is paid here, once per burst, and not by every
/// append's commit. It runs on a connection of its own with `synchronous_commit = off`: the
/// NOTIFY's commit then does not wait for a WAL flush (a notification lost in a crash costs
/// one poll interval, nothing else).
pub(crate) async fn notifier(pool: PgPool, channel: String, pending: Arc<Notify>) {
    let mut backoff = BACKOFF_START;
    let mut conn: Option<PgConnection> = None;
    loop {
        pending.notified().await;
        let sent = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => {
                    let mut c = PgConnection::connect_with(&pool.connect_options()).await?;
                    sqlx::query("SET synchronous_commit = off")
                        .execute(&mut c)
                        .await?;
                    conn.insert(c)
                }
            };
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(&channel)
                .execute(c)
                .await
                .map(|_| ())
        }
        .await;
        match sent {
            Ok(()) => {
                backoff = BACKOFF_START;
                tokio::time::sleep(NOTIFY_EVERY).await;
            }
            Err(error) => {
                tracing::warn!(%error, "notify failed; subscribers fall back to polling");
                conn = None;
                // Try again after a pause; the flag stays set so the burst is not forgotten.
                pending.notify_one();
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// Listens on a dedicated connection and bumps `wake` on every notification. A lost connection
/// is re-established with exponential backoff; `wake` is bumped after each loss, since
/// notifications sent meanwhile are gone.
pub(crate) async fn listener(pool: PgPool, channel: String, wake: watch::Sender<u64>) {
    let bump = || wake.send_modify(|n| *n = n.wrapping_add(1));
    let mut backoff = BACKOFF_START;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, ?backoff, "cannot open the LISTEN connection; retrying");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
                continue;
            }
        };
        if let Err(error) = listener.listen(&channel).await {
            tracing::warn!(%error, ?backoff, "LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
            continue;
        }
        bump();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    backoff = BACKOFF_START;
                    bump();
                }
                Ok(None) => {
                    // The connection dropped; the next try_recv reconnects and re-listens.
                    tracing::info!("LISTEN connection lost; reconnecting");
                    bump();
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "LISTEN connection failed; reconnecting");
                    bump();
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                    break;
                }
            }
        }
    }
}
