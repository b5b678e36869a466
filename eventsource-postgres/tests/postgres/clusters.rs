//! Tests that need a PostgreSQL cluster of their own, started from the machine's binaries by
//! `scripts/pg-cluster` (a failure to start one fails the test):
//! - a real dump and restore into another cluster: `pg_dump` of a store's schema on the test
//!   server, restored with `psql` into a cluster whose transaction ids are far behind the
//!   ones stored;
//! - a prepared (two-phase) transaction holding the horizon, which needs
//!   `max_prepared_transactions` (0 by default);
//! - a cluster whose transaction ids no longer fit a position (`pg_resetwal -e`).

use std::process::Command;

use std::time::Duration;

use eventsource_core::{EventStore, ExpectedVersion, Position, subscribe};
use eventsource_postgres::PgStore;
use futures::StreamExt;
use sqlx::Connection;

use crate::common::cluster::{Cluster, run, script};
use crate::common::{self, event, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dump_restored_into_a_younger_cluster_keeps_positions_rising() {
    let _horizon = crate::common::horizon_shared().await;
    let source = common::fresh_store().await;
    let schema = source.schema().as_str().to_owned();
    // A fresh cluster starts near xid 750: make sure the stored positions are well past it
    // (on a long-lived test server they are already).
    let mut conn = common::raw().await;
    loop {
        let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if xid > 5_000 {
            break;
        }
    }
    let mut old = Vec::new();
    for i in 0..5 {
        let commit = source
            .append(vec![write("s", ExpectedVersion::Any, vec![event(i)])])
            .await
            .unwrap();
        old.push(commit.position);
    }
    source.save_checkpoint("p", old[4]).await.unwrap();

    let dump = std::env::temp_dir().join(format!("es-dump-{:08x}.sql", fastrand::u32(..)));
    let pg_dump = run(Command::new(script()).args(["bin", "pg_dump"]));
    let psql = run(Command::new(script()).args(["bin", "psql"]));
    run(Command::new(&pg_dump)
        .args(["--no-owner", "--schema", &schema, "--file"])
        .arg(&dump)
        .arg(common::database_url()));
    let cluster = Cluster::start("");
    run(Command::new(&psql)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&dump)
        .arg(&cluster.url));
    let _ = std::fs::remove_file(&dump);

    let restored = PgStore::builder()
        .schema(&schema)
        .connect(&cluster.url)
        .await
        .unwrap();
    let era: i64 = sqlx::query_scalar(&format!("SELECT era FROM \"{schema}\".store_meta"))
        .fetch_one(restored.pool())
        .await
        .unwrap();
    assert_eq!(era, 1, "the store moved to a new era on start");
    let new = restored
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(5u64.into()),
            vec![event(5)],
        )])
        .await
        .unwrap();
    assert!(new.position > old[4], "{new:?} after {old:?}");

    // A reader that had checkpointed before the dump gets exactly the new event.
    let from = restored.load_checkpoint("p").await.unwrap().unwrap();
    assert_eq!(from, old[4]);
    let page = restored.read_all(from, 10, None).await.unwrap();
    let positions: Vec<Position> = page.events.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![new.position]);
    // And the whole log reads in order: the old events, then the new era's.
    let all = restored.read_all(Position::ZERO, 10, None).await.unwrap();
    let versions: Vec<u64> = all.events.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    restored.pool().close().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prepared_transaction_holds_the_horizon_is_reported_and_loses_nothing() {
    let cluster = Cluster::start("-c max_prepared_transactions=4");
    let store = PgStore::builder()
        .schema("es_prepared")
        .connect(&cluster.url)
        .await
        .unwrap();
    // A two-phase transaction that wrote something (so it has an xid), prepared and left
    // open: it outlives its session.
    let mut other = sqlx::PgConnection::connect(&cluster.url).await.unwrap();
    sqlx::query("CREATE TABLE side (n int)")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("INSERT INTO side VALUES (1)")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query("PREPARE TRANSACTION 'es-held'")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.unwrap();

    let mut ids = Vec::new();
    for i in 0..5 {
        let e = event(i);
        ids.push(e.id);
        store
            .append(vec![write("s", ExpectedVersion::Any, vec![e])])
            .await
            .unwrap();
    }
    // Another "process": no read-your-writes wait of its own.
    let reader = PgStore::builder()
        .schema("es_prepared")
        .connect(&cluster.url)
        .await
        .unwrap();
    let mut sub = subscribe(reader.clone(), Position::ZERO, 100);
    let early = tokio::time::timeout(Duration::from_millis(400), sub.next()).await;
    assert!(early.is_err(), "nothing passes the prepared transaction");
    let lag = reader.lag().await.unwrap();
    assert_eq!(lag.events_behind, 5, "{lag:?}");
    let prepared = lag
        .prepared
        .iter()
        .find(|p| p.gid == "es-held")
        .expect("the prepared transaction is reported");
    assert_eq!(prepared.database.as_deref(), Some("postgres"), "{lag:?}");

    let mut admin = sqlx::PgConnection::connect(&cluster.url).await.unwrap();
    sqlx::query("COMMIT PREPARED 'es-held'")
        .execute(&mut admin)
        .await
        .unwrap();
    let seen = common::next_ids(
        &mut sub,
        ids.len(),
        "delivered once the prepared transaction ends",
    )
    .await;
    assert_eq!(seen, ids, "all of them, in order, once");
    assert!(reader.lag().await.unwrap().prepared.is_empty());
    drop(sub);
    for s in [store, reader] {
        s.pool().close().await;
    }
    drop(cluster);
}

/// A position holds 48 bits of the transaction id: a cluster past 2^48 (here by its xid
/// epoch; in life after ~2.8e14 transactions) is refused on start with a clear error, never
/// given positions that would fold into the era's bits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_whose_xids_exceed_48_bits_is_refused_with_a_config_error() {
    let cluster = Cluster::start_with(Command::new(script()).env("ES_TEST_PG_XID_EPOCH", "65536"));
    let mut conn = sqlx::PgConnection::connect(&cluster.url).await.unwrap();
    let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(xid >= 1 << 48, "the epoch was set: xid8 {xid}");
    match PgStore::builder().schema("far").connect(&cluster.url).await {
        Err(eventsource_core::StoreError::Config(reason)) => {
            assert!(reason.contains("2^48"), "{reason}");
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    drop(conn);
    drop(cluster);
}
