//! Inline projections: projections run inside the append's own transaction.

use eventsource_core::projection::guarded;
use eventsource_core::{Projection, RecordedEvent, SharedError, StoreError};
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::context::PgProjectionContext;

/// The inline projections of a store, in the order they were registered.
#[derive(Default)]
pub(crate) struct Inlines(Vec<Mutex<Box<dyn DynInline>>>);

impl Inlines {
    pub(crate) fn push<P>(&mut self, projection: P)
    where
        P: Projection<Context = PgProjectionContext>,
    {
        self.0.push(Mutex::new(Box::new(Inline(projection))));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Hands `events` to every projection in turn, in `ctx`'s transaction; appends run one at
    /// a time through each projection's handlers.
    pub(crate) async fn handle_all(
        &self,
        events: &[RecordedEvent],
        ctx: &mut PgProjectionContext,
    ) -> Result<(), StoreError> {
        for projection in &self.0 {
            projection.lock().await.handle_all(events, ctx).await?;
        }
        Ok(())
    }
}

/// The object-safe face of an inline projection.
trait DynInline: Send {
    /// Hands every event of its types to the projection, in position order.
    fn handle_all<'a>(
        &'a mut self,
        events: &'a [RecordedEvent],
        ctx: &'a mut PgProjectionContext,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A projection wrapped for [`DynInline`].
struct Inline<P>(P);

impl<P> DynInline for Inline<P>
where
    P: Projection<Context = PgProjectionContext>,
{
    fn handle_all<'a>(
        &'a mut self,
        events: &'a [RecordedEvent],
        ctx: &'a mut PgProjectionContext,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let types = P::event_types();
            for event in events {
                if types.is_some_and(|t| !t.contains(&event.event_type.as_str())) {
                    continue;
                }
                // A panic is caught (the append is rolled back), not let loose in the
                // appending task.
                if let Err(failure) = guarded(self.0.handle_event(event, ctx)).await {
                    return Err(inline_failed::<P>(event, failure.into_shared()));
                }
            }
            Ok(())
        })
    }
}

fn inline_failed<P: Projection>(event: &RecordedEvent, source: SharedError) -> StoreError {
    StoreError::InlineProjection {
        projection: P::NAME,
        stream: event.stream.clone(),
        version: event.version,
        event_type: event.event_type.clone(),
        source,
    }
}
