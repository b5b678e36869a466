//! PostgreSQL event store for eventsource.
