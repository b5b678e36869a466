//! The store conformance suite, run against the embedded in-memory store.

eventsource_core::conformance_tests!(|| async { eventsource_core::InMemoryStore::new() });
