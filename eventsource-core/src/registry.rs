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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::error::{DecodeError, EncodeError};
    use crate::event::EventType;

    macro_rules! aggregate {
        ($agg:ident, $ev:ident, $name:literal, $types:expr) => {
            #[derive(Default)]
            struct $agg;
            struct $ev;
            impl EventSet for $ev {
                const EVENT_TYPES: &'static [EventType] = $types;
                fn event_type(&self) -> &'static str {
                    ""
                }
                fn schema_version(&self) -> u32 {
                    1
                }
                fn encode(&self) -> Result<Bytes, EncodeError> {
                    Ok(Bytes::new())
                }
                fn decode(name: &str, version: u32, _: &[u8]) -> Result<Self, DecodeError> {
                    Err(DecodeError::UnknownEvent {
                        name: name.into(),
                        version,
                    })
                }
            }
            impl Aggregate for $agg {
                const NAME: &'static str = $name;
                type Event = $ev;
                fn apply_event(&mut self, _: &$ev) {}
            }
        };
    }

    const fn t(name: &'static str, version: u32, aliases: &'static [&'static str]) -> EventType {
        EventType {
            name,
            version,
            aliases,
        }
    }

    aggregate!(
        Account,
        AccountEvent,
        "account",
        &[t("account.opened", 1, &[]), t("account.deposited", 2, &[])]
    );
    aggregate!(
        Order,
        OrderEvent,
        "order",
        &[
            t("order.placed", 1, &[]),
            t("order.paid", 1, &["account.opened"])
        ]
    );
    aggregate!(
        Audit,
        AuditEvent,
        "audit",
        &[t("account.deposited", 3, &[])]
    );

    #[test]
    fn a_type_claimed_by_two_aggregates_is_a_startup_error_naming_both() {
        let err = EventRegistry::new()
            .register::<Account>()
            .and_then(EventRegistry::register::<Order>)
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError {
                name: "account.opened".into(),
                version: 1,
                first: "account".into(),
                second: "order".into(),
            }
        );
        assert!(err.to_string().contains("`account.opened` version 1"));
    }

    #[test]
    fn distinct_types_and_versions_register_and_registering_twice_is_harmless() {
        let registry = EventRegistry::new()
            .register::<Account>()
            .and_then(EventRegistry::register::<Audit>)
            .and_then(EventRegistry::register::<Account>)
            .unwrap();
        assert!(!registry.is_empty());
    }
}
