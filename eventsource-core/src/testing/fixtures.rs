//! A small hand-written aggregate and projection the conformance suite drives the repository
//! and the runner with. Written by hand on purpose: the suite tests the runtime and the stores,
//! not the derives.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::codec;
use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::{DecodeError, EncodeError};
use crate::event::{EventSet, EventType, IntoEvents};
use crate::projection::{HandlerError, Projection};

/// The events of [`Counter`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterEvent {
    /// Adds `n` to the counter (stored as `counter.added`).
    Added(i64),
    /// Sets the counter to zero (stored as `counter.reset`).
    Reset,
}

impl CounterEvent {
    /// The event as an appendable [`NewEvent`] with a fresh, time-ordered id.
    pub fn to_new_event(&self) -> NewEvent {
        let payload = self.encode().unwrap_or_default();
        NewEvent::new(self.event_type(), 1, payload)
    }
}

impl IntoEvents<CounterEvent> for CounterEvent {
    fn into_events(self) -> Vec<CounterEvent> {
        vec![self]
    }
}

impl EventSet for CounterEvent {
    const EVENT_TYPES: &'static [EventType] = &[
        EventType {
            name: "counter.added",
            version: 1,
            aliases: &[],
        },
        EventType {
            name: "counter.reset",
            version: 1,
            aliases: &[],
        },
    ];

    fn event_type(&self) -> &'static str {
        match self {
            CounterEvent::Added(_) => "counter.added",
            CounterEvent::Reset => "counter.reset",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Bytes, EncodeError> {
        match self {
            CounterEvent::Added(n) => {
                codec::encode_json("counter.added", &serde_json::json!({ "n": n }))
            }
            CounterEvent::Reset => Ok(Bytes::from_static(b"{}")),
        }
    }

    fn decode(event_type: &str, schema_version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Added {
            n: i64,
        }
        match (event_type, schema_version) {
            ("counter.added", 1) => {
                let a: Added = codec::decode_json(event_type, schema_version, payload)?;
                Ok(CounterEvent::Added(a.n))
            }
            ("counter.reset", 1) => Ok(CounterEvent::Reset),
            ("counter.added" | "counter.reset", v) => Err(DecodeError::UnsupportedVersion {
                name: event_type.to_owned(),
                version: v,
                current: 1,
            }),
            _ => Err(DecodeError::UnknownEvent {
                name: event_type.to_owned(),
                version: schema_version,
            }),
        }
    }
}

/// A counter that snapshots every 5 events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The current value.
    pub value: i64,
    /// How many events were folded in (a snapshot must restore it exactly).
    pub applied: u64,
}

/// The command error of [`Counter`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the counter would go below zero")]
pub struct BelowZero;

impl Counter {
    /// Adds `n`, refusing to go below zero.
    pub fn add(&self, n: i64) -> Result<CounterEvent, BelowZero> {
        if self.value + n < 0 {
            return Err(BelowZero);
        }
        Ok(CounterEvent::Added(n))
    }
}

impl Aggregate for Counter {
    const NAME: &'static str = "counter";
    const SNAPSHOT_EVERY: Option<u64> = Some(5);
    const SNAPSHOT_VERSION: u32 = 1;
    type Event = CounterEvent;

    fn apply_event(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added(n) => self.value += n,
            CounterEvent::Reset => self.value = 0,
        }
        self.applied += 1;
    }

    fn encode_snapshot(&self) -> Result<Bytes, EncodeError> {
        codec::encode_json(Self::NAME, self)
    }

    fn decode_snapshot(payload: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(payload).map_err(DecodeError::Snapshot)
    }
}

/// The [`Counter`] without snapshots (stream `tally-<id>`): every load folds its stream from
/// version 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally(pub Counter);

impl Aggregate for Tally {
    const NAME: &'static str = "tally";
    type Event = CounterEvent;

    fn apply_event(&mut self, event: &CounterEvent) {
        self.0.apply_event(event);
    }
}

/// A projection that records every `counter.added` event it handles, and can be told to fail
/// on a given amount.
#[derive(Clone, Debug, Default)]
pub struct AddedLog {
    /// The handled events, in order: (stream, version, n).
    pub seen: Arc<Mutex<Vec<(String, u64, i64)>>>,
    /// Fail when an event adds exactly this amount.
    pub fail_on: Option<i64>,
    /// Panic when an event adds exactly this amount.
    pub panic_on: Option<i64>,
    /// Panic in `reset`.
    pub panic_on_reset: bool,
    /// Fail while an event adds an amount in this set (take it out: the bug is fixed).
    pub poisoned: Arc<Mutex<std::collections::BTreeSet<i64>>>,
    /// Fail with an error marked transient while this is above zero, taking one off each
    /// time.
    pub transient_failures: Arc<std::sync::atomic::AtomicUsize>,
}

impl Projection for AddedLog {
    const NAME: &'static str = "conformance.added-log";
    type Context = ();

    fn event_types() -> Option<&'static [&'static str]> {
        Some(&["counter.added"])
    }

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        _ctx: &mut (),
    ) -> Result<(), HandlerError> {
        let CounterEvent::Added(n) =
            CounterEvent::decode(&event.event_type, event.schema_version, &event.payload)?
        else {
            return Err("a reset reached a projection that filters it out".into());
        };
        if self.fail_on == Some(n) {
            return Err(format!("told to fail on {n}").into());
        }
        if self.panic_on == Some(n) {
            panic!("told to panic on {n}");
        }
        if self.poisoned.lock().contains(&n) {
            return Err(format!("{n} is poison").into());
        }
        let transient = self.transient_failures.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |k| k.checked_sub(1),
        );
        if transient.is_ok() {
            return Err(crate::projection::Transient::new("the mail relay is down").into());
        }
        self.seen
            .lock()
            .push((event.stream.to_string(), event.version.get(), n));
        Ok(())
    }

    async fn reset(&mut self, _ctx: &mut ()) -> Result<(), HandlerError> {
        if self.panic_on_reset {
            panic!("told to panic in reset");
        }
        self.seen.lock().clear();
        Ok(())
    }
}
