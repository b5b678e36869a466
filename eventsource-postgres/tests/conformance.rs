//! The core's store conformance suite, unchanged, against PostgreSQL: every case gets a store
//! in a fresh schema.

mod common;

eventsource_core::conformance_tests!(common::fresh_store);
