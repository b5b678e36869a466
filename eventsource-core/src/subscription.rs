//! Subscriptions: the global log as a `Stream` that catches up, then follows live.

use std::collections::VecDeque;

use futures::stream::{self, BoxStream, StreamExt};

use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::ids::Position;
use crate::store::EventStore;

/// Subscribes to the global log after `after`: yields every event in position order, reading
/// pages of `batch` events while behind, then waits for new events (the store wakes it) and
/// never ends on its own. Only one page is held at a time, and nothing is read until the
/// consumer asks: a slow consumer slows the reads, it never grows a buffer.
///
/// An error is yielded once and ends the stream; subscribe again from the last position seen.
pub fn subscribe<S: EventStore>(
    store: S,
    after: Position,
    batch: usize,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    let batch = batch.max(1);
    let state = Some((store, after, VecDeque::<RecordedEvent>::new()));
    stream::unfold(state, move |state| async move {
        let (store, mut after, mut buffer) = state?;
        loop {
            if let Some(event) = buffer.pop_front() {
                return Some((Ok(event), Some((store, after, buffer))));
            }
            match store.read_all(after, batch, None).await {
                Ok(page) if page.events.is_empty() => {
                    after = after.max(page.scanned_to);
                    if let Err(e) = store.wait_for_events(after).await {
                        return Some((Err(e), None));
                    }
                }
                Ok(page) => {
                    after = after.max(page.scanned_to);
                    buffer.extend(page.events);
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed()
}
