//! The compile-time checks: every `tests/ui/<derive>/<mistake>.rs` must fail to compile with
//! the reviewed `.stderr` beside it, and every `tests/ui/pass/*.rs` must build and run.
//!
//! Compiler output changes between Rust releases, so the suite runs on the toolchain the
//! `.stderr` files were written with (`rust-toolchain.toml`). Regenerate them with
//! `TRYBUILD=overwrite cargo test -p eventsource-derive --test ui`, then review the diff.

const PINNED: &str = "1.95.0";

#[test]
fn ui() {
    let version =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
    if !version.starts_with(&format!("rustc {PINNED} ")) {
        // In CI the pinned toolchain is installed (`rust-toolchain.toml`): never skip there.
        assert!(
            std::env::var_os("CI").is_none(),
            "the ui suite needs rustc {PINNED}, CI runs `{}`",
            version.trim()
        );
        eprintln!(
            "skipping the ui suite: its .stderr files are for rustc {PINNED}, this is `{}`",
            version.trim()
        );
        return;
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/event/*.rs");
    t.compile_fail("tests/ui/aggregate/*.rs");
    t.compile_fail("tests/ui/projection/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
