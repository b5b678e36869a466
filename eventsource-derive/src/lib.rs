//! Derive macros for eventsource (filled by the derive work).
