//! A database of a test's own on the test server, for faults that reach a whole database
//! (ending every session of it) without touching the other tests'.

use sqlx::{Connection, PgConnection};

/// A fresh database (`es_db_<unix seconds>_<random>`), dropped when this is dropped.
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Database {
    pub async fn create() -> Self {
        let mut conn = super::raw().await;
        drop_stale(&mut conn).await;
        let name = format!(
            "es_db_{}_{:08x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            fastrand::u32(..)
        );
        // The name is made of ASCII letters, digits and `_` above: quoting is complete.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = super::database_url();
        let (server, query) = match base.split_once('?') {
            Some((server, query)) => (server.to_owned(), format!("?{query}")),
            None => (base.clone(), String::new()),
        };
        let server = server.rsplit_once('/').map_or(server.as_str(), |(s, _)| s);
        let url = format!("{server}/{name}{query}");
        Self { name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A drop cannot await: a thread of its own, with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&super::database_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// Drops test databases older than an hour (left by runs that were killed).
async fn drop_stale(conn: &mut PgConnection) {
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(3600);
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname ~ '^es_db_[0-9]+_'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for name in names {
        let stamp = name
            .trim_start_matches("es_db_")
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if stamp.is_some_and(|s| s < cutoff) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}
