//! The core's store conformance suite, unchanged, against PostgreSQL: every case gets a store

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! in a fresh schema.

mod common;

eventsource_core::conformance_tests!(common::fresh_store);

/// The same suite through the run-time-chosen adapter, as the in-memory store runs it.
mod through_any_store {
    use super::common;

    eventsource_core::conformance_tests!(|| async {
        eventsource_core::AnyStore::new(common::fresh_store().await)
    });
}

/// The same suite on a store whose appends group as soon as one is running
/// (`GroupCommit::new(1)`): the racing cases' appends share statements and commits.
mod with_group_commit {
    use super::common;

    eventsource_core::conformance_tests!(|| async {
        common::builder()
            .group_commit(eventsource_postgres::GroupCommit::new(1))
            .connect(&common::database_url())
            .await
            .unwrap()
    });
}
