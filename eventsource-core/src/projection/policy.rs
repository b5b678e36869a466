//! What a runner does when a handler fails on an event: [`FailurePolicy`] (stop, skip the
//! event into dead letters, or park its stream), and [`Transient`], how a handler says that
//! trying again may help.

use super::HandlerError;

/// What a runner does with an event its handler failed on for good (an error not marked
/// [`Transient`], or one still failing after [`FailurePolicy::transient_attempts`] tries;
/// an event that cannot be decoded counts as a failure of its handler).
///
/// Whatever it is, a handler's *panic* stops the runner: the projection's own state may be
/// half-updated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnFailure {
    /// Stop the runner with the error, its checkpoint before the event (fail fast).
    #[default]
    Stop,
    /// Write the event to the projection's dead letters and go on with the next one.
    Skip,
    /// Write the event to the dead letters, and every later event of its stream too, in
    /// order, until its letters are retried or discarded, while other streams go on: a
    /// stream's events never reach the read model out of order.
    ParkStream,
}

/// A projection's failure policy: one [`OnFailure`] while it runs live, one while it
/// rebuilds (from a reset until it has caught up), and how often an error its handler
/// marked [`Transient`] is tried before it counts as a failure. Both default to
/// [`OnFailure::Stop`].
///
/// ```
/// # use eventsource_core::projection::{FailurePolicy, OnFailure};
/// let policy = FailurePolicy::default().live(OnFailure::ParkStream).transient_attempts(5);
/// assert_eq!(policy.on_failure(false), OnFailure::ParkStream);
/// assert_eq!(policy.on_failure(true), OnFailure::Stop); // rebuilds still fail fast
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    live: OnFailure,
    rebuild: OnFailure,
    transient_attempts: u32,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            live: OnFailure::Stop,
            rebuild: OnFailure::Stop,
            transient_attempts: 5,
        }
    }
}

impl FailurePolicy {
    /// What to do with a failed event while running live.
    pub fn live(mut self, on: OnFailure) -> Self {
        self.live = on;
        self
    }

    /// What to do with a failed event while rebuilding.
    pub fn rebuild(mut self, on: OnFailure) -> Self {
        self.rebuild = on;
        self
    }

    /// How many times an event whose handler returns a [`Transient`] error is handled in all
    /// (at least 1; 5 by default), with backoff between tries, before the error counts as
    /// a failure.
    pub fn transient_attempts(mut self, n: u32) -> Self {
        self.transient_attempts = n.max(1);
        self
    }

    /// What applies now: while rebuilding, or live.
    pub fn on_failure(&self, rebuilding: bool) -> OnFailure {
        if rebuilding { self.rebuild } else { self.live }
    }

    /// How many times a transiently failing event is handled in all.
    pub fn attempts(&self) -> u32 {
        self.transient_attempts
    }
}

/// Marks a handler's error as transient (a service briefly down, a timeout): the runner
/// tries the event again with backoff instead of applying the failure policy at once.
///
/// ```
/// # use eventsource_core::projection::{HandlerError, Transient};
/// fn mailer_down() -> HandlerError {
///     Transient::new("the mail relay did not answer").into()
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("transient: {0}")]
pub struct Transient(#[source] pub HandlerError);

impl Transient {
    /// Marks `error` as transient.
    pub fn new(error: impl Into<HandlerError>) -> Self {
        Transient(error.into())
    }

    /// Whether `error`, or an error it was caused by, is marked transient.
    pub fn marks(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if e.is::<Transient>() {
                return true;
            }
            cause = e.source();
        }
        false
    }
}
