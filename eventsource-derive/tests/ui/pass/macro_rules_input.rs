//! Events, an aggregate and a projection declared through `macro_rules!`: the derives see
//! idents with the macro's spans, and generated code must compile whatever spans it is given.
use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

macro_rules! event {
    ($ty:ident, $name:literal) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
        #[event(name = $name)]
        pub struct $ty {
            pub n: i64,
        }
    };
}

macro_rules! event_v2 {
    ($ty:ident, $previous:ident, $name:literal) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
        #[event(name = $name, version = 2, previous = $previous)]
        pub struct $ty {
            pub n: i64,
        }

        impl From<$previous> for $ty {
            fn from(e: $previous) -> Self {
                $ty { n: e.n * 100 }
            }
        }
    };
}

macro_rules! raw_event {
    ($ty:ident, $upcast:ident, $name:literal) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
        #[event(name = $name, version = 2, upcast_json = $upcast)]
        pub struct $ty {
            pub n: i64,
        }
    };
}

macro_rules! aggregate {
    ($name:ident, $($ev:ident),+) => {
        #[derive(Debug, Default, Serialize, Deserialize, Aggregate)]
        #[aggregate(name = "account", events($($ev),+), snapshot_every = 10)]
        pub struct $name {
            pub total: i64,
        }

        $(
            impl Apply<$ev> for $name {
                fn apply(&mut self, e: &$ev) {
                    self.total += e.n;
                }
            }
        )+
    };
}

macro_rules! projection {
    ($name:ident, $clear:ident, $($ev:ident),+) => {
        #[derive(Default, Projection)]
        #[projection(name = "totals", events($($ev),+), reset = Self::$clear)]
        pub struct $name {
            pub total: i64,
        }

        impl $name {
            async fn $clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
                self.total = 0;
                Ok(())
            }
        }

        $(
            impl Handle<$ev> for $name {
                async fn handle(&mut self, e: $ev, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
                    self.total += e.n;
                    Ok(())
                }
            }
        )+
    };
}

fn renamed_v1(_: u32, json: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(json)
}

event!(Opened, "account.opened");
event!(DepositedV1, "account.deposited");
event_v2!(Deposited, DepositedV1, "account.deposited");
raw_event!(Renamed, renamed_v1, "account.renamed");
aggregate!(Account, Opened, Deposited, Renamed);
projection!(Totals, clear, Opened, Deposited, Renamed);

fn main() {
    let mut account = Account::default();
    account.apply_event(&AccountEvent::from(Deposited { n: 2 }));
    assert_eq!(account.total, 2);
    assert_eq!(Deposited::decode(1, br#"{"n":3}"#).unwrap(), Deposited { n: 300 });
    assert_eq!(Renamed::decode(1, br#"{"n":4}"#).unwrap(), Renamed { n: 4 });
    assert_eq!(Totals::NAME, "totals");
}
