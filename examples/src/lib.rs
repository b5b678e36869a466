//! Example domains for eventsource.
