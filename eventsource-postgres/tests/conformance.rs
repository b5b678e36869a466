//! The core's store conformance suite, unchanged, against PostgreSQL: every case gets a store

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! in a fresh schema.

mod common;

eventsource_core::conformance_tests!(common::fresh_store);
