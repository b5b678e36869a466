//! Correlation and causation ids for the commands a request issues.
//!
//! Every event records the *correlation id* of the request that led to it (all events of one
//! request share it, even across aggregates) and the *causation id* of the command that wrote
//! it. Following them, a log reader can answer "what did this click cause?".

use eventsource_core::{CommandOptions, Metadata};
use uuid::Uuid;

/// One incoming request (a click, an HTTP call, a scheduled job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The id every event this request causes is recorded with.
    pub correlation_id: Uuid,
}

impl Request {
    /// A new request with a fresh correlation id.
    pub fn new() -> Self {
        Self::with_correlation_id(Uuid::new_v4())
    }

    /// A request continuing a correlation id a caller passed along.
    pub fn with_correlation_id(correlation_id: Uuid) -> Self {
        Self { correlation_id }
    }

    /// The options of one command this request issues: its events carry the request's
    /// correlation id, a fresh command id as their causation id, and the command's name.
    pub fn command(&self, name: &str) -> CommandOptions {
        CommandOptions::with_metadata(
            Metadata::new()
                .with_correlation_id(self.correlation_id)
                .with_causation_id(Uuid::new_v4())
                .with_header("command", name),
        )
    }
}

impl Default for Request {
    fn default() -> Self {
        Self::new()
    }
}
