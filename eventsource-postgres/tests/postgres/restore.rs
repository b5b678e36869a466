//! A real dump and restore into another cluster: `pg_dump` of a store's schema on the test
//! server, restored with `psql` into a throwaway cluster started from the machine's binaries
//! (`scripts/pg-cluster`), whose transaction ids are far behind the ones stored.

use std::path::PathBuf;
use std::process::Command;

use eventsource_core::{EventStore, ExpectedVersion, Position};
use eventsource_postgres::PgStore;

use crate::common::{self, event, write};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-cluster")
}

/// Runs `cmd`, failing the test with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The second cluster, stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    url: String,
}

impl Cluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("es-restore-{:08x}", fastrand::u32(..)));
        let url = run(Command::new(script()).arg("start").arg(&dir));
        Self { dir, url }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
    }
}

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
    let cluster = Cluster::start();
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
