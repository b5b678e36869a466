use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "item.labelled")]
pub struct Labelled<'a> {
    pub label: std::borrow::Cow<'a, str>,
}

#[derive(Default, Projection)]
#[projection(name = "labels", events(Labelled<'a>))]
pub struct Labels<'a> {
    pub last: Option<Labelled<'a>>,
}

impl<'a: 'static> Handle<Labelled<'a>> for Labels<'a> {
    async fn handle(&mut self, e: Labelled<'a>, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        self.last = Some(e);
        Ok(())
    }
}

fn main() {}
