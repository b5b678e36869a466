//! A throwaway PostgreSQL cluster of a test's own, from `scripts/pg-cluster` (a failure to
//! start one fails the test): for what cannot be done to the shared test server (a restart,
//! a restore into a younger cluster).

use std::path::PathBuf;
use std::process::Command;

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-cluster")
}

/// Runs `cmd`, failing the test with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
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
pub struct Cluster {
    pub dir: PathBuf,
    pub url: String,
}

impl Cluster {
    /// Starts a cluster; `settings` are extra server settings (`-c name=value ...`).
    pub fn start(settings: &str) -> Self {
        Self::start_with(Command::new(script()).env("ES_TEST_PG_SETTINGS", settings))
    }

    /// Starts a cluster with `cmd` (the script, with its environment set).
    pub fn start_with(cmd: &mut Command) -> Self {
        let dir = std::env::temp_dir().join(format!("es-cluster-{:08x}", fastrand::u32(..)));
        let url = run(cmd.arg("start").arg(&dir));
        Self { dir, url }
    }
}

impl Cluster {
    /// Restarts the cluster (a fast shutdown: every session ends), on the same port.
    pub fn restart(&self) {
        run(Command::new(script()).arg("restart").arg(&self.dir));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
    }
}
