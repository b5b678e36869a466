//! Generic and lifetime-parameterised items: impls follow the item's generics.
use eventsource_core::prelude::*;
use eventsource_core::EventSet;
use serde::{Deserialize, Serialize};

/// A generic event: `DomainEvent` when its payload decodes.
#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "box.filled")]
pub struct Filled<T> {
    pub item: T,
}

/// An event with a lifetime: implemented for `'static`.
#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "box.labelled")]
pub struct Labelled<'a> {
    pub label: std::borrow::Cow<'a, str>,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "box", events(Filled<u32>, Labelled<'static>))]
pub struct Crate<T: Send + Sync + Default + 'static, const N: usize> {
    pub items: Vec<u32>,
    pub label: String,
    pub marker: std::marker::PhantomData<[T; N]>,
}

impl<T: Send + Sync + Default + 'static, const N: usize> Apply<Filled<u32>> for Crate<T, N> {
    fn apply(&mut self, e: &Filled<u32>) {
        self.items.push(e.item)
    }
}

impl<T: Send + Sync + Default + 'static, const N: usize> Apply<Labelled<'static>> for Crate<T, N> {
    fn apply(&mut self, e: &Labelled<'static>) {
        self.label = e.label.to_string()
    }
}

#[derive(Default, Projection)]
#[projection(name = "fills", events(Filled<u32>))]
pub struct Fills<T: Send + 'static> {
    pub count: usize,
    pub marker: std::marker::PhantomData<T>,
}

impl<T: Send + 'static> Handle<Filled<u32>> for Fills<T> {
    async fn handle(&mut self, _: Filled<u32>, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        self.count += 1;
        Ok(())
    }
}

fn main() {
    let mut c: Crate<String, 3> = Crate::default();
    let e = CrateEvent::decode("box.filled", 1, br#"{"item":7}"#).unwrap();
    c.apply_event(&e);
    assert_eq!(c.items, [7]);
    assert_eq!(Filled::<String>::decode(1, br#"{"item":"x"}"#).unwrap().item, "x");
    assert_eq!(Fills::<u8>::event_types(), Some(&["box.filled"][..]));
}
