//! Subscriptions: the global log as a `Stream` that catches up, then follows live, riding out
//! transient faults of the store.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};

use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::ids::Position;
use crate::store::EventStore;

/// The first pause after a transient fault, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

/// Subscribes to the global log after `after`: yields every event in position order, reading
/// pages of `batch` events while behind, then waits for new events (the store wakes it) and
/// never ends on its own. Only one page is held at a time, and nothing is read until the
/// consumer asks: a slow consumer slows the reads, it never grows a buffer.
///
/// A transient fault of the store (a lost connection, a server restarting:
/// [`StoreError::is_retryable`]) is ridden out: the subscription pauses with bounded backoff
/// and reads on after the last event it yielded, so nothing is skipped or yielded twice. Any
/// other error is yielded once and ends the stream.
pub fn subscribe<S: EventStore>(
    store: S,
    after: Position,
    batch: usize,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    let batch = batch.max(1);
    let state = Some((store, after, VecDeque::<RecordedEvent>::new()));
    stream::unfold(state, move |state| async move {
        let (store, mut after, mut buffer) = state?;
        let mut wait = BACKOFF.0;
        loop {
            if let Some(event) = buffer.pop_front() {
                return Some((Ok(event), Some((store, after, buffer))));
            }
            let read = match store.read_all(after, batch, None).await {
                Ok(page) if page.events.is_empty() => {
                    after = after.max(page.scanned_to);
                    store.wait_for_events(after).await
                }
                Ok(page) => {
                    after = after.max(page.scanned_to);
                    buffer.extend(page.events);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            match read {
                Ok(()) => wait = BACKOFF.0,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, ?wait, "subscription: transient fault, reading on after the last event");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF.1);
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed()
}
