//! Test support (feature `testing`): the store conformance suite and the given/when/then
//! harness for aggregates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod conformance;
pub mod contention;
pub mod fixtures;
pub mod harness;

pub use harness::given;
