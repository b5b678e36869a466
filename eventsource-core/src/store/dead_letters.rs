//! Dead letters: the events a projection could not handle and passed by (its failure policy
//! said skip, or park the stream), kept by the store per (projection, event id) until they
//! are retried or discarded. Resolving one records how and when; nothing is erased.

use chrono::{DateTime, Utc};

use crate::envelope::RecordedEvent;
use crate::ids::{EventId, Position, StreamId};

/// Why an event is a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Its handler failed on it (or it could not be decoded).
    Failed,
    /// Its stream is parked behind an earlier dead letter: it was never handed to the
    /// handler, so its stream's events are never applied out of order.
    Parked,
}

impl DeadLetterReason {
    /// The stored form: `failed` or `parked`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Failed => "failed",
            DeadLetterReason::Parked => "parked",
        }
    }

    /// The reason stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "failed" => Some(DeadLetterReason::Failed),
            "parked" => Some(DeadLetterReason::Parked),
            _ => None,
        }
    }
}

/// How a dead letter was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolutionKind {
    /// Handed to the handler again, which handled it.
    Retried,
    /// Given up on by an operator (or by a rebuild that replays the projection from zero).
    Discarded,
}

impl ResolutionKind {
    /// The stored form: `retried` or `discarded`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionKind::Retried => "retried",
            ResolutionKind::Discarded => "discarded",
        }
    }

    /// The kind stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "retried" => Some(ResolutionKind::Retried),
            "discarded" => Some(ResolutionKind::Discarded),
            _ => None,
        }
    }
}

/// How and when a dead letter was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// How.
    pub kind: ResolutionKind,
    /// When (the store's clock).
    pub at: DateTime<Utc>,
}

/// A dead letter as the store keeps it. (Not `non_exhaustive`: every store builds them.)
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The projection (instance) that passed the event by.
    pub projection: String,
    /// The event, as stored in the log.
    pub event: RecordedEvent,
    /// Why it is a dead letter.
    pub reason: DeadLetterReason,
    /// The last error met on it (for a parked letter: which letter its stream waits behind).
    pub error: String,
    /// How many times it failed (or was parked): 1 the first time, one more each time a retry
    /// fails or the event is met again.
    pub attempts: u32,
    /// When it first failed (the store's clock).
    pub first_failed_at: DateTime<Utc>,
    /// When it last failed.
    pub last_failed_at: DateTime<Utc>,
    /// How it was resolved; `None` while it is pending.
    pub resolution: Option<Resolution>,
}

impl DeadLetter {
    /// Whether it is still pending (neither retried nor discarded).
    pub fn is_pending(&self) -> bool {
        self.resolution.is_none()
    }
}

/// One change to a projection's dead letters, written with
/// [`EventStore::write_dead_letters`](super::EventStore::write_dead_letters) (or by a store's
/// runner backend in the batch that passes the event).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DeadLetterChange {
    /// The event failed (or was parked): a new pending letter with one attempt, or, when the
    /// projection already has a letter for this event id, one more attempt, this error and
    /// reason, the failure time now, and pending again.
    Failed {
        /// The event.
        event: RecordedEvent,
        /// Why.
        reason: DeadLetterReason,
        /// The error's text.
        error: String,
    },
    /// The letter of this event id is resolved (a letter that is not pending, or absent, is
    /// left as it is).
    Resolved {
        /// The event's id.
        event_id: EventId,
        /// How.
        kind: ResolutionKind,
    },
}

/// Which of a projection's dead letters to list: in position order, after `after`, at most
/// `limit` (a page: list the next page after the last letter's position).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only letters whose event's position is after this one.
    pub after: Position,
    /// At most this many.
    pub limit: usize,
    /// Only this stream's letters.
    pub stream: Option<StreamId>,
    /// Only pending letters (the default), or resolved ones too.
    pub pending_only: bool,
}

impl Default for DeadLetterQuery {
    fn default() -> Self {
        Self {
            after: Position::ZERO,
            limit: 100,
            stream: None,
            pending_only: true,
        }
    }
}

impl DeadLetterQuery {
    /// The pending letters, 100 at a time.
    pub fn pending() -> Self {
        Self::default()
    }

    /// Resolved letters too.
    pub fn all() -> Self {
        Self {
            pending_only: false,
            ..Self::default()
        }
    }

    /// Only the letters of `stream`.
    pub fn stream(mut self, stream: StreamId) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Only letters after `position`.
    pub fn after(mut self, position: Position) -> Self {
        self.after = position;
        self
    }

    /// At most `limit` letters (at least 1).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }
}
