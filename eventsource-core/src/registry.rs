//! The run-time check that no two aggregates of one application claim the same stored event
//! type. Within one aggregate the derive checks this at compile time; across aggregates only a
//! registry built at startup can.

use std::collections::HashMap;

use crate::aggregate::Aggregate;
use crate::event::EventSet;

/// Two event types claim the same stored (name, version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event type `{name}` version {version} is claimed by both `{first}` and `{second}`")]
pub struct RegistryError {
    /// The stored type name.
    pub name: String,
    /// The schema version.
    pub version: u32,
    /// The aggregate registered first.
    pub first: String,
    /// The aggregate registered second.
    pub second: String,
}

/// Collects the event types of every aggregate an application uses, refusing duplicates.
///
/// ```
/// use eventsource_core::EventRegistry;
/// let registry = EventRegistry::new();
/// assert!(registry.is_empty());
/// // let registry = registry.register::<Account>()?.register::<Order>()?;
/// ```
#[derive(Debug, Default, Clone)]
pub struct EventRegistry {
    owners: HashMap<(&'static str, u32), &'static str>,
}

impl EventRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the event types of aggregate `A` (names and aliases). Fails if another registered
    /// aggregate already claims one of them.
    pub fn register<A: Aggregate>(mut self) -> Result<Self, RegistryError> {
        for t in <A::Event as EventSet>::EVENT_TYPES {
            for name in std::iter::once(&t.name).chain(t.aliases) {
                if let Some(first) = self.owners.insert((name, t.version), A::NAME) {
                    if first != A::NAME {
                        return Err(RegistryError {
                            name: (*name).to_owned(),
                            version: t.version,
                            first: first.to_owned(),
                            second: A::NAME.to_owned(),
                        });
                    }
                }
            }
        }
        Ok(self)
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}
