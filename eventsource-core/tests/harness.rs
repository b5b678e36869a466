//! The given/when/then harness fails loudly where a test expects the wrong thing.

use eventsource_core::testing::fixtures::{BelowZero, Counter, CounterEvent};
use eventsource_core::testing::given;

#[test]
fn then_returns_the_state_with_the_decided_events_applied() {
    let state = given::<Counter>([CounterEvent::Added(2), CounterEvent::Added(5)])
        .when(|c| c.add(3))
        .then([CounterEvent::Added(3)]);
    assert_eq!((state.value, state.applied), (10, 3));
}

#[test]
fn history_folds_in_order_including_and() {
    let g = given::<Counter>([CounterEvent::Added(4)])
        .and(CounterEvent::Reset)
        .and([CounterEvent::Added(1)]);
    assert_eq!(g.state().value, 1);
}

#[test]
fn a_rejection_matches_then_error() {
    given::<Counter>(())
        .when(|c| c.add(-1))
        .then_error(BelowZero);
    given::<Counter>(())
        .when(|c| c.add(-1))
        .then_error_matches(|e| *e == BelowZero);
    given::<Counter>(())
        .when(|_| Ok::<_, BelowZero>(()))
        .then_nothing();
}

#[test]
#[should_panic(expected = "the decision produced other events")]
fn other_events_fail_the_test() {
    given::<Counter>(())
        .when(|c| c.add(1))
        .then([CounterEvent::Added(2)]);
}

#[test]
#[should_panic(expected = "the decision failed")]
fn a_rejection_fails_then() {
    given::<Counter>(())
        .when(|c| c.add(-1))
        .then([CounterEvent::Added(-1)]);
}

#[test]
#[should_panic(expected = "expected the error")]
fn events_fail_then_error() {
    given::<Counter>(())
        .when(|c| c.add(1))
        .then_error(BelowZero);
}
