//! The store conformance suite, run against the embedded in-memory store.

eventsource_core::conformance_tests!(|| async { eventsource_core::InMemoryStore::new() });

/// The same suite through the run-time-chosen adapter: `AnyStore` must not change behaviour.
mod through_any_store {
    eventsource_core::conformance_tests!(|| async {
        eventsource_core::AnyStore::new(eventsource_core::InMemoryStore::new())
    });
}
