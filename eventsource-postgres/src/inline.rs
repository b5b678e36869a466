//! Inline projections: projections run inside the append's own transaction.

use eventsource_core::projection::guarded;
use eventsource_core::{Projection, RecordedEvent, SharedError, StoreError};
use futures::future::BoxFuture;

use crate::context::PgProjectionContext;

/// The object-safe face of an inline projection.
pub(crate) trait DynInline: Send {
    /// Hands every event of its types to the projection, in position order.
    fn handle_all<'a>(
        &'a mut self,
        events: &'a [RecordedEvent],
        ctx: &'a mut PgProjectionContext,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A projection wrapped for [`DynInline`].
pub(crate) struct Inline<P>(pub(crate) P);

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
