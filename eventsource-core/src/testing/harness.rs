//! A given/when/then harness for aggregate decisions: no store, no async.
//!
//! ```
//! use eventsource_core::testing::given;
//! use eventsource_core::testing::fixtures::{BelowZero, Counter, CounterEvent};
//!
//! given::<Counter>([CounterEvent::Added(2)])
//!     .when(|c| c.add(3))
//!     .then([CounterEvent::Added(3)]);
//!
//! given::<Counter>([CounterEvent::Added(2)])
//!     .when(|c| c.add(-5))
//!     .then_error(BelowZero);
//! ```
//!
//! Every event, given or decided, goes through the event set's encoding and decoding first,
//! so a payload that does not survive storage fails the test where it is written.

use std::fmt::Debug;

use crate::aggregate::Aggregate;
use crate::event::{EventSet, IntoEvents};

/// Starts a scenario: the aggregate's history.
pub fn given<A: Aggregate>(events: impl IntoEvents<A::Event>) -> Given<A> {
    Given {
        state: A::default(),
        history: 0,
    }
    .and(events)
}

/// Round-trips an event through its stored form.
#[track_caller]
fn stored<Ev: EventSet>(event: Ev) -> Ev {
    let name = event.event_type();
    let payload = event
        .encode()
        .unwrap_or_else(|e| panic!("event `{name}` does not encode: {e}"));
    Ev::decode(name, event.schema_version(), &payload)
        .unwrap_or_else(|e| panic!("event `{name}` does not decode from its own encoding: {e}"))
}

/// A scenario with its history folded in.
#[derive(Debug)]
pub struct Given<A> {
    state: A,
    history: usize,
}

impl<A: Aggregate> Given<A> {
    /// More history.
    #[track_caller]
    pub fn and(mut self, events: impl IntoEvents<A::Event>) -> Self {
        for e in events.into_events() {
            self.state.apply_event(&stored(e));
            self.history += 1;
        }
        self
    }

    /// The state the history folds to.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Runs a decision on the state.
    #[track_caller]
    pub fn when<D, E, F>(self, decide: F) -> Then<A, E>
    where
        F: FnOnce(&A) -> Result<D, E>,
        D: IntoEvents<A::Event>,
    {
        let result = decide(&self.state).map(|d| d.into_events().into_iter().map(stored).collect());
        Then {
            state: self.state,
            result,
        }
    }
}

/// The outcome of a decision, to assert on.
#[derive(Debug)]
pub struct Then<A: Aggregate, E> {
    state: A,
    result: Result<Vec<A::Event>, E>,
}

impl<A: Aggregate, E: Debug> Then<A, E>
where
    A::Event: PartialEq + Debug,
{
    /// Asserts the decision produced exactly these events, and returns the state with them
    /// applied (to assert on it further).
    #[track_caller]
    pub fn then(self, expected: impl IntoEvents<A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_events();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "the decision produced other events");
                let mut state = self.state;
                for e in &events {
                    state.apply_event(e);
                }
                state
            }
            Err(e) => panic!("expected events {expected:?}, the decision failed: {e:?}"),
        }
    }

    /// Asserts the decision produced no events.
    #[track_caller]
    pub fn then_nothing(self) {
        self.then(());
    }

    /// Asserts the decision failed with exactly this error.
    #[track_caller]
    pub fn then_error(self, expected: E)
    where
        E: PartialEq,
    {
        match self.result {
            Err(e) => assert_eq!(e, expected, "the decision failed with another error"),
            Ok(events) => {
                panic!("expected the error {expected:?}, the decision produced {events:?}")
            }
        }
    }

    /// Asserts the decision failed with an error matching `check`.
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&E) -> bool) {
        match self.result {
            Err(e) => assert!(
                check(&e),
                "the decision failed with an unexpected error: {e:?}"
            ),
            Ok(events) => panic!("expected an error, the decision produced {events:?}"),
        }
    }
}
